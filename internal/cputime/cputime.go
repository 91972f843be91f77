// Package cputime reads the CPU time this process has used, the steadier
// measure of a benchmark on a busy machine than the wall clock.
package cputime

import (
	"syscall"
	"time"
)

// Self returns the CPU time (user + system, all threads) this process has
// used so far, or 0 if the system cannot tell.
func Self() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

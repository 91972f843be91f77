//go:build !wasip1

package sluice

import (
	"fmt"
	"os"
)

// Off wasm (unit tests of a guest's pure code), Log writes to stderr.
func hostLog(level Level, msg string) {
	names := [...]string{"DEBUG", "INFO", "WARN", "ERROR"}
	name := "LOG"
	if level >= 0 && int(level) < len(names) {
		name = names[level]
	}
	fmt.Fprintf(os.Stderr, "sluice %s %s\n", name, msg)
}

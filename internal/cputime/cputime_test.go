package cputime

import (
	"testing"
	"time"
)

// Spinning for 50ms of wall time uses about as much CPU; sleeping does not.
func TestSelf(t *testing.T) {
	c0 := Self()
	for start := time.Now(); time.Since(start) < 50*time.Millisecond; {
	}
	spun := Self() - c0
	if spun < 20*time.Millisecond {
		t.Fatalf("spinning 50ms used %v of CPU", spun)
	}
	c1 := Self()
	time.Sleep(50 * time.Millisecond)
	if slept := Self() - c1; slept > 30*time.Millisecond {
		t.Fatalf("sleeping 50ms used %v of CPU", slept)
	}
}

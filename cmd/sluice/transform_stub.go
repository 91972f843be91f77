package main

import (
	"context"
	"fmt"
	"io"
)

// transformCmd is replaced by transform.go once runtime/wasm lands.
func transformCmd(_ context.Context, _ []string, _, stderr io.Writer) int {
	fmt.Fprintln(stderr, "sluice transform: not built yet")
	return 2
}

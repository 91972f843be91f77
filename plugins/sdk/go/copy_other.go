//go:build !wasm

package sluice

// move copies src into dst; see copy.go.
func move(dst, src []byte) { copy(dst, src) }

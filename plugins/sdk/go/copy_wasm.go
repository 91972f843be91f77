//go:build wasm

package sluice

// move copies src into dst; see copy.go.
func move(dst, src []byte) {
	if len(src) >= 2048 {
		copy(dst, src)
		return
	}
	moveWords(dst, src)
}

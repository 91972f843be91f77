package sluice

import (
	"encoding/binary"
	"unsafe"
)

// Copying bytes. In wasm, Go's copy and append compile to memory.copy,
// which wazero runs by calling out to Go's memmove: that costs about 125 ns
// a call whatever the size (measured: 136 ns to copy 8 bytes against 12 ns
// natively), more than the rest of the work on a record. So in wasm the
// SDK copies short runs with a loop of 8-byte loads and stores instead
// (moveWords), and leaves long ones to memory.copy.

// appendFast appends src to dst like append, copying with move when dst
// has room.
func appendFast(dst, src []byte) []byte {
	n := len(dst)
	if cap(dst)-n < len(src) {
		return append(dst, src...)
	}
	dst = dst[:n+len(src)]
	move(dst[n:], src)
	return dst
}

// appendStringFast is appendFast for a string.
func appendStringFast(dst []byte, s string) []byte {
	return appendFast(dst, unsafe.Slice(unsafe.StringData(s), len(s)))
}

// moveWords copies src into dst (len(dst) >= len(src)) 32 then 8 bytes at
// a time; the slices may overlap. (Unrolled: in wasm every loop iteration
// also pays the host's interrupt check.)
func moveWords(dst, src []byte) {
	n := len(src)
	if n == 0 {
		return
	}
	dst = dst[:n]
	d, s := uintptr(unsafe.Pointer(&dst[0])), uintptr(unsafe.Pointer(&src[0]))
	le := binary.LittleEndian
	if d > s && d < s+uintptr(n) { // dst overlaps the end of src: copy backwards
		i := n
		for ; i >= 32; i -= 32 {
			sw, dw := src[i-32:i:i], dst[i-32:i:i]
			a, b, c, e := le.Uint64(sw[0:]), le.Uint64(sw[8:]), le.Uint64(sw[16:]), le.Uint64(sw[24:])
			le.PutUint64(dw[24:], e)
			le.PutUint64(dw[16:], c)
			le.PutUint64(dw[8:], b)
			le.PutUint64(dw[0:], a)
		}
		for ; i >= 8; i -= 8 {
			le.PutUint64(dst[i-8:], le.Uint64(src[i-8:]))
		}
		for ; i > 0; i-- {
			dst[i-1] = src[i-1]
		}
		return
	}
	i := 0
	for ; i+32 <= n; i += 32 {
		sw, dw := src[i:i+32:i+32], dst[i:i+32:i+32]
		a, b, c, e := le.Uint64(sw[0:]), le.Uint64(sw[8:]), le.Uint64(sw[16:]), le.Uint64(sw[24:])
		le.PutUint64(dw[0:], a)
		le.PutUint64(dw[8:], b)
		le.PutUint64(dw[16:], c)
		le.PutUint64(dw[24:], e)
	}
	for ; i+8 <= n; i += 8 {
		le.PutUint64(dst[i:], le.Uint64(src[i:]))
	}
	for ; i < n; i++ {
		dst[i] = src[i]
	}
}

package sluice

import "unsafe"

// Notes on speed in wasm (Go's wasm backend, run by wazero), measured on
// the SDK's hot paths, which are written accordingly:
//
//   - A call costs about 15 ns (arguments and results go through memory,
//     and every function starts with a stack check and a jump table), so
//     the per-record paths avoid small calls that the compiler does not
//     inline, and indirect calls even more.
//   - Every taken branch goes back through the function's jump table: a
//     loop costs a few nanoseconds an iteration. Scans read 8 bytes at a
//     time (unaligned loads through unsafe.Pointer, which also skips the
//     bounds checks).
//   - copy and append compile to a call of runtime.memmove, which runs
//     memory.copy: about 30 ns whatever the size up to a few hundred bytes.
//     That is cheaper than any copy loop past 16 bytes or so, but costly for
//     a few bytes: fixed-size fields are written with plain stores (put32,
//     put64) and a record is built with as few copies as possible.
//   - Copying a struct of more than 16 bytes is a memmove too: fields are
//     set member by member.

// put32 and put64 store v little-endian at b[i:] without a bounds check;
// the caller has checked that b has room.
func put32(b []byte, i int, v uint32) {
	*(*uint32)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(b)), i)) = v
}

func put64(b []byte, i int, v uint64) {
	*(*uint64)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(b)), i)) = v
}

// get32 loads the little-endian uint32 at p[i] without a bounds check.
func get32(p unsafe.Pointer, i int) uint32 { return *(*uint32)(unsafe.Add(p, i)) }

// grow returns b with room for n more bytes.
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b
	}
	return growSlow(b, n)
}

//go:noinline
func growSlow(b []byte, n int) []byte {
	nb := make([]byte, len(b), 2*cap(b)+n+256)
	copy(nb, b)
	return nb
}

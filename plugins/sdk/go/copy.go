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

// put16 copies the first 16 bytes of src's array (its capacity is at
// least 16) to p, with two loads and two stores.
func put16(p unsafe.Pointer, src []byte) {
	s := unsafe.Pointer(unsafe.SliceData(src))
	a, b := load64(s, 0), load64(s, 8)
	*(*uint64)(p) = a
	*(*uint64)(unsafe.Add(p, 8)) = b
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

// move copies src to dst (which has room for it) like copy: up to 16 bytes
// with a few loads and stores, all loads first (so dst and src may
// overlap), and no call to memmove, which costs more than the rest of a
// short copy.
func move(dst, src []byte) {
	n := len(src)
	if n > 16 {
		copy(dst, src)
		return
	}
	d, s := unsafe.Pointer(unsafe.SliceData(dst)), unsafe.Pointer(unsafe.SliceData(src))
	switch {
	case n >= 8:
		a, b := load64(s, 0), load64(s, n-8)
		*(*uint64)(d) = a
		*(*uint64)(unsafe.Add(d, n-8)) = b
	case n >= 4:
		a, b := get32(s, 0), get32(s, n-4)
		*(*uint32)(d) = a
		*(*uint32)(unsafe.Add(d, n-4)) = b
	case n > 0:
		a, b, c := load8(s, 0), load8(s, n/2), load8(s, n-1)
		*(*byte)(d) = a
		*(*byte)(unsafe.Add(d, n/2)) = b
		*(*byte)(unsafe.Add(d, n-1)) = c
	}
}

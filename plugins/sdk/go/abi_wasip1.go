//go:build wasip1

package sluice

import "unsafe"

// The exports of ABI version 1 (docs/abi.md). //go:wasmexport works from a
// non-main package: a module that imports this package exports them.

var (
	inBuf  []byte // what sluice_alloc handed out last
	outBuf []byte // the last output; reused by the next call
	errBuf []byte // the last sluice_init error message
)

//go:wasmexport sluice_abi_version
func sluiceABIVersion() int32 { return 1 }

//go:wasmexport sluice_alloc
func sluiceAlloc(size int32) int32 {
	if size < 0 {
		return 0
	}
	n := max(int(size), 1)
	if cap(inBuf) < n {
		inBuf = make([]byte, max(n, 2*cap(inBuf)))
	}
	inBuf = inBuf[:n]
	return int32(uintptr(unsafe.Pointer(&inBuf[0])))
}

//go:wasmexport sluice_init
func sluiceInit(ptr, size int32) int64 {
	config := append([]byte(nil), input(ptr, size)...)
	if err := runInit(config); err != nil {
		msg := err.Error()
		if msg == "" {
			msg = "init failed"
		}
		errBuf = append(errBuf[:0], msg...)
		return pack(errBuf)
	}
	return 0
}

//go:wasmexport sluice_process
func sluiceProcess(ptr, size int32) int64 {
	outBuf = state.process(input(ptr, size), outBuf)
	return pack(outBuf)
}

// input returns the buffer the host filled: the one sluice_alloc returned.
func input(ptr, size int32) []byte {
	if len(inBuf) == 0 || uint32(ptr) != uint32(uintptr(unsafe.Pointer(&inBuf[0]))) || size < 0 || int(size) > len(inBuf) {
		panic("sluice: the host passed a buffer that sluice_alloc did not return")
	}
	return inBuf[:size]
}

func pack(b []byte) int64 {
	return int64(uint64(uint32(uintptr(unsafe.Pointer(&b[0]))))<<32 | uint64(uint32(len(b))))
}

//go:wasmimport sluice log
//go:noescape
func sluiceLog(level int32, ptr unsafe.Pointer, size int32)

func hostLog(level Level, msg string) {
	sluiceLog(int32(level), unsafe.Pointer(unsafe.StringData(msg)), int32(len(msg)))
}

package wasm

import (
	"errors"
	"strings"
)

// Sentinel errors, for errors.Is on what Process, New and Reload return.
var (
	// ErrABI: the module breaks docs/abi.md (a missing export, a wrong
	// signature or version, a malformed output, sluice_alloc failing).
	ErrABI = errors.New("ABI violation")
	// ErrInit: sluice_init returned an error.
	ErrInit = errors.New("init failed")
	// ErrTrap: the module trapped or exited.
	ErrTrap = errors.New("trap")
	// ErrTimeout: a call ran past the timeout.
	ErrTimeout = errors.New("timeout")
	// ErrMemoryLimit: the module ran out of memory at the cap.
	ErrMemoryLimit = errors.New("memory limit")
	// ErrRecord: the module failed the record (an error entry).
	ErrRecord = errors.New("record failed")
	// ErrInvalidOutput: an output value is not valid JSON.
	ErrInvalidOutput = errors.New("invalid output")
	// ErrClosed: the transform was closed.
	ErrClosed = errors.New("transform closed")
)

// Error is an error of a module: it names the module (as written in the
// config), the function and the reason, e.g.
//
//	wasm enrich.wasm: sluice_abi_version returned 2, want 1
//	wasm enrich.wasm: sluice_process: timeout after 100ms
//
// errors.Is(err, ErrTimeout) (or another sentinel) tells the kind.
type Error struct {
	Module string // as written in the config
	Func   string // the export called, or "" for a record the module failed
	Kind   error  // one of the sentinels above
	Msg    string // the reason
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("wasm ")
	b.WriteString(e.Module)
	b.WriteString(": ")
	if e.Func != "" {
		b.WriteString(e.Func)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns the kind.
func (e *Error) Unwrap() error { return e.Kind }

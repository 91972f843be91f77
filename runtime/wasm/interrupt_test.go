package wasm

import (
	"bytes"
	"context"
	"os"
	"testing"

	"github.com/tetratelabs/wazero"
)

// Every module the tests use, Go and WAT, survives the rewrite: wazero
// validates and compiles it.
func TestInstrumentCompiles(t *testing.T) {
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	files, _ := os.ReadDir(modDir)
	for _, f := range files {
		t.Run(f.Name(), func(t *testing.T) {
			bin, err := os.ReadFile(mod(f.Name()[:len(f.Name())-5]))
			if err != nil {
				t.Fatal(err)
			}
			out, err := instrument(bin)
			if err != nil {
				t.Fatalf("instrument: %v", err)
			}
			if _, err := rt.CompileModule(ctx, out); err != nil {
				t.Fatalf("compile the instrumented module: %v", err)
			}
		})
	}
}

// Only functions that loop or call get checks: rawidentity's
// sluice_abi_version and sluice_init are leaves and stay as they are;
// sluice_alloc gets an entry check and one for its loop, sluice_process an
// entry check and one for each of its two loops.
func TestInstrumentLeaves(t *testing.T) {
	bin, err := os.ReadFile(mod("rawidentity"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := instrument(bin)
	if err != nil {
		t.Fatal(err)
	}
	// Every check yields with `i32.const 0  memory.grow 0  drop`.
	if n := bytes.Count(out, []byte{0x41, 0x00, 0x40, 0x00, 0x1A}); n != 5 {
		t.Fatalf("%d checks, want 5", n)
	}
}

package wasm

import (
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

package wasm

import (
	"bytes"
	"context"
	"os"
	"testing"

	"github.com/tetratelabs/wazero"
)

// The three forward jumps of testdata/dispatch.wat's sum become direct,
// its jump back does not, "other" (not the dispatch shape) is left alone,
// and both compute what they did.
func TestThreadJumps(t *testing.T) {
	bin, err := os.ReadFile(mod("dispatch"))
	if err != nil {
		t.Fatal(err)
	}
	threaded, counts := threadModule(t, bin)
	if counts[0] != 3 || counts[1] != 0 {
		t.Fatalf("threaded %v jumps per function, want [3 0]", counts)
	}
	// Ahead of sum's jump table: 0 (the entry) to code 0, then 1 (where
	// its jump back goes) to code 1.
	entry := []byte{0x20, 0x00, 0x45, 0x0D, 0x00}            // local.get 0  i32.eqz  br_if $b0
	back := []byte{0x20, 0x00, 0x41, 0x01, 0x46, 0x0D, 0x01} // local.get 0  i32.const 1  i32.eq  br_if $b1
	if !bytes.Contains(threaded, append(entry, back...)) {
		t.Error("no tests of the entry and the loop's head ahead of sum's jump table")
	}
	ctx := context.Background()
	for _, b := range [][]byte{bin, threaded} {
		rt := wazero.NewRuntime(ctx)
		m, err := rt.Instantiate(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		for x, want := range map[uint64]uint64{0: 0, 1: 1, 10: 55, 1000: 500500} {
			res, err := m.ExportedFunction("sum").Call(ctx, 0, x)
			if err != nil || res[0] != want {
				t.Errorf("sum(%d) = %v, %v; want %d", x, res, err, want)
			}
		}
		if res, err := m.ExportedFunction("other").Call(ctx, 0); err != nil || res[0] != 7 {
			t.Errorf("other() = %v, %v; want 7", res, err)
		}
		rt.Close(ctx)
	}
}

// A Go guest has thousands of forward jumps, and the rewrite leaves a
// module that wazero compiles (the conformance tests check that Go guests
// still give the same outputs as every other language).
func TestThreadJumpsGo(t *testing.T) {
	bin, err := os.ReadFile(mod("enrich"))
	if err != nil {
		t.Fatal(err)
	}
	threaded, counts := threadModule(t, bin)
	total := 0
	for _, n := range counts {
		total += n
	}
	if total < 1000 {
		t.Fatalf("threaded %d jumps in the Go enrich guest, want thousands", total)
	}
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	if _, err := rt.CompileModule(ctx, threaded); err != nil {
		t.Fatal(err)
	}
}

// Modules without Go's dispatch loops keep their bytes through
// threadJumps: the WAT ones of the tests.
func TestThreadJumpsLeavesOthers(t *testing.T) {
	for _, name := range []string{"rawidentity", "fib", "hostile", "recurse"} {
		bin, err := os.ReadFile(mod(name))
		if err != nil {
			t.Fatal(err)
		}
		if out, _ := threadModule(t, bin); !bytes.Equal(out, bin) {
			t.Errorf("%s: changed", name)
		}
	}
}

// threadModule returns bin with threadJumps applied to every function body
// (and nothing else changed), and how many jumps it rewrote in each.
func threadModule(t *testing.T, bin []byte) ([]byte, []int) {
	t.Helper()
	out := append([]byte(nil), bin[:8]...)
	var counts []int
	r := &reader{b: bin, p: 8}
	for r.p < len(bin) {
		id := r.byte1()
		payload := r.bytes(int(r.u32()))
		if r.err != nil {
			t.Fatal(r.err)
		}
		if id == secCode {
			cr := &reader{b: payload}
			n := cr.u32()
			p := appendU32(nil, n)
			for i := range n {
				code := cr.bytes(int(cr.u32()))
				lr := &reader{b: code}
				for range lr.u32() {
					lr.u32()
					lr.valType()
				}
				body, k, err := threadJumps(append([]byte(nil), code[:lr.p]...), code[lr.p:])
				if err != nil {
					t.Fatalf("function %d: %v", i, err)
				}
				counts = append(counts, k)
				p = appendU32(p, uint32(len(body)))
				p = append(p, body...)
			}
			payload = p
		}
		out = append(out, id)
		out = appendU32(out, uint32(len(payload)))
		out = append(out, payload...)
	}
	return out, counts
}

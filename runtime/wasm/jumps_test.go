package wasm

import (
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

// Every module of the tests keeps its bytes through threadJumps when it
// has no dispatch loop: the WAT ones.
func TestThreadJumpsLeavesOthers(t *testing.T) {
	for _, name := range []string{"rawidentity", "fib", "hostile", "recurse"} {
		bin, err := os.ReadFile(mod(name))
		if err != nil {
			t.Fatal(err)
		}
		if _, counts := threadModule(t, bin); len(counts) == 0 {
			t.Fatalf("%s: no functions", name)
		} else {
			for i, n := range counts {
				if n != 0 {
					t.Errorf("%s: function %d: %d jumps threaded, want 0", name, i, n)
				}
			}
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
				if k == 0 && string(body) != string(code) {
					t.Fatalf("function %d: changed with no jump threaded", i)
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

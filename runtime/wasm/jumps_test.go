package wasm

import (
	"bytes"
	"context"
	"os"
	"slices"
	"testing"

	"github.com/tetratelabs/wazero"
)

// testdata/dispatch.wat's functions compute what they did once rewritten:
// sum's three forward jumps and its jump back become direct, mid's jump
// into the middle of its loop still lands there, nested's inner loop gets
// its own wasm loop while the outer one goes around the dispatch loop, and
// other (not the shape) is left alone, and loose (the shape, but a branch
// not in Go's way) keeps every way into its jump table.
func TestThreadJumps(t *testing.T) {
	bin, err := os.ReadFile(mod("dispatch"))
	if err != nil {
		t.Fatal(err)
	}
	threaded, counts := threadModule(t, bin)
	if want := []int{4, 0, 2, 3, 0}; !slices.Equal(counts, want) {
		t.Fatalf("made %v jumps direct per function, want %v", counts, want)
	}
	ctx := context.Background()
	type call struct {
		fn   string
		args []uint64
		want uint64
	}
	calls := []call{{"other", []uint64{0}, 7}, {"loose", []uint64{0, 0}, 22}, {"loose", []uint64{1, 0}, 11}}
	for _, x := range []uint64{0, 1, 10, 1000, 50000} { // 50000 runs past the fuel: out to the dispatch loop and back
		calls = append(calls, call{"sum", []uint64{0, x}, x * (x + 1) / 2})
	}
	for _, x := range []uint64{1, 3, 100} {
		calls = append(calls, call{"mid", []uint64{0, x}, x + x*(x+1)/2})
	}
	for _, x := range []uint64{101, 300, 30000} {
		calls = append(calls, call{"mid", []uint64{0, x}, 1000 + x*(x+1)/2 + x - 1})
	}
	for _, ab := range [][2]uint64{{0, 5}, {5, 0}, {1, 1}, {7, 9}, {300, 300}} {
		calls = append(calls, call{"nested", []uint64{0, ab[0], ab[1]}, ab[0] * ab[1]})
	}
	for i, b := range [][]byte{bin, threaded} {
		rt := wazero.NewRuntime(ctx)
		m, err := rt.Instantiate(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range calls {
			res, err := m.ExportedFunction(c.fn).Call(ctx, c.args...)
			if err != nil || res[0] != c.want {
				t.Errorf("module %d: %s%v = %v, %v; want %d", i, c.fn, c.args[1:], res, err, c.want)
			}
		}
		rt.Close(ctx)
	}
	// The jump table's ways into codes that Go's code never enters through
	// it trap: sum's code 2, the middle of its loop, which nothing jumps to
	// from outside the loop.
	rt2 := wazero.NewRuntime(ctx)
	defer rt2.Close(ctx)
	m2, err := rt2.Instantiate(ctx, threaded)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := m2.ExportedFunction("sum").Call(ctx, 2, 3); err == nil {
		t.Errorf("sum entered at code 2 = %v, want a trap", res)
	}
	// Instrumented, the rewritten module still computes the same: the new
	// loops get their checks too.
	ib, err := instrument(bin)
	if err != nil {
		t.Fatal(err)
	}
	// The loop around each dispatch loop (and other's loop) has the check
	// that yields; the new loops, and a dispatch loop that a loop still goes
	// around, count the fuel down and branch out when it runs out.
	if n := bytes.Count(ib, []byte{0x41, 0x00, 0x40, 0x00, 0x1A}); n != 5 {
		t.Errorf("%d checks that yield in the instrumented module, want 5", n)
	}
	if n := bytes.Count(ib, []byte{0x41, 0x01, 0x48, 0x0D}); n != 5 {
		t.Errorf("%d fuel countdowns at loop heads, want 5 (3 new loops; nested's dispatch loop, which its outer loop still goes around; loose's)", n)
	}
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	m, err := rt.Instantiate(ctx, ib)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range calls {
		if res, err := m.ExportedFunction(c.fn).Call(ctx, c.args...); err != nil || res[0] != c.want {
			t.Errorf("instrumented: %s%v = %v, %v; want %d", c.fn, c.args[1:], res, err, c.want)
		}
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
				body, k, _, err := threadJumps(append([]byte(nil), code[:lr.p]...), code[lr.p:], nil)
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

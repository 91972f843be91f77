package wasm

import (
	"fmt"
	"slices"
)

// Threading the forward jumps of Go's wasm code.
//
// Go's wasm backend compiles every function with calls or branches into a
// dispatch loop. The function's basic blocks follow a jump table, each
// after the end of one block of a nest:
//
//	loop $dispatch
//	  block $b(k) ... block $b1 block $b0
//	    local.get 0          ;; PC_B: where to go
//	    br_table $b0 $b1 ...  ;; by PC_B
//	  end $b0   code 0
//	  end $b1   code 1
//	  ...
//	  end $b(k) code k
//	end
//
// and every jump, forward or back, is `i32.const N  local.set 0  br
// $dispatch`: around the loop and through the jump table, an indirect jump
// that every branch and every call of the function shares. threadJumps
// rewrites that shape when a module loads:
//
//   - Code k sits inside the blocks of every later code, so a jump to a
//     later one becomes a plain `br $b(t)` to the end of its block, which
//     the host compiles to a direct jump.
//   - Jumps back (loops) must still go around the loop, whose head is
//     where instrument puts its time-cap check, so every loop of the
//     function still passes a check. Ahead of the jump table, tests of
//     local 0 with a br_if each send the function's entry (0, every call)
//     and the targets of its first few jumps back straight to their code:
//     conditional branches, each predicted on its own, instead of the one
//     shared indirect jump.
//
// The `i32.const N  local.set 0` before a jump stays, so the rewrite
// changes no value, only how the code gets there; it holds for any module
// with this shape, whoever made it. Measured on the Go enrich guest: about
// 200 trips through the jump table per record became 60 (17 of them calls'
// entries), and the guest ran 20-30% faster (BENCHMARKS.md).

// threadJumps returns a function body's expression (code, its locals
// already read) with its forward dispatch jumps made direct, as described
// above, and how many it rewrote; a body without the dispatch shape comes
// back as it is.
func threadJumps(dst, code []byte) ([]byte, int, error) {
	// First find where the jumps back go, then rewrite with them.
	_, _, back, err := rewriteJumps(nil, code, nil)
	if err != nil {
		return nil, 0, err
	}
	out, n, _, err := rewriteJumps(dst, code, back)
	return out, n, err
}

// maxChain is how many targets of jumps back get a test of their own ahead
// of the jump table (the function's entry, 0, comes first).
const maxChain = 4

// rewriteJumps is threadJumps' pass over code. It makes the forward jumps
// direct and, ahead of the jump table, tests local 0 against 0 (a call's
// entry) and the values in chain (where the jumps back go), each with a
// br_if to its block. It returns the values that its jumps back set, in
// the order they first appear.
func rewriteJumps(dst, code []byte, chain []int32) ([]byte, int, []int32, error) {
	r := &reader{b: code}
	var (
		depth    int      // constructs open: blocks, loops, ifs, trys
		loopAt   = -1     // depth of the dispatch loop, once found
		nblocks  int      // blocks of the nest
		table    []uint32 // the br_table's labels, default last
		seg      = -1     // code being read: the index of the block just ended
		constEnd = -1     // where the last i32.const ended
		constVal int32
		setEnd   = -1 // where `i32.const N  local.set 0` ended
		setVal   int32
		from     int
		threaded int
		back     []int32
	)
	for r.p < len(code) && r.err == nil {
		at := r.p
		op := r.byte1()
		switch op {
		case 0x02, 0x04, 0x06, 0x1F: // block, if, try, try_table
			depth++
		case 0x03: // loop
			if loopAt < 0 && table == nil {
				if n, t, ok := dispatchNest(code, r.p); ok {
					loopAt, nblocks, table = depth, n, t
					// Ahead of `local.get 0  br_table`, inside the n blocks:
					// `local.get 0  i32.eqz  br_if` to the entry's block, then
					// `local.get 0  i32.const N  i32.eq  br_if` for each N of chain.
					at := r.p + 1 + 2*n
					dst = append(dst, code[from:at]...)
					dst = appendU32(append(dst, 0x20, 0x00, 0x45, 0x0D), target(t, 0))
					for _, v := range chain {
						dst = append(dst, 0x20, 0x00, 0x41)
						dst = appendSLEB(dst, v)
						dst = appendU32(append(dst, 0x46, 0x0D), target(t, v))
					}
					from = at
				} else {
					table = []uint32{} // not the shape: only the first loop can be
				}
			}
			depth++
		case 0x0B: // end
			depth--
			if loopAt >= 0 && depth == loopAt {
				loopAt = -1 // the dispatch loop ended; table keeps another from being taken for it
			}
			if loopAt >= 0 && depth > loopAt && depth <= loopAt+nblocks {
				// The end of block b(s) of the nest, at depth loopAt+1+(nblocks-1-s).
				seg = loopAt + nblocks - depth
			}
		case 0x41: // i32.const
			v := r.s32()
			constVal, constEnd = v, r.p
			continue
		case 0x21: // local.set
			if idx := r.u32(); idx == 0 && at == constEnd {
				setVal, setEnd = constVal, r.p
			}
			continue
		case 0x0C: // br
			l := r.p
			label := int(r.u32())
			if loopAt < 0 || at != setEnd || seg < 0 || depth-1-label != loopAt {
				continue
			}
			t := target(table, setVal)
			if int(t) <= seg {
				// Back (or to itself): through the dispatch loop.
				if setVal != 0 && len(back) < maxChain && !slices.Contains(back, setVal) {
					back = append(back, setVal)
				}
				continue
			}
			// Block b(t) is open at depth loopAt+1+(nblocks-1-t).
			direct := depth - 1 - (loopAt + nblocks - int(t))
			dst = append(dst, code[from:l]...)
			dst = appendU32(dst, uint32(direct))
			from = r.p
			threaded++
			continue
		}
		if !r.immediates(op) {
			return nil, 0, nil, fmt.Errorf("unknown opcode %#x at byte %d", op, at)
		}
	}
	if r.err != nil {
		return nil, 0, nil, r.err
	}
	if depth != -1 {
		return nil, 0, nil, fmt.Errorf("unbalanced blocks (%d open at the end)", depth+1)
	}
	return append(dst, code[from:]...), threaded, back, nil
}

// target returns the label the jump table picks for v: the index of the
// block whose end starts the code that v selects.
func target(table []uint32, v int32) uint32 {
	if uint32(v) < uint32(len(table)-1) {
		return table[v]
	}
	return table[len(table)-1]
}

// dispatchNest reports whether the loop whose block type starts at code[p]
// opens Go's dispatch nest: an empty block type, then n ≥ 2 empty blocks,
// `local.get 0` and a br_table whose labels all name blocks of the nest.
// It returns n and the labels (default last).
func dispatchNest(code []byte, p int) (int, []uint32, bool) {
	r := &reader{b: code, p: p}
	if r.byte1() != 0x40 {
		return 0, nil, false
	}
	n := 0
	for r.p+1 < len(code) && code[r.p] == 0x02 && code[r.p+1] == 0x40 {
		r.p += 2
		n++
	}
	if n < 2 || r.byte1() != 0x20 || r.u32() != 0 || r.byte1() != 0x0E {
		return 0, nil, false
	}
	count := r.u32()
	if r.err != nil || int(count) > len(code) {
		return 0, nil, false
	}
	table := make([]uint32, 0, count+1)
	for range count + 1 {
		l := r.u32()
		if l >= uint32(n) {
			return 0, nil, false
		}
		table = append(table, l)
	}
	return n, table, r.err == nil
}

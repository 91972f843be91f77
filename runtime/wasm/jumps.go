package wasm

import "fmt"

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
// that every branch of the function shares. Code k sits inside the blocks
// of every later code, so a jump to a later one can instead be a plain
// `br $b(t)` to the end of its block, which the host compiles to a direct
// jump. threadJumps makes that rewrite when it loads a module; jumps back
// (loops) keep going through the dispatch loop, whose head is where
// instrument puts its time-cap check, so every loop of the function still
// passes a check. The `i32.const N  local.set 0` before the jump stays,
// so the rewrite changes no value, only how the code gets there; it holds
// for any module with this shape, whoever made it.

// threadJumps returns a function body's expression (code, its locals
// already read) with its forward dispatch jumps made direct, as described
// above, and how many it rewrote; a body without the dispatch shape comes
// back as it is.
func threadJumps(dst, code []byte) ([]byte, int, error) {
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
			t := table[len(table)-1]
			if uint32(setVal) < uint32(len(table)-1) {
				t = table[setVal]
			}
			if int(t) <= seg {
				continue // back (or to itself): through the dispatch loop
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
			return nil, 0, fmt.Errorf("unknown opcode %#x at byte %d", op, at)
		}
	}
	if r.err != nil {
		return nil, 0, r.err
	}
	if depth != -1 {
		return nil, 0, fmt.Errorf("unbalanced blocks (%d open at the end)", depth+1)
	}
	return append(dst, code[from:]...), threaded, nil
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

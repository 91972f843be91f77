package wasm

import (
	"errors"
	"fmt"
	"slices"
)

// Rewriting the control flow of Go's wasm code.
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
// that every branch and every call of the function shares. Worse, wazero
// carries every variable the function sets anywhere around that loop, so
// each trip through it moves all of them (measured on a synthetic function
// of this shape: 2 ns a loop iteration with no other variables, 6.5 with
// 16, 13 with 24; Go functions have dozens). threadJumps rewrites the shape
// when a module loads:
//
//   - Forward: code k sits inside the blocks of every later code, so a jump
//     to a later one becomes a plain `br` to the end of its block, which
//     the host compiles to a direct jump.
//   - Loops: the codes from the target t of a jump back to the code s that
//     jumps (an innermost loop of the function) are wrapped in a wasm loop
//     of their own, and the jump becomes a `br` to its head. Only the
//     variables set inside the loop go around it (2–3 ns an iteration
//     whatever the function's size, same measurement).
//   - A loop's codes after t can still be entered from outside it (a jump
//     into the middle, or a resume after a call when a goroutine switches):
//     the loop's head tests local 0 and, if it does not select code t,
//     dispatches with a jump table of its own. Every path that entered the
//     loop sets local 0 first (a jump sets it, and the rewrite sets it on
//     the fall-through into the loop).
//   - Ahead of the main jump table, a test of local 0 with a br_if sends
//     the function's entry (0: every call) and the targets of the first few
//     remaining jumps back straight to their code.
//   - The jump table keeps only the ways in that Go's code uses: the
//     function's entry, the targets of the jumps that still go around the
//     dispatch loop, a loop's head (entered again when its fuel runs out),
//     a jump from outside a loop into its middle, and the codes around a
//     call (a goroutine that switched resumes after its call; after a
//     recover the runtime jumps to the call of deferreturn). Its other
//     entries lead to a trap: with fewer ways into each code, wazero moves
//     fewer values along the direct jumps (the Go enrich guest: 14% less
//     time). Code that did come in that way would trap, not run on.
//   - Time-cap checks (interrupt.go): the heads of the new loops, and of
//     the dispatch loop when a jump back still goes around it, get check,
//     which only counts the fuel down and, when it runs out, branches out
//     to a new loop around the dispatch loop. instrument gives that outer
//     loop its usual check, with the call that yields to Go: it runs once
//     per call of the function, where few values are live, and when the
//     fuel runs out. (A call in a loop's check, even one not taken, makes
//     every iteration save the values live across it.)
//
// The `i32.const N  local.set 0` before a jump stays, so local 0 always
// holds what it held before: the rewrite changes only how the code gets
// where it was going. It holds for any module with this shape, whoever
// made it; other functions are left as they are.

// loopCheck returns the time-cap check for the head of a loop that
// threadJumps makes, given the label to branch to when the fuel runs out;
// nil adds none.
type loopCheck func(out uint32) []byte

// threadJumps appends a function body's expression (code, its locals
// already read) to dst, rewritten as described above. It returns how many
// jumps it made direct, and where in what it appended the loops it made
// start (with check's check already in them); a body without the dispatch
// shape is appended as it is.
func threadJumps(dst, code []byte, check loopCheck) (out []byte, direct int, loops []int, err error) {
	f, err := scanDispatch(code)
	if err != nil {
		return nil, 0, nil, err
	}
	if f == nil {
		return append(dst, code...), 0, nil, nil
	}
	f.chooseLoops()
	f.check = check
	out, n, err := f.emit(dst)
	if err == errNotDispatch {
		return append(dst, code...), 0, nil, nil
	}
	return out, n, f.made, err
}

// errNotDispatch stops a rewrite that meets code it does not expect.
var errNotDispatch = errors.New("not Go's dispatch shape")

// maxChain is how many targets of jumps back get a test of their own ahead
// of the main jump table (the function's entry, 0, comes first).
const maxChain = 4

// dispatchFunc is a function body with the dispatch shape, cut into its
// codes (segments).
type dispatchFunc struct {
	code     []byte
	prefix   int      // code[:prefix] is everything up to and with the loop's block type
	n        int      // blocks of the nest, and codes
	table    []uint32 // the jump table: code index by local 0, default last
	seg      [][2]int // code j is code[seg[j][0]:seg[j][1]]
	suffix   int      // code[suffix:] starts with the dispatch loop's end
	back     [][2]int // jumps back: {from code, to code}
	calls    []bool   // code j makes a call at its top level (it ends with it)
	fwd      [][2]int // jumps forward: {from code, to code}
	other    bool     // a branch to the dispatch loop other than a jump
	backVals []int32  // the values jumps back set, in order, no repeats

	loopOf  []int // loop index of each code, or -1
	loops   [][2]int
	units   [][2]int // the codes in order, as units: a code alone {j, j} or a loop {t, s}; {-1, -1} traps
	entered []bool   // code j can be entered through the jump table
	unitOf  []int    // unit index of each code
	check   loopCheck
	made    []int // where emit wrote the loops it made, from the start of the expression
}

// scanDispatch returns code cut into codes if it has the dispatch shape,
// or nil.
func scanDispatch(code []byte) (*dispatchFunc, error) {
	r := &reader{b: code}
	var f *dispatchFunc
	depth, loopAt, cur := 0, -1, -1
	constEnd, setEnd := -1, -1
	var constVal, setVal int32
	for r.p < len(code) && r.err == nil {
		at := r.p
		op := r.byte1()
		switch op {
		case 0x06, 0x07, 0x08, 0x09, 0x18, 0x19, 0x1F: // exception handling: not Go's
			if f != nil && loopAt >= 0 {
				return nil, nil
			}
		case 0x03: // loop
			if f == nil && loopAt == -1 {
				if n, t, ok := dispatchNest(code, r.p); ok {
					f = &dispatchFunc{code: code, prefix: r.p + 1, n: n, table: t, seg: make([][2]int, n), calls: make([]bool, n)}
					loopAt = depth
				} else {
					loopAt = -2 // not the shape: only a first loop can be
				}
			}
		case 0x0B: // end
			if f != nil && loopAt >= 0 {
				d := depth - 1 // depth after this end
				switch {
				case d == loopAt:
					f.seg[f.n-1][1], f.suffix = at, at
					loopAt = -3
				case d > loopAt && d <= loopAt+f.n && loopAt+f.n-d == cur+1:
					// The end of block b(j), at depth loopAt+1+(n-1-j), which
					// starts code j (an end within code j-1 leaves depth at
					// code j-1's).
					j := cur + 1
					if j > 0 {
						f.seg[j-1][1] = at
					}
					f.seg[j][0], cur = r.p, j
				}
			}
		case 0x41: // i32.const
			constVal, constEnd = r.s32(), r.p
			continue
		case 0x21: // local.set
			if r.u32() == 0 && at == constEnd {
				setVal, setEnd = constVal, r.p
			}
			continue
		case 0x10, 0x11: // call, call_indirect
			if loopAt >= 0 && cur >= 0 && depth == loopAt+f.n-cur {
				f.calls[cur] = true
			}
		case 0x0E: // br_table
			if loopAt >= 0 && cur >= 0 {
				for range r.u32() + 1 {
					if depth-1-int(r.u32()) == loopAt {
						f.other = true
					}
				}
				continue
			}
		case 0x0C, 0x0D: // br, br_if
			label := int(r.u32())
			if loopAt < 0 || cur < 0 || depth-1-label != loopAt {
				continue
			}
			if op == 0x0D || at != setEnd {
				f.other = true // a way around the dispatch loop that is not a jump: not Go's
				continue
			}
			if t := int(target(f.table, setVal)); t > cur {
				f.fwd = append(f.fwd, [2]int{cur, t})
			} else {
				f.back = append(f.back, [2]int{cur, t})
				if setVal != 0 && !slices.Contains(f.backVals, setVal) {
					f.backVals = append(f.backVals, setVal)
				}
			}
			continue
		}
		switch op {
		case 0x02, 0x03, 0x04, 0x06, 0x1F:
			depth++
		case 0x0B:
			depth--
		}
		if !r.immediates(op) {
			return nil, fmt.Errorf("unknown opcode %#x at byte %d", op, at)
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	if depth != -1 {
		return nil, fmt.Errorf("unbalanced blocks (%d open at the end)", depth+1)
	}
	if f != nil && f.suffix == 0 {
		return nil, nil
	}
	return f, nil
}

// chooseLoops picks the loops to wrap: for each code that jumps back, the
// codes from its target to it, innermost (shortest) first, none
// overlapping another; and cuts the codes into units.
func (f *dispatchFunc) chooseLoops() {
	last := map[int]int{} // the last code that jumps back to each target
	for _, b := range f.back {
		if b[1] > 0 { // never code 0, the function's entry
			last[b[1]] = max(last[b[1]], b[0])
		}
	}
	var cands [][2]int
	for t, s := range last {
		cands = append(cands, [2]int{t, s})
	}
	slices.SortFunc(cands, func(a, b [2]int) int {
		if d := (a[1] - a[0]) - (b[1] - b[0]); d != 0 {
			return d
		}
		return a[0] - b[0]
	})
	f.loopOf = make([]int, f.n)
	for j := range f.loopOf {
		f.loopOf[j] = -1
	}
	for _, c := range cands {
		free := true
		for j := c[0]; j <= c[1]; j++ {
			if f.loopOf[j] >= 0 {
				free = false
				break
			}
		}
		if free {
			for j := c[0]; j <= c[1]; j++ {
				f.loopOf[j] = len(f.loops)
			}
			f.loops = append(f.loops, c)
		}
	}
	// The codes the jump table can send to: the entry, where the jumps that
	// still go around the dispatch loop go, and the codes around calls (a
	// goroutine that switched resumes after its call; the runtime jumps to
	// a call of deferreturn after a recover). Go's code enters no other
	// through the table, so the table sends the rest to a trap: with fewer
	// ways in, wazero carries fewer values along the direct jumps.
	f.entered = make([]bool, f.n)
	if f.other {
		// Some branch goes around the dispatch loop without saying where
		// (not Go's code): keep every way in.
		for j := range f.entered {
			f.entered[j] = true
		}
	}
	f.entered[target(f.table, 0)] = true
	for _, b := range f.back {
		if l := f.loopOf[b[1]]; l < 0 || f.loops[l][0] != b[1] || f.loopOf[b[0]] != l {
			f.entered[b[1]] = true // through the dispatch loop
		}
	}
	for _, l := range f.loops {
		f.entered[l[0]] = true // a loop's head, when its fuel runs out: out and back in
	}
	for _, j := range f.fwd {
		// Into the middle of a loop from outside it: through the loop's own table.
		if l := f.loopOf[j[1]]; l >= 0 && f.loops[l][0] != j[1] && f.loopOf[j[0]] != l {
			f.entered[j[1]] = true
		}
	}
	for j, c := range f.calls {
		if c {
			f.entered[j] = true
			if j+1 < f.n {
				f.entered[j+1] = true
			}
		}
	}
	trap := false
	for _, t := range f.table {
		if !f.entered[t] {
			trap = true
		}
	}
	if trap {
		f.units = append(f.units, [2]int{-1, -1})
	}
	f.unitOf = make([]int, f.n)
	for j := 0; j < f.n; {
		u := [2]int{j, j}
		if l := f.loopOf[j]; l >= 0 {
			u = f.loops[l]
		}
		for k := u[0]; k <= u[1]; k++ {
			f.unitOf[k] = len(f.units)
		}
		f.units = append(f.units, u)
		j = u[1] + 1
	}
}

// aroundDispatch reports whether some jump back still goes around the
// dispatch loop (not in a loop of its own), or some other branch does: the
// dispatch loop's head then needs a check. Otherwise only a call's entry
// and a loop whose fuel ran out (both through the outer loop's check) get
// there.
func (f *dispatchFunc) aroundDispatch() bool {
	if f.other {
		return true
	}
	for _, b := range f.back {
		if l := f.loopOf[b[1]]; l < 0 || f.loops[l][0] != b[1] || f.loopOf[b[0]] != l {
			return true
		}
	}
	return false
}

// pcRange returns the lowest and highest values of local 0 that select
// code j (they are consecutive).
func (f *dispatchFunc) pcRange(j int) (lo, hi int32) {
	lo, hi = -1, -1
	for p, t := range f.table[:len(f.table)-1] {
		if int(t) == j {
			if lo < 0 {
				lo = int32(p)
			}
			hi = int32(p)
		}
	}
	return lo, hi
}

// Kinds of the constructs around a code in the rewritten function.
const (
	kInner    = iota // the block whose end starts code i
	kLoop            // the loop of the code's unit
	kDispatch        // the dispatch loop
	kOuter           // the i-th construct around the dispatch loop
)

type construct struct{ kind, i int }

// emit writes the rewritten function.
func (f *dispatchFunc) emit(dst []byte) ([]byte, int, error) {
	code := f.code
	m := len(f.units)
	base := len(dst)
	// A loop around the dispatch loop: instrument gives it the check that
	// yields, run at each call's entry (when few values are live) and when
	// the fuel runs out; the dispatch loop's own check only counts down.
	loop := f.prefix - 2 // `loop` and its empty block type
	dst = append(dst, code[:loop]...)
	dst = append(dst, 0x03, 0x40)
	f.made = append(f.made, len(dst)-base)
	dst = append(dst, code[loop:f.prefix]...)
	if f.check != nil && f.aroundDispatch() {
		dst = append(dst, f.check(1)...)
	}
	for range m {
		dst = append(dst, 0x02, 0x40)
	}
	// The function's entry, then where the remaining jumps back go.
	dst = appendU32(append(dst, 0x20, 0x00, 0x45, 0x0D), uint32(f.unitOf[target(f.table, 0)]))
	chained := 0
	for _, v := range f.backVals {
		t := int(target(f.table, v))
		if l := f.loopOf[t]; (l >= 0 && f.loops[l][0] == t) || chained == maxChain {
			continue // jumps there are made direct (or enough tests already)
		}
		dst = append(dst, 0x20, 0x00, 0x41)
		dst = appendSLEB(dst, v)
		dst = appendU32(append(dst, 0x46, 0x0D), uint32(f.unitOf[t]))
		chained++
	}
	dst = append(dst, 0x20, 0x00, 0x0E)
	dst = appendU32(dst, uint32(len(f.table)-1))
	for _, t := range f.table {
		u := 0 // the trap
		if f.entered[t] {
			u = f.unitOf[t]
		}
		dst = appendU32(dst, uint32(u))
	}
	direct := 0
	var err error
	for u, unit := range f.units {
		dst = append(dst, 0x0B) // end of the unit's block
		t, s := unit[0], unit[1]
		if t < 0 {
			dst = append(dst, 0x00) // unreachable: the trap
			continue
		}
		if t == s && f.loopOf[t] < 0 {
			if dst, err = f.emitCode(dst, t, &direct); err != nil {
				return nil, 0, err
			}
		} else {
			f.made = append(f.made, len(dst)-base)
			dst = append(dst, 0x03, 0x40) // loop
			if f.check != nil {
				// Out to the loop around the dispatch loop, past this loop,
				// the unit blocks still open and the dispatch loop.
				dst = append(dst, f.check(uint32(1+m-1-u+1))...)
			}
			for range s - t {
				dst = append(dst, 0x02, 0x40)
			}
			// Entered for another code than t: dispatch within the loop.
			lo, hi := f.pcRange(t)
			dst = append(dst, 0x20, 0x00, 0x41)
			dst = appendSLEB(dst, lo)
			dst = append(dst, 0x6B, 0x41) // i32.sub  i32.const
			dst = appendSLEB(dst, hi-lo)
			dst = append(dst, 0x4B, 0x04, 0x40, 0x02, 0x40, 0x20, 0x00, 0x0E) // i32.gt_u  if  block  local.get 0  br_table
			dst = appendU32(dst, uint32(len(f.table)-1))
			for _, j := range f.table {
				l := uint32(1) // out of the if: code t
				switch {
				case int(j) > t && int(j) <= s && f.entered[j]:
					l = 2 + uint32(int(j)-(t+1))
				case int(j) > t && int(j) <= s:
					l = 0 // the block: the trap
				}
				dst = appendU32(dst, l)
			}
			dst = append(dst, 0x0B, 0x00, 0x0B) // end block  unreachable  end if
			for j := t; j <= s; j++ {
				if j > t {
					dst = append(dst, 0x0B)
				}
				if dst, err = f.emitCode(dst, j, &direct); err != nil {
					return nil, 0, err
				}
			}
			dst = append(dst, 0x0B) // end loop
		}
		if u+1 < m {
			if next := f.units[u+1]; next[0] != next[1] || f.loopOf[next[0]] >= 0 {
				// Falling into a loop: say which code, as a jump would.
				lo, _ := f.pcRange(next[0])
				dst = append(dst, 0x41)
				dst = appendSLEB(dst, lo)
				dst = append(dst, 0x21, 0x00)
			}
		}
	}
	// The dispatch loop's end, then the outer loop's.
	dst = append(dst, 0x0B, 0x0B)
	return append(dst, code[f.suffix+1:]...), direct, nil
}

// oldTarget returns what label k (counted from the outside of code j, past
// the constructs opened within it) named in the original function.
func (f *dispatchFunc) oldTarget(j, k int) construct {
	switch {
	case k < f.n-1-j:
		return construct{kInner, j + 1 + k} // the block ending before code j+1+k
	case k == f.n-1-j:
		return construct{kDispatch, 0}
	}
	return construct{kOuter, k - (f.n - j)}
}

// newLabel returns the label, counted from the outside of code j, of c in
// the rewritten function; c is a code (kInner) to jump to, the dispatch
// loop, an outer construct, or the loop of code j's unit.
func (f *dispatchFunc) newLabel(j int, c construct) int {
	u := f.unitOf[j]
	unit := f.units[u]
	inLoop := unit[0] != unit[1] || f.loopOf[j] >= 0
	k := 0
	if inLoop {
		s := unit[1]
		if c.kind == kInner && c.i > j && c.i <= s {
			return c.i - (j + 1) // the block ending before code c.i, in the loop
		}
		k = s - j // past those blocks
		if c.kind == kLoop {
			return k
		}
		k++ // past the loop
	}
	if c.kind == kInner {
		// A code after this unit: the block ending before its unit.
		return k + (f.unitOf[c.i] - (u + 1))
	}
	k += len(f.units) - 1 - u // past the unit blocks still open
	if c.kind == kDispatch {
		return k
	}
	return k + 2 + c.i // past the dispatch loop and the loop around it
}

// emitCode copies code j, rewriting the labels of its branches.
func (f *dispatchFunc) emitCode(dst []byte, j int, direct *int) ([]byte, error) {
	code := f.code[:f.seg[j][1]]
	r := &reader{b: code, p: f.seg[j][0]}
	from := r.p
	depth := 0
	constEnd, setEnd := -1, -1
	var constVal, setVal int32
	bad := false
	relabel := func(at, l int, jump bool) {
		if l < depth {
			return // within the code
		}
		c := f.oldTarget(j, l-depth)
		if jump && c.kind == kDispatch {
			t := int(target(f.table, setVal))
			u := f.units[f.unitOf[j]]
			switch {
			case t > j:
				c = construct{kInner, t}
				*direct++
			case f.loopOf[j] >= 0 && t == u[0]:
				c = construct{kLoop, 0}
				*direct++
			}
		} else if c.kind == kInner && f.loopOf[c.i] >= 0 && f.unitOf[c.i] != f.unitOf[j] {
			// A branch into a loop that does not say where (in local 0):
			// not Go's code. Leave the function as it was.
			bad = true
		}
		nl := depth + f.newLabel(j, c)
		dst = append(dst, code[from:at]...)
		dst = appendU32(dst, uint32(nl))
		from = r.p
	}
	for r.p < len(code) && r.err == nil {
		at := r.p
		op := r.byte1()
		switch op {
		case 0x02, 0x03, 0x04:
			depth++
		case 0x0B:
			depth--
		case 0x41:
			constVal, constEnd = r.s32(), r.p
			continue
		case 0x21:
			if r.u32() == 0 && at == constEnd {
				setVal, setEnd = constVal, r.p
			}
			continue
		case 0x0C, 0x0D: // br, br_if
			l := r.p
			label := int(r.u32())
			relabel(l, label, op == 0x0C && at == setEnd)
			continue
		case 0x0E: // br_table
			count := r.u32()
			for range count + 1 {
				l := r.p
				relabel(l, int(r.u32()), false)
			}
			continue
		}
		if !r.immediates(op) {
			return nil, fmt.Errorf("unknown opcode %#x at byte %d", op, at)
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	if depth != 0 {
		return nil, fmt.Errorf("code %d: unbalanced blocks", j)
	}
	if bad {
		return nil, errNotDispatch
	}
	return append(dst, code[from:]...), nil
}

// target returns the code the jump table picks for v.
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

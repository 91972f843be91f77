package wasm

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Stopping a module that runs too long.
//
// wazero's own way, RuntimeConfig.WithCloseOnContextDone, makes every loop
// iteration call out to Go to check the context. Go's wasm code has a loop
// in every function, so that made a Go guest about 20x slower (measured:
// 96 ns per iteration of an empty loop against 5 ns). Instead, as wasmtime's
// epoch interruption does, the host rewrites the module when it loads it:
//
//   - it adds a mutable i32 global, exported as interruptExport;
//   - it checks it at the entry of every function and the head of every
//     loop: `global.get $g  if  unreachable  end` (a load and a branch),
//     except in leaf functions, which have no loop and no call;
//   - it turns a start function into an export, startExport, that the host
//     calls after instantiation, so that it too runs under a time limit.
//
// Any code that runs forever passes one of those checks again and again (a
// run with no loop and no call is bounded by the code's size; the entry
// check is placed before a function's first call or branch, or left out
// when a loop, with its own check, comes before any). To stop a
// call, the host sets the global to 1 from a timer; the module traps at the
// next check and the host, knowing it fired, reports a timeout. The
// instance is then discarded.
//
// The check also yields to Go now and then. Native code cannot be
// preempted: a goroutine spinning in a module would stall a garbage
// collection's stop-the-world forever, and with it the timer that is
// meant to stop it (a deadlock the tests hit). To stay cheap, the check
// only counts down a second global, fuel; when it reaches zero it runs
// `memory.grow 0` (which wazero runs in Go: a point where the goroutine can
// be stopped), tests the interrupt global, and refills the fuel:
//
//	global.get $fuel  i32.const 1  i32.sub  global.set $fuel
//	global.get $fuel  i32.const 1  i32.lt_s
//	if
//	  i32.const 0  memory.grow  drop
//	  global.get $interrupt  if  unreachable  end
//	  i32.const fuelRefill  global.set $fuel
//	end
//
// In the common case that is a load, a store and a branch (wazero reuses
// the value just stored); it costs a Go guest about 5% against 25% for a
// check of both globals every time. A call is thus stopped at most
// fuelRefill checks after its time is up: microseconds in practice.
//
// In Go's code, rewritten by threadJumps (jumps.go), the loops get a
// lighter check with no call in it: it counts the fuel down and, when it
// runs out, branches out to a loop around the function's body, whose check
// above yields, tests $interrupt and refills. (A call, even on a path never taken, made
// every iteration of a Go loop pay for saving the values live across it:
// about 400 of 2 100 ns per record of the Go enrich guest.)
//
// Debug sections (.debug_*) hold code offsets that the rewrite shifts; they
// are dropped. The name section (function names in traps) is kept.

const (
	interruptExport = "sluice:interrupt"
	startExport     = "sluice:start"
	// fuelRefill is how many checks run between two yields to Go: a yield
	// costs about as much as a few thousand checks.
	fuelRefill = 10000
)

// Section ids, and their required order.
const (
	secCustom    = 0
	secType      = 1
	secImport    = 2
	secFunction  = 3
	secTable     = 4
	secMemory    = 5
	secGlobal    = 6
	secExport    = 7
	secStart     = 8
	secElement   = 9
	secCode      = 10
	secData      = 11
	secDataCount = 12
	secTag       = 13
)

var sectionRank = map[byte]int{
	secType: 1, secImport: 2, secFunction: 3, secTable: 4, secMemory: 5, secTag: 6,
	secGlobal: 7, secExport: 8, secStart: 9, secElement: 10, secDataCount: 11, secCode: 12, secData: 13,
}

// instrument returns bin rewritten as described above.
func instrument(bin []byte) ([]byte, error) {
	if len(bin) < 8 || string(bin[:4]) != "\x00asm" {
		return nil, errors.New("not a WebAssembly module (no \\0asm magic)")
	}
	if string(bin[4:8]) != "\x01\x00\x00\x00" {
		return nil, fmt.Errorf("unsupported binary version %x (want 1)", bin[4:8])
	}
	type section struct {
		id      byte
		payload []byte
	}
	var secs []section
	r := &reader{b: bin, p: 8}
	for r.p < len(bin) && r.err == nil {
		id := r.byte1()
		size := int(r.u32())
		payload := r.bytes(size)
		if r.err != nil {
			break
		}
		if id == secCustom {
			name := (&reader{b: payload}).name()
			if strings.HasPrefix(name, ".debug_") {
				continue
			}
		} else if _, ok := sectionRank[id]; !ok {
			return nil, fmt.Errorf("unknown section id %d", id)
		}
		secs = append(secs, section{id, payload})
	}
	if r.err != nil {
		return nil, fmt.Errorf("malformed module: %w", r.err)
	}

	// Count the imported globals and memories, the defined globals and
	// memories; find the start function.
	var importedGlobals, definedGlobals, memories uint32
	start := int64(-1)
	for _, s := range secs {
		switch s.id {
		case secImport:
			g, m, err := countImports(s.payload)
			if err != nil {
				return nil, fmt.Errorf("import section: %w", err)
			}
			importedGlobals = g
			memories += m
		case secMemory:
			memories += (&reader{b: s.payload}).u32()
		case secGlobal:
			definedGlobals = (&reader{b: s.payload}).u32()
		case secStart:
			sr := &reader{b: s.payload}
			start = int64(sr.u32())
			if sr.err != nil {
				return nil, fmt.Errorf("start section: %w", sr.err)
			}
		}
	}
	if memories == 0 {
		return nil, errors.New("the module has no memory (it must export one as \"memory\")")
	}
	flag := importedGlobals + definedGlobals // $interrupt
	fuel := flag + 1                         // $fuel
	refill := appendSLEB(nil, fuelRefill)
	// Both checks count the fuel down and test it; the full one then yields
	// in an if, a loop's (below) branches out.
	var low []byte
	low = append(appendU32(append(low, 0x23), fuel), 0x41, 0x01, 0x6B)           // global.get $fuel  i32.const 1  i32.sub
	low = appendU32(append(low, 0x24), fuel)                                     // global.set $fuel
	low = append(appendU32(append(low, 0x23), fuel), 0x41, 0x01, 0x48)           // global.get $fuel  i32.const 1  i32.lt_s
	check := append(append([]byte(nil), low...), 0x04, 0x40)                     // if
	check = append(check, 0x41, 0x00, 0x40, 0x00, 0x1A)                          //   i32.const 0  memory.grow 0  drop
	check = append(appendU32(append(check, 0x23), flag), 0x04, 0x40, 0x00, 0x0B) // global.get $interrupt  if  unreachable  end
	check = append(append(check, 0x41), refill...)                               //   i32.const fuelRefill
	check = append(appendU32(append(check, 0x24), fuel), 0x0B)                   //   global.set $fuel  end

	// Our globals: $interrupt (mut i32) (i32.const 0), $fuel (mut i32) (i32.const fuelRefill).
	ourGlobals := []byte{0x7F, 0x01, 0x41, 0x00, 0x0B, 0x7F, 0x01, 0x41}
	ourGlobals = append(append(ourGlobals, refill...), 0x0B)
	ourExports := appendName(nil, interruptExport)
	ourExports = append(ourExports, 0x03) // global
	ourExports = appendU32(ourExports, flag)
	nExports := uint32(1)
	if start >= 0 {
		ourExports = appendName(ourExports, startExport)
		ourExports = append(ourExports, 0x00) // func
		ourExports = appendU32(ourExports, uint32(start))
		nExports++
	}

	out := append(make([]byte, 0, len(bin)+len(bin)/8), bin[:8]...)
	emit := func(id byte, payload []byte) {
		out = append(out, id)
		out = appendU32(out, uint32(len(payload)))
		out = append(out, payload...)
	}
	haveGlobal, haveExport := false, false
	ensure := func(rank int) {
		if !haveGlobal && rank > sectionRank[secGlobal] {
			emit(secGlobal, append(appendU32(nil, 2), ourGlobals...))
			haveGlobal = true
		}
		if !haveExport && rank > sectionRank[secExport] {
			emit(secExport, append(appendU32(nil, nExports), ourExports...))
			haveExport = true
		}
	}
	for _, s := range secs {
		if s.id != secCustom {
			ensure(sectionRank[s.id])
		}
		switch s.id {
		case secGlobal:
			sr := &reader{b: s.payload}
			n := sr.u32()
			p := appendU32(nil, n+2)
			p = append(p, s.payload[sr.p:]...)
			emit(secGlobal, append(p, ourGlobals...))
			haveGlobal = true
		case secExport:
			sr := &reader{b: s.payload}
			n := sr.u32()
			for range n {
				name := sr.name()
				sr.byte1()
				sr.u32()
				if name == interruptExport || name == startExport {
					return nil, fmt.Errorf("the module already exports %q, a name Sluice reserves", name)
				}
			}
			if sr.err != nil {
				return nil, fmt.Errorf("export section: %w", sr.err)
			}
			p := appendU32(nil, n+nExports)
			p = append(p, s.payload[(&reader{b: s.payload}).skipU32():]...)
			emit(secExport, append(p, ourExports...))
			haveExport = true
		case secStart:
			// dropped: the host calls the start function through startExport
		case secCode:
			p, err := instrumentCode(s.payload, check, loopCheck(func(out uint32) []byte {
				// The head of a loop that threadJumps made: count down the
				// fuel, and when it runs out branch out, towards the loop
				// whose check yields and tests $interrupt. No call here: a
				// call in a loop, even one not taken, costs the loop far more.
				return appendU32(append(append([]byte(nil), low...), 0x0D), out) // br_if out
			}))
			if err != nil {
				return nil, fmt.Errorf("code section: %w", err)
			}
			emit(secCode, p)
		default:
			emit(s.id, s.payload)
		}
	}
	ensure(1 << 30)
	return out, nil
}

// countImports returns how many globals and memories the import section
// imports.
func countImports(b []byte) (globals, memories uint32, err error) {
	r := &reader{b: b}
	n := r.u32()
	for range n {
		r.name()
		r.name()
		switch kind := r.byte1(); kind {
		case 0x00: // func
			r.u32()
		case 0x01: // table: reftype limits
			r.byte1()
			r.limits()
		case 0x02: // memory
			r.limits()
			memories++
		case 0x03: // global: valtype mut
			r.byte1()
			r.byte1()
			globals++
		case 0x04: // tag: attribute typeidx
			r.byte1()
			r.u32()
		default:
			return 0, 0, fmt.Errorf("unknown import kind %d", kind)
		}
		if r.err != nil {
			return 0, 0, r.err
		}
	}
	return globals, memories, r.err
}

// instrumentCode rewrites the code section: each function body gets the
// check at its entry and at the head of each of its loops.
func instrumentCode(b []byte, check []byte, loopCheck loopCheck) ([]byte, error) {
	r := &reader{b: b}
	n := r.u32()
	out := appendU32(make([]byte, 0, len(b)+len(b)/8), n)
	var body, expr []byte
	for i := range n {
		size := int(r.u32())
		code := r.bytes(size)
		if r.err != nil {
			return nil, fmt.Errorf("function %d: %w", i, r.err)
		}
		// Locals: a vector of (count, type).
		cr := &reader{b: code}
		for range cr.u32() {
			cr.u32()
			cr.valType()
		}
		if cr.err != nil {
			return nil, fmt.Errorf("function %d: locals: %w", i, cr.err)
		}
		var err error
		var checked []int
		if expr, _, checked, err = threadJumps(expr[:0], code[cr.p:], loopCheck); err != nil {
			return nil, fmt.Errorf("function body %d: %w", i, err)
		}
		body = append(body[:0], code[:cr.p]...)
		var leaf bool
		if body, leaf, err = instrumentExpr(body, expr, check, checked); err != nil {
			return nil, fmt.Errorf("function body %d: %w", i, err)
		}
		if leaf {
			// No loop and no call: its run is bounded by its size, and its
			// callers' checks bound how often it runs.
			body = append(body[:0], code[:cr.p]...)
			body = append(body, expr...)
		}
		out = appendU32(out, uint32(len(body)))
		out = append(out, body...)
	}
	return out, nil
}

// instrumentExpr copies the instructions of a function body to dst, adding
// check after the block type of every loop, and at the function's entry:
// before its first instruction that is not a block, a local or global
// access, a constant or a nop, unless a loop (which has its own check)
// comes first. Go's wasm functions all open with such a loop, so this
// saves a check per call. It also reports whether the function is a leaf:
// no loop and no call of any kind. A leaf needs no check at all (its
// caller drops the one added at its entry): it runs at most once per
// instruction of it, each time its caller reaches a call, and every
// caller that is not a leaf itself passes a check of its own to get there
// again (a loop head or its entry). Small helpers such as a WAT module's
// field readers, or Rust's and C's inlined-but-not-quite accessors, are
// leaves called once or more per record. Loops that start at the offsets in
// checked (threadJumps' own, which carry their check) are left as they are.
func instrumentExpr(dst, code, check []byte, checked []int) ([]byte, bool, error) {
	r := &reader{b: code}
	from := 0
	entry := true // the entry check is still due
	leaf := true
	for r.p < len(code) && r.err == nil {
		at := r.p
		op := r.byte1()
		if entry {
			switch {
			case op == 0x03: // loop: its check comes first
				entry = false
			case op == 0x01, op == 0x02, op >= 0x20 && op <= 0x24, op >= 0x41 && op <= 0x44:
			default:
				dst = append(dst, code[from:at]...)
				dst = append(dst, check...)
				from = at
				entry = false
			}
		}
		switch op {
		case 0x03, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15: // loop, call, call_indirect, return_call(_indirect), call_ref, return_call_ref
			leaf = false
		}
		if op == 0x03 { // loop
			r.blockType()
			if !slices.Contains(checked, at) {
				dst = append(dst, code[from:r.p]...)
				dst = append(dst, check...)
				from = r.p
			}
			continue
		}
		if !r.immediates(op) {
			return nil, false, fmt.Errorf("unknown opcode %#x at byte %d", op, at)
		}
	}
	if r.err != nil {
		return nil, false, r.err
	}
	return append(dst, code[from:]...), leaf, nil
}

// immediates reads the immediates of the instruction whose opcode op was
// just read; it reports false for an opcode it does not know. (A malformed
// immediate sets r.err.)
func (r *reader) immediates(op byte) bool {
	switch {
	case op == 0x02, op == 0x03, op == 0x04, op == 0x06: // block, loop, if, try
		r.blockType()
	case op <= 0x01, op == 0x05, op == 0x0A, op == 0x0B, op == 0x0F, op == 0x19, op == 0x1A, op == 0x1B, op == 0xD1:
		// unreachable nop else throw_ref end return catch_all drop select ref.is_null
	case op == 0x07, op == 0x08, op == 0x09, op == 0x18, // catch throw rethrow delegate
		op == 0x0C, op == 0x0D, op == 0x10, op == 0x12, // br br_if call return_call
		op >= 0x20 && op <= 0x26, // local.*, global.*, table.get/set
		op == 0x3F, op == 0x40,   // memory.size/grow (memory index)
		op == 0xD2: // ref.func
		r.u32()
	case op == 0x0E: // br_table
		for range r.u32() + 1 {
			r.u32()
		}
	case op == 0x11, op == 0x13: // call_indirect, return_call_indirect
		r.u32()
		r.u32()
	case op == 0x1C: // select t*
		for range r.u32() {
			r.valType()
		}
	case op == 0x1F: // try_table
		r.blockType()
		for range r.u32() {
			switch r.byte1() {
			case 0x00, 0x01:
				r.u32()
				r.u32()
			case 0x02, 0x03:
				r.u32()
			default:
				r.fail("unknown catch kind")
			}
		}
	case op >= 0x28 && op <= 0x3E: // loads and stores
		r.memarg()
	case op == 0x41, op == 0x42: // i32.const, i64.const
		r.skipLEB()
	case op == 0x43:
		r.bytes(4)
	case op == 0x44:
		r.bytes(8)
	case op >= 0x45 && op <= 0xC4: // numeric, sign extension
	case op == 0xD0: // ref.null heaptype
		r.skipLEB()
	case op == 0xFC:
		switch sub := r.u32(); {
		case sub <= 7: // saturating truncation
		case sub == 8, sub == 10, sub == 12, sub == 14: // memory.init memory.copy table.init table.copy
			r.u32()
			r.u32()
		case sub == 9, sub == 11, sub == 13, sub >= 15 && sub <= 17: // data.drop memory.fill elem.drop table.grow/size/fill
			r.u32()
		default:
			r.fail(fmt.Sprintf("unknown opcode 0xFC %d", sub))
		}
	case op == 0xFD: // SIMD
		switch sub := r.u32(); {
		case sub <= 0x0B, sub == 0x5C, sub == 0x5D:
			r.memarg()
		case sub >= 0x54 && sub <= 0x5B:
			r.memarg()
			r.byte1()
		case sub == 0x0C, sub == 0x0D:
			r.bytes(16)
		case sub >= 0x15 && sub <= 0x22:
			r.byte1()
		case sub <= 0x113:
		default:
			r.fail(fmt.Sprintf("unknown opcode 0xFD %d", sub))
		}
	case op == 0xFE: // threads
		switch sub := r.u32(); {
		case sub == 0x03:
			r.byte1()
		case sub <= 0x02, sub >= 0x10 && sub <= 0x4E:
			r.memarg()
		default:
			r.fail(fmt.Sprintf("unknown opcode 0xFE %d", sub))
		}
	default:
		return false
	}
	return true
}

// reader reads the binary format; the first error sticks.
type reader struct {
	b   []byte
	p   int
	err error
}

func (r *reader) fail(msg string) {
	if r.err == nil {
		r.err = fmt.Errorf("%s at byte %d", msg, r.p)
	}
	r.p = len(r.b)
}

func (r *reader) byte1() byte {
	if r.p >= len(r.b) {
		r.fail("unexpected end")
		return 0
	}
	c := r.b[r.p]
	r.p++
	return c
}

func (r *reader) bytes(n int) []byte {
	if n < 0 || n > len(r.b)-r.p {
		r.fail("length past the end")
		return nil
	}
	s := r.b[r.p : r.p+n]
	r.p += n
	return s
}

// u32 reads an unsigned LEB128 of at most 32 bits.
func (r *reader) u32() uint32 {
	var v uint32
	for shift := 0; shift < 35; shift += 7 {
		c := r.byte1()
		v |= uint32(c&0x7f) << shift
		if c&0x80 == 0 {
			return v
		}
	}
	r.fail("LEB128 too long")
	return 0
}

// s32 reads a signed LEB128 of at most 32 bits.
func (r *reader) s32() int32 {
	var v int32
	for shift := 0; shift < 35; shift += 7 {
		c := r.byte1()
		v |= int32(c&0x7f) << shift
		if c&0x80 == 0 {
			if shift+7 < 32 && c&0x40 != 0 {
				v |= -1 << (shift + 7)
			}
			return v
		}
	}
	r.fail("LEB128 too long")
	return 0
}

// skipU32 returns the offset past a leading u32.
func (r *reader) skipU32() int {
	r.u32()
	return r.p
}

// skipLEB skips a LEB128 of up to 64 bits, signed or not.
func (r *reader) skipLEB() {
	for range 10 {
		if r.byte1()&0x80 == 0 {
			return
		}
	}
	r.fail("LEB128 too long")
}

func (r *reader) name() string {
	return string(r.bytes(int(r.u32())))
}

func (r *reader) limits() {
	flags := r.byte1()
	r.skipLEB()
	if flags&1 != 0 {
		r.skipLEB()
	}
}

func (r *reader) memarg() {
	if align := r.u32(); align&0x40 != 0 { // multi-memory: a memory index follows
		r.u32()
	}
	r.skipLEB() // offset (64 bits with memory64)
}

// valType reads a value type: a number, vector or reference type byte.
func (r *reader) valType() {
	switch c := r.byte1(); c {
	case 0x7F, 0x7E, 0x7D, 0x7C, 0x7B, 0x70, 0x6F:
	default:
		r.fail(fmt.Sprintf("unsupported value type %#x", c))
	}
}

// blockType reads a block type: empty, a value type, or a type index (s33).
func (r *reader) blockType() {
	if r.p >= len(r.b) {
		r.fail("unexpected end")
		return
	}
	switch r.b[r.p] {
	case 0x40, 0x7F, 0x7E, 0x7D, 0x7C, 0x7B, 0x70, 0x6F:
		r.p++
	default:
		r.skipLEB()
	}
}

func appendU32(b []byte, v uint32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func appendSLEB(b []byte, v int32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func appendName(b []byte, s string) []byte {
	b = appendU32(b, uint32(len(s)))
	return append(b, s...)
}

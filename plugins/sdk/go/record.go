package sluice

import (
	"encoding/binary"
	"errors"
	"strconv"
	"unsafe"
)

// Record is one record of a batch: its JSON value, read and edited through
// the embedded Object (GetString, GetFloat, Set, Delete, ...), plus its
// Kafka key, its destination and its headers.
//
// The SDK reuses one Record for every input: a handler must not keep it, or
// slices from it, after it returns.
type Record struct {
	Object

	raw      []byte   // the record's encoding in the input batch
	key      []byte   // Kafka key; empty means not set
	dest     []byte   // destination topic or table; empty means the sink's
	hraw     []byte   // the headers' encoding in the input: hcount header*
	headers  []Header // decoded headers, once hdecoded
	hdecoded bool     // headers holds the headers
	meta     bool     // key, dest or headers changed
	hbuf     []byte   // owned header bytes
	kbuf     []byte   // owned key
	dbuf     []byte   // owned dest
}

// Header is a Kafka-style record header.
type Header struct {
	Key   []byte
	Value []byte
}

// Key returns the record's Kafka key (empty when not set).
func (r *Record) Key() []byte { return r.key }

// SetKey sets the record's Kafka key to a copy of k; empty unsets it.
func (r *Record) SetKey(k []byte) {
	r.kbuf = append(r.kbuf[:0], k...)
	r.key = r.kbuf
	r.meta = true
}

// SetKeyString sets the record's Kafka key to k; empty unsets it.
func (r *Record) SetKeyString(k string) {
	r.kbuf = append(r.kbuf[:0], k...)
	r.key = r.kbuf
	r.meta = true
}

// Dest returns the record's destination (a Kafka topic or ClickHouse
// table); empty means the sink's configured one.
func (r *Record) Dest() []byte { return r.dest }

// SetDest routes the record to dest, a Kafka topic or ClickHouse table;
// empty routes it to the sink's configured one.
func (r *Record) SetDest(dest string) {
	r.dbuf = append(r.dbuf[:0], dest...)
	r.dest = r.dbuf
	r.meta = true
}

// Headers returns the record's headers; they alias the record and must not
// be modified (use SetHeader, DeleteHeader).
func (r *Record) Headers() []Header {
	r.decodeHeaders()
	return r.headers
}

// Header returns the value of the first header called name.
func (r *Record) Header(name string) ([]byte, bool) {
	r.decodeHeaders()
	for _, h := range r.headers {
		if string(h.Key) == name {
			return h.Value, true
		}
	}
	return nil, false
}

// SetHeader sets the first header called name to a copy of value, adding
// it if there is none.
func (r *Record) SetHeader(name string, value []byte) {
	r.decodeHeaders()
	r.meta = true
	start := len(r.hbuf)
	r.hbuf = append(r.hbuf, value...)
	v := r.hbuf[start:len(r.hbuf):len(r.hbuf)]
	for i := range r.headers {
		if string(r.headers[i].Key) == name {
			r.headers[i].Value = v
			return
		}
	}
	start = len(r.hbuf)
	r.hbuf = append(r.hbuf, name...)
	r.headers = append(r.headers, Header{Key: r.hbuf[start:len(r.hbuf):len(r.hbuf)], Value: v})
}

// DeleteHeader removes every header called name and reports whether there
// was one.
func (r *Record) DeleteHeader(name string) bool {
	r.decodeHeaders()
	kept := r.headers[:0]
	for _, h := range r.headers {
		if string(h.Key) != name {
			kept = append(kept, h)
		}
	}
	found := len(kept) < len(r.headers)
	r.headers = kept
	if found {
		r.meta = true
	}
	return found
}

func (r *Record) decodeHeaders() {
	if r.hdecoded {
		return
	}
	r.hdecoded = true
	r.headers = r.headers[:0]
	b := r.hraw
	if len(b) < 4 {
		return
	}
	n := binary.LittleEndian.Uint32(b)
	pos := 4
	for range n {
		var k, v []byte
		var ok bool
		if k, pos, ok = readBytes(b, pos); !ok {
			return
		}
		if v, pos, ok = readBytes(b, pos); !ok {
			return
		}
		r.headers = append(r.headers, Header{Key: k, Value: v})
	}
}

// Output collects the records a handler emits for its input.
type Output struct {
	buf     []byte
	n       uint32 // entries in buf
	idx     uint32 // index of the input being handled
	emitted int    // records emitted for it
	err     error  // a record emitted with a failed edit
}

// Emit writes r, as it is now, as an output of the current input. Emit it
// once to map the input, several times (editing it between) to split it,
// or not at all to drop it. Later edits of r do not change what was
// emitted.
func (o *Output) Emit(r *Record) {
	o.emit(r) // Emit inlines into the handler: one call, not two
}

// emit appends r's output entry (ABI: index, status 0, record) to o.buf.
func (o *Output) emit(r *Record) {
	if r.err != nil {
		if o.err == nil {
			o.err = r.err
		}
		return
	}
	o.n++
	o.emitted++
	if r.meta {
		o.buf = r.appendMeta(o.buf, o.idx)
		return
	}
	// Key, destination and headers as they came: copy the input's
	// encoding after the value. An unedited record is one copy.
	raw, v := r.raw, r.b
	rest := raw[4+int(get32(unsafe.Pointer(unsafe.SliceData(raw)), 0)):]
	if !r.edited {
		v, rest = nil, raw
	}
	b := o.buf
	n := len(b)
	need := 8 + len(rest)
	if v != nil {
		need += 4 + len(v)
	}
	b = grow(b, need)[:n+need]
	put64(b, n, uint64(o.idx)) // index, then status 0
	n += 8
	if v != nil {
		put32(b, n, uint32(len(v)))
		copy(b[n+4:], v)
		n += 4 + len(v)
	}
	if len(rest) == 12 { // after an edit: no key, dest or headers
		rp := unsafe.Pointer(unsafe.SliceData(rest))
		put64(b, n, load64(rp, 0))
		put32(b, n+8, get32(rp, 8))
	} else {
		move(b[n:], rest)
	}
	o.buf = b
}

// appendMeta appends the output entry of r, whose key, destination or
// headers were set, for input idx to b.
func (r *Record) appendMeta(b []byte, idx uint32) []byte {
	b = binary.LittleEndian.AppendUint32(b, idx)
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = appendBytes(b, r.b)
	b = appendBytes(b, r.key)
	b = appendBytes(b, r.dest)
	if !r.hdecoded {
		return append(b, r.hraw...)
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(r.headers)))
	for _, h := range r.headers {
		b = appendBytes(b, h.Key)
		b = appendBytes(b, h.Value)
	}
	return b
}

// Emitted returns how many records were emitted for the current input.
func (o *Output) Emitted() int { return o.emitted }

// A Handler handles one input record: it emits zero, one or several output
// records with out.Emit, or returns an error to fail the record (it then
// goes to the dead-letter output, its device gets a nack with the message,
// and what it emitted is discarded). Returning nil without emitting drops
// the record, which counts as delivered.
type Handler func(r *Record, out *Output) error

// Drop, returned by a Map function, drops the record.
var Drop = errors.New("sluice: drop record")

var (
	handler Handler
	mapFn   func(r *Record) error // set by Map instead of handler
	initFn  func(config []byte) error
	state   batchState
)

// Handle registers the function that handles every record. Call it from an
// init function of package main: a reactor module (-buildmode=c-shared)
// never runs main.
func Handle(h Handler) { handler, mapFn = h, nil }

// Map registers fn as a one-in, one-out handler: fn edits the record, which
// is then emitted; fn returns Drop to drop it, or an error to fail it.
func Map(fn func(r *Record) error) { handler, mapFn = nil, fn }

// OnInit registers the function that receives the transform's config (the
// config: block of pipeline.yaml as a JSON object, {} when there is none)
// once per instance, before the first record. An error stops the pipeline
// from starting (or a hot reload from replacing the running module). Read
// it with NewObject, or with encoding/json: it runs once, so its cost does
// not matter there. Call OnInit from an init function of package main.
func OnInit(fn func(config []byte) error) { initFn = fn }

func runInit(config []byte) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = panicError(p)
		}
	}()
	if initFn == nil {
		return nil
	}
	return initFn(config)
}

type batchState struct {
	rec   Record
	out   Output
	in    []byte // the batch being processed
	pos   int    // where the next record starts
	cur   uint32 // index of the current record
	mark  int    // len(out.buf) before the current record
	markN uint32 // out.n before the current record
	bad   string // the batch is malformed (a host bug): not a record's fault
}

var errNoHandler = errors.New("sluice: no handler: call sluice.Handle or sluice.Map from an init function of package main")

// process handles the encoded batch in and appends the encoded output to
// out (see docs/abi.md).
func (s *batchState) process(in, out []byte) []byte {
	o := &s.out
	o.buf = binary.LittleEndian.AppendUint32(out[:0], 0)
	o.n = 0
	if len(in) < 4 {
		panic("sluice: batch shorter than its count")
	}
	s.in, s.pos = in, 4
	count := binary.LittleEndian.Uint32(in)
	for i := uint32(0); i < count; {
		i = s.run(i, count)
	}
	binary.LittleEndian.PutUint32(o.buf, o.n)
	s.in = nil
	return o.buf
}

// run handles the records from i on and returns count, or, when a handler
// panics, fails that record and returns the index of the next one. (One
// deferred recover per run rather than per record: defer is costly in
// wasm.)
func (s *batchState) run(i, count uint32) (next uint32) {
	o := &s.out
	defer func() {
		if p := recover(); p != nil {
			if s.bad != "" {
				panic(p)
			}
			s.fail(panicError(p))
			next = s.cur + 1
		}
	}()
	h, fn := handler, mapFn
	if h == nil && fn == nil {
		h = noHandler
	}
	r := &s.rec
	for ; i < count; i++ {
		s.cur = i
		s.next()
		s.mark, s.markN = len(o.buf), o.n
		o.idx, o.emitted, o.err = i, 0, nil
		var err error
		if fn != nil {
			if err = fn(r); err == nil {
				o.Emit(r)
				err = o.err
			} else if err == Drop {
				err = nil
			}
		} else if err = h(r, o); err == nil {
			err = o.err
		}
		if err != nil {
			s.fail(err)
		}
	}
	return count
}

func noHandler(*Record, *Output) error { return errNoHandler }

// next decodes the record at s.pos into s.rec. (Straight-line reads
// without bounds checks: the lengths are checked against the batch.)
func (s *batchState) next() {
	in, pos := s.in, s.pos
	n := len(in)
	p := unsafe.Pointer(unsafe.SliceData(in))
	start := pos
	if n-pos < 16 {
		s.malformed()
	}
	l := int(get32(p, pos))
	v0 := pos + 4
	pos = v0 + l
	if l > n-v0 || n-pos < 12 {
		s.malformed()
	}
	l = int(get32(p, pos))
	k0 := pos + 4
	pos = k0 + l
	if l > n-k0 || n-pos < 8 {
		s.malformed()
	}
	l = int(get32(p, pos))
	d0 := pos + 4
	pos = d0 + l
	if l > n-d0 || n-pos < 4 {
		s.malformed()
	}
	hstart := pos
	if get32(p, pos) == 0 {
		pos += 4
	} else {
		var ok bool
		if pos, ok = skipHeaders(in, pos); !ok {
			s.malformed()
		}
	}
	s.pos = pos
	r := &s.rec
	r.Object.Reset(in[v0 : k0-4 : k0-4])
	r.raw, r.key, r.dest, r.hraw = in[start:pos:pos], in[k0:d0-4:d0-4], in[d0:hstart:hstart], in[hstart:pos:pos]
	r.hdecoded, r.meta = false, false
	if len(r.hbuf) != 0 {
		r.hbuf = r.hbuf[:0]
	}
}

//go:noinline
func (s *batchState) malformed() {
	s.bad = "sluice: malformed batch at record " + strconv.Itoa(int(s.cur))
	panic(s.bad)
}

// fail replaces what the current record emitted with an error entry.
func (s *batchState) fail(err error) {
	o := &s.out
	o.buf, o.n = o.buf[:s.mark], s.markN
	msg := err.Error()
	if msg == "" {
		msg = "error"
	}
	o.buf = binary.LittleEndian.AppendUint32(o.buf, s.cur)
	o.buf = binary.LittleEndian.AppendUint32(o.buf, 1)
	o.buf = binary.LittleEndian.AppendUint32(o.buf, uint32(len(msg)))
	o.buf = append(o.buf, msg...)
	o.n++
}

func readBytes(b []byte, pos int) ([]byte, int, bool) {
	if len(b)-pos < 4 {
		return nil, pos, false
	}
	n := int(binary.LittleEndian.Uint32(b[pos:]))
	pos += 4
	if n > len(b)-pos {
		return nil, pos, false
	}
	return b[pos : pos+n : pos+n], pos + n, true
}

func skipHeaders(b []byte, pos int) (int, bool) {
	if len(b)-pos < 4 {
		return pos, false
	}
	n := binary.LittleEndian.Uint32(b[pos:])
	pos += 4
	for range 2 * n {
		if len(b)-pos < 4 {
			return pos, false
		}
		l := int(binary.LittleEndian.Uint32(b[pos:]))
		pos += 4
		if l > len(b)-pos {
			return pos, false
		}
		pos += l
	}
	return pos, true
}

func appendBytes(b, v []byte) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
	return append(b, v...)
}

// panicError turns a recovered panic into the record's error. The SDK does
// not use fmt, which would add reflection and size to every module.
func panicError(p any) error {
	switch v := p.(type) {
	case error:
		return errors.New("panic: " + v.Error())
	case string:
		return errors.New("panic: " + v)
	case interface{ String() string }:
		return errors.New("panic: " + v.String())
	}
	return errors.New("panic")
}

// Value returns the record's JSON value with every edit applied. It aliases
// the record.
func (r *Record) Value() []byte { return r.Bytes() }

// SetValue replaces the record's whole value with a copy of v.
func (r *Record) SetValue(v []byte) { r.SetBytes(v) }

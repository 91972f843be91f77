package sluice

import (
	"errors"
	"math/bits"
	"strconv"
	"unsafe"
)

// Object reads and edits the top-level fields of a JSON object in place,
// without decoding it: a lookup scans the bytes once to index the fields,
// and an edit splices the new bytes in. Nothing is allocated once its
// buffers have grown to the size of the records it sees.
//
// Slices returned by the Get methods alias the object's bytes: they are
// valid until the object is next edited. An Object is not safe for
// concurrent use (a guest never needs that).
type Object struct {
	b       []byte  // the JSON document
	own     []byte  // buffer the object owns; b aliases it once edited
	owned   bool    // b is own (edits happen in place)
	indexed bool    // fields, open are up to date
	isObj   bool    // b is a JSON object (valid when indexed)
	edited  bool    // b changed since Reset
	open    int     // index of '{'
	fields  []field // top-level fields in document order
	vbuf    []byte  // staging for an encoded value
	tbuf    []byte  // unquoted strings
	err     error   // first failed edit

	keys  uint64          // keyBit of every key (a superset): find's quick "no"
	names [4]cachedMember // names set lately, as members, at nameSlot(name)
}

// cachedMember is a name set lately, with its member ,"name":.
type cachedMember struct {
	name   string
	member []byte // ,"name": (capacity at least 32, for put16)
	esc    bool
}

// is reports whether c holds name's member. (An empty entry holds none,
// not the empty name.)
func (c *cachedMember) is(name string) bool {
	return len(c.member) != 0 && len(c.name) == len(name) && unsafe.StringData(c.name) == unsafe.StringData(name)
}

type field struct {
	k0, k1 int  // key contents, without the quotes
	v0, v1 int  // value
	esc    bool // key has escapes
}

// ErrNotObject is the error of an edit of a value that is not a JSON object.
var ErrNotObject = errors.New("sluice: value is not a JSON object")

// NewObject returns an Object over the JSON document b (not copied; an edit
// copies it first).
func NewObject(b []byte) *Object {
	o := &Object{}
	o.Reset(b)
	return o
}

// Reset makes o read b, keeping o's buffers for reuse.
func (o *Object) Reset(b []byte) {
	o.b = b
	o.owned = false
	o.indexed = false
	o.edited = false
	o.err = nil
}

// Bytes returns the JSON document with every edit applied. It aliases o.
func (o *Object) Bytes() []byte { return o.b }

// Edited reports whether o was changed since it was made or Reset.
func (o *Object) Edited() bool { return o.edited }

// Err returns the first edit that failed (ErrNotObject, or a number with no
// JSON form), or nil. A record whose edit failed is emitted as an error.
func (o *Object) Err() error { return o.err }

func (o *Object) fail(err error) {
	if o.err == nil {
		o.err = err
	}
}

// index builds the field index if it is not built; it reports whether b
// is an object. indexFast does the common shape (compact, no escapes,
// string and number values); anything else goes to indexSlow. (The hot
// paths write this out: one call, not two.)
func (o *Object) index() bool {
	if !o.indexed && !o.indexFast() {
		o.indexSlow()
	}
	return o.isObj
}

// indexFast indexes a compact object whose keys and string values have no
// escapes and whose other values are numbers, and reports whether b was
// one (the index is then built). It makes no calls, so that Go's wasm
// backend keeps its variables in locals, and reads 8 bytes at a time: the
// last word of b, shifted, stands for the bytes past its end.
func (o *Object) indexFast() bool {
	b := o.b
	n := len(b)
	if n < 8 {
		return false
	}
	p := unsafe.Pointer(unsafe.SliceData(b))
	if load8(p, 0) != '{' || load8(p, 1) != '"' {
		return false
	}
	fields := o.fields[:0]
	var keys uint64
	i := 1 // at the key's opening quote
	for {
		if len(fields) == cap(fields) {
			return false
		}
		// The key: find its closing quote (a backslash: not here).
		k0 := i + 1
		j := k0
		var m uint64
		for {
			var x uint64
			if j+8 <= n {
				x = load64(p, j)
			} else if j < n {
				x = load64(p, n-8) >> (8 * uint(j+8-n))
			} else {
				return false
			}
			q, e := x^(lsb*'"'), x^(lsb*'\\')
			if m = ((q-lsb)&^q | (e-lsb)&^e) & msb; m != 0 {
				break
			}
			j += 8
		}
		j += bits.TrailingZeros64(m) >> 3
		if j+1 >= n || load8(p, j) != '"' || load8(p, j+1) != ':' {
			return false
		}
		k1 := j
		v0 := j + 2
		if v0 >= n {
			return false
		}
		i = v0
		c := load8(p, i)
		if c == '"' {
			j = i + 1
			for {
				var x uint64
				if j+8 <= n {
					x = load64(p, j)
				} else if j < n {
					x = load64(p, n-8) >> (8 * uint(j+8-n))
				} else {
					return false
				}
				q, e := x^(lsb*'"'), x^(lsb*'\\')
				if m = ((q-lsb)&^q | (e-lsb)&^e) & msb; m != 0 {
					break
				}
				j += 8
			}
			j += bits.TrailingZeros64(m) >> 3
			if j >= n || load8(p, j) != '"' {
				return false
			}
			i = j + 1
		} else if c >= '0' && c <= '9' || c == '-' {
			i++
			for i < n && isNum[load8(p, i)] {
				i++
			}
		} else {
			return false
		}
		if i >= n {
			return false
		}
		fields = fields[:len(fields)+1]
		f := &fields[len(fields)-1]
		f.k0, f.k1, f.v0, f.v1, f.esc = k0, k1, v0, i, false
		keys |= keyBit(load8(p, k0), k1-k0)
		c = load8(p, i)
		if c == '}' {
			o.fields, o.keys = fields, keys
			o.open = 0
			o.indexed, o.isObj = true, true
			return true
		}
		if c != ',' || i+1 >= n || load8(p, i+1) != '"' {
			return false
		}
		i++
	}
}

// indexSlow builds the field index of any document; it reports whether b
// is an object.
//
// It is written for Go's wasm backend, where a taken branch or a loop
// iteration costs a few nanoseconds, a call about fifteen and a copy of a
// struct a call to memmove: strings are skipped 8 bytes at a time with
// unaligned loads, inline, and each field is stored member by member into
// its slot.
func (o *Object) indexSlow() bool {
	b := o.b
	n := len(b)
	fields := o.fields[:0]
	if n < 2 {
		return o.indexDone(fields, false)
	}
	p := unsafe.Pointer(unsafe.SliceData(b))
	i := 0
	if load8(p, 0) != '{' {
		i = skipWS(b, 0)
		if i >= n || b[i] != '{' {
			return o.indexDone(fields, false)
		}
	}
	o.open = i
	i++
	if i < n && load8(p, i) != '"' {
		i = skipWS(b, i)
		if i < n && b[i] == '}' {
			return o.indexDone(fields, true)
		}
	}
	for i < n {
		if load8(p, i) != '"' {
			return o.indexDone(fields, false)
		}
		k0 := i + 1
		// The key: look for its closing quote 8 bytes at a time.
		j := k0
		var m uint64
		for j+8 <= n {
			x := load64(p, j)
			q, e := x^(lsb*'"'), x^(lsb*'\\')
			if m = ((q-lsb)&^q | (e-lsb)&^e) & msb; m != 0 {
				break
			}
			j += 8
		}
		if m != 0 {
			j += bits.TrailingZeros64(m) >> 3
		} else {
			j = scanTail(p, j, n)
		}
		esc := false
		if j < n && load8(p, j) == '\\' {
			j, esc = skipString(b, i)
			j--
		}
		if j >= n || j < 0 {
			return o.indexDone(fields, false)
		}
		k1 := j
		i = j + 1
		if i < n && load8(p, i) != ':' {
			i = skipWS(b, i)
		}
		if i >= n || load8(p, i) != ':' {
			return o.indexDone(fields, false)
		}
		i++
		if i < n && isWS[load8(p, i)] {
			i = skipWS(b, i)
		}
		if i >= n {
			return o.indexDone(fields, false)
		}
		v0 := i
		switch c := load8(p, i); {
		case c == '"':
			j = i + 1
			m = 0
			for j+8 <= n {
				x := load64(p, j)
				q, e := x^(lsb*'"'), x^(lsb*'\\')
				if m = ((q-lsb)&^q | (e-lsb)&^e) & msb; m != 0 {
					break
				}
				j += 8
			}
			if m != 0 {
				j += bits.TrailingZeros64(m) >> 3
			} else {
				j = scanTail(p, j, n)
			}
			if j < n && load8(p, j) == '\\' {
				j, _ = skipString(b, i)
				j--
			}
			if j >= n || j < 0 {
				return o.indexDone(fields, false)
			}
			i = j + 1
		case c >= '0' && c <= '9' || c == '-':
			i++
			for i < n && isNum[load8(p, i)] {
				i++
			}
		default:
			if i = skipValue(b, i); i < 0 {
				return o.indexDone(fields, false)
			}
		}
		if len(fields) < cap(fields) {
			fields = fields[:len(fields)+1]
		} else {
			fields = append(fields, field{})
		}
		f := &fields[len(fields)-1]
		f.k0, f.k1, f.v0, f.v1, f.esc = k0, k1, v0, i, esc
		if i < n && isWS[load8(p, i)] {
			i = skipWS(b, i)
		}
		if i >= n {
			return o.indexDone(fields, false)
		}
		c := load8(p, i)
		i++
		if c == ',' {
			if i < n && isWS[load8(p, i)] {
				i = skipWS(b, i)
			}
			continue
		}
		if c == '}' {
			return o.indexDone(fields, true)
		}
		return o.indexDone(fields, false)
	}
	return o.indexDone(fields, false)
}

func (o *Object) indexDone(fields []field, isObj bool) bool {
	o.fields, o.isObj, o.keys = fields, isObj, ^uint64(0)
	o.indexed = true
	return isObj
}

// keyBit hashes a key by its first byte and length, for Object.keys.
func keyBit(c byte, n int) uint64 { return 1 << ((uint(c)*7 + uint(n)) & 63) }

// scanTail returns the index of the first quote or backslash at or after
// p[i] (n bytes in all), or n: the last bytes of index's search.
//
//go:noinline
func scanTail(p unsafe.Pointer, i, n int) int {
	for i < n {
		if c := load8(p, i); c == '"' || c == '\\' {
			return i
		}
		i++
	}
	return n
}

// load8 and load64 read p[i] and the 8 bytes at p[i:] (little-endian)
// without bounds checks; the caller checks i.
func load8(p unsafe.Pointer, i int) byte    { return *(*byte)(unsafe.Add(p, i)) }
func load64(p unsafe.Pointer, i int) uint64 { return *(*uint64)(unsafe.Add(p, i)) }

var isWS, isNum [256]bool

func init() {
	for _, c := range " \t\r\n" {
		isWS[c] = true
	}
	for _, c := range "0123456789.eE+-" {
		isNum[c] = true
	}
}

// find returns the index in o.fields of the first field called name, or -1.
func (o *Object) find(name string) int {
	if !o.indexed && !o.indexFast() {
		o.indexSlow()
	}
	if !o.isObj || len(name) > 0 && o.keys&keyBit(name[0], len(name)) == 0 {
		return -1
	}
	j := o.findFast(name)
	if j == -2 {
		j = o.findSlow(name, 0)
	}
	return j
}

// findFast is find over an index whose keys have no escapes; it returns -2
// when it meets one. It makes no calls (see indexFast): lengths and first
// bytes first, then the bytes.
func (o *Object) findFast(name string) int {
	fields, b := o.fields, o.b
	if len(name) == 0 {
		return -2
	}
	p := unsafe.Pointer(unsafe.SliceData(b))
	np := unsafe.Pointer(unsafe.StringData(name))
	c0 := load8(np, 0)
	for j := range fields {
		f := &fields[j]
		if f.esc {
			return -2
		}
		if f.k1-f.k0 != len(name) || load8(p, f.k0) != c0 {
			continue
		}
		k := 1
		for k < len(name) && load8(p, f.k0+k) == load8(np, k) {
			k++
		}
		if k == len(name) {
			return j
		}
	}
	return -1
}

// findSlow is find from fields[j] on, decoding keys with escapes.
func (o *Object) findSlow(name string, j int) int {
	for ; j < len(o.fields); j++ {
		f := &o.fields[j]
		if !f.esc {
			if f.k1-f.k0 == len(name) && string(o.b[f.k0:f.k1]) == name {
				return j
			}
			continue
		}
		var ok bool
		o.tbuf, ok = AppendUnquote(o.tbuf[:0], o.b[f.k0-1:f.k1+1])
		if ok && string(o.tbuf) == name {
			return j
		}
	}
	return -1
}

// IsObject reports whether the document is a JSON object.
func (o *Object) IsObject() bool { return o.index() }

// Len returns the number of top-level fields (0 if not an object).
func (o *Object) Len() int {
	if !o.index() {
		return 0
	}
	return len(o.fields)
}

// Has reports whether the object has a field called name.
func (o *Object) Has(name string) bool { return o.find(name) >= 0 }

// Kind returns the kind of the field called name, or KindMissing.
func (o *Object) Kind(name string) Kind {
	v, _ := o.GetRaw(name)
	return KindOf(v)
}

// GetRaw returns the raw JSON of the field called name.
func (o *Object) GetRaw(name string) ([]byte, bool) {
	j := o.find(name)
	if j < 0 {
		return nil, false
	}
	f := &o.fields[j]
	return o.b[f.v0:f.v1], true
}

// GetFloat returns the field called name if it is a number.
func (o *Object) GetFloat(name string) (float64, bool) {
	j := -2 // find, written out for the common case: one call fewer
	if o.indexed && len(name) > 0 {
		j = -1
		if o.isObj && o.keys&keyBit(name[0], len(name)) != 0 {
			j = o.findFast(name)
		}
	}
	if j == -2 {
		j = o.find(name)
	}
	if j < 0 {
		return 0, false
	}
	f := &o.fields[j]
	v := o.b[f.v0:f.v1]
	if x, ok := parseSimpleFloat(v); ok {
		return x, true
	}
	return ParseFloat(v)
}

// GetInt returns the field called name if it is an integer.
func (o *Object) GetInt(name string) (int64, bool) {
	v, ok := o.GetRaw(name)
	if !ok {
		return 0, false
	}
	return ParseInt(v)
}

// GetBool returns the field called name if it is true or false.
func (o *Object) GetBool(name string) (value, ok bool) {
	v, ok := o.GetRaw(name)
	if !ok {
		return false, false
	}
	return ParseBool(v)
}

// GetStringBytes returns the decoded contents of the field called name if
// it is a string, without allocating: the result aliases the object (or,
// when the string has escapes, a buffer that the next call reuses).
func (o *Object) GetStringBytes(name string) ([]byte, bool) {
	v, ok := o.GetRaw(name)
	if !ok || KindOf(v) != KindString {
		return nil, false
	}
	for _, c := range v[1 : len(v)-1] {
		if c == '\\' {
			o.tbuf, ok = AppendUnquote(o.tbuf[:0], v)
			return o.tbuf, ok
		}
	}
	return v[1 : len(v)-1], true
}

// GetString returns the field called name if it is a string (a copy; use
// GetStringBytes on a hot path, e.g. m[string(b)] does not allocate).
func (o *Object) GetString(name string) (string, bool) {
	b, ok := o.GetStringBytes(name)
	if !ok {
		return "", false
	}
	return string(b), true
}

// All yields every top-level field: its decoded name and its raw JSON
// value. The name is a new string; the value aliases the object. It is
// meant for configs and the like, not for a per-record hot path.
func (o *Object) All() func(yield func(name string, value []byte) bool) {
	return func(yield func(string, []byte) bool) {
		if !o.index() {
			return
		}
		for j := 0; j < len(o.fields); j++ {
			f := o.fields[j]
			name := string(o.b[f.k0:f.k1])
			if f.esc {
				d, _ := AppendUnquote(nil, o.b[f.k0-1:f.k1+1])
				name = string(d)
			}
			if !yield(name, o.b[f.v0:f.v1]) {
				return
			}
		}
	}
}

// Set sets the field called name to v, replacing its value if it exists
// and adding it at the end otherwise.
func (o *Object) Set(name string, v Value) {
	var ok bool
	if cap(o.vbuf) < 32 {
		o.vbuf = make([]byte, 0, 64) // room for setEncoded's put16
	}
	if v.kind == KindNumber && !v.isI {
		o.vbuf, ok = appendSimpleFloat(o.vbuf[:0], v.f) // the common float: two calls fewer
	}
	if !ok {
		if o.vbuf, ok = v.appendJSON(o.vbuf[:0]); !ok {
			o.failSet(name, &v)
			return
		}
	}
	o.setEncoded(name, o.vbuf)
}

// failSet records that name cannot be set to v. (Out of Set, and v by
// pointer: a Value is copied with memory.copy in wasm.)
//
//go:noinline
func (o *Object) failSet(name string, v *Value) {
	o.fail(errors.New("sluice: set " + strconv.Quote(name) + ": " + v.String() + " has no JSON form"))
}

// SetRaw sets the field called name to the raw JSON value raw, which must
// be valid JSON (the host rejects a record whose value is not). raw may
// alias the object.
func (o *Object) SetRaw(name string, raw []byte) {
	o.setEncoded(name, raw) // inlines: setEncoded copies raw if it aliases o
}

// aliases reports whether a starts within b's capacity.
func aliases(a, b []byte) bool {
	pa, pb := uintptr(unsafe.Pointer(unsafe.SliceData(a))), uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return pa >= pb && pa < pb+uintptr(cap(b))
}

// setEncoded sets the field called name to val, JSON; val may alias o.
//
// The common edit, a field the record does not have, appended to a
// compact object already indexed, is written out here with no call past
// the first edit's copy of the document: a small function, whose values
// wazero keeps in registers. Anything else goes to setSlow.
func (o *Object) setEncoded(name string, val []byte) {
	if !o.indexed && !o.indexFast() || !o.isObj || len(name) == 0 || o.keys&keyBit(name[0], len(name)) != 0 {
		o.setSlow(name, val) // not indexed the fast way, or name may be there
		return
	}
	c := &o.names[nameSlot(name)]
	n := len(o.fields)
	if !c.is(name) || n == 0 || n == cap(o.fields) || len(val) > 16 {
		o.setSlow(name, val)
		return
	}
	m := c.member // ,"name":
	at := o.fields[n-1].v1
	size := len(m) + len(val)
	old := len(o.b)
	buf := o.b
	if !o.owned {
		buf = o.own
	}
	if old-at != 1 || cap(buf)-old < size+16 || len(m) > 16 || cap(m) < 16 ||
		aliases(val, o.b) || aliases(val, o.own) {
		o.setSlow(name, val)
		return
	}
	tail := o.b[at]
	b := buf[:old+size]
	if !o.owned {
		copy(b, o.b[:at])
		o.owned = true
	}
	// Each string is written 16 bytes at a time, over what comes after
	// it; the brace comes last.
	p := unsafe.Add(unsafe.Pointer(unsafe.SliceData(b)), at)
	put16(p, m)
	v := unsafe.Add(p, len(m))
	if cap(val) >= 16 {
		put16(v, val)
	} else {
		for i, c := range val {
			*(*byte)(unsafe.Add(v, i)) = c
		}
	}
	b[old+size-1] = tail
	o.b, o.own, o.edited = b, b, true
	v0 := at + len(m)
	o.fields = o.fields[:n+1]
	f := &o.fields[n]
	f.k0, f.k1, f.v0, f.v1, f.esc = at+2, v0-2, v0, v0+len(val), c.esc
	o.keys |= keyBit(name[0], len(name))
}

// setSlow is setEncoded in every case.
func (o *Object) setSlow(name string, val []byte) {
	if len(val) > 0 && (aliases(val, o.b) || aliases(val, o.own)) {
		o.vbuf = append(o.vbuf[:0], val...)
		val = o.vbuf
	}
	if !o.indexed {
		o.index()
	}
	if !o.isObj {
		o.fail(ErrNotObject)
		return
	}
	if j := o.find(name); j >= 0 {
		f := &o.fields[j]
		v0 := f.v0
		o.splice(v0, f.v1, val, j+1)
		o.fields[j].v1 = v0 + len(val)
		return
	}
	// Add ,"name":val after the last value (or "name":val after the
	// opening brace), written straight into a gap opened for it.
	m, esc := o.member(name)
	n := len(o.fields)
	at, comma := o.open+1, 1
	if n > 0 {
		at = o.fields[n-1].v1
	} else {
		m, comma = m[1:], 0
	}
	b := o.gap(at, at, len(m)+len(val), n)
	move(b[at:], m)
	move(b[at+len(m):], val)
	v0 := at + len(m)
	o.fields = append(o.fields[:n], field{})
	f := &o.fields[n]
	f.k0, f.k1, f.v0, f.v1, f.esc = at+comma+1, v0-2, v0, v0+len(val), esc
	if len(name) > 0 {
		o.keys |= keyBit(name[0], len(name))
	}
}

// member returns ,"name": (name as a JSON string between a comma and a
// colon), and whether its key compares through AppendUnquote (hasEscape).
// The last few names are kept, each at its nameSlot: a transform sets the
// same few names on every record. (A cached name is kept alive by the
// cache, so its address identifies it.)
func (o *Object) member(name string) ([]byte, bool) {
	c := &o.names[nameSlot(name)]
	if !c.is(name) {
		c.name = name
		if cap(c.member) < 32 {
			c.member = make([]byte, 0, 32+len(name))
		}
		c.member = append(AppendQuote(append(c.member[:0], ','), name), ':')
		c.esc = hasEscape(name)
	}
	return c.member, c.esc
}

// nameSlot is name's place in Object.names.
func nameSlot(name string) int {
	if len(name) == 0 {
		return 0
	}
	return (len(name) + int(name[0])) & 3
}

func hasEscape(name string) bool {
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			return true // conservative: compared through AppendUnquote
		}
	}
	return false
}

// Delete removes the field called name and reports whether it was there.
func (o *Object) Delete(name string) bool {
	j := o.find(name)
	if j < 0 {
		return false
	}
	n := len(o.fields)
	var a, b int
	switch {
	case j > 0: // from the end of the previous value: `, "name": value`
		a, b = o.fields[j-1].v1, o.fields[j].v1
	case n > 1: // first of several: `"name": value, ` up to the next key
		a, b = o.fields[0].k0-1, o.fields[1].k0-1
	default: // the only field
		a, b = o.fields[0].k0-1, o.fields[0].v1
	}
	o.splice(a, b, nil, j+1)
	copy(o.fields[j:], o.fields[j+1:])
	o.fields = o.fields[:n-1]
	return true
}

// SetBytes replaces the whole document with a copy of b.
func (o *Object) SetBytes(b []byte) {
	o.own = append(o.own[:0], b...)
	o.b = o.own
	o.owned = true
	o.indexed = false
	o.edited = true
}

// splice replaces b[a:z] with repl and shifts the index entries from
// fields[from:] by the change in length.
func (o *Object) splice(a, z int, repl []byte, from int) {
	b := o.gap(a, z, len(repl), from)
	move(b[a:], repl)
}

// gap replaces b[a:z] with size bytes to be written by the caller, and
// returns b. It shifts the index entries from fields[from:] by the change
// in length. b is then owned by o: the first edit copies the document,
// later ones edit it in place.
func (o *Object) gap(a, z, size, from int) []byte {
	delta := size - (z - a)
	old := len(o.b)
	if !o.owned {
		n := old + delta
		buf := o.own
		if cap(buf) < n {
			buf = make([]byte, n, n+n/2+64)
		}
		buf = buf[:n]
		copy(buf, o.b[:a])
		move(buf[a+size:], o.b[z:]) // the tail: "}" when a field is appended
		o.own, o.b, o.owned = buf, buf, true
	} else if delta != 0 {
		b := o.b
		if delta > 0 && cap(b)-old < delta {
			grown := make([]byte, old, 2*old+delta+64)
			copy(grown, b)
			b = grown
		}
		b = b[:old+delta]
		move(b[z+delta:], o.b[z:old]) // most edits append a field: the tail is "}"
		o.b, o.own = b, b
	}
	o.edited = true
	if delta != 0 {
		for k := from; k < len(o.fields); k++ {
			f := &o.fields[k]
			f.k0 += delta
			f.k1 += delta
			f.v0 += delta
			f.v1 += delta
		}
	}
	return o.b
}

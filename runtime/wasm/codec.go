package wasm

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"strings"

	"github.com/sluicehq/sluice/pipeline"
)

// The batch and output encodings of docs/abi.md.

var le = binary.LittleEndian

// encodedSize returns the size of recs encoded as an input batch.
func encodedSize(recs []pipeline.Record) (int, error) {
	n := 4
	for i := range recs {
		r := &recs[i]
		n += 16 + len(r.Value) + len(r.Key) + len(r.Dest)
		for _, h := range r.Headers {
			n += 8 + len(h.Key) + len(h.Value)
		}
	}
	if n > math.MaxUint32 {
		return 0, fmt.Errorf("batch of %d records is %d bytes, more than 4GiB", len(recs), n)
	}
	return n, nil
}

// encodeBatch writes recs as an input batch into b, which has exactly
// encodedSize(recs) bytes.
func encodeBatch(b []byte, recs []pipeline.Record) {
	le.PutUint32(b, uint32(len(recs)))
	p := 4
	for i := range recs {
		r := &recs[i]
		le.PutUint32(b[p:], uint32(len(r.Value)))
		p += 4 + copy(b[p+4:], r.Value)
		le.PutUint32(b[p:], uint32(len(r.Key)))
		p += 4 + copy(b[p+4:], r.Key)
		le.PutUint32(b[p:], uint32(len(r.Dest)))
		p += 4 + copy(b[p+4:], r.Dest)
		le.PutUint32(b[p:], uint32(len(r.Headers)))
		p += 4
		for _, h := range r.Headers {
			le.PutUint32(b[p:], uint32(len(h.Key)))
			p += 4 + copy(b[p+4:], h.Key)
			le.PutUint32(b[p:], uint32(len(h.Value)))
			p += 4 + copy(b[p+4:], h.Value)
		}
	}
}

// note is what the output says against one input of a call: the module
// failed it, or the host did (an invalid output value). Notes are rare and
// kept in index order.
type note struct {
	idx int
	err string // the module's error message, if it failed the input
	bad string // why the host failed it (invalid output value), if it did
}

// Flags of one record entry, from decode to emit.
const (
	sameValue = 1 << iota
	sameKey
	sameDest
	sameHeaders
)

// span is where a bytes field's data lies in the output.
type span struct{ off, n uint32 }

// recEntry is one record entry of a checked output: what emit needs to
// build its record without parsing the output again.
type recEntry struct {
	idx    uint32
	flags  uint8
	hcount uint32
	value  span
	key    span
	dest   span
	hdrs   uint32 // offset of the first header's name field
}

// decoder checks an output and turns it into records. One lives in each
// instance and its slices are reused from call to call.
type decoder struct {
	inputs  []int32    // per input of the call: its record entries
	notes   []note     // failed inputs
	entries []recEntry // per record entry
	slab    int        // bytes of values, keys and headers that differ from the input
	split   bool       // an input has several record entries
	same    bool       // every input has one record entry, identical to it
}

// noteFor returns the note of input idx, adding one if it has none. Entries
// come in index order, so an input's note, if any, is the last one.
func (d *decoder) noteFor(idx int) *note {
	if len(d.notes) == 0 || d.notes[len(d.notes)-1].idx != idx {
		d.notes = append(d.notes, note{idx: idx})
	}
	return &d.notes[len(d.notes)-1]
}

// malformed is the reason an output breaks the ABI.
type malformed struct{ msg string }

func (m *malformed) Error() string { return m.msg }

func badOutput(format string, args ...any) *malformed {
	return &malformed{msg: "malformed output: " + fmt.Sprintf(format, args...)}
}

// check validates out, the output of a call on recs, and records what it
// says in d. Structural errors (bounds, index order, status) reject the
// whole output; a value that is not valid JSON fails only its input.
func (d *decoder) check(out []byte, recs []pipeline.Record, validate bool) *malformed {
	n := len(recs)
	if cap(d.inputs) < n {
		d.inputs = make([]int32, n)
	}
	d.inputs = d.inputs[:n]
	clear(d.inputs)
	d.notes = d.notes[:0]
	d.split = false
	d.entries = d.entries[:0]
	d.slab = 0
	d.same = false
	if len(out) < 4 {
		return badOutput("%d bytes, shorter than the entry count", len(out))
	}
	if uint64(len(out)) > math.MaxUint32 {
		return badOutput("%d bytes, more than 4GiB", len(out))
	}
	count := int(le.Uint32(out))
	if count > (len(out)-4)/8 {
		return badOutput("%d entries cannot fit in %d bytes", count, len(out))
	}
	if cap(d.entries) < count {
		d.entries = make([]recEntry, 0, count)
	}
	p := 4
	prev := 0
	for e := range count {
		if len(out)-p < 8 {
			return badOutput("entry %d: truncated", e)
		}
		idx := int(le.Uint32(out[p:]))
		status := le.Uint32(out[p+4:])
		p += 8
		if idx >= n {
			return badOutput("entry %d: index %d out of range (the batch has %d records)", e, idx, n)
		}
		if idx < prev {
			return badOutput("entry %d: index %d after %d (indexes must not decrease)", e, idx, prev)
		}
		prev = idx
		in := &recs[idx]
		switch status {
		case 0:
			var ent recEntry
			var ok bool
			ent.idx = uint32(idx)
			q := p
			if ent.value, q, ok = spanAt(out, q); !ok {
				return badOutput("entry %d: value length past the end of the output", e)
			}
			if ent.key, q, ok = spanAt(out, q); !ok {
				return badOutput("entry %d: key length past the end of the output", e)
			}
			if ent.dest, q, ok = spanAt(out, q); !ok {
				return badOutput("entry %d: dest length past the end of the output", e)
			}
			if len(out)-q < 4 {
				return badOutput("entry %d: header count past the end of the output", e)
			}
			hcount := int(le.Uint32(out[q:]))
			q += 4
			if hcount > (len(out)-q)/8 {
				return badOutput("entry %d: %d headers cannot fit in the output", e, hcount)
			}
			ent.hcount = uint32(hcount)
			ent.hdrs = uint32(q)
			hsame := hcount == len(in.Headers)
			hbytes := 0
			for h := range hcount {
				var k, v span
				if k, q, ok = spanAt(out, q); ok {
					v, q, ok = spanAt(out, q)
				}
				if !ok {
					return badOutput("entry %d: header %d past the end of the output", e, h)
				}
				if hsame && (string(k.of(out)) != in.Headers[h].Key || !bytes.Equal(v.of(out), in.Headers[h].Value)) {
					hsame = false
				}
				hbytes += int(v.n)
			}
			p = q
			if hsame {
				ent.flags |= sameHeaders
			} else {
				d.slab += hbytes
			}
			if value := ent.value.of(out); bytes.Equal(value, in.Value) {
				ent.flags |= sameValue
			} else {
				d.slab += len(value)
				if validate && !validJSON(value) {
					if nt := d.noteFor(idx); nt.bad == "" {
						nt.bad = fmt.Sprintf("output value is not valid JSON: %s", quoteSnippet(value))
					}
				}
			}
			if bytes.Equal(ent.key.of(out), in.Key) {
				ent.flags |= sameKey
			} else {
				d.slab += int(ent.key.n)
			}
			if string(ent.dest.of(out)) == in.Dest {
				ent.flags |= sameDest
			}
			d.entries = append(d.entries, ent)
			if d.inputs[idx]++; d.inputs[idx] > 1 {
				d.split = true
			}
		case 1:
			msg, q, ok := field(out, p)
			if !ok {
				return badOutput("entry %d: error message past the end of the output", e)
			}
			p = q
			if nt := d.noteFor(idx); nt.err == "" {
				nt.err = cleanMessage(msg)
			}
		default:
			return badOutput("entry %d: unknown status %d (want 0 record or 1 error)", e, status)
		}
	}
	if p != len(out) {
		return badOutput("%d bytes after the %d entries", len(out)-p, count)
	}
	d.same = count == n && len(d.entries) == n
	for i := range d.entries {
		if !d.same {
			break
		}
		e := &d.entries[i]
		d.same = e.idx == uint32(i) && e.flags == sameValue|sameKey|sameDest|sameHeaders
	}
	return nil
}

// of returns the bytes of s in out.
func (s span) of(out []byte) []byte { return out[s.off : s.off+s.n : s.off+s.n] }

// spanAt reads a bytes field (u32 length, then the bytes) at p, which is
// at most len(b) (and b is under 4GiB).
func spanAt(b []byte, p int) (span, int, bool) {
	if len(b)-p < 4 {
		return span{}, p, false
	}
	n := int(le.Uint32(b[p:]))
	p += 4
	if n > len(b)-p {
		return span{}, p, false
	}
	return span{uint32(p), uint32(n)}, p + n, true
}

// field reads a bytes field (u32 length, then the bytes) at p.
func field(b []byte, p int) ([]byte, int, bool) {
	if len(b)-p < 4 {
		return nil, p, false
	}
	n := int(le.Uint32(b[p:]))
	p += 4
	if n > len(b)-p {
		return nil, p, false
	}
	return b[p : p+n], p + n, true
}

// cleanMessage makes a module's error message safe to log and send back to
// a device: valid UTF-8, at most 1 KiB.
func cleanMessage(b []byte) string {
	const max = 1 << 10
	if len(b) > max {
		b = b[:max]
	}
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	if s == "" {
		s = "error"
	}
	return s
}

func quoteSnippet(b []byte) string {
	const max = 64
	if len(b) > max {
		return fmt.Sprintf("%q…", b[:max])
	}
	return fmt.Sprintf("%q", b)
}

// splitPart returns the part of output k (0-based) of an input with part
// parent split into n ≥ 2 outputs (docs/abi.md, "Record identity"):
//
//   - an input that was not split before (part 0) gives parts 1..n;
//   - an input that is part p of an earlier split (0 < p < 1<<16) gives
//     parts p | k<<16 for k = 1..n, so they differ from p's siblings and
//     from each other;
//   - a third level of splitting, or more than 65535 parts, has no
//     numbering left and fails the input.
//
// An input with a single output keeps its ID, part included. Part 0 thus
// always means "not split", which the 0-based numbering of an earlier
// draft of the ABI could not tell apart from "first part of a split".
func splitPart(parent uint32, k, n int) (uint32, bool) {
	if n > 1<<16-1 {
		return 0, false
	}
	switch {
	case parent == 0:
		return uint32(k + 1), true
	case parent < 1<<16:
		return parent | uint32(k+1)<<16, true
	}
	return 0, false
}

// emit appends the outputs checked by d to st, for the inputs
// st.in[lo:lo+len(d.inputs)].
func (d *decoder) emit(out []byte, lo int, st *procState, module string) {
	recs := st.in[lo : lo+len(d.inputs)]
	counts := st.counts[lo : lo+len(d.inputs)]
	if d.same && st.alias && st.next == lo {
		// Every output is its input (no error entries: count == n).
		for i := range counts {
			counts[i] = 1
		}
		st.next = lo + len(recs)
		return
	}
	st.materialize()
	// Settle the inputs' fates first: failures, and splits that cannot be numbered.
	for _, nt := range d.notes {
		if nt.err != "" {
			st.fail(lo+nt.idx, &Error{Module: module, Kind: ErrRecord, Msg: nt.err})
		} else {
			st.fail(lo+nt.idx, &Error{Module: module, Func: "sluice_process", Kind: ErrInvalidOutput, Msg: nt.bad})
		}
	}
	if d.split {
		for i, n := range d.inputs {
			if n < 2 {
				continue
			}
			if _, ok := splitPart(recs[i].ID.Part, 0, int(n)); !ok {
				st.fail(lo+i, &Error{Module: module, Func: "sluice_process", Kind: ErrInvalidOutput,
					Msg: fmt.Sprintf("cannot number %d parts of a record that is part %d of an earlier split (at most two levels of splits of up to 65535 parts)", n, recs[i].ID.Part)})
			}
		}
	}
	var slab []byte
	if d.slab > 0 {
		slab = make([]byte, d.slab)
	}
	lastDest := ""
	for i := range d.entries {
		e := &d.entries[i]
		idx := int(e.idx)
		k := counts[idx] // outputs of this input so far
		if k < 0 {
			continue // failed
		}
		in := &recs[idx]
		// Build the record in place in st.out (a Record is 150 bytes): a
		// copy of its input, then what the module changed.
		st.out = append(st.out, *in)
		rec := &st.out[len(st.out)-1]
		if e.flags&sameValue == 0 {
			n := copy(slab, e.value.of(out))
			rec.Value, slab = slab[:n:n], slab[n:]
		}
		switch {
		case e.key.n == 0:
			rec.Key = nil
		case e.flags&sameKey == 0:
			n := copy(slab, e.key.of(out))
			rec.Key, slab = slab[:n:n], slab[n:]
		}
		switch dest := e.dest.of(out); {
		case len(dest) == 0:
			rec.Dest = ""
		case e.flags&sameDest != 0:
		case string(dest) == lastDest:
			rec.Dest = lastDest
		default:
			lastDest = strings.ToValidUTF8(string(dest), "\uFFFD")
			rec.Dest = lastDest
		}
		switch {
		case e.hcount == 0:
			rec.Headers = nil
		case e.flags&sameHeaders == 0:
			rec.Headers = make([]pipeline.Header, e.hcount)
			q := int(e.hdrs)
			for h := range rec.Headers {
				var hk, hv []byte
				hk, q, _ = field(out, q)
				hv, q, _ = field(out, q)
				n := copy(slab, hv)
				rec.Headers[h] = pipeline.Header{Key: string(hk), Value: slab[:n:n]}
				slab = slab[n:]
			}
		}
		if n := int(d.inputs[idx]); n > 1 {
			rec.ID.Part, _ = splitPart(in.ID.Part, int(k), n)
		}
		counts[idx] = k + 1
	}
}

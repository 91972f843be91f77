package faultproxy

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// rewrite returns the response frame (size prefix included) with every
// broker address equal to fromHost:fromPort replaced by toHost:toPort, for
// a response to req (Metadata v0–v12, FindCoordinator v0–v6), and whether
// anything changed.
//
// Layouts (Kafka protocol guide): a response is the correlation id, then
// for flexible versions (Metadata ≥ v9, FindCoordinator ≥ v3) the header's
// tagged fields, then the body:
//
//	Metadata:        [throttle_time_ms ≥v3] brokers[node_id host port rack≥v1 tags] …
//	FindCoordinator: v0: error_code node_id host port
//	                 v1–v3: throttle_time_ms error_code error_message node_id host port [tags v3] …
//	                 v4+: throttle_time_ms coordinators[key node_id host port error_code error_message tags] tags
//
// Only the brokers are parsed; what follows them is copied as it is.
func rewrite(frame []byte, req request, fromHost string, fromPort int32, toHost string, toPort int32) ([]byte, bool, error) {
	var flex bool
	switch req.key {
	case apiMetadata:
		flex = req.version >= 9
	case apiFindCoordinator:
		flex = req.version >= 3
	default:
		return frame, false, nil
	}
	r := &kreader{b: frame, off: 8} // size, correlation id
	if flex {
		r.skipTags()
	}
	w := &kwriter{r: r, flex: flex, fromHost: fromHost, fromPort: fromPort, toHost: toHost, toPort: toPort}
	switch req.key {
	case apiMetadata:
		if req.version >= 3 {
			r.skip(4)
		}
		n := r.arrayLen(flex)
		for range n {
			r.skip(4) // node_id
			w.address()
			if req.version >= 1 {
				r.str(flex) // rack
			}
			if flex {
				r.skipTags()
			}
		}
	case apiFindCoordinator:
		switch {
		case req.version == 0:
			r.skip(2 + 4) // error_code, node_id
			w.address()
		case req.version <= 3:
			r.skip(4 + 2) // throttle, error_code
			r.str(flex)   // error_message
			r.skip(4)     // node_id
			w.address()
		default:
			r.skip(4)
			n := r.arrayLen(flex)
			for range n {
				r.str(flex) // key
				r.skip(4)   // node_id
				w.address() // host, port
				r.skip(2)   // error_code
				r.str(flex) // error_message
				r.skipTags()
			}
		}
	}
	if r.err != nil {
		return frame, false, r.err
	}
	if !w.changed {
		return frame, false, nil
	}
	out := append(w.out, frame[w.last:]...)
	binary.BigEndian.PutUint32(out, uint32(len(out)-4))
	return out, true, nil
}

var errShort = errors.New("response ends early")

// kreader reads Kafka primitive types; after an error every read is a
// no-op and err says what went wrong.
type kreader struct {
	b   []byte
	off int
	err error
}

func (r *kreader) need(n int) bool {
	if r.err != nil {
		return false
	}
	if n < 0 || r.off+n > len(r.b) {
		r.err = fmt.Errorf("at byte %d: %w", r.off, errShort)
		return false
	}
	return true
}

func (r *kreader) skip(n int) {
	if r.need(n) {
		r.off += n
	}
}

func (r *kreader) i16() int16 {
	if !r.need(2) {
		return 0
	}
	v := int16(binary.BigEndian.Uint16(r.b[r.off:]))
	r.off += 2
	return v
}

func (r *kreader) i32() int32 {
	if !r.need(4) {
		return 0
	}
	v := int32(binary.BigEndian.Uint32(r.b[r.off:]))
	r.off += 4
	return v
}

func (r *kreader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b[r.off:])
	if n <= 0 {
		r.err = fmt.Errorf("at byte %d: bad varint", r.off)
		return 0
	}
	r.off += n
	return v
}

// arrayLen reads an array's length (an int32, or a compact uvarint N+1).
func (r *kreader) arrayLen(flex bool) int {
	var n int
	if flex {
		n = int(r.uvarint()) - 1
	} else {
		n = int(r.i32())
	}
	if n < 0 {
		return 0
	}
	if n > len(r.b) {
		r.err = fmt.Errorf("array of %d elements in %d bytes", n, len(r.b))
		return 0
	}
	return n
}

// str reads a (nullable) string, compact or not; null reads as "".
func (r *kreader) str(flex bool) string {
	var n int
	if flex {
		n = int(r.uvarint()) - 1
	} else {
		n = int(r.i16())
	}
	if n < 0 || r.err != nil {
		return ""
	}
	if !r.need(n) {
		return ""
	}
	s := string(r.b[r.off : r.off+n])
	r.off += n
	return s
}

func (r *kreader) skipTags() {
	n := r.uvarint()
	for range n {
		r.uvarint() // tag
		size := r.uvarint()
		r.skip(int(size))
		if r.err != nil {
			return
		}
	}
}

// kwriter copies the frame up to each rewritten address and writes the new
// address in its place.
type kwriter struct {
	r        *kreader
	flex     bool
	fromHost string
	fromPort int32
	toHost   string
	toPort   int32
	out      []byte
	last     int // frame[:last] is in out (when changed)
	changed  bool
}

// address reads a host and a port and replaces them when they match.
func (w *kwriter) address() {
	start := w.r.off
	host := w.r.str(w.flex)
	port := w.r.i32()
	if w.r.err != nil || host != w.fromHost || port != w.fromPort {
		return
	}
	if !w.changed {
		w.out = make([]byte, 0, len(w.r.b)+len(w.toHost))
		w.changed = true
	}
	w.out = append(w.out, w.r.b[w.last:start]...)
	if w.flex {
		w.out = binary.AppendUvarint(w.out, uint64(len(w.toHost))+1)
	} else {
		w.out = binary.BigEndian.AppendUint16(w.out, uint16(len(w.toHost)))
	}
	w.out = append(w.out, w.toHost...)
	w.out = binary.BigEndian.AppendUint32(w.out, uint32(w.toPort))
	w.last = w.r.off
}

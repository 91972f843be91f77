package sluice

import (
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
)

type testRec struct {
	value, key, dest string
	headers          [][2]string
}

func encodeRecs(recs ...testRec) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(len(recs)))
	for _, r := range recs {
		b = appendBytes(b, []byte(r.value))
		b = appendBytes(b, []byte(r.key))
		b = appendBytes(b, []byte(r.dest))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(r.headers)))
		for _, h := range r.headers {
			b = appendBytes(b, []byte(h[0]))
			b = appendBytes(b, []byte(h[1]))
		}
	}
	return b
}

// entry is a decoded output entry: a record, or an error when err != "".
type entry struct {
	index int
	rec   testRec
	err   string
}

func decodeOutput(t *testing.T, out []byte) []entry {
	t.Helper()
	n := binary.LittleEndian.Uint32(out)
	p := 4
	var es []entry
	read := func() string {
		l := int(binary.LittleEndian.Uint32(out[p:]))
		s := string(out[p+4 : p+4+l])
		p += 4 + l
		return s
	}
	for range n {
		e := entry{index: int(binary.LittleEndian.Uint32(out[p:]))}
		status := binary.LittleEndian.Uint32(out[p+4:])
		p += 8
		if status == 1 {
			e.err = read()
		} else {
			e.rec.value, e.rec.key, e.rec.dest = read(), read(), read()
			hc := binary.LittleEndian.Uint32(out[p:])
			p += 4
			for range hc {
				e.rec.headers = append(e.rec.headers, [2]string{read(), read()})
			}
		}
		es = append(es, e)
	}
	if p != len(out) {
		t.Fatalf("%d trailing bytes", len(out)-p)
	}
	return es
}

func withHandler(t *testing.T, h Handler) {
	old, oldMap := handler, mapFn
	handler, mapFn = h, nil
	t.Cleanup(func() { handler, mapFn = old, oldMap })
}

func TestProcess(t *testing.T) {
	in := []testRec{
		{value: `{"a":1,"readings":[1,2]}`, key: "k1", dest: "d1", headers: [][2]string{{"h", "v"}}},
		{value: `{"a":2,"drop":true}`},
		{value: `{"a":3,"fail":true}`},
		{value: `{"a":4,"panic":true}`},
		{value: `[1]`},
		{value: `{"a":6}`},
	}
	withHandler(t, func(r *Record, out *Output) error {
		switch {
		case r.Has("drop"):
			return nil
		case r.Has("fail"):
			out.Emit(r) // discarded: the error wins
			return errors.New("failed on purpose")
		case r.Has("panic"):
			var m map[string]int
			m["x"] = 1 // panics
		case !r.IsObject():
			r.Set("x", Int(1)) // fails: not an object
			out.Emit(r)
			return nil
		}
		if arr, ok := r.GetRaw("readings"); ok {
			r.Delete("readings")
			for e := range Elements(arr) {
				r.SetRaw("reading", e)
				r.SetHeader("part", e)
				out.Emit(r)
			}
			return nil
		}
		r.SetKeyString("key-" + fmt.Sprint(out.idx))
		r.SetDest("topic")
		out.Emit(r)
		return nil
	})
	var s batchState
	out := s.process(encodeRecs(in...), nil)
	got := decodeOutput(t, out)
	want := []entry{
		{index: 0, rec: testRec{`{"a":1,"reading":1}`, "k1", "d1", [][2]string{{"h", "v"}, {"part", "1"}}}},
		{index: 0, rec: testRec{`{"a":1,"reading":2}`, "k1", "d1", [][2]string{{"h", "v"}, {"part", "2"}}}},
		{index: 2, err: "failed on purpose"},
		{index: 3, err: "panic: assignment to entry in nil map"},
		{index: 4, err: ErrNotObject.Error()},
		{index: 5, rec: testRec{`{"a":6}`, "key-5", "topic", nil}},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got  %v\nwant %v", got, want)
	}

	// The buffers are reused: a second batch through the same state.
	withHandler(t, func(r *Record, out *Output) error { out.Emit(r); return nil })
	in2 := []testRec{{value: `{"b":1}`, key: "k", headers: [][2]string{{"x", "y"}}}, {value: `{}`}}
	got = decodeOutput(t, s.process(encodeRecs(in2...), out))
	want = []entry{{index: 0, rec: in2[0]}, {index: 1, rec: in2[1]}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("identity: got %v, want %v", got, want)
	}
}

func TestHeaders(t *testing.T) {
	withHandler(t, func(r *Record, out *Output) error {
		if v, ok := r.Header("a"); !ok || string(v) != "1" {
			return fmt.Errorf("Header(a): got %q %v", v, ok)
		}
		r.SetHeader("a", []byte("one"))
		r.DeleteHeader("b")
		r.SetHeader("c", []byte("3"))
		out.Emit(r)
		return nil
	})
	var s batchState
	got := decodeOutput(t, s.process(encodeRecs(testRec{value: `{}`, headers: [][2]string{{"a", "1"}, {"b", "2"}}}), nil))
	want := []entry{{rec: testRec{value: `{}`, headers: [][2]string{{"a", "one"}, {"c", "3"}}}}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestMap(t *testing.T) {
	old := handler
	defer func() { handler = old }()
	Map(func(r *Record) error {
		if r.Has("drop") {
			return Drop
		}
		r.Set("seen", Bool(true))
		return nil
	})
	var s batchState
	got := decodeOutput(t, s.process(encodeRecs(testRec{value: `{"drop":1}`}, testRec{value: `{}`}), nil))
	want := []entry{{index: 1, rec: testRec{value: `{"seen":true}`}}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestNoHandler(t *testing.T) {
	withHandler(t, nil)
	var s batchState
	got := decodeOutput(t, s.process(encodeRecs(testRec{value: `{}`}), nil))
	if len(got) != 1 || got[0].err != errNoHandler.Error() {
		t.Fatalf("got %v, want the no-handler error", got)
	}
}

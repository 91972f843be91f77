package sluice

import (
	"encoding/binary"
	"testing"
)

const benchRecord = `{"device_id":"dev-000123","seq":4567,"ts":"2024-05-01T12:00:00.123Z","temp":21.5,"humidity":48.2,"battery":3.71,"fw":"1.4.2","kind":"reading"}`

func encodeBatch(values ...string) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(len(values)))
	for _, v := range values {
		b = appendBytes(b, []byte(v))
		b = appendBytes(b, nil)
		b = appendBytes(b, nil)
		b = binary.LittleEndian.AppendUint32(b, 0)
	}
	return b
}

func benchProcess(b *testing.B, h Handler) {
	vals := make([]string, 1024)
	for i := range vals {
		vals[i] = benchRecord
	}
	in := encodeBatch(vals...)
	old, oldMap := handler, mapFn
	handler, mapFn = h, nil
	defer func() { handler, mapFn = old, oldMap }()
	var s batchState
	var out []byte
	for b.Loop() {
		out = s.process(in, out)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(vals)), "ns/record")
}

// BenchmarkIdentity and BenchmarkEnrich run the examples' handlers natively:
// the same Go code that runs in wasm, for comparison.
func BenchmarkIdentity(b *testing.B) {
	benchProcess(b, func(r *Record, out *Output) error { out.Emit(r); return nil })
}

func BenchmarkEnrich(b *testing.B) {
	site := []byte(`"lab-1"`)
	benchProcess(b, func(r *Record, out *Output) error {
		r.SetRaw("site", site)
		if t, ok := r.GetFloat("temp"); ok {
			r.Set("temp_f", Float(t*9/5+32))
		}
		out.Emit(r)
		return nil
	})
}

func BenchmarkIndex(b *testing.B) {
	var o Object
	rec := []byte(benchRecord)
	for b.Loop() {
		o.Reset(rec)
		o.index()
	}
}

func BenchmarkGetFloat(b *testing.B) {
	var o Object
	rec := []byte(benchRecord)
	for b.Loop() {
		o.Reset(rec)
		o.GetFloat("temp")
	}
}

func BenchmarkSetRawNew(b *testing.B) {
	var o Object
	rec := []byte(benchRecord)
	raw := []byte(`"lab-1"`)
	for b.Loop() {
		o.Reset(rec)
		o.SetRaw("site", raw)
	}
}

func BenchmarkSetRawTwice(b *testing.B) {
	var o Object
	rec := []byte(benchRecord)
	raw := []byte(`"lab-1"`)
	for b.Loop() {
		o.Reset(rec)
		o.SetRaw("site", raw)
		o.SetRaw("site2", raw)
	}
}

func BenchmarkAppendFloat(b *testing.B) {
	var buf []byte
	x := 21.5
	for b.Loop() {
		buf, _ = AppendFloat(buf[:0], x*9/5+32)
	}
}

func BenchmarkParseFloat(b *testing.B) {
	v := []byte("21.5")
	for b.Loop() {
		ParseFloat(v)
	}
}

package wasm

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/cputime"
	"github.com/sluicehq/sluice/pipeline"
	"github.com/tidwall/gjson"
)

// benchRecord is a typical telemetry record (148 bytes).
const benchRecord = `{"device_id":"dev-000123","seq":4567,"ts":"2024-05-01T12:00:00.123Z","temp":21.5,"humidity":48.2,"battery":3.71,"fw":"1.4.2","kind":"reading"}`

func benchBatch(n int) pipeline.Batch {
	b := make(pipeline.Batch, n)
	for i := range b {
		b[i] = pipeline.Record{Value: []byte(benchRecord), ID: pipeline.ID{Device: "dev-000123", Seq: uint64(i)}}
	}
	return b
}

// nativeIdentity is what a Go transform that copies its records costs: one
// allocation and memcpy per value.
func nativeIdentity(in pipeline.Batch) pipeline.Batch {
	out := make(pipeline.Batch, len(in))
	for i := range in {
		out[i] = in[i]
		out[i].Value = append([]byte(nil), in[i].Value...)
	}
	return out
}

// nativeEnrichBytes is the enrich example written natively with the same
// byte-level approach (gjson finds the fields; the edit appends).
func nativeEnrichBytes(in pipeline.Batch) pipeline.Batch {
	out := make(pipeline.Batch, len(in))
	for i := range in {
		v := in[i].Value
		out[i] = in[i]
		if gjson.GetBytes(v, "site").Exists() {
			panic("bench records have no site")
		}
		end := len(v) - 1 // the closing brace
		nv := make([]byte, 0, len(v)+40)
		nv = append(nv, v[:end]...)
		nv = append(nv, `,"site":"lab-1"`...)
		if t := gjson.GetBytes(v, "temp"); t.Type == gjson.Number {
			nv = append(nv, `,"temp_f":`...)
			nv = strconv.AppendFloat(nv, t.Num*9/5+32, 'f', -1, 64)
		}
		out[i].Value = append(nv, '}')
	}
	return out
}

// nativeEnrichJSON is the same edit with encoding/json.
func nativeEnrichJSON(in pipeline.Batch) pipeline.Batch {
	out := make(pipeline.Batch, len(in))
	for i := range in {
		var m map[string]any
		if err := json.Unmarshal(in[i].Value, &m); err != nil {
			panic(err)
		}
		m["site"] = "lab-1"
		if t, ok := m["temp"].(float64); ok {
			m["temp_f"] = t*9/5 + 32
		}
		v, err := json.Marshal(m)
		if err != nil {
			panic(err)
		}
		out[i] = in[i]
		out[i].Value = v
	}
	return out
}

// BenchmarkTransform compares, per record: the Go identity module against a
// native copy (the difference is the ABI's cost, plus Go's wasm code), a
// lean WAT identity (the ABI's own cost), and the enrich example against
// the same edit in native Go, written with byte-level field access (gjson)
// and with encoding/json.
func BenchmarkTransform(b *testing.B) {
	wasmCase := func(name string, cfg Config) func(b *testing.B, n int) {
		return func(b *testing.B, n int) {
			benchProcess(b, newT(b, name, cfg), n)
		}
	}
	nativeCase := func(f func(pipeline.Batch) pipeline.Batch) func(b *testing.B, n int) {
		return func(b *testing.B, n int) {
			in := benchBatch(n)
			cpu0 := cputime.Self()
			for b.Loop() {
				if out := f(in); len(out) != n {
					b.Fatal("lost records")
				}
			}
			report(b, n, cpu0)
		}
	}
	cases := []struct {
		name string
		run  func(b *testing.B, n int)
	}{
		{"identity-wasm", wasmCase("identity", Config{})},
		{"identity-native", nativeCase(nativeIdentity)},
		{"identity-wat", wasmCase("rawidentity", Config{})},
		{"enrich-wasm", wasmCase("enrich", Config{Config: map[string]any{"site": "lab-1"}})},
		{"enrich-wasm-novalidate", wasmCase("enrich", Config{Config: map[string]any{"site": "lab-1"}, ValidateOutput: new(bool)})},
		{"enrich-native-bytes", nativeCase(nativeEnrichBytes)},
		{"enrich-native-json", nativeCase(nativeEnrichJSON)},
	}
	for _, c := range cases {
		for _, n := range []int{1, 64, 1024} {
			b.Run(fmt.Sprintf("%s/batch=%d", c.name, n), func(b *testing.B) { c.run(b, n) })
		}
	}
}

// report adds ns/record (wall clock) and cpu-ns/record (CPU time of the
// whole process, GC included: steadier than wall time on a busy machine).
// benchProcess measures tr.Process on batches of n records, each of which
// must come out unchanged in number, after one warm-up call.
func benchProcess(b *testing.B, tr *Transform, n int) {
	ctx := context.Background()
	in := benchBatch(n)
	if _, _, err := tr.Process(ctx, in); err != nil { // warm up the instance
		b.Fatal(err)
	}
	b.ResetTimer()
	cpu0 := cputime.Self()
	for b.Loop() {
		out, failed, err := tr.Process(ctx, in)
		if err != nil || len(failed) > 0 || len(out) != n {
			b.Fatalf("Process: %d out, %v failed, %v", len(out), failed, err)
		}
	}
	report(b, n, cpu0)
}

func report(b *testing.B, n int, cpu0 time.Duration) {
	records := float64(b.N * n)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/records, "ns/record")
	b.ReportMetric(float64((cputime.Self()-cpu0).Nanoseconds())/records, "cpu-ns/record")
}

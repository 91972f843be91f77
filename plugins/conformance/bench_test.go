package conformance

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/cputime"
	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/runtime/wasm"
	"github.com/tidwall/gjson"
)

// benchRecord is a typical telemetry record, the one runtime/wasm's
// benchmarks use.
const benchRecord = `{"device_id":"dev-000123","seq":4567,"ts":"2024-05-01T12:00:00.123Z","temp":21.5,"humidity":48.2,"battery":3.71,"fw":"1.4.2","kind":"reading"}`

const benchBatchSize = 64

// BenchmarkGuests runs enrich (config {"site":"lab-1"}) and identity in
// every language through runtime/wasm, a batch of 64 records per Process
// call, beside enrich written natively in Go, and reports ns/record and
// cpu-ns/record.
//
//	go test ./plugins/conformance -run '^$' -bench Guests
func BenchmarkGuests(b *testing.B) {
	in := make(pipeline.Batch, benchBatchSize)
	for i := range in {
		in[i] = pipeline.Record{Value: []byte(benchRecord), ID: pipeline.ID{Device: "dev-000123", Seq: uint64(i)}}
	}
	// enrich-novalidate skips the host's check of the output JSON, to
	// show what the guest itself costs.
	for _, bench := range []string{"enrich", "enrich-novalidate", "identity"} {
		example, _, _ := strings.Cut(bench, "-")
		for _, lang := range langs {
			b.Run(bench+"/"+lang, func(b *testing.B) {
				config := ""
				if example == "enrich" {
					config = `{"site":"lab-1"}`
				}
				cfg, err := transformConfig(module(lang, example), config)
				if err != nil {
					b.Fatal(err)
				}
				if bench == "enrich-novalidate" {
					cfg.ValidateOutput = new(bool)
				}
				tr, err := wasm.New(context.Background(), cfg, testEnv())
				if err != nil {
					b.Fatal(err)
				}
				defer tr.Close(context.Background())
				ctx := context.Background()
				if _, _, err := tr.Process(ctx, in); err != nil { // warm up the instance
					b.Fatal(err)
				}
				cpu0 := cputime.Self()
				for b.Loop() {
					out, failed, err := tr.Process(ctx, in)
					if err != nil || len(failed) > 0 || len(out) != len(in) {
						b.Fatalf("Process: %d out, %v failed, %v", len(out), failed, err)
					}
				}
				report(b, len(in), cpu0)
			})
		}
	}
	b.Run("enrich/native-go", func(b *testing.B) {
		cpu0 := cputime.Self()
		for b.Loop() {
			if out := nativeEnrich(in, "site", `"lab-1"`); len(out) != len(in) {
				b.Fatal("lost records")
			}
		}
		report(b, len(in), cpu0)
	})
}

// BenchmarkEnrichVsNative measures each language's enrich against native
// Go enrich as a ratio, robustly on a noisy machine: every round times a
// slice of each, back to back, and the reported x-native is the median of
// the rounds' ratios (wall clock), with the median ns/record of each.
//
//	go test ./plugins/conformance -run '^$' -bench EnrichVsNative -benchtime 200x
func BenchmarkEnrichVsNative(b *testing.B) {
	in := make(pipeline.Batch, benchBatchSize)
	for i := range in {
		in[i] = pipeline.Record{Value: []byte(benchRecord), ID: pipeline.ID{Device: "dev-000123", Seq: uint64(i)}}
	}
	const calls = 8 // per slice
	for _, lang := range langs {
		b.Run(lang, func(b *testing.B) {
			cfg, err := transformConfig(module(lang, "enrich"), `{"site":"lab-1"}`)
			if err != nil {
				b.Fatal(err)
			}
			tr, err := wasm.New(context.Background(), cfg, testEnv())
			if err != nil {
				b.Fatal(err)
			}
			defer tr.Close(context.Background())
			ctx := context.Background()
			guest := func() {
				out, failed, err := tr.Process(ctx, in)
				if err != nil || len(failed) > 0 || len(out) != len(in) {
					b.Fatalf("Process: %d out, %v failed, %v", len(out), failed, err)
				}
			}
			native := func() {
				if out := nativeEnrich(in, "site", `"lab-1"`); len(out) != len(in) {
					b.Fatal("lost records")
				}
			}
			slice := func(f func()) float64 {
				t0 := time.Now()
				for range calls {
					f()
				}
				return float64(time.Since(t0).Nanoseconds()) / float64(calls*len(in))
			}
			guest() // warm up
			var g, n, r []float64
			for b.Loop() {
				gt, nt := slice(guest), slice(native)
				g, n, r = append(g, gt), append(n, nt), append(r, gt/nt)
			}
			b.ReportMetric(median(r), "x-native")
			b.ReportMetric(median(g), "ns/record")
			b.ReportMetric(median(n), "native-ns/record")
		})
	}
}

func median(x []float64) float64 {
	s := slices.Clone(x)
	slices.Sort(s)
	return s[len(s)/2]
}

// report adds ns/record (wall clock) and cpu-ns/record (CPU time of the
// whole process, GC included: steadier than wall time on a busy machine).
func report(b *testing.B, n int, cpu0 time.Duration) {
	records := float64(b.N * n)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/records, "ns/record")
	b.ReportMetric(float64((cputime.Self()-cpu0).Nanoseconds())/records, "cpu-ns/record")
}

// nativeEnrich is enrich written in Go against pipeline.Batch, with the
// same byte-level edits as the SDKs: the field is replaced in place or
// appended, and temp_f appended. It builds a new value per record, as a
// transform must (values are shared with other stages).
func nativeEnrich(in pipeline.Batch, name, raw string) pipeline.Batch {
	out := make(pipeline.Batch, len(in))
	for i := range in {
		v := in[i].Value
		nv := make([]byte, 0, len(v)+48)
		if f := gjson.GetBytes(v, name); f.Exists() {
			nv = append(nv, v[:f.Index]...)
			nv = append(nv, raw...)
			nv = append(nv, v[f.Index+len(f.Raw):]...)
		} else {
			end := len(v) - 1 // the closing brace of a compact object
			nv = append(nv, v[:end]...)
			nv = fmt.Appendf(nv, `,%q:%s}`, name, raw)
		}
		if t := gjson.GetBytes(nv, "temp"); t.Type == gjson.Number {
			nv = append(nv[:len(nv)-1], `,"temp_f":`...)
			nv = strconv.AppendFloat(nv, t.Num*9/5+32, 'f', -1, 64)
			nv = append(nv, '}')
		}
		out[i] = in[i]
		out[i].Value = nv
	}
	return out
}

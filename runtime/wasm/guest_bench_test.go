package wasm

import (
	"context"
	"testing"
	"time"
)

// BenchmarkGuestCall measures one call of sluice_process on 1024 records
// (encode, call, check; no emit): mostly the guest's own time.
func BenchmarkGuestCall(b *testing.B) {
	for _, c := range []struct {
		name string
		cfg  Config
	}{
		{"identity", Config{}},
		{"enrich", Config{Config: map[string]any{"site": "lab-1"}, Timeout: 30 * time.Second}},
		{"hostile", Config{}},
	} {
		b.Run(c.name, func(b *testing.B) {
			c.cfg.BatchSize = 1024
			tr := newT(b, c.name, c.cfg)
			g, _ := tr.acquire()
			defer tr.release(g)
			in, err := g.get(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			defer g.put(in)
			recs := benchBatch(1024)
			for b.Loop() {
				if _, err := in.call(context.Background(), recs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*1024), "ns/record")
		})
	}
}

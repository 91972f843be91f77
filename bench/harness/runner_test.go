package harness

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/registry"
)

// BenchmarkRunner is the pipeline runner's hot path without I/O: a memory
// source (batches of 512, an Ack per record, as the WebSocket source
// makes them) → [the enrich module] → a sink that accepts everything.
// Run with -benchmem; allocs/op is per record (one op = one record).
//
//	go test -run XXX -bench Runner -benchmem ./bench/harness
func BenchmarkRunner(b *testing.B) {
	corpus := Corpus(10_000, 64)
	ctx := context.Background()
	for _, c := range []struct {
		name   string
		module string
	}{{"no-transform", ""}, {"enrich", buildEnrich(b)}} {
		b.Run(c.name, func(b *testing.B) {
			p, src, err := RunnerPipeline(ctx, corpus, b.N, c.module, map[string]any{"site": "lab-1"})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			if err := p.Run(ctx); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if got := src.settled.Load(); got != int64(b.N) || src.failed.Load() > 0 {
				b.Fatalf("%d of %d settled, %d failed", got, b.N, src.failed.Load())
			}
		})
	}
}

var enrichPath string

func buildEnrich(b *testing.B) string {
	if enrichPath != "" {
		return enrichPath
	}
	dir, err := os.MkdirTemp("", "sluice-bench-")
	if err != nil {
		b.Fatal(err)
	}
	out := filepath.Join(dir, "enrich.wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", out, ".")
	cmd.Dir = "../../plugins/examples/go/enrich"
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if o, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build enrich: %v\n%s", err, o)
	}
	enrichPath = out
	return out
}

func TestCorpusShape(t *testing.T) {
	recs := Corpus(1000, 10)
	if n := AvgSize(recs); n < 185 || n > 215 {
		t.Fatalf("records are %.0f bytes on average, want about 200", n)
	}
	rows, err := Decode(recs)
	if err != nil {
		t.Fatal(err)
	}
	if rows[3].DeviceID != "raw-0003" || rows[3].Kind != "reading" || rows[3].Msg == "" {
		t.Fatalf("decoded %+v", rows[3])
	}
}

func TestRate10to90(t *testing.T) {
	tests := []struct {
		name string
		n    int64
		want float64
	}{
		{name: "linear", n: 1000, want: 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ss []sample
			t0 := timeZero()
			for i := range 11 {
				ss = append(ss, sample{t: t0.Add(secs(i)), acked: int64(i * 100)})
			}
			got := rate10to90(ss, func(s sample) int64 { return s.acked }, 0, tt.n)
			if got < tt.want*0.999 || got > tt.want*1.001 {
				t.Fatalf("rate: got %v, want %v", got, tt.want)
			}
		})
	}
}

func timeZero() time.Time      { return time.Unix(1_700_000_000, 0) }
func secs(i int) time.Duration { return time.Duration(i) * time.Second }

func TestPipelineYAML(t *testing.T) {
	tests := []struct {
		name string
		tune Tuning
	}{
		{name: "default"},
		{name: "tuned", tune: Tuning{KafkaBatch: 5000, KafkaInFlight: 1, WASMTimeout: "1s", CHCompression: "lz4"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			mod := filepath.Join(dir, "enrich.wasm")
			if err := os.WriteFile(mod, []byte("\x00asm\x01\x00\x00\x00"), 0o644); err != nil {
				t.Fatal(err)
			}
			y := PipelineYAML("127.0.0.1:1", "127.0.0.1:2", mod, []string{"127.0.0.1:9092"}, "127.0.0.1:9000", "t", "t_dead", "tbl", "g", tt.tune)
			path := filepath.Join(dir, "pipeline.yaml")
			if err := os.WriteFile(path, []byte(y), 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := pipeline.Load(path)
			if err != nil {
				t.Fatalf("load: %v\n%s", err, y)
			}
			if err := registry.Default().Check(f, dir); err != nil {
				t.Fatalf("check: %v\n%s", err, y)
			}
		})
	}
}

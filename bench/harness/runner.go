package harness

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/runtime/wasm"
)

// memSource emits n records in batches of size, each with its own Ack as
// the WebSocket source makes them, and counts the settled ones.
type memSource struct {
	corpus  [][]byte
	n, size int
	settled atomic.Int64
	failed  atomic.Int64
}

func (s *memSource) Run(ctx context.Context, out chan<- pipeline.Batch) error {
	now := time.Now()
	for sent := 0; sent < s.n; {
		k := min(s.size, s.n-sent)
		b := make(pipeline.Batch, k)
		for i := range b {
			seq := uint64(sent + i)
			b[i] = pipeline.Record{Value: s.corpus[(sent+i)%len(s.corpus)], ID: pipeline.ID{Device: "raw-0001", Seq: seq}, Received: now,
				Ack: pipeline.NewAck(func(err error) {
					if err != nil {
						s.failed.Add(1)
					}
					s.settled.Add(1)
				})}
		}
		select {
		case out <- b:
		case <-ctx.Done():
			return nil
		}
		sent += k
	}
	return nil
}

func (s *memSource) Close(context.Context) error { return nil }

// nullSink accepts every batch at once; its limits are the Kafka sink's.
type nullSink struct{ n atomic.Int64 }

func (s *nullSink) Write(_ context.Context, b pipeline.Batch) error {
	s.n.Add(int64(len(b)))
	return nil
}
func (s *nullSink) Close(context.Context) error       { return nil }
func (s *nullSink) BatchLimits() (int, time.Duration) { return 1000, 5 * time.Millisecond }
func (s *nullSink) String() string                    { return "null" }

var _ interface{ BatchLimits() (int, time.Duration) } = (*nullSink)(nil)

// RunnerPipeline builds the in-memory pipeline of RunnerLeg: source →
// wasm module → null sink.
func RunnerPipeline(ctx context.Context, corpus [][]byte, n int, module string, config map[string]any) (*pipeline.Pipeline, *memSource, error) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	env := pipeline.Env{Logger: log}
	src := &memSource{corpus: corpus, n: n, size: 512}
	p := &pipeline.Pipeline{Name: "bench", Source: src, Logger: log, DrainTimeout: time.Minute,
		Sinks: []pipeline.Stage[pipeline.Sink]{{Name: "sinks[0].null", C: &nullSink{}}}}
	if module != "" {
		t, err := wasm.New(ctx, wasm.Config{Module: module, Config: config}, env)
		if err != nil {
			return nil, nil, err
		}
		p.Transforms = []pipeline.Stage[pipeline.Transform]{{Name: "transforms[0].wasm", C: t}}
	}
	return p, src, nil
}

// RunnerLeg runs n records through pipeline.Pipeline.Run with an
// in-memory source (batches of 512, an Ack per record), the enrich
// module, and a sink that accepts everything: the runner's own cost and
// allocations per record, without any network.
func RunnerLeg(ctx context.Context, m *Meter, corpus [][]byte, n int, module string) Leg {
	detail := "pipeline.Run: memory source (512/batch, Ack per record) → wasm enrich → null sink (1000/5ms); no I/O"
	name := "runner + enrich (no I/O)"
	if module == "" {
		name, detail = "runner (no I/O)", "pipeline.Run: memory source (512/batch, Ack per record) → null sink; no transform, no I/O"
	}
	p, src, err := RunnerPipeline(ctx, corpus, n, module, map[string]any{"site": "lab-1"})
	if err != nil {
		return Leg{Name: name, Detail: detail, Err: err.Error()}
	}
	return measure(m, name, detail, false, func() (legRun, error) {
		start := time.Now()
		if err := p.Run(ctx); err != nil {
			return legRun{}, err
		}
		el := time.Since(start)
		if got := src.settled.Load(); got != int64(n) || src.failed.Load() > 0 {
			return legRun{records: got, elapsed: el}, fmt.Errorf("%d of %d settled, %d failed", got, n, src.failed.Load())
		}
		return legRun{records: int64(n), elapsed: el}, nil
	})
}

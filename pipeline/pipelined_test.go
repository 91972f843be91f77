package pipeline

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"
)

// pipelinedSink is a Pipeliner like the Kafka sink: started writes go
// through one queue, in order, each taking a random few hundred
// microseconds; every failEvery-th of them fails as a whole. It records the
// values it stored, in order.
type pipelinedSink struct {
	inFlight, failEvery int
	queue               chan *fakeWrite
	mu                  sync.Mutex
	calls, running, max int
	got                 []int
}

type fakeWrite struct {
	b    Batch
	err  error
	done chan struct{}
}

func newPipelinedSink(inFlight, failEvery int) *pipelinedSink {
	s := &pipelinedSink{inFlight: inFlight, failEvery: failEvery, queue: make(chan *fakeWrite, 100)}
	go func() {
		for w := range s.queue {
			time.Sleep(time.Duration(rand.IntN(500)) * time.Microsecond)
			w.err = s.store(w.b)
			close(w.done)
		}
	}()
	return s
}

func (s *pipelinedSink) store(b Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.failEvery > 0 && s.calls%s.failEvery == 0 {
		return errors.New("broker not available")
	}
	for _, r := range b {
		v, _ := strconv.Atoi(string(r.Value))
		s.got = append(s.got, v)
	}
	return nil
}

func (s *pipelinedSink) MaxInFlight() int                  { return s.inFlight }
func (s *pipelinedSink) BatchLimits() (int, time.Duration) { return 10, time.Millisecond }
func (s *pipelinedSink) Close(context.Context) error       { close(s.queue); return nil }

func (s *pipelinedSink) Start(_ context.Context, b Batch) func() error {
	s.mu.Lock()
	s.running++
	s.max = max(s.max, s.running)
	s.mu.Unlock()
	w := &fakeWrite{b: b, done: make(chan struct{})}
	s.queue <- w
	return func() error {
		<-w.done
		s.mu.Lock()
		s.running--
		s.mu.Unlock()
		return w.err
	}
}

func (s *pipelinedSink) Write(ctx context.Context, b Batch) error { return s.Start(ctx, b)() }

// TestPipelinedWritesKeepOrder: with several writes in flight and some
// failing, every record is acked once, and the last copy of every record
// in the sink comes in the order the records came.
func TestPipelinedWritesKeepOrder(t *testing.T) {
	for _, failEvery := range []int{0, 7, 3} {
		t.Run("fail every "+strconv.Itoa(failEvery), func(t *testing.T) {
			const n = 3000
			src := &fakeSource{n: n, batch: 10, outcome: map[int][]error{}}
			sink := newPipelinedSink(4, failEvery)
			p := &Pipeline{Name: "test", Source: src, Sinks: []Stage[Sink]{{Name: "k", C: sink}}, Logger: quiet()}
			p.retryBase = time.Millisecond
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error)
			go func() { done <- p.Run(ctx) }()
			deadline := time.Now().Add(30 * time.Second)
			for src.settled() < n && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			for i := range n {
				if outs := src.outcome[i]; len(outs) != 1 || outs[0] != nil {
					t.Fatalf("record %d settled with %v, want once with nil", i, outs)
				}
			}
			// The last copy of each record, in the sink's order.
			last := map[int]int{}
			for pos, v := range sink.got {
				last[v] = pos
			}
			if len(last) != n {
				t.Fatalf("sink holds %d distinct records, want %d", len(last), n)
			}
			for v := 1; v < n; v++ {
				if last[v] < last[v-1] {
					t.Fatalf("the last copy of record %d is before the last copy of record %d", v, v-1)
				}
			}
			if sink.max < 2 || sink.max > 4 {
				t.Fatalf("at most %d writes ran at once, want 2 to 4", sink.max)
			}
			if failEvery == 0 && len(sink.got) != n {
				t.Fatalf("no failures, but the sink holds %d records for %d", len(sink.got), n)
			}
			t.Logf("%d calls, %d records written for %d, up to %d at once", sink.calls, len(sink.got), n, sink.max)
		})
	}
}

package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"
)

// fakeSource emits records "0".."n-1" in batches and records each outcome.
type fakeSource struct {
	n, batch int
	mu       sync.Mutex
	outcome  map[int][]error
	closed   bool
}

func (s *fakeSource) Run(ctx context.Context, out chan<- Batch) error {
	for i := 0; i < s.n; {
		var b Batch
		for ; i < s.n && len(b) < s.batch; i++ {
			i := i
			b = append(b, Record{Value: []byte(strconv.Itoa(i)), ID: ID{Device: "d", Seq: uint64(i)},
				Ack: NewAck(func(err error) {
					s.mu.Lock()
					s.outcome[i] = append(s.outcome[i], err)
					s.mu.Unlock()
				})})
		}
		select {
		case out <- b:
		case <-ctx.Done():
			return nil
		}
	}
	<-ctx.Done()
	return nil
}

func (s *fakeSource) Close(context.Context) error { s.closed = true; return nil }

func (s *fakeSource) settled() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.outcome)
}

// splitFilterFail splits multiples of 2 into two records, filters multiples
// of 3, and fails multiples of 7 (in that order of precedence: 7, 3, 2).
type splitFilterFail struct{}

func (splitFilterFail) Process(_ context.Context, in Batch) (Batch, []Failed, error) {
	var out Batch
	var failed []Failed
	for _, r := range in {
		n, _ := strconv.Atoi(string(r.Value))
		switch {
		case n%7 == 0:
			failed = append(failed, Failed{Record: r, Err: fmt.Errorf("seven %d", n)})
		case n%3 == 0:
			r.Ack.Done(nil)
		case n%2 == 0:
			r.Ack.Add(1)
			out = append(out, r, r)
		default:
			out = append(out, r)
		}
	}
	return out, failed, nil
}

func (splitFilterFail) Close(context.Context) error { return nil }

// fakeSink fails its first transient writes, rejects values in reject, and
// records what it accepted.
type fakeSink struct {
	mu        sync.Mutex
	transient int
	reject    map[string]bool
	got       []string
	calls     int
}

func (s *fakeSink) Write(_ context.Context, b Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.transient > 0 {
		s.transient--
		return errors.New("connection refused")
	}
	re := RecordErrors{}
	for i, r := range b {
		if s.reject[string(r.Value)] {
			re[i] = fmt.Errorf("rejected %s", r.Value)
			continue
		}
		s.got = append(s.got, string(r.Value))
	}
	if len(re) > 0 {
		return re
	}
	return nil
}

func (s *fakeSink) Close(context.Context) error { return nil }
func (s *fakeSink) BatchLimits() (int, time.Duration) {
	return 50, time.Millisecond
}

func (s *fakeSink) values() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.got...)
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestRunAcksEveryRecordOnce(t *testing.T) {
	const n = 2000
	src := &fakeSource{n: n, batch: 37, outcome: map[int][]error{}}
	a := &fakeSink{transient: 2}
	b := &fakeSink{reject: map[string]bool{"11": true}}
	dead := &fakeSink{}
	p := &Pipeline{
		Name:       "test",
		Source:     src,
		Transforms: []Stage[Transform]{{Name: "t0", C: splitFilterFail{}}},
		Sinks:      []Stage[Sink]{{Name: "a", C: a}, {Name: "b", C: b}},
		DeadLetter: dead,
		Workers:    4,
		Logger:     quiet(),
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for src.settled() < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !src.closed {
		t.Fatal("source not closed")
	}

	var want []string
	for i := range n {
		outs := src.outcome[i]
		if len(outs) != 1 {
			t.Fatalf("record %d settled %d times, want once", i, len(outs))
		}
		err := outs[0]
		switch {
		case i%7 == 0:
			if err == nil || err.Error() != fmt.Sprintf("t0: seven %d", i) {
				t.Fatalf("record %d: got %v, want the transform's error", i, err)
			}
		case i == 11:
			if err == nil || err.Error() != "b: rejected 11" {
				t.Fatalf("record 11: got %v, want sink b's rejection", err)
			}
		case err != nil:
			t.Fatalf("record %d: unexpected error %v", i, err)
		}
		switch {
		case i%7 == 0, i%3 == 0:
		case i%2 == 0:
			want = append(want, strconv.Itoa(i), strconv.Itoa(i))
		default:
			want = append(want, strconv.Itoa(i))
		}
	}
	if got := a.values(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("sink a got %d records, want %d in order", len(got), len(want))
	}
	if a.calls < 3 {
		t.Fatalf("sink a: %d calls, want retries after its transient failures", a.calls)
	}
	// 0,7,14,… from the transform, plus 11 from sink b.
	if got, want := len(dead.values()), (n+6)/7+1; got != want {
		t.Fatalf("dead letters: got %d, want %d", got, want)
	}
}

// stuckSink never succeeds.
type stuckSink struct{ calls int }

func (s *stuckSink) Write(ctx context.Context, b Batch) error { s.calls++; return errors.New("down") }
func (s *stuckSink) Close(context.Context) error              { return nil }

func TestRunDrainTimeoutLeavesRecordsUnacked(t *testing.T) {
	src := &fakeSource{n: 10, batch: 10, outcome: map[int][]error{}}
	p := &Pipeline{
		Name: "stuck", Source: src,
		Sinks:        []Stage[Sink]{{Name: "s", C: &stuckSink{}}},
		DrainTimeout: 300 * time.Millisecond,
		Logger:       quiet(),
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("stop took %v, want about the 300ms drain timeout", took)
	}
	if got := src.settled(); got != 0 {
		t.Fatalf("%d records were settled by a sink that never wrote them", got)
	}
}

// waitingSource is a source whose Close, like the WebSocket source's, waits
// until its context ends for records that are not settled.
type waitingSource struct{ fakeSource }

func (s *waitingSource) Close(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

// ctxSink never writes and records whether Close got a live context.
type ctxSink struct {
	stuckSink
	closedLive bool
}

func (s *ctxSink) Close(ctx context.Context) error {
	s.closedLive = ctx.Err() == nil
	return ctx.Err()
}

// After a drain that timed out nothing settles any more: closing must not
// wait a second DrainTimeout for it, and the sinks must still get a live
// context to close with.
func TestRunClosesPromptlyAfterTheDrainTimesOut(t *testing.T) {
	defer func(g time.Duration) { closeGrace = g }(closeGrace)
	closeGrace = 200 * time.Millisecond
	src := &waitingSource{fakeSource{n: 10, batch: 10, outcome: map[int][]error{}}}
	sink := &ctxSink{}
	p := &Pipeline{
		Name: "stuck", Source: src,
		Sinks:        []Stage[Sink]{{Name: "s", C: sink}},
		DrainTimeout: time.Second,
		Logger:       quiet(),
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	// DrainTimeout, then closeGrace for the source; not DrainTimeout twice.
	if took, limit := time.Since(start), p.DrainTimeout+closeGrace+500*time.Millisecond; took > limit {
		t.Fatalf("stop took %v, want at most %v", took, limit)
	}
	if !sink.closedLive {
		t.Fatal("the sink was closed with an ended context")
	}
	if got := src.settled(); got != 0 {
		t.Fatalf("%d records were settled by a sink that never wrote them", got)
	}
}

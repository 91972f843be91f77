package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// Pipeline is one source, its transforms in order, and its sinks, built from
// a Spec and ready to run.
type Pipeline struct {
	Name       string
	Source     Source
	Transforms []Stage[Transform]
	Sinks      []Stage[Sink]
	// DeadLetter receives records that failed for good, wrapped in an
	// envelope that names the stage and the error. Nil logs them instead.
	DeadLetter Sink
	// Workers is how many batches each transform processes at once
	// (default: the number of CPUs).
	Workers int
	// DrainTimeout bounds how long Run waits, once ctx is done, for records
	// in flight to reach their sinks (default 10s). Records still in flight
	// then are left unacknowledged, so their sources deliver them again,
	// and closing the components takes at most closeGrace more.
	DrainTimeout time.Duration
	Logger       *slog.Logger
	Metrics      prometheus.Registerer

	retryBase time.Duration // first backoff after a failed write (default 100ms; tests)
}

// Stage is a named component; the name is the component's place in the
// file, e.g. "sinks[0].kafka", used in logs, metrics and errors.
type Stage[T any] struct {
	Name string
	C    T
}

// Limiter is implemented by sinks that want their batches bounded: the
// runner hands a sink at most maxRecords records at a time, and waits at
// most maxWait after the first record of a batch before writing it.
type Limiter interface {
	BatchLimits() (maxRecords int, maxWait time.Duration)
}

// Pipeliner is implemented by sinks that can have several writes in flight.
// The runner calls Start in the order of the records, from one goroutine,
// for up to MaxInFlight writes at once, and settles them in that order; a
// Pipeliner must store the records of writes that succeed in the order
// they were started (Kafka: per partition). After a write fails as a whole,
// the runner starts nothing new, retries the failed batch with Write until
// it succeeds, and then writes again, in order, every later batch that was
// already in flight, even those that had succeeded: the sink may then hold
// a record twice, but the last copy of every record is in the order the
// records came, as with a sink written one batch at a time.
type Pipeliner interface {
	// MaxInFlight is how many writes may be in flight at once.
	MaxInFlight() int
	// Start begins writing b and returns a function that waits until the
	// write has ended and returns what Write would have.
	Start(ctx context.Context, b Batch) (wait func() error)
}

// closeGrace bounds closing the components after a drain that timed out:
// flushing acks, committing offsets, releasing connections. A variable for
// tests.
var closeGrace = 2 * time.Second

// Default batch limits for sinks that do not implement Limiter.
const (
	DefaultMaxRecords = 1000
	DefaultMaxWait    = 5 * time.Millisecond
)

// Run runs the pipeline until ctx is done or the source fails, then drains:
// the source stops reading, records in flight go through to the sinks
// (bounded by DrainTimeout), the source is closed (acks flushed, offsets
// committed), and every component is closed. After a drain that timed out,
// closing is bounded by closeGrace, so Run returns about DrainTimeout plus
// a couple of seconds after ctx is done at worst. It returns the source's
// error, if any, joined with errors from closing.
func (p *Pipeline) Run(ctx context.Context) error {
	log := p.Logger
	if log == nil {
		log = slog.Default()
	}
	workers := p.Workers
	if workers <= 0 {
		workers = runtime.NumCPU()
	}
	drainTimeout := p.DrainTimeout
	if drainTimeout <= 0 {
		drainTimeout = 10 * time.Second
	}
	m := newMetrics(p.Metrics)

	// runCtx stops the source; drainCtx stops everything else, DrainTimeout
	// after runCtx is done.
	runCtx, stopSource := context.WithCancel(ctx)
	defer stopSource()
	drainCtx, stopDrain := context.WithCancel(context.WithoutCancel(ctx))
	defer stopDrain()
	var drainTimer *time.Timer
	var timerMu sync.Mutex
	stopAfter := context.AfterFunc(runCtx, func() {
		timerMu.Lock()
		drainTimer = time.AfterFunc(drainTimeout, stopDrain)
		timerMu.Unlock()
	})
	defer func() {
		stopAfter()
		timerMu.Lock()
		if drainTimer != nil {
			drainTimer.Stop()
		}
		timerMu.Unlock()
	}()

	dl := &deadLetters{p: p, log: log, m: m, in: make(chan Failed, 1024)}
	dlDone := make(chan struct{})
	go func() { defer close(dlDone); dl.run(drainCtx) }()

	var wg sync.WaitGroup
	var srcErr error
	fromSource := make(chan Batch, 4)
	src := make(chan Batch)
	go relay(fromSource, src, m.records.WithLabelValues(p.Name, "source", "in"))
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(fromSource)
		if err := p.Source.Run(runCtx, fromSource); err != nil && !errors.Is(err, context.Canceled) {
			srcErr = fmt.Errorf("pipeline %s: source: %w", p.Name, err)
			log.Error("source failed; stopping the pipeline", "err", err)
			stopSource()
		}
	}()

	var in <-chan Batch = src
	for _, t := range p.Transforms {
		out := make(chan Batch, workers)
		wg.Add(1)
		go func(t Stage[Transform], in <-chan Batch) {
			defer wg.Done()
			p.runTransform(drainCtx, t, workers, in, out, dl, m, log)
		}(t, in)
		in = out
	}

	sinkIns := make([]chan Batch, len(p.Sinks))
	for i, s := range p.Sinks {
		sinkIns[i] = make(chan Batch, 4)
		wg.Add(1)
		go func(s Stage[Sink], in <-chan Batch) {
			defer wg.Done()
			p.runSink(drainCtx, s, in, dl, m, log)
		}(s, sinkIns[i])
	}
	wg.Add(1)
	go func(in <-chan Batch) {
		defer wg.Done()
		fanOut(in, sinkIns)
	}(in)

	wg.Wait()
	close(dl.in)
	<-dlDone

	// Every stage has stopped, so nothing will be settled any more. If the
	// drain timed out, the records still in flight stay unacknowledged for
	// good: closing must not wait for them a second time, only flush the
	// acks of what was settled, commit offsets and release connections,
	// within closeGrace. The source and the other components get separate
	// deadlines, so that a slow source does not leave the others an ended
	// context.
	closeTimeout := drainTimeout
	if drainCtx.Err() != nil {
		closeTimeout = min(drainTimeout, closeGrace)
	}
	var errs []error
	if srcErr != nil {
		errs = append(errs, srcErr)
	}
	srcCtx, cancelSrc := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
	err := p.Source.Close(srcCtx)
	cancelSrc()
	if err != nil {
		errs = append(errs, fmt.Errorf("pipeline %s: close source: %w", p.Name, err))
	}
	closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
	defer cancel()
	for _, t := range p.Transforms {
		if err := t.C.Close(closeCtx); err != nil {
			errs = append(errs, fmt.Errorf("pipeline %s: close %s: %w", p.Name, t.Name, err))
		}
	}
	for _, s := range p.Sinks {
		if err := s.C.Close(closeCtx); err != nil {
			errs = append(errs, fmt.Errorf("pipeline %s: close %s: %w", p.Name, s.Name, err))
		}
	}
	if p.DeadLetter != nil {
		if err := p.DeadLetter.Close(closeCtx); err != nil {
			errs = append(errs, fmt.Errorf("pipeline %s: close dead_letter: %w", p.Name, err))
		}
	}
	return errors.Join(errs...)
}

// relay passes batches from in to out, counting their records.
func relay(in <-chan Batch, out chan<- Batch, c prometheus.Counter) {
	defer close(out)
	for b := range in {
		c.Add(float64(len(b)))
		out <- b
	}
}

// fanOut hands every batch to every sink, owing one delivery per sink.
func fanOut(in <-chan Batch, outs []chan Batch) {
	defer func() {
		for _, o := range outs {
			close(o)
		}
	}()
	extra := len(outs) - 1
	for b := range in {
		if extra > 0 {
			for i := range b {
				b[i].Ack.Add(extra)
			}
		}
		for _, o := range outs {
			o <- b
		}
	}
}

type result struct {
	out    Batch
	failed []Failed
	err    error
	n      int
}

// runTransform processes batches on up to workers goroutines and emits the
// results in input order, so records keep their order through the stage.
func (p *Pipeline) runTransform(ctx context.Context, t Stage[Transform], workers int, in <-chan Batch, out chan<- Batch, dl *deadLetters, m *metrics, log *slog.Logger) {
	defer close(out)
	order := make(chan chan result, workers)
	go func() {
		defer close(order)
		for b := range in {
			slot := make(chan result, 1)
			order <- slot
			go func(b Batch) {
				o, f, err := t.C.Process(ctx, b)
				slot <- result{out: o, failed: f, err: err, n: len(b)}
			}(b)
		}
	}()
	outCount := m.records.WithLabelValues(p.Name, t.Name, "out")
	failCount := m.records.WithLabelValues(p.Name, t.Name, "failed")
	for slot := range order {
		r := <-slot
		if r.err != nil {
			// ctx ended: the batch was not processed and stays unacked.
			log.Warn("transform abandoned a batch; its records stay unacknowledged", "stage", t.Name, "records", r.n, "err", r.err)
			continue
		}
		for _, f := range r.failed {
			failCount.Inc()
			dl.send(t.Name, f.Record, f.Err)
		}
		if len(r.out) > 0 {
			outCount.Add(float64(len(r.out)))
			out <- r.out
		}
	}
}

// runSink batches records for s and writes them, retrying with backoff. A
// batch builds up while the previous one is written, so batches grow with
// the sink's latency.
func (p *Pipeline) runSink(ctx context.Context, s Stage[Sink], in <-chan Batch, dl *deadLetters, m *metrics, log *slog.Logger) {
	maxRecords, maxWait := DefaultMaxRecords, DefaultMaxWait
	if l, ok := s.C.(Limiter); ok {
		maxRecords, maxWait = l.BatchLimits()
	}
	inFlight := 1
	pl, ok := s.C.(Pipeliner)
	if ok {
		inFlight = max(pl.MaxInFlight(), 1)
	}
	writes := make(chan Batch)
	done := make(chan struct{})
	go func() {
		defer close(done)
		chunks := make(chan Batch)
		go func() {
			defer close(chunks)
			for b := range writes {
				for len(b) > 0 {
					n := min(len(b), maxRecords)
					chunks <- b[:n]
					b = b[n:]
				}
			}
		}()
		if inFlight == 1 {
			for b := range chunks {
				p.write(ctx, s, b, 1, dl, m, log)
			}
			return
		}
		p.pipelineWrites(ctx, s, pl, inFlight, chunks, dl, m, log)
	}()
	defer func() {
		close(writes)
		<-done
	}()

	var buf Batch
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	ripe := false
	for {
		var send chan<- Batch
		if len(buf) >= maxRecords || (ripe && len(buf) > 0) {
			send = writes
		}
		recv := in
		if len(buf) >= maxRecords {
			recv = nil
		}
		select {
		case b, ok := <-recv:
			if !ok {
				if len(buf) > 0 {
					writes <- buf
				}
				return
			}
			if len(buf) == 0 {
				ripe = false
				timer.Reset(maxWait)
			}
			buf = append(buf, b...)
		case send <- buf:
			buf = make(Batch, 0, min(maxRecords, 2*len(buf)))
			ripe = false
			timer.Stop()
		case <-timer.C:
			ripe = true
		}
	}
}

// inFlightWrite is one write started by pipelineWrites: its batch, and the
// outcome of its first attempt once it is known.
type inFlightWrite struct {
	b    Batch
	err  error
	took time.Duration
	done chan struct{}
}

// pipelineWrites writes the batches from in to s with up to inFlight writes
// at once, settling them in order (see Pipeliner).
func (p *Pipeline) pipelineWrites(ctx context.Context, s Stage[Sink], pl Pipeliner, inFlight int, in <-chan Batch, dl *deadLetters, m *metrics, log *slog.Logger) {
	slots := make(chan struct{}, inFlight) // a token per write not yet settled
	order := make(chan *inFlightWrite, inFlight)
	go func() {
		defer close(order)
		for b := range in {
			slots <- struct{}{}
			w := &inFlightWrite{b: b, done: make(chan struct{})}
			start := time.Now()
			wait := pl.Start(ctx, b)
			go func() {
				defer close(w.done)
				w.err = wait()
				w.took = time.Since(start)
			}()
			order <- w
		}
	}()
	release := func(n int) {
		for range n {
			<-slots
		}
	}
	// After a failed write, rewrite counts the writes started before its
	// retry succeeded, still to be written again in order; until then no
	// new write starts: the collector holds every slot.
	rewrite := 0
	for w := range order {
		<-w.done
		if rewrite > 0 {
			p.write(ctx, s, w.b, 1, dl, m, log)
			if rewrite--; rewrite == 0 {
				release(inFlight)
			}
			continue
		}
		if p.settle(s, w.b, w.err, w.took, 1, dl, m, log) {
			release(1)
			continue
		}
		// Take every free slot, so that nothing new starts; the slots
		// taken by others are writes started before w's retry.
		mine := 0
	fill:
		for {
			select {
			case slots <- struct{}{}:
				mine++
			default:
				break fill
			}
		}
		if ctx.Err() == nil {
			m.writeErrors.WithLabelValues(p.Name, s.Name).Inc()
			log.Warn("sink write failed; retrying, then writing again the writes in flight after it", "stage", s.Name, "records", len(w.b), "in_flight", inFlight-1-mine, "err", w.err)
		}
		p.write(ctx, s, w.b, 2, dl, m, log)
		if rewrite = inFlight - 1 - mine; rewrite == 0 {
			release(inFlight)
		}
	}
}

// write writes b to s until it succeeds or ctx ends, then settles the acks.
// attempt numbers the first try (2 after a failed try elsewhere).
func (p *Pipeline) write(ctx context.Context, s Stage[Sink], b Batch, attempt int, dl *deadLetters, m *metrics, log *slog.Logger) {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 100 * time.Millisecond
	if p.retryBase > 0 {
		bo.InitialInterval = p.retryBase
	}
	bo.MaxInterval = 5 * time.Second
	for ; ; attempt++ {
		start := time.Now()
		err := s.C.Write(ctx, b)
		if p.settle(s, b, err, time.Since(start), attempt, dl, m, log) {
			return
		}
		if ctx.Err() != nil {
			log.Warn("stopping: records not written stay unacknowledged", "stage", s.Name, "records", len(b), "err", err)
			return
		}
		m.writeErrors.WithLabelValues(p.Name, s.Name).Inc()
		wait := bo.NextBackOff()
		log.Warn("sink write failed; retrying", "stage", s.Name, "records", len(b), "attempt", attempt, "retry_in", wait, "err", err)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			log.Warn("stopping: records not written stay unacknowledged", "stage", s.Name, "records", len(b))
			return
		}
	}
}

// settle settles the acks of b after a write that returned err, and reports
// whether it did: false means the write failed as a whole and b is to be
// written again.
func (p *Pipeline) settle(s Stage[Sink], b Batch, err error, took time.Duration, attempt int, dl *deadLetters, m *metrics, log *slog.Logger) bool {
	outCount := m.records.WithLabelValues(p.Name, s.Name, "out")
	if err == nil {
		m.writeTime.WithLabelValues(p.Name, s.Name).Observe(took.Seconds())
		outCount.Add(float64(len(b)))
		if attempt > 1 {
			log.Info("sink recovered", "stage", s.Name, "attempts", attempt)
		}
		b.Settle(nil)
		return true
	}
	re, ok := AsRecordErrors(err)
	if !ok {
		return false
	}
	failed := m.records.WithLabelValues(p.Name, s.Name, "failed")
	for i := range b {
		if e, bad := re[i]; bad {
			failed.Inc()
			dl.send(s.Name, b[i], e)
		} else {
			outCount.Inc()
			b[i].Ack.Done(nil)
		}
	}
	return true
}

// deadLetters writes failed records to the pipeline's dead-letter sink (or
// the log) and then settles them with their error.
type deadLetters struct {
	p   *Pipeline
	log *slog.Logger
	m   *metrics
	in  chan Failed
}

func (d *deadLetters) send(stage string, r Record, err error) {
	d.in <- Failed{Record: r, Err: fmt.Errorf("%s: %w", stage, err)}
}

func (d *deadLetters) run(ctx context.Context) {
	for f := range d.in {
		batch := []Failed{f}
	more:
		for len(batch) < DefaultMaxRecords {
			select {
			case f, ok := <-d.in:
				if !ok {
					break more
				}
				batch = append(batch, f)
			default:
				break more
			}
		}
		d.write(ctx, batch)
	}
}

func (d *deadLetters) write(ctx context.Context, batch []Failed) {
	counter := d.m.records.WithLabelValues(d.p.Name, "dead_letter", "dead_lettered")
	if d.p.DeadLetter == nil {
		for _, f := range batch {
			d.log.Warn("record failed", "device", f.Record.ID.Device, "seq", f.Record.ID.Seq, "err", f.Err)
			f.Record.Ack.Done(f.Err)
		}
		return
	}
	env := make(Batch, len(batch))
	for i, f := range batch {
		env[i] = Record{Value: Envelope(d.p.Name, f), Key: f.Record.Key, ID: f.Record.ID, Received: f.Record.Received}
	}
	// The dead-letter write has no acks of its own: settle the originals
	// once it is durable, or leave them unacknowledged if it never is. A
	// dead letter the dead-letter sink rejects too is logged and settled.
	bo := backoff.NewExponentialBackOff()
	for attempt := 1; ; attempt++ {
		err := d.p.DeadLetter.Write(ctx, env)
		if err == nil {
			break
		}
		if re, ok := AsRecordErrors(err); ok {
			d.log.Error("dead-letter sink rejected records", "err", re)
			break
		}
		if ctx.Err() != nil {
			d.log.Warn("stopping: dead letters not written stay unacknowledged", "records", len(batch), "err", err)
			return
		}
		wait := bo.NextBackOff()
		d.log.Warn("dead-letter write failed; retrying", "attempt", attempt, "retry_in", wait, "err", err)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return
		}
	}
	for _, f := range batch {
		counter.Inc()
		f.Record.Ack.Done(f.Err)
	}
}

// Envelope is the JSON written to the dead-letter output for a failed
// record: {"pipeline":…,"error":…,"device_id":…,"seq":…,"part":…,"record":…}.
func Envelope(pipeline string, f Failed) []byte {
	b := make([]byte, 0, len(f.Record.Value)+128)
	b = append(b, `{"pipeline":`...)
	b = strconv.AppendQuote(b, pipeline)
	b = append(b, `,"error":`...)
	msg, _ := json.Marshal(f.Err.Error())
	b = append(b, msg...)
	if !f.Record.ID.IsZero() {
		b = append(b, `,"device_id":`...)
		dev, _ := json.Marshal(f.Record.ID.Device)
		b = append(b, dev...)
		b = append(b, `,"seq":`...)
		b = strconv.AppendUint(b, f.Record.ID.Seq, 10)
		b = append(b, `,"part":`...)
		b = strconv.AppendUint(b, uint64(f.Record.ID.Part), 10)
	}
	b = append(b, `,"record":`...)
	if json.Valid(f.Record.Value) {
		b = append(b, f.Record.Value...)
	} else {
		raw, _ := json.Marshal(string(f.Record.Value))
		b = append(b, raw...)
	}
	return append(b, '}')
}

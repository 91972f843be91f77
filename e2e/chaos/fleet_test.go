package chaos

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/sluicehq/sluice/device"
)

// record renders the k-th record of a device (the client adds device_id
// and seq). Every tenth carries two readings, which the split transform
// turns into parts 1 and 2 of the record's identity.
func record(b []byte, k int) []byte {
	temp := float64(k%40-5) + 0.5
	b = fmt.Appendf(b, `{"ts":"2026-11-26T10:%02d:%02dZ","temp":%g,"note":"r%d"`, k/60%60, k%60, temp, k)
	if k%10 == 9 {
		b = fmt.Appendf(b, `,"readings":[%g,%g]`, temp+0.25, temp+0.75)
	}
	return append(b, '}')
}

// fleet is a set of in-process devices, each a device.Client with its
// outbox on disk, sending its share of the records.
type fleet struct {
	s       *scenario
	clients []*device.Client
	ids     []string
	per     []int
	last    []atomic.Uint64 // seq of the last record sent, per device
	events  *deviceEvents
	wg      sync.WaitGroup
	errs    chan error
	logFile *os.File
}

// deviceEvents counts what the clients log and report.
type deviceEvents struct {
	goingAway   atomic.Int64 // closes with status 1001 (Sluice shutting down)
	disconnects atomic.Int64 // any other disconnect
	mu          sync.Mutex
	nacked      map[string]map[uint64]bool
	reasons     []string
}

func (e *deviceEvents) nack(dev string, seq uint64, reason string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.nacked[dev] == nil {
		e.nacked[dev] = map[uint64]bool{}
	}
	e.nacked[dev][seq] = true
	if len(e.reasons) < 5 {
		e.reasons = append(e.reasons, fmt.Sprintf("%s/%d: %s", dev, seq, reason))
	}
}

// eventHandler is a slog.Handler for the clients' loggers: it counts
// disconnects by close status and writes warnings to devices.log.
type eventHandler struct {
	e     *deviceEvents
	out   slog.Handler
	attrs []slog.Attr
}

func (h *eventHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (h *eventHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "device: disconnected; reconnecting" {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "err" {
				if err, ok := a.Value.Any().(error); ok && websocket.CloseStatus(err) == websocket.StatusGoingAway {
					h.e.goingAway.Add(1)
				} else {
					h.e.disconnects.Add(1)
				}
				return false
			}
			return true
		})
	}
	if r.Level >= slog.LevelWarn {
		return h.out.WithAttrs(h.attrs).Handle(ctx, r)
	}
	return nil
}

func (h *eventHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &eventHandler{e: h.e, out: h.out, attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}

func (h *eventHandler) WithGroup(string) slog.Handler { return h }

// startFleet starts n devices sending total records between them, paced
// so that sending takes at least spread (0: as fast as the window allows).
func (s *scenario) startFleet(n, total int, spread time.Duration) *fleet {
	s.t.Helper()
	logFile, err := os.OpenFile(filepath.Join(s.dir, "devices.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	f := &fleet{
		s:       s,
		clients: make([]*device.Client, n),
		ids:     make([]string, n),
		per:     make([]int, n),
		last:    make([]atomic.Uint64, n),
		events:  &deviceEvents{nacked: map[string]map[uint64]bool{}},
		errs:    make(chan error, n),
		logFile: logFile,
	}
	s.t.Cleanup(f.close)
	log := slog.New(&eventHandler{e: f.events, out: slog.NewTextHandler(logFile, nil)})
	for i := range n {
		id := fmt.Sprintf("%s-%03d", s.name, i)
		f.ids[i] = id
		f.per[i] = total / n
		if i < total%n {
			f.per[i]++
		}
		c, err := device.New(s.url(), device.Options{
			DeviceID:  id,
			OutboxDir: filepath.Join(s.dir, "outbox", id),
			FirstSeq:  1,
			Logger:    log.With("device", id),
			OnNack: func(_ []byte, err *device.NackError) {
				f.events.nack(err.DeviceID, err.Seq, err.Reason)
			},
		})
		if err != nil {
			s.t.Fatal(err)
		}
		f.clients[i] = c
	}
	for i, c := range f.clients {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			var rate float64 // records per second for this device
			if spread > 0 {
				rate = float64(f.per[i]) / spread.Seconds()
			}
			start := time.Now()
			var buf []byte
			for k := range f.per[i] {
				if rate > 0 {
					due := start.Add(time.Duration(float64(k) / rate * float64(time.Second)))
					if d := time.Until(due); d > 0 {
						select {
						case <-time.After(d):
						case <-s.ctx.Done():
							f.errs <- fmt.Errorf("%s: %w after %d of %d records", f.ids[i], s.ctx.Err(), k, f.per[i])
							return
						}
					}
				}
				buf = record(buf[:0], k)
				seq, err := c.Send(s.ctx, buf)
				if err != nil {
					f.errs <- fmt.Errorf("%s: send record %d: %w", f.ids[i], k, err)
					return
				}
				f.last[i].Store(seq)
			}
		}()
	}
	return f
}

// total sums the clients' counters.
func (f *fleet) total() device.Stats {
	var t device.Stats
	for _, c := range f.clients {
		st := c.Stats()
		t.Sent += st.Sent
		t.Resent += st.Resent
		t.Acked += st.Acked
		t.Nacked += st.Nacked
		t.Inflight += st.Inflight
		t.Queued += st.Queued
		t.Connects += st.Connects
	}
	return t
}

func (f *fleet) acked() uint64 { return f.total().Acked }

// sendingDone reports whether every device has sent all its records.
func (f *fleet) sendingDone() bool {
	for i := range f.clients {
		if f.last[i].Load() < uint64(f.per[i]) {
			return false
		}
	}
	return true
}

// wantTotal is how many records the fleet sends in all.
func (f *fleet) wantTotal() uint64 {
	var n uint64
	for _, p := range f.per {
		n += uint64(p)
	}
	return n
}

// ackRecovery waits until the devices have more than base records acked,
// after a fault that ended at from, and records the recovery time.
func (f *fleet) ackRecovery(from time.Time, base uint64, limit time.Duration) (time.Duration, bool) {
	d, ok := f.s.waitProgress(from, base, limit, 20*time.Millisecond, f.acked)
	if ok {
		f.s.recovered(d)
	}
	return d, ok
}

// finish waits until every device has sent everything and has it all
// acknowledged (bounded by the scenario's deadline), and returns what each
// sent and had settled.
func (f *fleet) finish() []sent {
	s := f.s
	s.t.Helper()
	f.wg.Wait()
	close(f.errs)
	for err := range f.errs {
		s.t.Error(err)
	}
	var wg sync.WaitGroup
	for i, c := range f.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.Flush(s.ctx); err != nil {
				s.t.Errorf("%s: not every record acknowledged: %v (stats %+v)", f.ids[i], err, c.Stats())
			}
		}()
	}
	wg.Wait()
	return f.sent()
}

// sent returns, per device, the seqs sent and settled so far.
func (f *fleet) sent() []sent {
	out := make([]sent, len(f.clients))
	f.events.mu.Lock()
	defer f.events.mu.Unlock()
	for i, c := range f.clients {
		st := c.Stats()
		last := f.last[i].Load()
		// The outbox holds the unsettled records in seq order: everything
		// before them is settled.
		upTo := last - uint64(st.Queued)
		out[i] = sent{device: f.ids[i], last: last, ackedUpTo: upTo, nacked: map[uint64]bool{}}
		for seq := range f.events.nacked[f.ids[i]] {
			if seq <= upTo {
				out[i].nacked[seq] = true
			}
		}
	}
	return out
}

func (f *fleet) close() {
	for _, c := range f.clients {
		if c != nil {
			c.Close()
		}
	}
	f.logFile.Close()
}

package harness

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/tidwall/gjson"
)

// Subscriber is one WebSocket subscriber of the subscriptions endpoint. It
// counts the records it receives once each (per device, seqs only grow:
// a device's records stay in order in one partition), resumes from its
// last position when it is disconnected, and measures device→subscriber
// latency from each record's ts (stamped by the device just before Send).
type Subscriber struct {
	url   string
	count atomic.Int64
	// Latency window, on the records' send times (unix ns).
	from, to atomic.Int64
	Lat      Latencies

	Reconnects atomic.Int64
	Lagged     atomic.Int64
	Frames     atomic.Int64

	mu    sync.Mutex
	ready chan struct{}
	once  sync.Once
	err   error
}

// NewSubscriber returns a subscriber of topic at base
// (ws://host:port/subscribe).
func NewSubscriber(base, topic string) *Subscriber {
	return &Subscriber{url: base + "?topic=" + url.QueryEscape(topic), ready: make(chan struct{})}
}

// Count is how many distinct records arrived.
func (s *Subscriber) Count() int64 { return s.count.Load() }

// StopMeasuring ends the latency window.
func (s *Subscriber) StopMeasuring() { s.from.Store(0) }

// Measure sets the window of send times whose records are measured.
func (s *Subscriber) Measure(from, to time.Time) {
	s.from.Store(from.UnixNano())
	s.to.Store(to.UnixNano())
}

// Ready waits until the first subscription is confirmed.
func (s *Subscriber) Ready(ctx context.Context, timeout time.Duration) error {
	select {
	case <-s.ready:
		return nil
	case <-time.After(timeout):
		s.mu.Lock()
		defer s.mu.Unlock()
		return fmt.Errorf("subscriber not confirmed within %v (last error: %v)", timeout, s.err)
	case <-ctx.Done():
		return ctx.Err()
	}
}

var typePrefix = []byte(`{"type":`)

// Run subscribes (from=latest, then from its last position) until ctx ends.
func (s *Subscriber) Run(ctx context.Context) {
	last := map[string]uint64{}
	pos := ""
	for ctx.Err() == nil {
		from := "latest"
		if pos != "" {
			from = pos
		}
		c, _, err := websocket.Dial(ctx, s.url+"&from="+url.QueryEscape(from), nil)
		if err != nil {
			s.setErr(err)
			sleepCtx(ctx, 200*time.Millisecond)
			continue
		}
		c.SetReadLimit(16 << 20)
		for {
			_, data, err := c.Read(ctx)
			if err != nil {
				if websocket.CloseStatus(err) == 4000 {
					s.Lagged.Add(1)
				}
				s.setErr(err)
				break
			}
			now := time.Now()
			s.Frames.Add(1)
			if bytes.HasPrefix(data, typePrefix) {
				t := gjson.GetManyBytes(data, "type", "pos")
				if t[1].Exists() {
					pos = t[1].Str
				}
				if t[0].Str == "subscribed" {
					s.once.Do(func() { close(s.ready) })
				}
				continue
			}
			r := gjson.GetManyBytes(data, "pos", "device_id", "seq", "value.ts")
			pos = r[0].Str
			seq := r[2].Uint()
			if seq <= last[r[1].Str] {
				continue // a duplicate after a resume
			}
			last[r[1].Str] = seq
			s.count.Add(1)
			if lo := s.from.Load(); lo != 0 {
				ts, err := time.Parse(time.RFC3339Nano, r[3].Str)
				if err == nil && ts.UnixNano() >= lo && ts.UnixNano() <= s.to.Load() {
					s.Lat.Add(now.Sub(ts))
				}
			}
		}
		c.CloseNow()
		if ctx.Err() == nil {
			s.Reconnects.Add(1)
			sleepCtx(ctx, 100*time.Millisecond)
		}
	}
}

func (s *Subscriber) setErr(err error) {
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

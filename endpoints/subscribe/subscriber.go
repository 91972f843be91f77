package subscribe

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
)

// popChunk is the most queued records the pump takes at once.
const popChunk = 64

// subscriber is one subscription: a bounded queue the hub offers records
// to, and a pump that filters them, keeps the position and writes frames.
type subscriber struct {
	e      *Endpoint
	h      *hub
	ws     *websocket.Conn
	cork   *corkConn // nil when the connection could not be wrapped
	f      filter
	remote string
	sent   prometheus.Counter

	// Shared with the hub's readers.
	mu       sync.Mutex
	queue    []*record // ring of cfg.Buffer records
	head     int
	size     int
	catching []bool // by partition: served by a catch-up reader, not the hub
	overflow bool   // a record was dropped since the pump last looked
	notify   chan struct{}
	lagged   chan struct{} // the first overflow under the disconnect policy
	closing  atomic.Bool   // closed for lagging: write nothing more

	// Owned by the pump.
	ctx      context.Context
	next     []int64 // by partition: offset of the next record to deliver
	catchups map[int]context.CancelFunc
	catchCh  chan *record
	buf      []byte
	lastSent time.Time
	batching bool // frames are held back until the batch ends
	wg       sync.WaitGroup
}

func newSubscriber(e *Endpoint, h *hub, ws *websocket.Conn, f filter, remote string) *subscriber {
	return &subscriber{
		e:        e,
		h:        h,
		ws:       ws,
		f:        f,
		remote:   remote,
		sent:     e.m.sent.WithLabelValues(h.topic),
		queue:    make([]*record, e.cfg.Buffer),
		notify:   make(chan struct{}, 1),
		lagged:   make(chan struct{}, 1),
		catchups: map[int]context.CancelFunc{},
		catchCh:  make(chan *record, popChunk),
	}
}

// offer queues r for the subscriber without ever waiting. A subscriber that
// is catching up on r's partition does not need it; a full queue drops it
// and the subscriber is lagging. Under the skip policy the hub then stops
// queueing anything for it at once: the pump moves every partition it is
// behind on to catch-up readers as soon as it gets to it.
func (s *subscriber) offer(r *record) {
	s.mu.Lock()
	if r.part < len(s.catching) && s.catching[r.part] {
		s.mu.Unlock()
		return
	}
	if s.size == len(s.queue) {
		first := !s.overflow
		s.overflow = true
		if s.e.cfg.Slow == SlowSkip {
			for p := range s.catching {
				s.catching[p] = true
			}
		}
		s.mu.Unlock()
		if first {
			s.e.m.lagging.WithLabelValues(s.h.topic, s.e.cfg.Slow).Inc()
			select {
			case s.lagged <- struct{}{}:
			default:
			}
			select {
			case s.notify <- struct{}{}:
			default:
			}
		}
		return
	}
	s.queue[(s.head+s.size)%len(s.queue)] = r
	s.size++
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// pop moves up to cap(dst) queued records to dst and reports whether
// records were dropped since the last pop.
func (s *subscriber) pop(dst []*record) ([]*record, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.size > 0 && len(dst) < cap(dst) {
		dst = append(dst, s.queue[s.head])
		s.queue[s.head] = nil
		s.head = (s.head + 1) % len(s.queue)
		s.size--
	}
	overflow := s.overflow
	s.overflow = false
	return dst, overflow
}

// queued returns how many records wait in the queue.
func (s *subscriber) queued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.size
}

// stuckGrace is how long a pump may stay in a socket write once its
// connection or the endpoint has ended.
const stuckGrace = 2 * time.Second

// errLagging ends a subscriber closed for lagging.
var errLagging = errors.New("subscriber lagging")

// serve resolves the start position, attaches to the hub and pumps records
// until the connection or the endpoint ends.
func (s *subscriber) serve(from origin) {
	ctx := s.ws.CloseRead(s.e.ctx)
	ctx, cancel := context.WithCancelCause(ctx)
	s.ctx = ctx
	log := s.e.log.With("remote", s.remote, "topic", s.h.topic)

	// Under the disconnect policy the first overflow closes the connection
	// at once: the pump writes nothing more, and the close frame follows
	// the frame being written, if any (a write that cannot finish within 5s
	// ends the connection without a close frame). When the connection or
	// the endpoint ends, a pump stuck in a socket write is cut off after a
	// grace period.
	pumpDone := make(chan struct{})
	watcherDone := make(chan struct{})
	go func() {
		defer close(watcherDone)
		for {
			select {
			case <-s.lagged:
				if s.e.cfg.Slow != SlowDisconnect {
					continue
				}
				s.closing.Store(true)
				log.Info("subscriptions: disconnecting a lagging subscriber")
				_ = s.ws.Close(StatusLagging, "too slow: the buffer overflowed; reconnect with from=<the last pos you received>")
				cancel(errLagging)
				return
			case <-ctx.Done():
				t := time.NewTimer(stuckGrace)
				defer t.Stop()
				select {
				case <-pumpDone:
				case <-t.C:
					_ = s.ws.CloseNow()
				}
				return
			}
		}
	}()

	err := s.run(ctx, from)
	close(pumpDone)
	s.batching = false
	_ = s.cork.uncork() // a close frame must not wait behind a cork

	s.h.remove(s)
	for p, stop := range s.catchups {
		stop()
		delete(s.catchups, p)
	}
	s.wg.Wait()
	switch {
	case s.closing.Load():
	case s.e.ctx.Err() != nil:
		_ = s.ws.Close(websocket.StatusGoingAway, "sluice is shutting down; reconnect with from=<the last pos you received>")
	case err != nil && ctx.Err() == nil:
		if errors.As(err, new(unavailable)) {
			_ = s.ws.Close(StatusUnavailable, reason(err.Error()))
		} else {
			log.Debug("subscriptions: subscriber ended", "err", err)
		}
	}
	cancel(nil)
	<-watcherDone
}

// unavailable is an error of Kafka's while setting a subscription up.
type unavailable struct{ error }

// run attaches to the hub at from and pumps records.
func (s *subscriber) run(ctx context.Context, from origin) error {
	n, expired, err := s.resolve(ctx, from)
	if err != nil {
		return err
	}
	s.next = n
	s.mu.Lock()
	s.catching = make([]bool, len(n))
	for p := range s.catching {
		s.catching[p] = true
	}
	s.mu.Unlock()
	s.h.add(s)

	hello := append(s.buf[:0], `{"type":"subscribed","topic":`...)
	hello = appendString(hello, s.h.topic)
	hello = append(hello, `,"pos":"`...)
	hello = appendPosition(hello, s.next)
	hello = append(hello, `","heartbeat_ms":`...)
	hello = strconv.AppendInt(hello, s.e.cfg.Heartbeat.Milliseconds(), 10)
	if expired != "" {
		hello = append(hello, `,"expired":"`...)
		hello = append(hello, expired...)
		hello = append(hello, '"')
	}
	hello = append(hello, '}')
	s.buf = hello
	if err := s.write(ctx, hello); err != nil {
		return err
	}
	for p := range s.next {
		s.trySwitch(p)
	}

	tick := time.NewTicker(s.e.cfg.Heartbeat / 4)
	defer tick.Stop()
	batch := make([]*record, 0, popChunk)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.notify:
			for {
				var overflow bool
				batch, overflow = s.pop(batch[:0])
				flush := s.batch()
				for i, r := range batch {
					batch[i] = nil
					if err := s.live(ctx, r); err != nil {
						return err
					}
				}
				if err := flush(); err != nil {
					return err
				}
				if overflow && s.e.cfg.Slow == SlowSkip {
					if err := s.skip(ctx); err != nil {
						return err
					}
				}
				if len(batch) < cap(batch) {
					break
				}
			}
		case r := <-s.catchCh:
			flush := s.batch()
			if err := s.caughtUp(ctx, r); err != nil {
				return err
			}
		more:
			for range popChunk - 1 {
				select {
				case r := <-s.catchCh:
					if err := s.caughtUp(ctx, r); err != nil {
						return err
					}
				default:
					break more
				}
			}
			if err := flush(); err != nil {
				return err
			}
		case now := <-tick.C:
			if now.Sub(s.lastSent) >= s.e.cfg.Heartbeat {
				if err := s.control(ctx, "checkpoint"); err != nil {
					return err
				}
			}
		}
	}
}

// resolve turns from into a position for every partition the hub reads,
// and names the ranges a position asked for that retention has deleted.
func (s *subscriber) resolve(ctx context.Context, from origin) ([]int64, string, error) {
	parts := s.h.partitions()
	var ids []int
	for _, hp := range parts {
		if hp != nil {
			ids = append(ids, hp.id)
		}
	}
	offs, err := s.e.listOffsets(ctx, s.h.topic, ids, from.at)
	if err != nil {
		return nil, "", unavailable{err}
	}
	n := make([]int64, len(parts))
	var expired []byte
	for p := range n {
		n[p] = unset
		o, ok := offs[p]
		if !ok {
			continue
		}
		switch from.kind {
		case "latest": // what Kafka has now, even if the hub has not read it yet
			n[p] = max(o.last, parts[p].live.Load())
		case "earliest":
			n[p] = o.first
		case "time":
			n[p] = max(o.at, o.first)
		case "pos":
			n[p] = o.first // a partition the position does not name: from its start
			if p < len(from.pos) && from.pos[p] != unset {
				n[p] = min(max(from.pos[p], o.first), o.last)
				if from.pos[p] < o.first {
					if len(expired) > 0 {
						expired = append(expired, ',')
					}
					expired = strconv.AppendInt(expired, int64(p), 10)
					expired = append(expired, ':')
					expired = strconv.AppendInt(expired, from.pos[p], 10)
					expired = append(expired, '-')
					expired = strconv.AppendInt(expired, o.first, 10)
				}
			}
		}
	}
	return n, string(expired), nil
}

// live handles a record from the hub.
func (s *subscriber) live(ctx context.Context, r *record) error {
	p := r.part
	for len(s.next) <= p {
		s.next = append(s.next, unset)
	}
	n := s.next[p]
	if n == unset { // a partition added after the subscriber attached
		hp := s.h.part(p)
		if hp == nil {
			return nil
		}
		n = hp.start
		s.next[p] = n
	}
	switch {
	case r.off < n: // already delivered
		return nil
	case r.prev <= n: // nothing between n and r: deliver
		s.next[p] = r.off + 1
		return s.deliver(ctx, r)
	}
	// Records between n and r were not offered to this subscriber (the
	// queue was full, or the hub was ahead of its position): read them.
	s.resync(p)
	return nil
}

// caughtUp handles a record from a catch-up reader.
func (s *subscriber) caughtUp(ctx context.Context, r *record) error {
	p := r.part
	if r.off >= s.next[p] {
		s.next[p] = r.off + 1
		if err := s.deliver(ctx, r); err != nil {
			return err
		}
	}
	s.trySwitch(p)
	return nil
}

// trySwitch puts partition p back on the hub's feed once the subscriber's
// position has reached the hub's, and stops its catch-up reader; before
// that it starts one. The flag is cleared before the hub's position is
// read, and the hub stores its position before it reads the flag, so a
// record is either offered to the subscriber or read by its catch-up.
func (s *subscriber) trySwitch(p int) {
	hp := s.h.part(p)
	s.mu.Lock()
	if p >= len(s.catching) {
		s.mu.Unlock()
		return
	}
	s.catching[p] = false
	if hp == nil || s.next[p] == unset { // the hub's feed starts it
		s.mu.Unlock()
		return
	}
	behind := s.next[p] < hp.live.Load()
	if behind {
		s.catching[p] = true
	}
	s.mu.Unlock()
	if behind {
		if _, ok := s.catchups[p]; !ok {
			s.startCatchup(p, s.next[p])
		}
		return
	}
	if stop, ok := s.catchups[p]; ok {
		stop()
		delete(s.catchups, p)
	}
}

// resync serves partition p from a catch-up reader, from the
// subscriber's position, if it is behind the hub and none is running.
func (s *subscriber) resync(p int) {
	if p >= len(s.next) || s.next[p] == unset {
		return
	}
	if _, ok := s.catchups[p]; ok {
		return
	}
	s.mu.Lock()
	for len(s.catching) <= p {
		s.catching = append(s.catching, false)
	}
	s.mu.Unlock()
	s.trySwitch(p)
}

// skip applies the skip policy after an overflow: tell the client, and
// serve every partition it is behind on from catch-up readers.
func (s *subscriber) skip(ctx context.Context) error {
	if err := s.control(ctx, "lagging"); err != nil {
		return err
	}
	for p := range s.next {
		s.resync(p)
	}
	return nil
}

// startCatchup reads partition p from offset from with a reader of the
// subscriber's own, handing records to the pump, until stopped.
func (s *subscriber) startCatchup(p int, from int64) {
	ctx, cancel := context.WithCancel(s.ctx)
	s.catchups[p] = cancel
	gauge := s.e.m.catchup.WithLabelValues(s.h.topic)
	gauge.Inc()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer gauge.Dec()
		next := from
		for ctx.Err() == nil {
			r := s.e.newReader(s.h.topic, p, next, popChunk)
			for {
				m, err := r.FetchMessage(ctx)
				if err != nil {
					if ctx.Err() == nil {
						s.e.log.Warn("subscriptions: catch-up read failed; reconnecting", "topic", s.h.topic, "partition", p, "err", err)
					}
					break
				}
				rec := newRecord(&m, next, s.e.cfg.DeviceField, s.e.cfg.SeqField)
				next = m.Offset + 1
				// A stopped reader sends nothing more: the pump relies on
				// every reader's records arriving without holes.
				select {
				case s.catchCh <- rec:
				case <-ctx.Done():
					_ = r.Close()
					return
				}
			}
			_ = r.Close()
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
			}
		}
	}()
}

// deliver sends r if it passes the filter.
func (s *subscriber) deliver(ctx context.Context, r *record) error {
	if !s.f.match(r) {
		return nil
	}
	s.buf = s.encode(s.buf[:0], r)
	if err := s.write(ctx, s.buf); err != nil {
		return err
	}
	s.sent.Inc()
	return nil
}

// control sends {"type":kind,"pos":…}.
func (s *subscriber) control(ctx context.Context, kind string) error {
	b := append(s.buf[:0], `{"type":"`...)
	b = append(b, kind...)
	b = append(b, `","pos":"`...)
	b = appendPosition(b, s.next)
	b = append(b, `"}`...)
	s.buf = b
	return s.write(ctx, b)
}

// write sends one frame. Inside a batch (between the pump's cork and
// uncork) it is held back and leaves with the batch; alone it leaves at
// once. Either way only the socket write blocks, under the write timeout,
// which applies to progress: the frame itself goes to memory, so it needs
// no context of its own (which would cost a timer per frame).
func (s *subscriber) write(ctx context.Context, b []byte) error {
	if s.closing.Load() {
		return errLagging
	}
	s.lastSent = time.Now()
	if s.cork == nil {
		ctx, cancel := context.WithTimeout(ctx, s.e.cfg.WriteTimeout)
		defer cancel()
		return s.ws.Write(ctx, websocket.MessageText, b)
	}
	if s.batching {
		return s.ws.Write(context.Background(), websocket.MessageText, b)
	}
	s.cork.cork()
	if err := s.ws.Write(context.Background(), websocket.MessageText, b); err != nil {
		_ = s.cork.uncork()
		return err
	}
	return s.cork.uncork()
}

// batch corks the connection until the returned function is called, which
// writes what the batch held back.
func (s *subscriber) batch() func() error {
	s.cork.cork()
	s.batching = true
	return func() error {
		s.batching = false
		return s.cork.uncork()
	}
}

// encode appends the frame of r:
// {"pos":…,"partition":…,"offset":…,"ts":…,"key":…,"device_id":…,"seq":…,"part":…,"value":…}.
func (s *subscriber) encode(b []byte, r *record) []byte {
	b = append(b, `{"pos":"`...)
	b = appendPosition(b, s.next)
	b = append(b, `","partition":`...)
	b = strconv.AppendInt(b, int64(r.part), 10)
	b = append(b, `,"offset":`...)
	b = strconv.AppendInt(b, r.off, 10)
	if !r.ts.IsZero() {
		b = append(b, `,"ts":`...)
		b = strconv.AppendInt(b, r.ts.UnixMilli(), 10)
	}
	if r.key != nil {
		b = append(b, `,"key":`...)
		b = appendString(b, string(r.key))
	}
	if r.device != "" {
		b = append(b, `,"device_id":`...)
		b = appendString(b, r.device)
	}
	if r.hasSeq {
		b = append(b, `,"seq":`...)
		b = strconv.AppendUint(b, r.seq, 10)
	}
	if r.idPart != 0 {
		b = append(b, `,"part":`...)
		b = strconv.AppendUint(b, uint64(r.idPart), 10)
	}
	b = append(b, `,"value":`...)
	if r.json {
		b = append(b, r.value...)
	} else {
		b = appendString(b, string(r.value))
	}
	return append(b, '}')
}

const hex = "0123456789abcdef"

// appendString appends s as a JSON string; invalid UTF-8 becomes U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20:
				switch c {
				case '\n':
					b = append(b, '\\', 'n')
				case '\r':
					b = append(b, '\\', 'r')
				case '\t':
					b = append(b, '\\', 't')
				default:
					b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
				}
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

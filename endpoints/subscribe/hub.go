package subscribe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/tidwall/gjson"
)

// IDHeader is the Kafka header the Kafka sink writes with each record's
// identity, "<device>/<seq>/<part>".
const IDHeader = "sluice-id"

// record is one Kafka message as offered to subscribers. It is shared by
// every subscriber and read-only once made.
type record struct {
	part int   // Kafka partition
	off  int64 // Kafka offset
	// prev is the position of the reader on the partition before this
	// record: no record exists at the offsets [prev, off).
	prev int64

	key    []byte
	value  []byte
	json   bool // value is valid JSON
	ts     time.Time
	device string
	seq    uint64
	hasSeq bool
	idPart uint32
}

// newRecord makes the record of m, read after position prev. Its identity
// comes from the sluice-id header, else from the value's fields.
func newRecord(m *kafka.Message, prev int64, deviceField, seqField string) *record {
	r := &record{
		part:  m.Partition,
		off:   m.Offset,
		prev:  prev,
		key:   m.Key,
		value: m.Value,
		json:  gjson.ValidBytes(m.Value),
		ts:    m.Time,
	}
	for _, h := range m.Headers {
		if h.Key == IDHeader {
			if dev, seq, part, ok := parseID(h.Value); ok {
				r.device, r.seq, r.hasSeq, r.idPart = dev, seq, true, part
				return r
			}
		}
	}
	if r.json {
		res := gjson.GetManyBytes(m.Value, deviceField, seqField)
		if res[0].Type == gjson.String {
			r.device = res[0].Str
		}
		if res[1].Type == gjson.Number {
			if n, err := strconv.ParseUint(res[1].Raw, 10, 64); err == nil {
				r.seq, r.hasSeq = n, true
			}
		}
	}
	return r
}

// parseID parses a sluice-id header value, "<device>/<seq>/<part>"; the
// device may itself contain '/'.
func parseID(v []byte) (device string, seq uint64, part uint32, ok bool) {
	s := string(v)
	j := strings.LastIndexByte(s, '/')
	if j < 0 {
		return "", 0, 0, false
	}
	i := strings.LastIndexByte(s[:j], '/')
	if i < 0 {
		return "", 0, 0, false
	}
	seq, err := strconv.ParseUint(s[i+1:j], 10, 64)
	if err != nil {
		return "", 0, 0, false
	}
	p, err := strconv.ParseUint(s[j+1:], 10, 32)
	if err != nil {
		return "", 0, 0, false
	}
	return s[:i], seq, uint32(p), true
}

// hubPart is one partition of a hub.
type hubPart struct {
	id int
	// start is the offset the hub began reading the partition at.
	start int64
	// live is the offset of the next record the hub will read. It is
	// stored before the record is offered to subscribers.
	live atomic.Int64
}

// hub reads one topic with one reader per partition and offers every record
// to every subscriber of the topic. It never waits for a subscriber.
type hub struct {
	e     *Endpoint
	topic string
	log   *slog.Logger

	ready     chan struct{} // closed once the partitions are known
	readyOnce sync.Once

	mu    sync.Mutex                    // serialises changes to parts and subs
	parts atomic.Pointer[[]*hubPart]    // by partition id
	subs  atomic.Pointer[[]*subscriber] // copy-on-write

	wg sync.WaitGroup
}

// partitionRefresh is how often a hub looks for partitions added to its
// topic.
const partitionRefresh = 30 * time.Second

func newHub(e *Endpoint, topic string) *hub {
	h := &hub{e: e, topic: topic, log: e.log.With("topic", topic), ready: make(chan struct{})}
	h.parts.Store(&[]*hubPart{})
	h.subs.Store(&[]*subscriber{})
	return h
}

// partitions returns the hub's partitions, indexed by id.
func (h *hub) partitions() []*hubPart { return *h.parts.Load() }

// part returns partition p, or nil when the hub does not read it.
func (h *hub) part(p int) *hubPart {
	parts := h.partitions()
	if p < 0 || p >= len(parts) {
		return nil
	}
	return parts[p]
}

// live returns the hub's live position vector.
func (h *hub) live() []int64 {
	parts := h.partitions()
	n := make([]int64, len(parts))
	for i, hp := range parts {
		n[i] = unset
		if hp != nil {
			n[i] = hp.live.Load()
		}
	}
	return n
}

func (h *hub) add(s *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	subs := append(slices.Clone(*h.subs.Load()), s)
	h.subs.Store(&subs)
}

func (h *hub) remove(s *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	subs := slices.DeleteFunc(slices.Clone(*h.subs.Load()), func(x *subscriber) bool { return x == s })
	h.subs.Store(&subs)
}

// run discovers the partitions, starts their readers at the newest offsets,
// and adds readers for partitions added later, until ctx is done.
func (h *hub) run(ctx context.Context) {
	defer h.wg.Wait()
	delay := 100 * time.Millisecond
	warned := false
	for {
		err := h.refresh(ctx, true)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		if !warned || delay >= 5*time.Second {
			h.log.Warn("subscriptions: topic not readable yet; retrying", "err", err)
			warned = true
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return
		}
		delay = min(2*delay, 10*time.Second)
	}
	h.readyOnce.Do(func() { close(h.ready) })
	tick := time.NewTicker(h.e.refresh)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			if err := h.refresh(ctx, false); err != nil && ctx.Err() == nil {
				h.log.Debug("subscriptions: partition refresh failed", "err", err)
			}
		case <-ctx.Done():
			return
		}
	}
}

// refresh reads the topic's partitions and starts a reader for each new
// one: at its newest offset when first is set (the hub's first look), at
// its oldest otherwise (a partition added while subscribers are served).
func (h *hub) refresh(ctx context.Context, first bool) error {
	ids, err := h.e.partitionIDs(ctx, h.topic)
	if err != nil {
		return err
	}
	known := h.partitions()
	var added []int
	for _, id := range ids {
		if id >= maxPartitions {
			continue
		}
		if id >= len(known) || known[id] == nil {
			added = append(added, id)
		}
	}
	if len(added) == 0 {
		if first {
			return fmt.Errorf("kafka: topic %s has no partitions", h.topic)
		}
		return nil
	}
	offs, err := h.e.listOffsets(ctx, h.topic, added)
	if err != nil {
		return err
	}
	h.mu.Lock()
	parts := slices.Clone(*h.parts.Load())
	var started []*hubPart
	for _, id := range added {
		o := offs[id]
		hp := &hubPart{id: id, start: o.last}
		if !first {
			hp.start = o.first
		}
		hp.live.Store(hp.start)
		for len(parts) <= id {
			parts = append(parts, nil)
		}
		parts[id] = hp
		started = append(started, hp)
	}
	h.parts.Store(&parts)
	h.mu.Unlock()
	for _, hp := range started {
		h.log.Debug("subscriptions: reading partition", "partition", hp.id, "offset", hp.start)
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			h.read(ctx, hp)
		}()
	}
	return nil
}

// read follows one partition from hp.live and offers each record to every
// subscriber. A reader that fails is replaced, from where it stopped.
func (h *hub) read(ctx context.Context, hp *hubPart) {
	for ctx.Err() == nil {
		r := h.e.newReader(h.topic, hp.id, hp.live.Load(), 256)
		for {
			m, err := r.FetchMessage(ctx)
			if err != nil {
				if ctx.Err() == nil {
					h.log.Warn("subscriptions: reading partition failed; reconnecting", "partition", hp.id, "err", err)
				}
				break
			}
			prev := hp.live.Load()
			rec := newRecord(&m, prev, h.e.cfg.DeviceField, h.e.cfg.SeqField)
			hp.live.Store(m.Offset + 1)
			for _, s := range *h.subs.Load() {
				s.offer(rec)
			}
		}
		_ = r.Close()
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
		}
	}
}

// waitReady waits until the hub knows its partitions, for at most d.
func (h *hub) waitReady(ctx context.Context, d time.Duration) error {
	select {
	case <-h.ready:
		return nil
	default:
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-h.ready:
		return nil
	case <-t.C:
		return errors.New("topic not available yet")
	case <-ctx.Done():
		return ctx.Err()
	}
}

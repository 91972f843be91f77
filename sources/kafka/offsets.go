package kafka

import (
	"context"
	"sync"
)

// topicPartition names a partition.
type topicPartition struct {
	topic     string
	partition int
}

// offsets tracks, per partition, the messages handed to the pipeline in
// fetch order and which of them are settled, and computes the offsets that
// are safe to commit: a commit covers a message only when it and every
// message fetched before it on its partition are settled (delivered, or
// failed and dead-lettered). Commits therefore never run ahead of an
// unsettled record, whatever order the acks arrive in.
//
// A partition's fetch order restarts when the consumer group hands the
// partition back from an earlier offset (after a rebalance, records not
// committed are delivered again). Each such run is an epoch with its own
// list; records of an older epoch still settle (they are in flight), and
// the commit offset of a partition never goes backwards.
//
// offsets is safe for concurrent use.
type offsets struct {
	mu     sync.Mutex
	epochs map[topicPartition]*epoch // the current epoch of each partition
	// pending is the commit offset (the next offset to consume) computed
	// for each partition and not yet committed.
	pending map[topicPartition]int64
	// committed is the last offset committed for each partition.
	committed   map[topicPartition]int64
	outstanding int             // tracked and not settled, over all epochs
	idle        []chan struct{} // closed when outstanding drops to 0
	// notify is called (outside the lock) when pending gains an offset.
	notify func()
}

// epoch is one run of a partition's fetch order.
type epoch struct {
	tp      topicPartition
	base    uint64  // sequence number of entries[0]
	entries []entry // fetched, not yet passed by the commit offset
	last    int64   // offset of the last message fetched
}

type entry struct {
	offset  int64
	settled bool
}

// ref identifies one tracked message.
type ref struct {
	e   *epoch
	seq uint64
}

func newOffsets(notify func()) *offsets {
	if notify == nil {
		notify = func() {}
	}
	return &offsets{
		epochs:    map[topicPartition]*epoch{},
		pending:   map[topicPartition]int64{},
		committed: map[topicPartition]int64{},
		notify:    notify,
	}
}

// track records a fetched message, in fetch order, and returns the ref to
// settle it with.
func (o *offsets) track(topic string, partition int, offset int64) ref {
	tp := topicPartition{topic, partition}
	o.mu.Lock()
	defer o.mu.Unlock()
	e := o.epochs[tp]
	if e == nil || offset <= e.last {
		// New partition, or the partition restarted from an earlier
		// offset: a new epoch.
		e = &epoch{tp: tp, last: -1}
		o.epochs[tp] = e
	}
	r := ref{e: e, seq: e.base + uint64(len(e.entries))}
	e.entries = append(e.entries, entry{offset: offset})
	e.last = offset
	o.outstanding++
	return r
}

// untrack forgets messages that were tracked but never reached the
// pipeline (Run stopped before it could hand them over). They must be the
// most recently tracked messages of their partitions; refs are taken in
// the order track returned them.
func (o *offsets) untrack(refs []ref) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for k := len(refs) - 1; k >= 0; k-- {
		r := refs[k]
		e := r.e
		i := int(r.seq - e.base)
		if i < 0 || i >= len(e.entries) || e.entries[i].settled {
			continue
		}
		e.entries = e.entries[:i]
		if i > 0 {
			e.last = e.entries[i-1].offset
		}
		o.outstanding--
	}
	o.wakeIdle()
}

// settle marks a message settled; the commit offset of its partition
// advances over the settled prefix.
func (o *offsets) settle(r ref) {
	o.mu.Lock()
	e := r.e
	i := int(r.seq - e.base)
	if i < 0 || i >= len(e.entries) || e.entries[i].settled {
		o.mu.Unlock()
		return // already settled (never happens with pipeline.Ack)
	}
	e.entries[i].settled = true
	o.outstanding--
	advanced := false
	if i == 0 {
		n := 0
		for n < len(e.entries) && e.entries[n].settled {
			n++
		}
		next := e.entries[n-1].offset + 1
		clear(e.entries[:n])
		e.entries = e.entries[n:]
		e.base += uint64(n)
		if next > o.pending[e.tp] && next > o.committedOffset(e.tp) {
			o.pending[e.tp] = next
			advanced = true
		}
	}
	o.wakeIdle()
	o.mu.Unlock()
	if advanced {
		o.notify()
	}
}

func (o *offsets) committedOffset(tp topicPartition) int64 {
	if c, ok := o.committed[tp]; ok {
		return c
	}
	return -1
}

// take returns the offsets to commit now and clears them from pending;
// the caller reports the outcome with done.
func (o *offsets) take() map[topicPartition]int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.pending) == 0 {
		return nil
	}
	out := make(map[topicPartition]int64, len(o.pending))
	for tp, off := range o.pending {
		out[tp] = off
		delete(o.pending, tp)
	}
	return out
}

// done records the outcome of committing offs (from take). After a
// failure the offsets are pending again, unless a later one replaced them.
func (o *offsets) done(offs map[topicPartition]int64, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for tp, off := range offs {
		if err != nil {
			if off > o.pending[tp] && off > o.committedOffset(tp) {
				o.pending[tp] = off
			}
			continue
		}
		if off > o.committedOffset(tp) {
			o.committed[tp] = off
		}
		if p, ok := o.pending[tp]; ok && p <= off {
			delete(o.pending, tp)
		}
	}
}

// unsettled returns how many tracked messages are not settled.
func (o *offsets) unsettled() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.outstanding
}

// waitIdle waits until every tracked message is settled or ctx is done.
func (o *offsets) waitIdle(ctx context.Context) error {
	o.mu.Lock()
	if o.outstanding == 0 {
		o.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	o.idle = append(o.idle, ch)
	o.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// wakeIdle releases the waiters of waitIdle once nothing is outstanding.
// The caller holds o.mu.
func (o *offsets) wakeIdle() {
	if o.outstanding != 0 || len(o.idle) == 0 {
		return
	}
	for _, ch := range o.idle {
		close(ch)
	}
	o.idle = nil
}

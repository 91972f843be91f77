package pipeline

import "sync/atomic"

// Ack counts the outstanding deliveries of one source record and calls its
// source back once all of them are settled. A new Ack owes one delivery.
//
// Ack is safe for concurrent use. A nil *Ack ignores every call, which keeps
// records made in tests and tools simple.
type Ack struct {
	pending atomic.Int64
	err     atomic.Pointer[error]
	done    func(error)
}

// NewAck returns an Ack that owes one delivery and calls done exactly once,
// when every delivery is settled, with nil or the first error reported.
func NewAck(done func(error)) *Ack {
	a := &Ack{done: done}
	a.pending.Store(1)
	return a
}

// Add records n more outstanding deliveries (n may be zero). Call it before
// handing the record to more consumers, never after the last Done.
func (a *Ack) Add(n int) {
	if a == nil || n == 0 {
		return
	}
	a.pending.Add(int64(n))
}

// Done settles one delivery. A non-nil err marks the whole record as failed;
// the first such error is the one the source sees.
func (a *Ack) Done(err error) {
	if a == nil {
		return
	}
	if err != nil {
		a.fail(err)
	}
	// The decrement is sequentially consistent, so the goroutine that takes
	// the count to zero sees every error stored before the other decrements.
	switch n := a.pending.Add(-1); {
	case n == 0:
		if a.done != nil {
			var first error
			if p := a.err.Load(); p != nil {
				first = *p
			}
			a.done(first)
		}
	case n < 0:
		panic("pipeline: Ack.Done called more often than deliveries were owed")
	}
}

// fail keeps the first error. It is a function of its own so that Done's
// err does not escape to the heap on the common, nil path.
func (a *Ack) fail(err error) { a.err.CompareAndSwap(nil, &err) }

package subscribe

import (
	"context"
	"fmt"
	"net/url"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/segmentio/kafka-go"
)

// pacedProducer writes batches of records every interval, stamping each
// with the time it was handed to Kafka, and closes done after the last.
type pacedProducer struct {
	recs     []rec
	batch    int
	interval time.Duration
	sent     chan int // number of records written so far, after each batch
}

func (p *pacedProducer) run(t testing.TB, brokers []string, topic string) {
	w := newWriter(brokers, topic)
	defer w.Close()
	defer close(p.sent)
	tick := time.NewTicker(p.interval)
	defer tick.Stop()
	for i := 0; i < len(p.recs); i += p.batch {
		<-tick.C
		end := min(i+p.batch, len(p.recs))
		msgs := make([]kafka.Message, 0, end-i)
		now := time.Now().UnixNano()
		for j := i; j < end; j++ {
			p.recs[j].Sent = now
			msgs = append(msgs, p.recs[j].message())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := w.WriteMessages(ctx, msgs...)
		cancel()
		if err != nil {
			t.Errorf("produce: %v", err)
			return
		}
		p.sent <- end
	}
}

// latency is how long after the producer sent it (its Kafka timestamp) a
// record was received: Kafka, the hub and the subscriber's connection, less
// the producer's own batching.
func latency(m msg) time.Duration {
	return m.at.Sub(time.UnixMilli(m.TS))
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	d = slices.Clone(d)
	slices.Sort(d)
	return d[min(len(d)-1, int(p*float64(len(d))))]
}

// contiguous checks that got holds, for every device, each seq from the
// device's first one received up to last, once and in order.
func contiguous(got []msg, last uint64) error {
	seqs := byDevice(got)
	for d, s := range seqs {
		for i := 1; i < len(s); i++ {
			if s[i] != s[i-1]+1 {
				return fmt.Errorf("device %s: seq %d follows %d (%s)", d, s[i], s[i-1], short(s))
			}
		}
		if s[len(s)-1] != last {
			return fmt.Errorf("device %s: ends at seq %d, want %d", d, s[len(s)-1], last)
		}
	}
	return nil
}

func TestSlowSubscriber(t *testing.T) {
	for _, policy := range []string{SlowDisconnect, SlowSkip} {
		t.Run(policy, func(t *testing.T) { testSlow(t, policy) })
	}
}

// testSlow runs 50 fast subscribers and, from the middle of the stream on,
// one that reads a record a second through a tiny receive buffer. The slow
// one gets the policy; the fast ones keep their latency and every record.
func testSlow(t *testing.T, policy string) {
	const (
		fast    = 50
		devices = 10
		perDev  = 60 // 600 records of ~350 bytes, at 200 records/s
		buffer  = 128
	)
	brokers, topic := newTopic(t, 4)
	h := start(t, brokers, topic, Config{Buffer: buffer, Slow: policy, SendBuffer: 16 << 10})
	recs := records(devices, perDev, 300)
	total := len(recs)

	var wg sync.WaitGroup
	got := make([][]msg, fast)
	subs := subscribeMany(t, h, fast, func(int) string { return "from=latest" })
	for i, s := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			r, err := s.records(ctx, total)
			got[i] = r
			if err != nil {
				t.Errorf("fast subscriber %d: after %d of %d records: %v", i, len(r), total, err)
			}
		}()
	}

	p := &pacedProducer{recs: recs, batch: 2 * devices, interval: 100 * time.Millisecond, sent: make(chan int, total)}
	go p.run(t, brokers, topic)
	// A third of the way, the slow subscriber joins.
	joinedAt := 0
	for n := range p.sent {
		if n >= total/3 {
			joinedAt = n
			break
		}
	}
	slow, err := trySubscribe(h, "from=latest", slowClient())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.c.CloseNow()
	go func() {
		for range p.sent {
		}
	}()

	// Read one record a second until the policy has been applied.
	lagging := func() float64 {
		return metric(t, h.metrics, "sluice_subscribe_lagging_total", map[string]string{"action": policy})
	}
	var slowGot []msg
	sawLagging, closed := false, false
	deadline := time.Now().Add(20 * time.Second)
	for lagging() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%s: the slow subscriber was not treated as lagging within 20s (read %d records)", policy, len(slowGot))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		m, err := slow.read(ctx)
		cancel()
		if err != nil {
			t.Fatalf("slow subscriber: %v", err)
		}
		switch m.Type {
		case "lagging":
			sawLagging = true
		case "":
			slowGot = append(slowGot, m)
		}
		time.Sleep(time.Second)
	}
	t.Logf("%s: policy applied at %s after the slow subscriber read %d records", policy, time.Now().Format("15:04:05.000"), len(slowGot))
	// Its queue never holds more than the buffer.
	for _, s := range h.subscribers() {
		if n := s.queued(); n > buffer {
			t.Errorf("a subscriber has %d records queued, more than the buffer of %d", n, buffer)
		}
	}

	// Now read fast to the end, resuming after a disconnect.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for len(slowGot) == 0 || slowGot[len(slowGot)-1].Seq < perDev || !contiguousCheck(slowGot) {
		m, err := slow.read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				t.Fatalf("slow subscriber: %v after %d records (%v)", err, len(slowGot), contiguous(slowGot, perDev))
			}
			if policy == SlowSkip {
				t.Fatalf("skip: the connection ended: %v", err)
			}
			if s := websocket.CloseStatus(err); s != -1 && s != StatusLagging {
				t.Fatalf("disconnect: closed with %d, want %d: %v", s, StatusLagging, err)
			}
			closed = true
			slow, err = trySubscribe(h, "from="+url.QueryEscape(slow.pos), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer slow.c.CloseNow()
			continue
		}
		switch m.Type {
		case "lagging":
			sawLagging = true
		case "":
			slowGot = append(slowGot, m)
		}
	}
	if policy == SlowDisconnect && !closed {
		t.Fatal("disconnect: the slow subscriber was never disconnected")
	}
	if policy == SlowSkip && !sawLagging {
		t.Fatal("skip: no lagging message")
	}
	if err := contiguous(slowGot, perDev); err != nil {
		t.Fatalf("slow subscriber: %v", err)
	}
	wg.Wait()

	// Fast subscribers got everything in order, as fast with the slow one
	// lagging as before it joined.
	want := expect(recs, func(rec) bool { return true })
	var before, during []time.Duration
	for i, g := range got {
		if err := sameRecords(byDevice(g), want); err != nil {
			t.Fatalf("fast subscriber %d: %v", i, err)
		}
		for j, m := range g {
			if j < joinedAt {
				before = append(before, latency(m))
			} else {
				during = append(during, latency(m))
			}
		}
	}
	pb, pd := percentile(before, 0.99), percentile(during, 0.99)
	mb, md := percentile(before, 0.5), percentile(during, 0.5)
	t.Logf("%s: fast subscribers' latency p50/p99 before the slow one joined %v/%v, after %v/%v (%d records each)",
		policy, mb, pb, md, pd, total)
	// Were the hub to wait for the slow subscriber, the fast ones would get
	// a record a second: their latency would grow by a second per record,
	// to minutes. The bounds leave room for a busy machine (a stall of a few
	// seconds under -race on two shared cores), not for that.
	if limit := max(4*pb, 10*time.Second); pd > limit {
		t.Fatalf("%s: fast subscribers slowed down: p99 %v after the slow one joined, %v before (limit %v)", policy, pd, pb, limit)
	}
	if limit := max(3*mb, 2*time.Second); md > limit {
		t.Fatalf("%s: fast subscribers slowed down: p50 %v after the slow one joined, %v before (limit %v)", policy, md, mb, limit)
	}
}

// contiguousCheck reports whether got is complete per device up to the last
// seq seen by any device, a cheap loop condition.
func contiguousCheck(got []msg) bool {
	var last uint64
	for _, m := range got {
		last = max(last, m.Seq)
	}
	return contiguous(got, last) == nil && len(byDevice(got)) == 10
}

func TestMemoryStaysBounded(t *testing.T) {
	const buffer = 64
	brokers, topic := newTopic(t, 4)
	h := start(t, brokers, topic, Config{Buffer: buffer, Slow: SlowSkip, SendBuffer: 16 << 10})
	// A subscriber that never reads: the hub must not keep what it misses.
	stuck, err := trySubscribe(h, "from=latest", slowClient())
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.c.CloseNow()

	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	base := heap()
	recs := records(10, 600, 2000) // 6000 records, 12 MB
	for i := 0; i < len(recs); i += 2000 {
		produce(t, brokers, topic, recs[i:i+2000])
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int64
		for _, off := range h.e.hubs[topic].live() {
			n += off
		}
		if n == int64(len(recs)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the hub read %d of %d records in 30s", n, len(recs))
		}
		time.Sleep(50 * time.Millisecond)
	}
	grown := int64(heap()) - int64(base)
	for _, s := range h.subscribers() {
		if n := s.queued(); n > buffer {
			t.Errorf("a subscriber has %d records queued, more than the buffer of %d", n, buffer)
		}
	}
	t.Logf("heap grew by %d KiB while 12 MB went past a subscriber that reads nothing", grown>>10)
	if grown > 6<<20 {
		t.Fatalf("heap grew by %d MiB: the stuck subscriber's records are not bounded", grown>>20)
	}
}

package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/internal/testenv"
	"github.com/sluicehq/sluice/pipeline"
)

func testEnv() pipeline.Env {
	return pipeline.Env{Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
}

// produce writes n messages to topic: value {"i":i}, key k<i%keys> (all to
// partition i%partitions when keys is 0), header sluice-id dev<i%5>/<i>/0.
func produce(t testing.TB, brokers []string, topic string, partitions, n int) {
	t.Helper()
	tr := &kafkago.Transport{}
	defer tr.CloseIdleConnections()
	w := &kafkago.Writer{Addr: kafkago.TCP(brokers...), Topic: topic, Transport: tr, RequiredAcks: kafkago.RequireAll,
		BatchSize: 10000, BatchTimeout: time.Millisecond, Balancer: partitionByValue{partitions}}
	defer w.Close()
	msgs := make([]kafkago.Message, n)
	for i := range msgs {
		msgs[i] = kafkago.Message{
			Key:   fmt.Appendf(nil, "k%d", i),
			Value: fmt.Appendf(nil, `{"i":%d,"pad":"%s"}`, i, strings.Repeat("x", 180)),
			Headers: []kafkago.Header{
				{Key: IDHeader, Value: fmt.Appendf(nil, "dev%d/%d/0", i%5, i)},
				{Key: "n", Value: fmt.Appendf(nil, "%d", i)},
			},
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for len(msgs) > 0 {
		k := min(len(msgs), 10000)
		if err := w.WriteMessages(ctx, msgs[:k]...); err != nil {
			t.Fatalf("produce to %s: %v", topic, err)
		}
		msgs = msgs[k:]
	}
}

// partitionByValue sends message {"i":i,...} to partition i%n, so tests
// know where each record is.
type partitionByValue struct{ n int }

func (b partitionByValue) Balance(m kafkago.Message, partitions ...int) int {
	return partitions[valueIndex(m.Value)%b.n]
}

func index(r *pipeline.Record) int { return valueIndex(r.Value) }

// valueIndex returns i of a value {"i":i,...}.
func valueIndex(v []byte) int {
	i := 0
	for _, c := range v[len(`{"i":`):] {
		if c < '0' || c > '9' {
			break
		}
		i = i*10 + int(c-'0')
	}
	return i
}

func newSource(t testing.TB, cfg Config) *Source {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := New(ctx, cfg, testEnv())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// run runs s until stop is called, collecting the records it sends.
type runner struct {
	s      *Source
	cancel context.CancelFunc
	done   chan error
	recs   chan pipeline.Record
}

func startRun(s *Source) *runner {
	ctx, cancel := context.WithCancel(context.Background())
	r := &runner{s: s, cancel: cancel, done: make(chan error, 1), recs: make(chan pipeline.Record, 100000)}
	out := make(chan pipeline.Batch, 4)
	go func() {
		err := s.Run(ctx, out)
		close(out) // the test's channel: every batch sent is collected
		r.done <- err
	}()
	go func() {
		for b := range out {
			for _, rec := range b {
				r.recs <- rec
			}
		}
	}()
	return r
}

// next returns n records, failing after timeout.
func (r *runner) next(t testing.TB, n int, timeout time.Duration) []pipeline.Record {
	t.Helper()
	var out []pipeline.Record
	deadline := time.After(timeout)
	for len(out) < n {
		select {
		case rec := <-r.recs:
			out = append(out, rec)
		case <-deadline:
			t.Fatalf("got %d records after %v, want %d", len(out), timeout, n)
		}
	}
	return out
}

// stop stops Run and closes the source, bounded by closeTimeout.
func (r *runner) stop(t testing.TB, closeTimeout time.Duration) error {
	t.Helper()
	r.stopRun(t)
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	return r.s.Close(ctx)
}

// stopRun stops Run.
func (r *runner) stopRun(t testing.TB) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("Run did not return 10s after its context ended")
	}
}

// committed returns the group's committed offset of each partition (-1:
// none).
func committed(t testing.TB, brokers []string, group, topic string, partitions int) []int64 {
	t.Helper()
	tr := &kafkago.Transport{}
	defer tr.CloseIdleConnections()
	c := &kafkago.Client{Addr: kafkago.TCP(brokers...), Timeout: 10 * time.Second, Transport: tr}
	ps := make([]int, partitions)
	for i := range ps {
		ps[i] = i
	}
	res, err := c.OffsetFetch(context.Background(), &kafkago.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: ps}})
	if err != nil || res.Error != nil {
		t.Fatalf("offset fetch %s: %v %v", group, err, res.Error)
	}
	out := make([]int64, partitions)
	for _, p := range res.Topics[topic] {
		out[p.Partition] = p.CommittedOffset
	}
	return out
}

// waitCommitted waits until the committed offsets are want.
func waitCommitted(t testing.TB, brokers []string, group, topic string, want []int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := committed(t, brokers, group, topic, len(want))
		if fmt.Sprint(got) == fmt.Sprint(want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("committed offsets: got %v, want %v", got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestSourceDeliversAll(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	topic := testenv.Name("src_all")
	testenv.CreateTopic(t, brokers, topic, 4)
	const n = 1000
	produce(t, brokers, topic, 4, n)

	group := testenv.Name("g")
	r := startRun(newSource(t, Config{Brokers: brokers, Topic: topic, Group: group, BatchSize: 100}))
	recs := r.next(t, n, 30*time.Second)
	seen := map[int]bool{}
	for i := range recs {
		rec := &recs[i]
		k := index(rec)
		if seen[k] {
			t.Fatalf("record %d delivered twice", k)
		}
		seen[k] = true
		if got, want := string(rec.Key), fmt.Sprintf("k%d", k); got != want {
			t.Fatalf("key of %d: got %q, want %q", k, got, want)
		}
		if want := (pipeline.ID{Device: fmt.Sprintf("dev%d", k%5), Seq: uint64(k)}); rec.ID != want {
			t.Fatalf("ID of %d: got %+v, want %+v", k, rec.ID, want)
		}
		if len(rec.Headers) != 2 || rec.Headers[1].Key != "n" || string(rec.Headers[1].Value) != fmt.Sprint(k) {
			t.Fatalf("headers of %d: got %+v", k, rec.Headers)
		}
		if rec.Received.IsZero() || time.Since(rec.Received) > time.Minute {
			t.Fatalf("received of %d: got %v", k, rec.Received)
		}
	}
	// Nothing is committed before the acks.
	time.Sleep(200 * time.Millisecond)
	if got := committed(t, brokers, group, topic, 4); fmt.Sprint(got) != "[-1 -1 -1 -1]" {
		t.Fatalf("committed before any ack: got %v, want none", got)
	}
	for i := range recs {
		recs[i].Ack.Done(nil)
	}
	waitCommitted(t, brokers, group, topic, []int64{n / 4, n / 4, n / 4, n / 4})
	if err := r.stop(t, 10*time.Second); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// TestSourceAtLeastOnce acks only the first k records of each partition,
// closes, and reopens the group: it resumes at record k, skipping nothing.
func TestSourceAtLeastOnce(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	topic := testenv.Name("src_alo")
	testenv.CreateTopic(t, brokers, topic, 2)
	const n, k = 200, 37 // per partition: 100 records, the first 37 acked
	produce(t, brokers, topic, 2, n)
	group := testenv.Name("g")

	r := startRun(newSource(t, Config{Brokers: brokers, Topic: topic, Group: group}))
	recs := r.next(t, n, 30*time.Second)
	for i := range recs {
		if off := index(&recs[i]) / 2; off < k { // record i is offset i/2 of partition i%2
			recs[i].Ack.Done(nil)
		}
	}
	start := time.Now()
	err := r.stop(t, time.Second)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%d records still unsettled", n-2*k)) {
		t.Fatalf("Close with unsettled records: got %v, want a report of %d unsettled", err, n-2*k)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Close took %v with a 1s context", d)
	}
	if got := committed(t, brokers, group, topic, 2); fmt.Sprint(got) != fmt.Sprint([]int64{k, k}) {
		t.Fatalf("committed: got %v, want [%d %d]", got, k, k)
	}

	// Reopen: every record from offset k on comes again, nothing before.
	r = startRun(newSource(t, Config{Brokers: brokers, Topic: topic, Group: group}))
	recs = r.next(t, n-2*k, 30*time.Second)
	first := map[int]int{0: -1, 1: -1}
	seen := map[int]bool{}
	for i := range recs {
		x := index(&recs[i])
		p, off := x%2, x/2
		if off < k {
			t.Fatalf("record %d (offset %d of partition %d) delivered again although acked and committed", x, off, p)
		}
		if first[p] < 0 {
			first[p] = off
		}
		seen[x] = true
		recs[i].Ack.Done(nil)
	}
	if first[0] != k || first[1] != k {
		t.Fatalf("first offsets after reopening: got %v, want %d on both", first, k)
	}
	if len(seen) != n-2*k {
		t.Fatalf("distinct records after reopening: got %d, want %d", len(seen), n-2*k)
	}
	if err := r.stop(t, 10*time.Second); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := committed(t, brokers, group, topic, 2); fmt.Sprint(got) != fmt.Sprint([]int64{n / 2, n / 2}) {
		t.Fatalf("committed at the end: got %v, want [%d %d]", got, n/2, n/2)
	}
}

// TestSourceOutOfOrderAcks: acks in reverse order, some of them failures
// (dead-lettered), with one record held back: the commit stops at it.
func TestSourceOutOfOrderAcks(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	topic := testenv.Name("src_ooo")
	testenv.CreateTopic(t, brokers, topic, 1)
	const n, hold = 60, 23
	produce(t, brokers, topic, 1, n)
	group := testenv.Name("g")

	r := startRun(newSource(t, Config{Brokers: brokers, Topic: topic, Group: group, BatchSize: 7}))
	recs := r.next(t, n, 30*time.Second)
	for i := len(recs) - 1; i >= 0; i-- {
		switch x := index(&recs[i]); {
		case x == hold:
		case x%5 == 0:
			recs[i].Ack.Done(errors.New("dead-lettered")) // failed: settled all the same
		default:
			recs[i].Ack.Done(nil)
		}
	}
	waitCommitted(t, brokers, group, topic, []int64{hold})
	time.Sleep(300 * time.Millisecond)
	if got := committed(t, brokers, group, topic, 1); got[0] != hold {
		t.Fatalf("committed past the unsettled record %d: got %d", hold, got[0])
	}
	for i := range recs {
		if index(&recs[i]) == hold {
			recs[i].Ack.Done(nil)
		}
	}
	waitCommitted(t, brokers, group, topic, []int64{n})
	if err := r.stop(t, 10*time.Second); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// TestSourceCloseWaitsForAcks: Close waits for records still in the
// pipeline and commits them.
func TestSourceCloseWaitsForAcks(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	topic := testenv.Name("src_close")
	testenv.CreateTopic(t, brokers, topic, 1)
	produce(t, brokers, topic, 1, 10)
	group := testenv.Name("g")
	r := startRun(newSource(t, Config{Brokers: brokers, Topic: topic, Group: group}))
	recs := r.next(t, 10, 30*time.Second)
	go func() {
		time.Sleep(300 * time.Millisecond)
		for i := range recs {
			recs[i].Ack.Done(nil)
		}
	}()
	if err := r.stop(t, 10*time.Second); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := committed(t, brokers, group, topic, 1); got[0] != 10 {
		t.Fatalf("committed after Close: got %d, want 10", got[0])
	}
}

func TestSourceLinger(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	topic := testenv.Name("src_linger")
	testenv.CreateTopic(t, brokers, topic, 1)
	group := testenv.Name("g")
	s := newSource(t, Config{Brokers: brokers, Topic: topic, Group: group, BatchSize: 1000, Linger: 20 * time.Millisecond, Start: "latest"})
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan pipeline.Batch, 1)
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, out) }()
	defer func() {
		cancel()
		<-done
		closeCtx, c := context.WithTimeout(context.Background(), 10*time.Second)
		defer c()
		if err := s.Close(closeCtx); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	// Wait for the group to be joined (start: latest skips what is
	// produced before), then produce a few records: they come as one batch
	// soon after, not after 1000 records.
	deadline := time.Now().Add(20 * time.Second)
	var b pipeline.Batch
	for b == nil {
		produce(t, brokers, topic, 1, 3)
		select {
		case b = <-out:
		case <-time.After(500 * time.Millisecond):
			if time.Now().After(deadline) {
				t.Fatalf("no batch within 20s")
			}
		}
	}
	if len(b) == 0 || len(b) > 1000 {
		t.Fatalf("batch of %d records", len(b))
	}
	b.Settle(nil)
	sent := time.Now()
	produce(t, brokers, topic, 1, 3)
	select {
	case b = <-out:
		if d := time.Since(sent); d > 2*time.Second {
			t.Fatalf("3 records took %v to arrive", d)
		}
		t.Logf("batch of %d records %v after the produce returned", len(b), time.Since(sent).Round(time.Millisecond))
		b.Settle(nil)
	case <-time.After(10 * time.Second):
		t.Fatalf("no batch within 10s")
	}
}

func TestNewSourceErrors(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	missing := testenv.Name("missing")
	existing := testenv.Name("existing")
	testenv.CreateTopic(t, brokers, existing, 1)
	addr := strings.Join(brokers, ",")
	tests := []struct {
		name    string
		cfg     Config
		want    string // exact error, or prefix when it ends with ": "
		is      error
		maxTime time.Duration
	}{
		{name: "missing topic", cfg: Config{Brokers: brokers, Topic: missing, Group: "g"},
			want: fmt.Sprintf("kafka: topic %q does not exist on %s (create it with scripts/services.sh topics %s)", missing, addr, missing),
			is:   ErrUnknownTopic},
		{name: "one of the topics missing", cfg: Config{Brokers: brokers, Topics: []string{existing, missing}, Group: "g"},
			want: fmt.Sprintf("kafka: topic %q does not exist on %s (create it with scripts/services.sh topics %s)", missing, addr, missing),
			is:   ErrUnknownTopic},
		{name: "unreachable", cfg: Config{Brokers: []string{"127.0.0.1:1"}, Topic: "t", Group: "g"},
			want: "kafka: brokers 127.0.0.1:1 unreachable: ", is: ErrUnreachable, maxTime: 6 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			_, err := New(context.Background(), tt.cfg, testEnv())
			if err == nil {
				t.Fatalf("New: got nil, want %s", tt.want)
			}
			if strings.HasSuffix(tt.want, ": ") {
				if !strings.HasPrefix(err.Error(), tt.want) {
					t.Fatalf("New: got %v, want prefix %q", err, tt.want)
				}
			} else if err.Error() != tt.want {
				t.Fatalf("New: got %v, want %s", err, tt.want)
			}
			if !errors.Is(err, tt.is) {
				t.Fatalf("New: got %v, want errors.Is %v", err, tt.is)
			}
			if tt.maxTime > 0 && time.Since(start) > tt.maxTime {
				t.Fatalf("New took %v", time.Since(start))
			}
		})
	}
}

// TestSourceRebalance: a second member joins while the first holds
// unsettled records. The partitions that move are consumed again from the
// last commit by the new owner (at-least-once); the first member's late
// acks and commits do no harm; between them every record is delivered and
// the group ends committed to the end.
func TestSourceRebalance(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	topic := testenv.Name("src_rebalance")
	testenv.CreateTopic(t, brokers, topic, 4)
	const n = 2000
	produce(t, brokers, topic, 4, n)
	group := testenv.Name("g")

	var mu sync.Mutex
	seen := map[int]int{}
	ack := func(recs []pipeline.Record) {
		mu.Lock()
		defer mu.Unlock()
		for i := range recs {
			seen[index(&recs[i])]++
			recs[i].Ack.Done(nil)
		}
	}
	a := startRun(newSource(t, Config{Brokers: brokers, Topic: topic, Group: group, BatchSize: 50}))
	early := a.next(t, 300, 30*time.Second)
	want := []int64{-1, -1, -1, -1} // each partition's records come in offset order
	for i := range early {
		x := index(&early[i])
		want[x%4] = max(want[x%4], int64(x/4)+1)
	}
	ack(early)
	held := a.next(t, n-300, 30*time.Second) // in a's pipeline, unsettled
	waitCommitted(t, brokers, group, topic, want)

	b := startRun(newSource(t, Config{Brokers: brokers, Topic: topic, Group: group, BatchSize: 50}))
	first := b.next(t, 1, 30*time.Second) // b owns partitions now: a rebalance happened
	ack(first)
	ack(held) // a's late acks: commits for partitions a may no longer own
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, r := range []*runner{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case rec := <-r.recs:
					ack([]pipeline.Record{rec})
				case <-stop:
					return
				}
			}
		}()
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		mu.Lock()
		got := len(seen)
		mu.Unlock()
		if got == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("distinct records delivered: got %d, want %d", got, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitCommitted(t, brokers, group, topic, []int64{n / 4, n / 4, n / 4, n / 4})
	a.stopRun(t)
	b.stopRun(t)
	time.Sleep(100 * time.Millisecond) // the ack goroutines take what Run sent last
	close(stop)
	wg.Wait()
	for _, r := range []*runner{a, b} {
		ack(r.next(t, len(r.recs), time.Second))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := r.s.Close(ctx)
		cancel()
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	mu.Lock()
	dups := 0
	for _, c := range seen {
		dups += c - 1
	}
	mu.Unlock()
	if dups == 0 {
		t.Fatalf("no record delivered twice: the partitions b took over should restart from a's last commit")
	}
	t.Logf("%d records, %d delivered again to the new owner (at-least-once across the rebalance)", n, dups)
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		field string
	}{
		{name: "ok", cfg: Config{Brokers: []string{"k:1"}, Topic: "t", Group: "g"}},
		{name: "topics", cfg: Config{Brokers: []string{"k:1"}, Topics: []string{"a", "b", "a"}, Group: "g"}},
		{name: "no brokers", cfg: Config{Topic: "t", Group: "g"}, field: "brokers"},
		{name: "no topic", cfg: Config{Brokers: []string{"k:1"}, Group: "g"}, field: "topic"},
		{name: "both", cfg: Config{Brokers: []string{"k:1"}, Topic: "t", Topics: []string{"u"}, Group: "g"}, field: "topics"},
		{name: "bad topics", cfg: Config{Brokers: []string{"k:1"}, Topics: []string{"a", "b c"}, Group: "g"}, field: "topics"},
		{name: "no group", cfg: Config{Brokers: []string{"k:1"}, Topic: "t"}, field: "group"},
		{name: "bad start", cfg: Config{Brokers: []string{"k:1"}, Topic: "t", Group: "g", Start: "newest"}, field: "start"},
		{name: "min over max", cfg: Config{Brokers: []string{"k:1"}, Topic: "t", Group: "g", MinBytes: 10, MaxBytes: 5}, field: "min_bytes"},
		{name: "negative wait", cfg: Config{Brokers: []string{"k:1"}, Topic: "t", Group: "g", MaxWait: -1}, field: "max_wait"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.cfg
			err := c.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate: got %v, want nil", err)
				}
				if c.Start != "earliest" || c.BatchSize != 1000 || c.Linger != 5*time.Millisecond ||
					c.MinBytes != 1 || c.MaxBytes != 1<<20 || c.MaxWait != 500*time.Millisecond || c.CommitTimeout != 10*time.Second {
					t.Fatalf("defaults: got %+v", c)
				}
				return
			}
			var fe *pipeline.FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field {
				t.Fatalf("Validate: got %v, want an error for field %s", err, tt.field)
			}
		})
	}
}

// TestNoGoroutineLeak: after Close, the source's goroutines (kafka-go's
// reader and group, the committer) are gone.
func TestNoGoroutineLeak(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	topic := testenv.Name("src_leak")
	testenv.CreateTopic(t, brokers, topic, 2)
	produce(t, brokers, topic, 2, 10)
	time.Sleep(100 * time.Millisecond)
	before := runtime.NumGoroutine()
	r := startRun(newSource(t, Config{Brokers: brokers, Topic: topic, Group: testenv.Name("g")}))
	recs := r.next(t, 10, 30*time.Second)
	pipeline.Batch(recs).Settle(nil)
	if err := r.stop(t, 10*time.Second); err != nil {
		t.Fatalf("Close: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d before New, %d after Close:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(50 * time.Millisecond)
	}
}

package kafka

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/internal/testenv"
	"github.com/sluicehq/sluice/pipeline"
)

func testEnv() pipeline.Env {
	return pipeline.Env{Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
}

func newSink(t testing.TB, cfg Config) *Sink {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := New(ctx, cfg, testEnv())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// readAll returns every message of topic, by partition, in offset order.
func readAll(t testing.TB, brokers []string, topic string) map[int][]*kafkago.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A Transport of its own: kafka-go's default one caches metadata.
	tr := &kafkago.Transport{}
	defer tr.CloseIdleConnections()
	c := &kafkago.Client{Addr: kafkago.TCP(brokers...), Timeout: 10 * time.Second, Transport: tr}
	md, err := c.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{topic}})
	if err != nil || len(md.Topics) != 1 || md.Topics[0].Error != nil {
		t.Fatalf("metadata of %s: %v %+v", topic, err, md)
	}
	out := map[int][]*kafkago.Message{}
	for _, p := range md.Topics[0].Partitions {
		var offset int64
		for {
			res, err := c.Fetch(ctx, &kafkago.FetchRequest{Topic: topic, Partition: p.ID, Offset: offset,
				MinBytes: 1, MaxBytes: 10 << 20, MaxWait: 100 * time.Millisecond})
			if err != nil {
				t.Fatalf("fetch %s/%d@%d: %v", topic, p.ID, offset, err)
			}
			if res.Error != nil {
				t.Fatalf("fetch %s/%d@%d: %v", topic, p.ID, offset, res.Error)
			}
			for {
				r, err := res.Records.ReadRecord()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatalf("read %s/%d: %v", topic, p.ID, err)
				}
				if r.Offset < offset {
					continue
				}
				m := &kafkago.Message{Topic: topic, Partition: p.ID, Offset: r.Offset, Headers: r.Headers}
				if r.Key != nil {
					m.Key, _ = kafkago.ReadAll(r.Key)
				}
				if r.Value != nil {
					m.Value, _ = kafkago.ReadAll(r.Value)
				}
				out[p.ID] = append(out[p.ID], m)
				offset = r.Offset + 1
			}
			if offset >= res.HighWatermark {
				break
			}
		}
	}
	return out
}

func header(m *kafkago.Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func TestSinkWrite(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	topic := testenv.Name("sink_write")
	testenv.CreateTopic(t, brokers, topic, 4)
	s := newSink(t, Config{Brokers: brokers, Topic: topic, Key: "{{device_id}}-{{site}}"})

	const n = 300
	b := make(pipeline.Batch, n)
	for i := range b {
		b[i] = pipeline.Record{
			Value:   fmt.Appendf(nil, `{"device_id":"dev%d","site":"s%d","i":%d}`, i%17, i%3, i),
			ID:      pipeline.ID{Device: fmt.Sprintf("dev%d", i%17), Seq: uint64(i), Part: uint32(i % 2)},
			Headers: []pipeline.Header{{Key: "trace", Value: fmt.Appendf(nil, "t%d", i)}},
		}
		switch {
		case i%10 == 0:
			b[i].Key = fmt.Appendf(nil, "explicit-%d", i%4) // a transform's key wins
		case i%10 == 1:
			b[i].Value = fmt.Appendf(nil, `{"i":%d}`, i) // no fields: no key
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Write(ctx, b); err != nil {
		t.Fatalf("Write: %v", err)
	}

	got := readAll(t, brokers, topic)
	parts := []int{0, 1, 2, 3}
	seen := map[string]bool{}
	keylessParts := map[int]bool{}
	total := 0
	for p, msgs := range got {
		for _, m := range msgs {
			total++
			id := header(m, IDHeader)
			var dev string
			var seq, part int
			if _, err := fmt.Sscanf(strings.ReplaceAll(id, "/", " "), "%s %d %d", &dev, &seq, &part); err != nil {
				t.Fatalf("sluice-id %q: %v", id, err)
			}
			if seen[id] {
				t.Fatalf("record %s written twice", id)
			}
			seen[id] = true
			rec := b[seq]
			if string(m.Value) != string(rec.Value) {
				t.Fatalf("value of %s: got %s, want %s", id, m.Value, rec.Value)
			}
			if want := FormatID(rec.ID); id != string(want) {
				t.Fatalf("sluice-id: got %q, want %q", id, want)
			}
			if got, want := header(m, "trace"), fmt.Sprintf("t%d", seq); got != want {
				t.Fatalf("trace header of %s: got %q, want %q", id, got, want)
			}
			var wantKey string
			switch {
			case seq%10 == 0:
				wantKey = fmt.Sprintf("explicit-%d", seq%4)
			case seq%10 == 1:
				wantKey = ""
			default:
				wantKey = fmt.Sprintf("dev%d-s%d", seq%17, seq%3)
			}
			if string(m.Key) != wantKey {
				t.Fatalf("key of %s: got %q, want %q", id, m.Key, wantKey)
			}
			if wantKey == "" {
				keylessParts[p] = true
				continue
			}
			if want := (kafkago.Murmur2Balancer{}).Balance(kafkago.Message{Key: m.Key}, parts...); p != want {
				t.Fatalf("key %q: in partition %d, want %d (murmur2)", m.Key, p, want)
			}
		}
	}
	if total != n {
		t.Fatalf("messages read: got %d, want %d", total, n)
	}
	if len(keylessParts) < 2 {
		t.Fatalf("keyless messages: got partitions %v, want them spread (round robin)", keylessParts)
	}
}

func TestNewMissingTopic(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	topic := testenv.Name("missing")
	_, err := New(context.Background(), Config{Brokers: brokers, Topic: topic}, testEnv())
	want := fmt.Sprintf("kafka: topic %q does not exist on %s (create it with scripts/services.sh topics %s, or set create_topic: true)",
		topic, strings.Join(brokers, ","), topic)
	if err == nil || err.Error() != want {
		t.Fatalf("New: got %v, want %s", err, want)
	}
	if !errors.Is(err, ErrUnknownTopic) || !errors.Is(err, kafkago.UnknownTopicOrPartition) {
		t.Fatalf("New: got %v, want errors.Is ErrUnknownTopic and UnknownTopicOrPartition", err)
	}
	// The check must not have created it (auto-creation is off).
	tr := &kafkago.Transport{}
	defer tr.CloseIdleConnections()
	c := &kafkago.Client{Addr: kafkago.TCP(brokers...), Timeout: 5 * time.Second, Transport: tr}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	md, err := c.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		t.Fatal(err)
	}
	if len(md.Topics) != 1 || !errors.Is(md.Topics[0].Error, kafkago.UnknownTopicOrPartition) {
		t.Fatalf("topic %s exists after New: %+v", topic, md.Topics)
	}
}

func TestNewUnreachable(t *testing.T) {
	tests := []struct {
		name    string
		brokers []string
	}{
		{name: "refused", brokers: []string{"127.0.0.1:1"}},
		{name: "two refused", brokers: []string{"127.0.0.1:1", "127.0.0.1:2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			_, err := New(context.Background(), Config{Brokers: tt.brokers, Topic: "telemetry"}, testEnv())
			elapsed := time.Since(start)
			prefix := fmt.Sprintf("kafka: brokers %s unreachable: ", strings.Join(tt.brokers, ","))
			if err == nil || !strings.HasPrefix(err.Error(), prefix) {
				t.Fatalf("New: got %v, want prefix %q", err, prefix)
			}
			if !errors.Is(err, ErrUnreachable) {
				t.Fatalf("New: got %v, want errors.Is ErrUnreachable", err)
			}
			if elapsed > 6*time.Second {
				t.Fatalf("New took %v, want a few seconds at most", elapsed)
			}
			t.Logf("%v (after %v)", err, elapsed.Round(time.Millisecond))
		})
	}
}

func TestCreateTopic(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	topic := testenv.Name("created")
	t.Cleanup(func() {
		tr := &kafkago.Transport{}
		defer tr.CloseIdleConnections()
		c := &kafkago.Client{Addr: kafkago.TCP(brokers...), Timeout: 10 * time.Second, Transport: tr}
		_, _ = c.DeleteTopics(context.Background(), &kafkago.DeleteTopicsRequest{Topics: []string{topic}})
	})
	s := newSink(t, Config{Brokers: brokers, Topic: topic, CreateTopic: true, Partitions: 3, Key: "{{k}}"})
	b := pipeline.Batch{{Value: []byte(`{"k":"a"}`)}, {Value: []byte(`{"k":"b"}`)}, {Value: []byte(`{"k":"c"}`)}}
	if err := s.Write(context.Background(), b); err != nil {
		t.Fatalf("Write: %v", err)
	}
	got := readAll(t, brokers, topic)
	if len(got) > 3 {
		t.Fatalf("partitions: got %d, want 3", len(got))
	}
	total := 0
	for _, msgs := range got {
		total += len(msgs)
	}
	if total != 3 {
		t.Fatalf("messages: got %d, want 3", total)
	}
	// A second sink finds the topic and creates nothing.
	newSink(t, Config{Brokers: brokers, Topic: topic, CreateTopic: true})
}

func TestDestRouting(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	main, other := testenv.Name("dest_main"), testenv.Name("dest_other")
	testenv.CreateTopic(t, brokers, main, 2)
	testenv.CreateTopic(t, brokers, other, 2)
	missing := testenv.Name("dest_missing")
	s := newSink(t, Config{Brokers: brokers, Topic: main})

	b := pipeline.Batch{
		{Value: []byte(`{"i":0}`)},
		{Value: []byte(`{"i":1}`), Dest: other},
		{Value: []byte(`{"i":2}`), Dest: missing},
		{Value: []byte(`{"i":3}`), Dest: "bad topic!"},
		{Value: []byte(`{"i":4}`), Dest: main},
		{Value: []byte(`{"i":5}`), Dest: other},
		{Value: []byte(`{"i":6}`), Dest: missing},
	}
	wantErr := map[int]error{2: ErrUnknownTopic, 3: ErrInvalidTopic, 6: ErrUnknownTopic}
	for how, err := range map[string]error{"Write": s.Write(context.Background(), b), "Start": s.Start(context.Background(), b)()} {
		re, ok := pipeline.AsRecordErrors(err)
		if !ok {
			t.Fatalf("%s: got %v, want RecordErrors", how, err)
		}
		if len(re) != len(wantErr) {
			t.Fatalf("%s: rejected %v, want records 2, 3 and 6", how, re)
		}
		for i, want := range wantErr {
			if !errors.Is(re[i], want) {
				t.Fatalf("%s: record %d: got %v, want %v", how, i, re[i], want)
			}
		}
	}
	values := func(topic string) string {
		var vs []string
		for _, msgs := range readAll(t, brokers, topic) {
			for _, m := range msgs {
				vs = append(vs, string(m.Value))
			}
		}
		slices.Sort(vs)
		return strings.Join(vs, " ")
	}
	// Each written twice: by Write and by Start.
	if got, want := values(main), `{"i":0} {"i":0} {"i":4} {"i":4}`; got != want {
		t.Fatalf("%s: got %s, want %s", main, got, want)
	}
	if got, want := values(other), `{"i":1} {"i":1} {"i":5} {"i":5}`; got != want {
		t.Fatalf("%s: got %s, want %s", other, got, want)
	}

	// The missing topic is created: after missingTTL, records reach it.
	testenv.CreateTopic(t, brokers, missing, 1)
	time.Sleep(missingTTL)
	if err := s.Write(context.Background(), pipeline.Batch{{Value: []byte(`{"i":7}`), Dest: missing}}); err != nil {
		t.Fatalf("Write to the new topic: %v", err)
	}
	if got, want := values(missing), `{"i":7}`; got != want {
		t.Fatalf("%s: got %s, want %s", missing, got, want)
	}
}

func TestTooLarge(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	topic := testenv.Name("too_large")
	testenv.CreateTopic(t, brokers, topic, 1)
	s := newSink(t, Config{Brokers: brokers, Topic: topic, MaxMessageBytes: 2048})
	big := fmt.Appendf(nil, `{"pad":"%s"}`, strings.Repeat("x", 4000))
	b := pipeline.Batch{{Value: []byte(`{"i":0}`)}, {Value: big}, {Value: []byte(`{"i":2}`)}}
	err := s.Write(context.Background(), b)
	re, ok := pipeline.AsRecordErrors(err)
	if !ok || len(re) != 1 || !errors.Is(re[1], ErrTooLarge) {
		t.Fatalf("Write: got %v, want record 1 rejected as too large", err)
	}
	got := readAll(t, brokers, topic)
	if len(got[0]) != 2 {
		t.Fatalf("messages: got %d, want 2", len(got[0]))
	}
}

// TestBrokerRefusesBatch: the topic's max.message.bytes is below the
// sink's limit, so the broker refuses whole per-partition batches; the sink
// finds the one record that can never fit and writes the others.
func TestBrokerRefusesBatch(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	topic := testenv.Name("small_limit")
	createTopic(t, brokers, topic, 1, kafkago.ConfigEntry{ConfigName: "max.message.bytes", ConfigValue: "2000"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	s := newSink(t, Config{Brokers: brokers, Topic: topic})
	var b pipeline.Batch
	for i := range 12 {
		b = append(b, pipeline.Record{Value: fmt.Appendf(nil, `{"i":%d,"pad":"%s"}`, i, strings.Repeat("y", 200))})
	}
	b[5].Value = fmt.Appendf(nil, `{"i":5,"pad":"%s"}`, strings.Repeat("z", 3000))
	err := s.Write(ctx, b)
	re, ok := pipeline.AsRecordErrors(err)
	if !ok || len(re) != 1 || !errors.Is(re[5], ErrTooLarge) {
		t.Fatalf("Write: got %v, want record 5 rejected as too large", err)
	}
	got := readAll(t, brokers, topic)
	if len(got[0]) != 11 {
		t.Fatalf("messages: got %d, want 11", len(got[0]))
	}
}

func TestWriteCanceled(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	topic := testenv.Name("canceled")
	testenv.CreateTopic(t, brokers, topic, 1)
	s := newSink(t, Config{Brokers: brokers, Topic: topic})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := s.Write(ctx, pipeline.Batch{{Value: []byte(`{}`)}})
	if err == nil {
		t.Fatalf("Write with a canceled context: got nil, want an error")
	}
	if _, ok := pipeline.AsRecordErrors(err); ok {
		t.Fatalf("Write with a canceled context: got %v, want a plain (retriable) error", err)
	}
}

// TestNoGoroutineLeak: after Close, the sink's goroutines (kafka-go's
// writers, the transport's metadata refresh, topic lookups) are gone.
func TestNoGoroutineLeak(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	topic := testenv.Name("leak")
	testenv.CreateTopic(t, brokers, topic, 2)
	time.Sleep(100 * time.Millisecond)
	before := runtime.NumGoroutine()
	s, err := New(context.Background(), Config{Brokers: brokers, Topic: topic}, testEnv())
	if err != nil {
		t.Fatal(err)
	}
	b := pipeline.Batch{{Value: []byte(`{}`)}, {Value: []byte(`{}`), Dest: testenv.Name("nope")}}
	if _, ok := pipeline.AsRecordErrors(s.Write(context.Background(), b)); !ok {
		t.Fatalf("Write: want the record for the missing topic rejected")
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
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

// TestStartKeepsOrder: batches started one after another without waiting
// (as the runner does with max_in_flight) are all written, and reach each
// partition in the order they were started.
func TestStartKeepsOrder(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	topic := testenv.Name("sink_start")
	testenv.CreateTopic(t, brokers, topic, 4)
	s := newSink(t, Config{Brokers: brokers, Topic: topic, Key: "{{device_id}}", MaxInFlight: 4})
	if s.MaxInFlight() != 4 {
		t.Fatalf("MaxInFlight: got %d, want 4", s.MaxInFlight())
	}
	const batches, per = 40, 50
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var waits []func() error
	for k := range batches {
		b := make(pipeline.Batch, per)
		for j := range b {
			i := k*per + j
			b[j] = pipeline.Record{
				Value: fmt.Appendf(nil, `{"device_id":"dev%d","i":%d}`, i%7, i),
				ID:    pipeline.ID{Device: fmt.Sprintf("dev%d", i%7), Seq: uint64(i)},
			}
		}
		waits = append(waits, s.Start(ctx, b))
	}
	for k, wait := range waits {
		if err := wait(); err != nil {
			t.Fatalf("batch %d: %v", k, err)
		}
	}
	total := 0
	for p, msgs := range readAll(t, brokers, topic) {
		last := -1
		for _, m := range msgs {
			var v struct{ I int }
			if err := json.Unmarshal(m.Value, &v); err != nil {
				t.Fatal(err)
			}
			if v.I <= last {
				t.Fatalf("partition %d: record %d after record %d", p, v.I, last)
			}
			last = v.I
			total++
		}
	}
	if total != batches*per {
		t.Fatalf("topic holds %d messages, want %d", total, batches*per)
	}
}

package subscribe

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/segmentio/kafka-go"
)

func TestFiltersAndOrder(t *testing.T) {
	brokers, topic := newTopic(t, 4)
	h := start(t, brokers, topic, Config{})
	recs := records(8, 40, 0) // 320 records
	produce(t, brokers, topic, recs)

	tests := []struct {
		name  string
		query string
		keep  func(rec) bool
	}{
		{name: "everything", query: "", keep: func(rec) bool { return true }},
		{name: "device set", query: "device_id=d1,d6", keep: func(r rec) bool { return r.Device == "d1" || r.Device == "d6" }},
		{name: "repeated device_id", query: "device_id=d2&device_id=d3", keep: func(r rec) bool { return r.Device == "d2" || r.Device == "d3" }},
		{name: "key", query: "key=d4", keep: func(r rec) bool { return r.Device == "d4" }},
		{name: "where", query: "where=" + url.QueryEscape("kind=alert"), keep: func(r rec) bool { return r.Kind == "alert" }},
		{name: "where number", query: "where=seq=7", keep: func(r rec) bool { return r.Seq == 7 }},
		{name: "device and where", query: "device_id=d5&where=kind%3Dalert", keep: func(r rec) bool { return r.Device == "d5" && r.Kind == "alert" }},
		{name: "nothing matches", query: "where=kind=none", keep: func(rec) bool { return false }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := subscribe(t, h, "from=earliest&"+tc.query)
			want := expect(recs, tc.keep)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			got, err := s.records(ctx, count(want))
			if err != nil {
				t.Fatalf("after %d of %d records: %v", len(got), count(want), err)
			}
			if err := sameRecords(byDevice(got), want); err != nil {
				t.Fatal(err)
			}
			if err := s.quiet(300 * time.Millisecond); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestLatestEarliestAndTime(t *testing.T) {
	brokers, topic := newTopic(t, 4)
	h := start(t, brokers, topic, Config{})
	old := records(4, 5, 0)
	produce(t, brokers, topic, old)

	latest := subscribe(t, h, "from=latest")
	deflt := subscribe(t, h, "")
	earliest := subscribe(t, h, "from=earliest")
	time.Sleep(1100 * time.Millisecond) // Kafka timestamps are in milliseconds
	cut := time.Now()
	fresh := records(4, 10, 0)[20:] // seq 6…10
	produce(t, brokers, topic, fresh)
	since := subscribe(t, h, "from=time:"+cut.UTC().Format(time.RFC3339Nano))

	all := append(append([]rec{}, old...), fresh...)
	tests := []struct {
		name string
		s    *sub
		want []rec
	}{
		{name: "latest", s: latest, want: fresh},
		{name: "default is latest", s: deflt, want: fresh},
		{name: "earliest", s: earliest, want: all},
		{name: "time", s: since, want: fresh},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := expect(tc.want, func(rec) bool { return true })
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			got, err := tc.s.records(ctx, count(want))
			if err != nil {
				t.Fatalf("after %d records: %v", len(got), err)
			}
			if err := sameRecords(byDevice(got), want); err != nil {
				t.Fatal(err)
			}
			if err := tc.s.quiet(200 * time.Millisecond); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestResumeHasNoGap(t *testing.T) {
	brokers, topic := newTopic(t, 4)
	h := start(t, brokers, topic, Config{})
	first := records(6, 30, 0)
	produce(t, brokers, topic, first)

	tests := []struct {
		name  string
		query string
		keep  func(rec) bool
		split int // records read before disconnecting
	}{
		{name: "everything", query: "", keep: func(rec) bool { return true }, split: 77},
		{name: "filtered", query: "device_id=d2,d3", keep: func(r rec) bool { return r.Device == "d2" || r.Device == "d3" }, split: 25},
		{name: "at once", query: "", keep: func(rec) bool { return true }, split: 0},
	}
	more := records(6, 50, 0)[len(first):]
	all := append(append([]rec{}, first...), more...)
	subs := make([]*sub, len(tests))
	var before [][]msg
	for i, tc := range tests {
		subs[i] = subscribe(t, h, "from=earliest&"+tc.query)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		got, err := subs[i].records(ctx, tc.split)
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		before = append(before, got)
		subs[i].c.Close(websocket.StatusNormalClosure, "")
	}
	produce(t, brokers, topic, more)
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pos := subs[i].pos
			s := subscribe(t, h, "from="+url.QueryEscape(pos)+"&"+tc.query)
			want := expect(all, tc.keep)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			after, err := s.records(ctx, count(want)-len(before[i]))
			if err != nil {
				t.Fatalf("resumed from %s: after %d records: %v", pos, len(after), err)
			}
			got := append(append([]msg{}, before[i]...), after...)
			if err := sameRecords(byDevice(got), want); err != nil {
				t.Fatalf("resumed from %s: %v", pos, err)
			}
			if err := s.quiet(200 * time.Millisecond); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestBadRequests(t *testing.T) {
	brokers, topic := newTopic(t, 1)
	h := start(t, brokers, topic, Config{})
	tests := []struct {
		name   string
		query  string
		code   websocket.StatusCode
		reason string
	}{
		{name: "unknown topic", query: "topic=nope", code: StatusUnknownTopic, reason: `unknown topic "nope"`},
		{name: "bad from", query: "topic=" + topic + "&from=yesterday", code: StatusBadRequest, reason: "from=yesterday: want latest, earliest"},
		{name: "bad time", query: "topic=" + topic + "&from=time:noon", code: StatusBadRequest, reason: "want time:<RFC3339>"},
		{name: "bad where", query: "topic=" + topic + "&where=kind", code: StatusBadRequest, reason: "where=kind: want <field>=<value>"},
		{name: "empty device_id", query: "topic=" + topic + "&device_id=", code: StatusBadRequest, reason: "device_id: empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, _, err := websocket.Dial(ctx, h.url+"?"+tc.query, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseNow()
			_, _, err = c.Read(ctx)
			var ce websocket.CloseError
			if !asClose(err, &ce) {
				t.Fatalf("read: got %v, want a close frame", err)
			}
			if ce.Code != tc.code || !strings.Contains(ce.Reason, tc.reason) {
				t.Fatalf("close: got %d %q, want %d containing %q", ce.Code, ce.Reason, tc.code, tc.reason)
			}
		})
	}
}

func asClose(err error, ce *websocket.CloseError) bool { return errors.As(err, ce) }

// TestAddedPartitions checks that partitions added to a topic while it is
// served are found and read from their start, by live subscribers and by
// positions that do not name them.
func TestAddedPartitions(t *testing.T) {
	brokers, topic := newTopic(t, 2)
	h := startWith(t, brokers, topic, Config{}, func(e *Endpoint) { e.refresh = 200 * time.Millisecond })
	s := subscribe(t, h, "from=latest")
	before := s.pos // names partitions 0 and 1 only

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 20 * time.Second}
	res, err := client.CreatePartitions(ctx, &kafka.CreatePartitionsRequest{Topics: []kafka.TopicPartitionsConfig{{Name: topic, Count: 4}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Errors[topic]; err != nil {
		t.Fatal(err)
	}
	// One record per partition, written to each partition directly.
	var recs []rec
	for p := range 4 {
		r := rec{Device: fmt.Sprintf("p%d", p), Seq: 1, Kind: "reading"}
		recs = append(recs, r)
		var conn *kafka.Conn
		for {
			conn, err = kafka.DialLeader(ctx, "tcp", brokers[0], topic, p)
			if err == nil || ctx.Err() != nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("partition %d: %v", p, err)
		}
		if _, err := conn.WriteMessages(r.message()); err != nil {
			t.Fatalf("partition %d: %v", p, err)
		}
		conn.Close()
	}
	want := expect(recs, func(rec) bool { return true })
	got, err := s.records(ctx, len(recs))
	if err != nil {
		t.Fatalf("live subscriber: after %d records: %v", len(got), err)
	}
	if err := sameRecords(byDevice(got), want); err != nil {
		t.Fatalf("live subscriber: %v", err)
	}
	if !strings.Contains(s.pos, "3:1") {
		t.Fatalf("position %q does not name the new partitions", s.pos)
	}
	r := subscribe(t, h, "from="+url.QueryEscape(before))
	got, err = r.records(ctx, len(recs))
	if err != nil {
		t.Fatalf("resumed from %s: after %d records: %v", before, len(got), err)
	}
	if err := sameRecords(byDevice(got), want); err != nil {
		t.Fatalf("resumed from %s: %v", before, err)
	}
}

package websocket

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sluicehq/sluice/pipeline"
)

// memSink keeps what it is given; failValue makes a record fail for good.
type memSink struct {
	mu        sync.Mutex
	got       []pipeline.Record
	failValue string
}

func (s *memSink) Write(_ context.Context, b pipeline.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	re := pipeline.RecordErrors{}
	for i, r := range b {
		if s.failValue != "" && strings.Contains(string(r.Value), s.failValue) {
			re[i] = fmt.Errorf("bad value")
			continue
		}
		s.got = append(s.got, r)
	}
	if len(re) > 0 {
		return re
	}
	return nil
}
func (s *memSink) Close(context.Context) error { return nil }
func (s *memSink) records() []pipeline.Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]pipeline.Record(nil), s.got...)
}

type harness struct {
	url    string
	sink   *memSink
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, cfg Config) *harness {
	t.Helper()
	return startEnv(t, cfg, pipeline.Env{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
}

// startEnv is start with env's logger, metrics and directory.
func startEnv(t *testing.T, cfg Config, env pipeline.Env) *harness {
	t.Helper()
	log := env.Logger
	servers := pipeline.NewServers(log)
	env.HTTP = servers
	cfg.Listen = "127.0.0.1:0"
	src, err := New(context.Background(), cfg, env)
	if err != nil {
		t.Fatal(err)
	}
	if err := servers.Start(); err != nil {
		t.Fatal(err)
	}
	sink := &memSink{failValue: "FAIL"}
	p := &pipeline.Pipeline{Name: "ws", Source: src, Sinks: []pipeline.Stage[pipeline.Sink]{{Name: "mem", C: sink}}, Logger: log}
	ctx, cancel := context.WithCancel(context.Background())
	scheme := "ws://"
	if servers.TLS(cfg.Listen) != nil {
		scheme = "wss://"
	}
	h := &harness{url: scheme + servers.Addr("127.0.0.1:0").String() + src.cfg.Path, sink: sink, cancel: cancel, done: make(chan error, 1)}
	go func() { h.done <- p.Run(ctx) }()
	t.Cleanup(func() {
		h.stop()
		_ = servers.Shutdown(context.Background())
	})
	return h
}

func (h *harness) stop() {
	h.cancel()
	<-h.done
	h.done <- nil // let a second stop return
}

func dial(t *testing.T, url string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

type reply struct {
	Ack    uint64 `json:"ack"`
	Nack   uint64 `json:"nack"`
	Seq    uint64 `json:"seq"`
	Device string `json:"device_id"`
	Error  string `json:"error"`
}

// readUntilAck reads replies until the cumulative ack reaches n and
// returns the nacks seen on the way.
func readUntilAck(t *testing.T, c *websocket.Conn, n uint64) []reply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var nacks []reply
	for {
		_, data, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("waiting for ack %d: %v", n, err)
		}
		var r reply
		if err := json.Unmarshal(data, &r); err != nil {
			t.Fatalf("reply %s: %v", data, err)
		}
		if r.Nack > 0 {
			nacks = append(nacks, r)
		}
		if r.Ack >= n {
			return nacks
		}
	}
}

func send(t *testing.T, c *websocket.Conn, frame string) {
	t.Helper()
	if err := c.Write(context.Background(), websocket.MessageText, []byte(frame)); err != nil {
		t.Fatal(err)
	}
}

func TestManyInFlightAreAckedInOrder(t *testing.T) {
	h := start(t, Config{Window: 256})
	c := dial(t, h.url)
	const n = 5000
	go func() {
		for i := 1; i <= n; i++ {
			if err := c.Write(context.Background(), websocket.MessageText, fmt.Appendf(nil, `{"device_id":"d1","seq":%d,"v":%d}`, i, i)); err != nil {
				return
			}
		}
	}()
	if nacks := readUntilAck(t, c, n); len(nacks) != 0 {
		t.Fatalf("unexpected nacks %+v", nacks)
	}
	recs := h.sink.records()
	if len(recs) != n {
		t.Fatalf("sink got %d records, want %d", len(recs), n)
	}
	for i, r := range recs {
		if r.ID != (pipeline.ID{Device: "d1", Seq: uint64(i + 1)}) {
			t.Fatalf("record %d: id %+v out of order", i, r.ID)
		}
	}
}

func TestBadInput(t *testing.T) {
	tests := []struct {
		name   string
		frames []string
		acks   uint64
		want   []reply
	}{
		{
			name:   "malformed JSON between good records",
			frames: []string{`{"seq":1}`, `{"seq":2,`, `{"seq":3}`},
			acks:   3,
			want:   []reply{{Nack: 2, Error: "invalid JSON at byte 9: unexpected end of JSON input"}},
		},
		{
			name:   "not an object",
			frames: []string{`[1,2]`, `{"seq":2}`},
			acks:   2,
			want:   []reply{{Nack: 1, Error: "a record must be a JSON object"}},
		},
		{
			name:   "bad seq names the record",
			frames: []string{`{"device_id":"d7","seq":-4}`},
			acks:   1,
			want:   []reply{{Nack: 1, Device: "d7", Error: "seq must be a non-negative integer, got -4"}},
		},
		{
			name:   "missing seq",
			frames: []string{`{"device_id":"d3","temp":1}`, `{"seq":2}`},
			acks:   2,
			want:   []reply{{Nack: 1, Device: "d3", Error: "missing seq: every record needs a per-device sequence number (docs/protocol.md)"}},
		},
		{
			name:   "oversized frame",
			frames: []string{`{"pad":"` + strings.Repeat("x", 3000) + `"}`, `{"seq":2}`},
			acks:   2,
			want:   []reply{{Nack: 1, Error: "frame of 3010 bytes exceeds max_record_bytes (1024)"}},
		},
		{
			name:   "newline-separated records in one frame",
			frames: []string{"{\"seq\":1}\n\n{\"seq\":2}\nnope\n{\"seq\":4}"},
			acks:   4,
			want:   []reply{{Nack: 3, Error: "invalid JSON at byte 2: invalid character 'o' in literal null (expecting 'u')"}},
		},
		{
			name:   "record a sink rejects",
			frames: []string{`{"seq":1}`, `{"device_id":"d2","seq":2,"x":"FAIL"}`, `{"seq":3}`},
			acks:   3,
			want:   []reply{{Nack: 2, Seq: 2, Device: "d2", Error: "mem: bad value"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := start(t, Config{MaxRecordBytes: 1024})
			c := dial(t, h.url)
			for _, f := range tc.frames {
				send(t, c, f)
			}
			got := readUntilAck(t, c, tc.acks)
			if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", tc.want) {
				t.Fatalf("nacks:\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestDeviceIDFromURL(t *testing.T) {
	off := false
	h := start(t, Config{RequireSeq: &off})
	c := dial(t, h.url+"?device_id=dev-9")
	send(t, c, `{"seq":1,"t":2}`)
	send(t, c, `{}`)
	send(t, c, `{"device_id":"own","seq":3}`)
	readUntilAck(t, c, 3)
	recs := h.sink.records()
	want := []string{`{"device_id":"dev-9","seq":1,"t":2}`, `{"device_id":"dev-9"}`, `{"device_id":"own","seq":3}`}
	for i, r := range recs {
		if string(r.Value) != want[i] {
			t.Fatalf("record %d: got %s, want %s", i, r.Value, want[i])
		}
	}
}

func TestShutdownAcksInFlightAndSaysGoingAway(t *testing.T) {
	h := start(t, Config{})
	c := dial(t, h.url)
	for i := 1; i <= 100; i++ {
		send(t, c, fmt.Sprintf(`{"seq":%d}`, i))
	}
	readUntilAck(t, c, 100)
	go h.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		_, _, err := c.Read(ctx)
		if err != nil {
			if got := websocket.CloseStatus(err); got != websocket.StatusGoingAway {
				t.Fatalf("close status: got %v (%v), want going away", got, err)
			}
			return
		}
	}
}

// gateSink writes while open and fails (transiently) while closed.
type gateSink struct {
	mu     sync.Mutex
	closed bool
}

func (s *gateSink) Write(context.Context, pipeline.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("down")
	}
	return nil
}

func (s *gateSink) Close(context.Context) error { return nil }

func (s *gateSink) shut() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
}

// Stopping while the sink is down: the records it never wrote are not
// acknowledged, the device is still told 1001 going away, and the stop
// takes the drain timeout and a short grace, not the drain timeout twice.
func TestShutdownWithTheSinkDown(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	servers := pipeline.NewServers(log)
	src, err := New(context.Background(), Config{Listen: "127.0.0.1:0"}, pipeline.Env{Logger: log, HTTP: servers})
	if err != nil {
		t.Fatal(err)
	}
	if err := servers.Start(); err != nil {
		t.Fatal(err)
	}
	defer servers.Shutdown(context.Background())
	sink := &gateSink{}
	drain := time.Second
	p := &pipeline.Pipeline{Name: "ws", Source: src, Sinks: []pipeline.Stage[pipeline.Sink]{{Name: "gate", C: sink}},
		DrainTimeout: drain, Logger: log}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()

	c := dial(t, "ws://"+servers.Addr("127.0.0.1:0").String()+"/ingest")
	for i := 1; i <= 5; i++ {
		send(t, c, fmt.Sprintf(`{"seq":%d}`, i))
	}
	readUntilAck(t, c, 5)
	sink.shut()
	for i := 6; i <= 10; i++ {
		send(t, c, fmt.Sprintf(`{"seq":%d}`, i))
	}
	time.Sleep(200 * time.Millisecond) // taken by the pipeline, failing in the sink
	start := time.Now()
	cancel()
	rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer rcancel()
	for {
		_, data, err := c.Read(rctx)
		if err != nil {
			if got := websocket.CloseStatus(err); got != websocket.StatusGoingAway {
				t.Fatalf("close status: got %v (%v), want going away", got, err)
			}
			break
		}
		var r reply
		if err := json.Unmarshal(data, &r); err != nil {
			t.Fatal(err)
		}
		if r.Ack > 5 || r.Nack > 0 {
			t.Fatalf("got %s for records the sink never wrote", data)
		}
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the pipeline did not stop")
	}
	if took, limit := time.Since(start), drain+closeGrace+time.Second; took > limit {
		t.Fatalf("stopping took %v, want at most %v", took, limit)
	}
}

package device

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sluicehq/sluice/pipeline"
	wssource "github.com/sluicehq/sluice/sources/websocket"
)

// sendAll sends n records {"n":i} (i = 1..n) and returns the error, if any,
// on the channel.
func sendAll(c *Client, n int, extra func(i int) string) <-chan error {
	done := make(chan error, 1)
	go func() {
		for i := 1; i <= n; i++ {
			rec := fmt.Sprintf(`{"n":%d,"pad":"%s"%s}`, i, strings.Repeat("x", 100), extra(i))
			if _, err := c.Send(context.Background(), []byte(rec)); err != nil {
				done <- fmt.Errorf("send %d: %w", i, err)
				return
			}
		}
		done <- nil
	}()
	return done
}

func noExtra(int) string { return "" }

type value struct {
	Device string `json:"device_id"`
	Seq    uint64 `json:"seq"`
	N      uint64 `json:"n"`
}

func decode(t *testing.T, r pipeline.Record) value {
	t.Helper()
	var v value
	if err := json.Unmarshal(r.Value, &v); err != nil {
		t.Fatalf("record %s: %v", r.Value, err)
	}
	if r.ID != (pipeline.ID{Device: v.Device, Seq: v.Seq}) {
		t.Fatalf("record %s: id %+v does not match its fields", r.Value, r.ID)
	}
	return v
}

// checkDeduped checks that the sink holds seqs 1..n of device, each record
// first seen in seq order, and that every duplicate equals the original. It
// returns the number of duplicates.
func checkDeduped(t *testing.T, recs []pipeline.Record, device string, n int) int {
	t.Helper()
	return checkDelivery(t, recs, device, n, true)
}

// checkDelivery is checkDeduped with the order check optional.
func checkDelivery(t *testing.T, recs []pipeline.Record, device string, n int, ordered bool) int {
	t.Helper()
	seen := map[uint64]string{}
	var high uint64
	dups := 0
	for i, r := range recs {
		v := decode(t, r)
		if v.Device != device {
			t.Fatalf("record %d: device %q, want %q", i, v.Device, device)
		}
		if v.N != v.Seq {
			t.Fatalf("record %d: seq %d carries n %d", i, v.Seq, v.N)
		}
		if prev, ok := seen[v.Seq]; ok {
			if prev != string(r.Value) {
				t.Fatalf("seq %d delivered twice with different values:\n%s\n%s", v.Seq, prev, r.Value)
			}
			dups++
			continue
		}
		if ordered && v.Seq != high+1 {
			t.Fatalf("record %d: seq %d arrived after seq %d: out of order", i, v.Seq, high)
		}
		high = max(high, v.Seq)
		seen[v.Seq] = string(r.Value)
	}
	if len(seen) != n {
		t.Fatalf("sink has %d distinct records, want %d", len(seen), n)
	}
	return dups
}

func TestExactlyOnceInOrderAcrossServerRestarts(t *testing.T) {
	srv := startServer(t, wssource.Config{})
	c := newClient(t, srv.url, Options{DeviceID: "d1", FirstSeq: 1, Window: 256})
	const n = 20000
	sent := sendAll(c, n, noExtra)
	for r := 1; r <= 3; r++ {
		waitFor(t, 30*time.Second, "records to reach the sink", func() bool { return srv.sink.len() >= r*n/5 })
		srv.restart() // graceful: final acks, then 1001 going away
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	flush(t, c, 60*time.Second)

	recs := srv.sink.records()
	if len(recs) != n {
		t.Fatalf("sink got %d records, want exactly %d", len(recs), n)
	}
	if dups := checkDeduped(t, recs, "d1", n); dups != 0 {
		t.Fatalf("%d duplicates after graceful restarts, want 0", dups)
	}
	s := c.Stats()
	if s.Acked != n || s.Nacked != 0 || s.Queued != 0 || s.Inflight != 0 {
		t.Fatalf("stats %+v: want %d acked and nothing queued", s, n)
	}
	if s.Connects < 4 {
		t.Fatalf("stats %+v: want at least 4 connections (3 restarts)", s)
	}
}

func TestEveryRecordOnceByIdentityAfterConnectionCuts(t *testing.T) {
	srv := startServer(t, wssource.Config{})
	px := startProxy(t, srv.listen)
	c := newClient(t, px.url(), Options{DeviceID: "d2", FirstSeq: 1, Window: 512})
	const n = 20000
	sent := sendAll(c, n, noExtra)
	cuts := 0
	for r := 1; r <= 6; r++ {
		waitFor(t, 30*time.Second, "records to reach the sink", func() bool { return srv.sink.len() >= r*n/8 })
		cuts += px.cut()
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	flush(t, c, 60*time.Second)

	dups := checkDeduped(t, srv.sink.records(), "d2", n)
	s := c.Stats()
	t.Logf("%d cuts, %d duplicates at the sink, stats %+v", cuts, dups, s)
	if cuts == 0 || s.Connects < 2 {
		t.Fatalf("no connection was cut (cuts %d, stats %+v)", cuts, s)
	}
	if s.Acked != n || s.Queued != 0 {
		t.Fatalf("stats %+v: want %d acked", s, n)
	}
	if s.Sent != n {
		t.Fatalf("stats %+v: Sent counts first sends only, want %d", s, n)
	}
}

func TestNacksAreReportedAndNotResent(t *testing.T) {
	srv := startServer(t, wssource.Config{})
	var mu sync.Mutex
	var nacked []uint64
	var reasons []string
	c := newClient(t, srv.url, Options{DeviceID: "d3", FirstSeq: 1, OnNack: func(rec []byte, err *NackError) {
		mu.Lock()
		defer mu.Unlock()
		if !strings.Contains(string(rec), fmt.Sprintf(`"seq":%d,`, err.Seq)) {
			t.Errorf("nack for seq %d came with record %s", err.Seq, rec)
		}
		nacked = append(nacked, err.Seq)
		reasons = append(reasons, err.Reason)
	}})
	const n = 1000
	fail := func(i int) string {
		if i%100 == 7 {
			return `,"x":"FAIL"`
		}
		return ""
	}
	if err := <-sendAll(c, n, fail); err != nil {
		t.Fatal(err)
	}
	flush(t, c, 30*time.Second)

	mu.Lock()
	defer mu.Unlock()
	var want []uint64
	for i := 1; i <= n; i++ {
		if fail(i) != "" {
			want = append(want, uint64(i))
		}
	}
	slices.Sort(nacked)
	if !slices.Equal(nacked, want) {
		t.Fatalf("nacked seqs: got %v, want %v", nacked, want)
	}
	for _, r := range reasons {
		if r != "mem: bad value" {
			t.Fatalf("nack reason: got %q, want %q", r, "mem: bad value")
		}
	}
	recs := srv.sink.records()
	if len(recs) != n-len(want) {
		t.Fatalf("sink got %d records, want %d", len(recs), n-len(want))
	}
	s := c.Stats()
	if s.Acked != uint64(n-len(want)) || s.Nacked != uint64(len(want)) || s.Resent != 0 {
		t.Fatalf("stats %+v: want %d acked, %d nacked, none resent", s, n-len(want), len(want))
	}
}

func TestFrameTooLargeForServerIsSplit(t *testing.T) {
	// The server takes at most 1 KiB per frame; the client starts with
	// 64 KiB frames, is told so by a nack of a whole frame, reconnects and
	// sends smaller frames. A record that alone exceeds 1 KiB is nacked.
	srv := startServer(t, wssource.Config{MaxRecordBytes: 1024})
	var mu sync.Mutex
	var nacks []*NackError
	var nackedLen int
	c := newClient(t, srv.url, Options{DeviceID: "d4", FirstSeq: 1, OnNack: func(rec []byte, err *NackError) {
		mu.Lock()
		nacks = append(nacks, err)
		nackedLen = len(rec)
		mu.Unlock()
	}})
	const n = 3000
	if err := <-sendAll(c, n, noExtra); err != nil {
		t.Fatal(err)
	}
	big, err := c.Send(context.Background(), []byte(`{"n":3001,"pad":"`+strings.Repeat("y", 2000)+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	flush(t, c, 30*time.Second)

	// Frames that followed a rejected one on the same connection may be
	// written before the rejected records are resent: every record arrives,
	// but not necessarily in order.
	checkDelivery(t, srv.sink.records(), "d4", n, false)
	mu.Lock()
	defer mu.Unlock()
	if len(nacks) != 1 || nacks[0].Seq != big {
		t.Fatalf("nacks %+v: want only seq %d", nacks, big)
	}
	want := fmt.Sprintf("frame of %d bytes exceeds max_record_bytes (1024)", nackedLen)
	if nacks[0].Reason != want {
		t.Fatalf("nack reason: got %q, want %q", nacks[0].Reason, want)
	}
	c.mu.Lock()
	limit := c.frameLimit
	c.mu.Unlock()
	if limit != 1024 {
		t.Fatalf("frame limit after the nack: got %d, want 1024", limit)
	}
}

// fakeServer speaks the protocol without acking on its own: the test acks.
type fakeServer struct {
	url      string
	received atomic.Int64
	conns    chan *websocket.Conn
}

func startFake(t *testing.T) *fakeServer {
	f := &fakeServer{conns: make(chan *websocket.Conn, 4)}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		f.conns <- ws
		for {
			_, data, err := ws.Read(context.Background())
			if err != nil {
				return
			}
			f.received.Add(int64(strings.Count(string(data), "\n") + 1))
		}
	}))
	t.Cleanup(hs.Close)
	f.url = "ws" + strings.TrimPrefix(hs.URL, "http") + "/ingest"
	return f
}

func TestWindowBoundsRecordsInFlight(t *testing.T) {
	f := startFake(t)
	const window = 50
	c := newClient(t, f.url, Options{DeviceID: "d5", FirstSeq: 1, Window: window})
	if err := <-sendAll(c, 200, noExtra); err != nil {
		t.Fatal(err)
	}
	var ws *websocket.Conn
	select {
	case ws = <-f.conns:
	case <-time.After(10 * time.Second):
		t.Fatal("client did not connect")
	}
	ack := func(n int) {
		t.Helper()
		if err := ws.Write(context.Background(), websocket.MessageText, fmt.Appendf(nil, `{"ack":%d}`, n)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name     string
		ack      int // cumulative ack to send first (0: none)
		received int64
	}{
		{name: "window full, nothing acked", received: window},
		{name: "20 acked frees 20", ack: 20, received: window + 20},
		{name: "all 70 acked frees 50", ack: 70, received: 120},
		{name: "ack 120", ack: 120, received: 170},
		{name: "ack 170 lets the last 30 go", ack: 170, received: 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.ack > 0 {
				ack(tc.ack)
			}
			waitFor(t, 5*time.Second, "records", func() bool { return f.received.Load() >= tc.received })
			time.Sleep(100 * time.Millisecond) // nothing more may come
			if got := f.received.Load(); got != tc.received {
				t.Fatalf("server received %d records, want %d", got, tc.received)
			}
			if got := c.Stats().Inflight; got > window {
				t.Fatalf("inflight %d exceeds the window %d", got, window)
			}
		})
	}
	ack(200)
	flush(t, c, 5*time.Second)
	if s := c.Stats(); s.Acked != 200 || s.Inflight != 0 || s.Connects != 1 {
		t.Fatalf("stats %+v: want 200 acked", s)
	}
}

func TestAckBeyondWhatWasSentDropsTheConnection(t *testing.T) {
	f := startFake(t)
	c := newClient(t, f.url, Options{DeviceID: "d6", FirstSeq: 1})
	if _, err := c.Send(context.Background(), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	ws := <-f.conns
	waitFor(t, 5*time.Second, "the record", func() bool { return f.received.Load() == 1 })
	_ = ws.Write(context.Background(), websocket.MessageText, []byte(`{"ack":5}`))
	// The client must not take the bogus ack: it reconnects and resends.
	ws = <-f.conns
	waitFor(t, 5*time.Second, "the resent record", func() bool { return f.received.Load() == 2 })
	if s := c.Stats(); s.Acked != 0 || s.Resent != 1 {
		t.Fatalf("stats %+v: want nothing acked and one resend", s)
	}
	_ = ws.Write(context.Background(), websocket.MessageText, []byte(`{"ack":1}`))
	flush(t, c, 5*time.Second)
}

func TestSendRules(t *testing.T) {
	tests := []struct {
		name    string
		record  string
		want    string
		wantErr error
	}{
		{name: "fields added first", record: `{"temp":21.5}`, want: `{"device_id":"dev-1","seq":7,"temp":21.5}`},
		{name: "empty object", record: `{}`, want: `{"device_id":"dev-1","seq":7}`},
		{name: "own device id kept once", record: `{"temp":1,"device_id":"dev-1"}`, want: `{"seq":7,"temp":1,"device_id":"dev-1"}`},
		{name: "newlines compacted away", record: "{\n  \"a\": [1,\n 2],\n  \"s\": \"x\\ny\"\n}\n", want: `{"device_id":"dev-1","seq":7,"a":[1,2],"s":"x\ny"}`},
		{name: "seq is the client's", record: `{"seq":3}`, wantErr: ErrHasSeq},
		{name: "other device", record: `{"device_id":"dev-2"}`, wantErr: ErrDeviceID},
		{name: "device id not a string", record: `{"device_id":1}`, wantErr: ErrDeviceID},
		{name: "array", record: `[1]`, wantErr: ErrNotObject},
		{name: "not JSON", record: `{"a":`, wantErr: errors.New("device: record is not valid JSON: unexpected end of JSON input")},
	}
	c := newClient(t, "ws://127.0.0.1:1/ingest", Options{DeviceID: "dev-1", FirstSeq: 7})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := c.prepare([]byte(tc.record))
			if tc.wantErr != nil {
				if err == nil || (!errors.Is(err, tc.wantErr) && err.Error() != tc.wantErr.Error()) {
					t.Fatalf("error: got %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := string(c.stamp(b, 7)); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestOutboxLimit(t *testing.T) {
	c := newClient(t, "ws://127.0.0.1:1/ingest", Options{DeviceID: "d7", FirstSeq: 1, OutboxLimit: 2, MaxRecordBytes: 100})
	for i := range 2 {
		if _, err := c.TrySend([]byte(`{}`)); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	if _, err := c.TrySend([]byte(`{}`)); !errors.Is(err, ErrOutboxFull) {
		t.Fatalf("TrySend on a full outbox: got %v, want ErrOutboxFull", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Send(ctx, []byte(`{}`)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send on a full outbox: got %v, want it to block until the deadline", err)
	}
	c.Close()
	if _, err := c.Send(context.Background(), []byte(`{}`)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send after Close: got %v, want ErrClosed", err)
	}
	if err := c.Flush(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Flush after Close: got %v, want ErrClosed", err)
	}
}

func TestRecordTooLarge(t *testing.T) {
	c := newClient(t, "ws://127.0.0.1:1/ingest", Options{DeviceID: "d8", FirstSeq: 1, MaxRecordBytes: 64})
	_, err := c.Send(context.Background(), []byte(`{"pad":"`+strings.Repeat("z", 64)+`"}`))
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
	if seq, err := c.Send(context.Background(), []byte(`{}`)); err != nil || seq != 1 {
		t.Fatalf("next record: seq %d, err %v; want seq 1 (a refused record uses no seq)", seq, err)
	}
}

func TestNewRequiresDeviceID(t *testing.T) {
	if _, err := New("ws://127.0.0.1:1/ingest", Options{}); err == nil {
		t.Fatal("New without DeviceID: want an error")
	}
	if _, err := New("http://127.0.0.1:1/ingest", Options{DeviceID: "x"}); err == nil {
		t.Fatal("New with an http URL: want an error")
	}
}

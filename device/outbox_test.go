package device

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	wssource "github.com/sluicehq/sluice/sources/websocket"
)

// TestMain lets the test binary play a device process that the kill test
// can SIGKILL.
func TestMain(m *testing.M) {
	if os.Getenv("DEVICE_TEST_CRASH_HELPER") != "" {
		crashHelper()
		return
	}
	os.Exit(m.Run())
}

// crashHelper sends 100 records and flushes them, waits for a line on
// stdin, queues 100 more (the server is down by then) and waits to be
// killed.
func crashHelper() {
	c, err := New(os.Getenv("DEVICE_TEST_URL"), Options{
		DeviceID: "crash", FirstSeq: 1, OutboxDir: os.Getenv("DEVICE_TEST_DIR"), Logger: quiet,
	})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := 1; i <= 100; i++ {
		c.Send(ctx, fmt.Appendf(nil, `{"n":%d}`, i))
	}
	if err := c.Flush(ctx); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("flushed")
	bufio.NewReader(os.Stdin).ReadString('\n')
	for i := 101; i <= 200; i++ {
		c.Send(ctx, fmt.Appendf(nil, `{"n":%d}`, i))
	}
	fmt.Println("queued")
	select {}
}

func TestOutboxSurvivesKill(t *testing.T) {
	srv := startServer(t, wssource.Config{})
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "DEVICE_TEST_CRASH_HELPER=1", "DEVICE_TEST_URL="+srv.url, "DEVICE_TEST_DIR="+dir)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	out := bufio.NewReader(stdout)
	expect := func(want string) {
		t.Helper()
		line, err := out.ReadString('\n')
		if strings.TrimSpace(line) != want {
			t.Fatalf("helper said %q (%v), want %q", line, err, want)
		}
	}
	expect("flushed")
	srv.stop()
	io.WriteString(stdin, "go\n")
	expect("queued")
	if err := cmd.Process.Kill(); err != nil { // SIGKILL: no cleanup at all
		t.Fatal(err)
	}
	cmd.Wait()

	srv.start()
	c := newClient(t, srv.url, Options{DeviceID: "crash", OutboxDir: dir})
	flush(t, c, 30*time.Second)
	seq, err := c.Send(context.Background(), []byte(`{"n":201}`))
	if err != nil || seq != 201 {
		t.Fatalf("first new record: seq %d, err %v; want seq 201", seq, err)
	}
	flush(t, c, 30*time.Second)
	recs := srv.sink.records()
	if len(recs) != 201 {
		t.Fatalf("sink got %d records, want 201", len(recs))
	}
	checkDeduped(t, recs, "crash", 201)
	if s := c.Stats(); s.Resent != 100 || s.Sent != 1 || s.Acked != 101 {
		t.Fatalf("stats %+v: want 100 resent from the outbox, 1 sent, 101 acked", s)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, outboxName))
	if err != nil {
		t.Fatal(err)
	}
	if want := string(appendLine(nil, 'a', 201, nil)); string(data) != want {
		t.Fatalf("outbox after a full flush and Close: got %q, want %q", data, want)
	}
}

func TestOutboxFile(t *testing.T) {
	rec := func(seq uint64, v string) string { return string(appendLine(nil, 'r', seq, []byte(v))) }
	ack := func(seq uint64) string { return string(appendLine(nil, 'a', seq, nil)) }
	tests := []struct {
		name     string
		file     string
		pending  []uint64
		nextSeq  uint64 // 0: the file is empty and FirstSeq applies
		wantSize int    // bytes kept (-1: all)
	}{
		{name: "empty", file: "", nextSeq: 0, wantSize: -1},
		{name: "records and acks", file: rec(1, `{"a":1}`) + rec(2, `{"a":2}`) + ack(1) + rec(3, `{"a":3}`), pending: []uint64{2, 3}, nextSeq: 4, wantSize: -1},
		{name: "all settled", file: rec(5, `{}`) + ack(5), nextSeq: 6, wantSize: -1},
		{name: "compacted", file: ack(41), nextSeq: 42, wantSize: -1},
		{name: "torn last line", file: rec(1, `{}`) + rec(2, `{"b":2}`)[:10], pending: []uint64{1}, nextSeq: 2, wantSize: len(rec(1, `{}`))},
		{name: "bad checksum stops reading", file: rec(1, `{}`) + strings.Replace(rec(2, `{"b":2}`), "2}", "3}", 1) + rec(3, `{}`), pending: []uint64{1}, nextSeq: 2, wantSize: len(rec(1, `{}`))},
		{name: "zeros after a power loss", file: rec(1, `{}`) + strings.Repeat("\x00", 4096), pending: []uint64{1}, nextSeq: 2, wantSize: len(rec(1, `{}`))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, outboxName)
			if err := os.WriteFile(path, []byte(tc.file), 0o644); err != nil {
				t.Fatal(err)
			}
			c, err := New("ws://127.0.0.1:1/ingest", Options{DeviceID: "f", OutboxDir: dir, FirstSeq: 1000, Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			c.mu.Lock()
			var pending []uint64
			for _, e := range c.q {
				pending = append(pending, e.seq)
			}
			next := c.nextSeq
			c.mu.Unlock()
			if fmt.Sprint(pending) != fmt.Sprint(tc.pending) {
				t.Fatalf("pending: got %v, want %v", pending, tc.pending)
			}
			want := tc.nextSeq
			if want == 0 {
				want = 1000
			}
			if next != want {
				t.Fatalf("next seq: got %d, want %d", next, want)
			}
			st, _ := os.Stat(path)
			if tc.wantSize >= 0 && st.Size() != int64(tc.wantSize) {
				t.Fatalf("file size after repair: got %d, want %d", st.Size(), tc.wantSize)
			}
			// A new record goes after the good lines and is read back.
			seq, err := c.Send(context.Background(), []byte(`{"new":true}`))
			if err != nil || seq != want {
				t.Fatalf("send: seq %d, err %v; want seq %d", seq, err, want)
			}
			c.Close()
			c, err = New("ws://127.0.0.1:1/ingest", Options{DeviceID: "f", OutboxDir: dir, FirstSeq: 5000, Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.mu.Lock()
			defer c.mu.Unlock()
			if n := len(c.q); n != len(tc.pending)+1 || c.q[n-1].seq != want || c.nextSeq != want+1 {
				t.Fatalf("after reopening: %d pending, next seq %d; want %d pending ending with %d", n, c.nextSeq, len(tc.pending)+1, want)
			}
		})
	}
}

func TestOutboxCompactsWhileStreaming(t *testing.T) {
	srv := startServer(t, wssource.Config{})
	dir := t.TempDir()
	c := newClient(t, srv.url, Options{DeviceID: "d9", FirstSeq: 1, OutboxDir: dir, SyncSend: false})
	const n = 60000 // ~10 MiB of record lines: more than the compaction threshold
	if err := <-sendAll(c, n, noExtra); err != nil {
		t.Fatal(err)
	}
	flush(t, c, 60*time.Second)
	checkDeduped(t, srv.sink.records(), "d9", n)
	st, err := os.Stat(filepath.Join(dir, outboxName))
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() > 1<<20 {
		t.Fatalf("outbox file is %d bytes after %d records: not compacted", st.Size(), n)
	}
}

func TestSyncSendReturnsOnceDurable(t *testing.T) {
	dir := t.TempDir()
	c := newClient(t, "ws://127.0.0.1:1/ingest", Options{DeviceID: "s", FirstSeq: 1, OutboxDir: dir, SyncSend: true})
	for i := range 20 {
		seq, err := c.Send(context.Background(), []byte(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		c.mu.Lock()
		durable := c.durableSeq
		c.mu.Unlock()
		if durable < seq {
			t.Fatalf("record %d: Send returned with seq %d before it was durable (%d)", i, seq, durable)
		}
	}
}

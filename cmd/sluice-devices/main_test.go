package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pipeline"
	wssource "github.com/sluicehq/sluice/sources/websocket"
)

type memSink struct {
	mu  sync.Mutex
	got []pipeline.Record
}

func (s *memSink) Write(_ context.Context, b pipeline.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, b...)
	return nil
}

func (s *memSink) Close(context.Context) error { return nil }

// startSluice runs a WebSocket source into a memory sink and returns its URL.
func startSluice(t *testing.T) (string, *memSink) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	servers := pipeline.NewServers(log)
	src, err := wssource.New(context.Background(), wssource.Config{Listen: "127.0.0.1:0"}, pipeline.Env{Logger: log, HTTP: servers})
	if err != nil {
		t.Fatal(err)
	}
	if err := servers.Start(); err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	p := &pipeline.Pipeline{Name: "ws", Source: src, Sinks: []pipeline.Stage[pipeline.Sink]{{Name: "mem", C: sink}}, Logger: log}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		servers.Shutdown(context.Background())
	})
	return "ws://" + servers.Addr("127.0.0.1:0").String() + "/ingest", sink
}

func TestSimulator(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		want string // in stdout
	}{
		{name: "all acked", args: []string{"--devices", "3", "--records", "3000"}, code: 0,
			want: "summary: devices 3  records 3000  sent 3000  acked 3000  nacked 0  resent 0  reconnects 0"},
		{name: "rate limited with outboxes", args: []string{"--devices", "2", "--records", "40", "--rate", "40", "--outbox-dir", "OUTBOX"}, code: 0,
			want: "sent 40  acked 40  nacked 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			url, sink := startSluice(t)
			args := append([]string{"--url", url, "--timeout", "30s"}, tc.args...)
			for i, a := range args {
				if a == "OUTBOX" {
					args[i] = t.TempDir()
				}
			}
			var stdout, stderr bytes.Buffer
			start := time.Now()
			if code := run(context.Background(), args, &stdout, &stderr); code != tc.code {
				t.Fatalf("exit code: got %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, &stdout, &stderr)
			}
			if !strings.Contains(stdout.String(), tc.want) {
				t.Fatalf("stdout lacks %q:\n%s", tc.want, &stdout)
			}
			sink.mu.Lock()
			defer sink.mu.Unlock()
			perDevice := map[string]int{}
			for _, r := range sink.got {
				var v struct {
					Device   string  `json:"device_id"`
					Seq      uint64  `json:"seq"`
					TS       string  `json:"ts"`
					Temp     float64 `json:"temp"`
					Humidity float64 `json:"humidity"`
					Pressure float64 `json:"pressure"`
					Kind     string  `json:"kind"`
					Msg      string  `json:"msg"`
				}
				if err := json.Unmarshal(r.Value, &v); err != nil {
					t.Fatalf("record %s: %v", r.Value, err)
				}
				if _, err := time.Parse(time.RFC3339Nano, v.TS); err != nil || v.Seq == 0 || v.Msg == "" || (v.Kind != "reading" && v.Kind != "alert") {
					t.Fatalf("record does not have the reading shape: %s", r.Value)
				}
				if n := len(r.Value); n < 150 || n > 260 {
					t.Fatalf("record of %d bytes, want about 200: %s", n, r.Value)
				}
				perDevice[v.Device]++
			}
			if tc.name == "rate limited with outboxes" && time.Since(start) < 900*time.Millisecond {
				t.Fatalf("40 records at 40/s took %v, want about 1s", time.Since(start))
			}
			if len(perDevice) == 0 || len(sink.got) == 0 {
				t.Fatal("nothing reached the sink")
			}
			if _, ok := perDevice["dev-0001"]; !ok {
				t.Fatalf("devices %v: want ids like dev-0001", perDevice)
			}
		})
	}
}

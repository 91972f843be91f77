package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sluicehq/sluice/internal/app"
	"github.com/sluicehq/sluice/internal/testenv"
	"github.com/sluicehq/sluice/pipeline"
)

// TestFailingTransformFailsOnlyItsRecord: a transform that traps on one
// record nacks that record to its device with the reason and dead-letters
// it; every other record of the same batch goes through and is acked.
func TestFailingTransformFailsOnlyItsRecord(t *testing.T) {
	module := testenv.BuildWAT(t, "runtime/wasm/testdata/hostile.wat")
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "pipeline.yaml")
	yaml := fmt.Sprintf(`
pipelines:
  ingest:
    source: { websocket: { listen: 127.0.0.1:0, linger: 50ms } }
    transforms:
      - wasm: { module: %s }
    sinks:
      - file: { path: out.jsonl }
    dead_letter:
      file: { path: dead.jsonl }
`, module)
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	file, err := pipeline.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		done <- app.Serve(ctx, file, log, func(s *pipeline.Servers) { addr <- s.Addr("127.0.0.1:0").String() })
	}()
	c, _, err := websocket.Dial(ctx, "ws://"+<-addr+"/ingest", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()

	// One frame, so the poison record shares a guest call with the others.
	var frame []string
	for seq := 1; seq <= 100; seq++ {
		if seq == 30 {
			frame = append(frame, `{"poison":true,"device_id":"d1","seq":30}`)
			continue
		}
		frame = append(frame, fmt.Sprintf(`{"device_id":"d1","seq":%d}`, seq))
	}
	if err := c.Write(ctx, websocket.MessageText, []byte(strings.Join(frame, "\n"))); err != nil {
		t.Fatal(err)
	}
	var nacks []string
	readCtx, cancelRead := context.WithTimeout(ctx, 30*time.Second)
	defer cancelRead()
	for {
		_, data, err := c.Read(readCtx)
		if err != nil {
			t.Fatalf("waiting for acks: %v", err)
		}
		var r struct {
			Ack   int    `json:"ack"`
			Nack  int    `json:"nack"`
			Error string `json:"error"`
		}
		if err := json.Unmarshal(data, &r); err != nil {
			t.Fatal(err)
		}
		if r.Nack > 0 {
			nacks = append(nacks, fmt.Sprintf("%d: %s", r.Nack, r.Error))
		}
		if r.Ack == 100 {
			break
		}
	}
	want := fmt.Sprintf("30: transforms[0].wasm: wasm %s: sluice_process: trap: unreachable", module)
	if len(nacks) != 1 || !strings.HasPrefix(nacks[0], want) {
		t.Fatalf("nacks %q, want one starting %q", nacks, want)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	out := readLines(t, filepath.Join(dir, "out.jsonl"))
	if len(out) != 99 {
		t.Fatalf("out.jsonl has %d records, want 99", len(out))
	}
	for i, line := range out {
		seq := i + 1
		if seq >= 30 {
			seq++
		}
		if want := fmt.Sprintf(`{"device_id":"d1","seq":%d}`, seq); line != want {
			t.Fatalf("out.jsonl line %d: %s, want %s", i, line, want)
		}
	}
	dead := readLines(t, filepath.Join(dir, "dead.jsonl"))
	if len(dead) != 1 || !strings.Contains(dead[0], `"device_id":"d1","seq":30,"part":0,"record":{"poison":true,"device_id":"d1","seq":30}}`) ||
		!strings.Contains(dead[0], `"error":"transforms[0].wasm: wasm `) {
		t.Fatalf("dead.jsonl: %q", dead)
	}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		lines = append(lines, s.Text())
	}
	return lines
}

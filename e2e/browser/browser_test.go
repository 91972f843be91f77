// Package browser tests the subscription endpoint's browser view in a real
// Chromium, driven by playwright-core (view.mjs), against the real Kafka.
//
// It needs Debian's chromium (apt-get install -y chromium) and
// playwright-core (npm ci in this directory).
package browser

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/endpoints/subscribe"
	"github.com/sluicehq/sluice/internal/testenv"
	"github.com/sluicehq/sluice/pipeline"
)

// requireBrowser fails the test with what to install when Chromium, node or
// playwright-core is missing.
func requireBrowser(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: skipping the browser test")
	}
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("Chromium not found at %s (apt-get install -y chromium, or set $CHROMIUM): %v", chromium, err)
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("node not found: %v", err)
	}
	if _, err := os.Stat(filepath.Join("node_modules", "playwright-core")); err != nil {
		t.Fatalf("playwright-core is not installed: run `npm ci` in e2e/browser: %v", err)
	}
	return chromium
}

// endpoint is a running subscription endpoint with its HTTP server.
type endpoint struct {
	addr string
	stop func()
}

// serve starts an endpoint for topics with the browser view at /ui, on
// listen ("127.0.0.1:0" for a free port).
func serve(t *testing.T, listen string, brokers, topics []string) *endpoint {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	servers := pipeline.NewServers(log)
	ctx, cancel := context.WithCancel(context.Background())
	ep, err := subscribe.New(ctx, subscribe.Config{Listen: listen, Brokers: brokers, Topics: topics, UI: "/ui"},
		pipeline.Env{Logger: log, HTTP: servers})
	if err != nil {
		t.Fatal(err)
	}
	if err := servers.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- ep.Run(ctx) }()
	var once sync.Once
	e := &endpoint{addr: servers.Addr(listen).String()}
	e.stop = func() {
		once.Do(func() {
			cancel()
			<-done
			cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer ccancel()
			_ = ep.Close(cctx)
			_ = servers.Shutdown(cctx)
		})
	}
	t.Cleanup(e.stop)
	return e
}

// TestBrowserView opens the view in Chromium, produces records and checks
// that they appear; then restarts the endpoint, produces more, and checks
// that the page resumed from its position without a gap or a duplicate.
func TestBrowserView(t *testing.T) {
	chromium := requireBrowser(t)
	brokers := testenv.KafkaBrokers(t)
	topic := testenv.Name("browser")
	testenv.CreateTopic(t, brokers, topic, 4)
	topics := []string{"other", topic}
	ep := serve(t, "127.0.0.1:0", brokers, topics)

	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	page := fmt.Sprintf("http://%s/ui/?topic=%s&from=latest&connect=1", ep.addr, topic)
	shot := os.Getenv("SLUICE_SCREENSHOT")
	if shot == "" {
		shot = filepath.Join(os.TempDir(), "sluice-subscribe-ui.png")
	}
	const want, after = "sensor-07", "sensor-09"
	cmd := exec.CommandContext(ctx, "node", "view.mjs", page, want, shot, after)
	cmd.Env = append(os.Environ(), "CHROMIUM="+chromium)
	cmd.Stderr = &prefixWriter{t: t, prefix: "node: "}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := map[string]string{}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		t.Log(line)
		switch line {
		case "READY":
			// The page is subscribed: a burst from four sensors, then want.
			go produce(t, brokers, topic, 40, want)
		case "RESTART":
			// Sluice restarts on the same address while records go on.
			addr := ep.addr
			ep.stop()
			go produce(t, brokers, topic, 8, after)
			ep = serve(t, addr, brokers, topics)
		}
		key, val, _ := strings.Cut(line, ": ")
		lines[key] = val
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("view.mjs: %v", err)
	}
	checks := []struct {
		name, got, want string
	}{
		{"first row", lines["ROW"], want},
		{"first row value", lines["ROW"], `"temp":21.5`},
		{"count", lines["COUNT"], "41"},
		{"row after the restart", lines["ROW2"], after},
		{"count after the restart", lines["COUNT2"], "50"}, // 41 + 9: none lost, none twice
		{"status", lines["STATUS"], "live"},
	}
	for _, c := range checks {
		if !strings.Contains(c.got, c.want) {
			t.Errorf("%s: got %q, want %q", c.name, c.got, c.want)
		}
	}
	if lines["CHART"] == "" || lines["CHART"] == "0" {
		t.Errorf("the rate chart drew nothing (%q)", lines["CHART"])
	}
	if lines["RECONNECTS"] == "" || lines["RECONNECTS"] == "0" {
		t.Errorf("reconnects: got %q, want at least 1", lines["RECONNECTS"])
	}
	if f, ok := lines["FAILED REQUESTS"]; ok {
		t.Errorf("the page failed to load: %s", f)
	}
	for k, v := range lines {
		if k == "PAGEERROR" || (k == "CONSOLE" && strings.HasPrefix(v, "error") && !strings.Contains(v, "WebSocket")) {
			t.Errorf("the page logged %s: %s", k, v)
		}
	}
	t.Logf("screenshots: %s, %s", shot, lines["SCREENSHOT2"])
}

// produce writes n records from four sensors and then one from last.
func produce(t *testing.T, brokers []string, topic string, n int, last string) {
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topic, Balancer: &kafka.Hash{}, BatchTimeout: time.Millisecond}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	msg := func(dev string, seq int, temp float64) kafka.Message {
		return kafka.Message{
			Key:     []byte(dev),
			Value:   fmt.Appendf(nil, `{"device_id":%q,"seq":%d,"kind":"reading","temp":%g}`, dev, seq, temp),
			Headers: []kafka.Header{{Key: "sluice-id", Value: fmt.Appendf(nil, "%s/%d/0", dev, seq)}},
		}
	}
	base := int(time.Now().UnixMilli() % 100000) // seqs differ between calls
	for i := range n {
		dev := fmt.Sprintf("sensor-%02d", i%4+1)
		if err := w.WriteMessages(ctx, msg(dev, base+i/4+1, 18+float64(i%7)/2)); err != nil {
			t.Errorf("produce: %v", err)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := w.WriteMessages(ctx, msg(last, 1, 21.5)); err != nil {
		t.Errorf("produce: %v", err)
	}
}

type prefixWriter struct {
	t      *testing.T
	prefix string
}

func (w *prefixWriter) Write(p []byte) (int, error) {
	for line := range strings.SplitSeq(strings.TrimRight(string(p), "\n"), "\n") {
		w.t.Log(w.prefix + line)
	}
	return len(p), nil
}

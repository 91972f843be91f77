package device

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pipeline"
	wssource "github.com/sluicehq/sluice/sources/websocket"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// memSink keeps what it is given; a record containing failValue fails for
// good (and is nacked to the device).
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

func (s *memSink) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got)
}

// server is a real Sluice pipeline, WebSocket source to memSink, that can
// be stopped (gracefully: final acks, then 1001) and started again on the
// same address.
type server struct {
	t       *testing.T
	cfg     wssource.Config
	dir     string // resolves the config's file paths (certificates, tokens)
	sink    *memSink
	listen  string
	url     string
	servers *pipeline.Servers
	cancel  context.CancelFunc
	done    chan error
}

func startServer(t *testing.T, cfg wssource.Config) *server {
	t.Helper()
	s := &server{t: t, cfg: cfg, sink: &memSink{failValue: "FAIL"}, listen: "127.0.0.1:0"}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *server) start() {
	s.t.Helper()
	if s.cancel != nil {
		s.t.Fatal("server already running")
	}
	cfg := s.cfg
	cfg.Listen = s.listen
	servers := pipeline.NewServers(quiet)
	src, err := wssource.New(context.Background(), cfg, pipeline.Env{Logger: quiet, HTTP: servers, Dir: s.dir})
	if err != nil {
		s.t.Fatal(err)
	}
	// The port of a stopped server may take a moment to be free again.
	for i := 0; ; i++ {
		if err = servers.Start(); err == nil || i == 50 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatal(err)
	}
	addr := servers.Addr(s.listen).String()
	s.url = "ws://" + addr + "/ingest"
	if servers.TLS(s.listen) != nil {
		s.url = "wss://" + addr + "/ingest"
	}
	s.listen = addr
	p := &pipeline.Pipeline{
		Name:   "ws",
		Source: src,
		Sinks:  []pipeline.Stage[pipeline.Sink]{{Name: "mem", C: s.sink}},
		Logger: quiet,
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.servers, s.cancel, s.done = servers, cancel, make(chan error, 1)
	go func() { s.done <- p.Run(ctx) }()
}

func (s *server) stop() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	if err := <-s.done; err != nil {
		s.t.Errorf("pipeline: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.servers.Shutdown(ctx)
	s.cancel = nil
}

func (s *server) restart() {
	s.stop()
	s.start()
}

// proxy forwards TCP connections to a backend and can cut them all at once,
// as a network failure would: no close frame, no final acks.
type proxy struct {
	ln      net.Listener
	backend string
	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	wg      sync.WaitGroup
}

func startProxy(t *testing.T, backend string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, backend: backend, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) url() string { return "ws://" + p.ln.Addr().String() + "/ingest" }

func (p *proxy) serve() {
	defer p.wg.Done()
	for {
		down, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.backend)
		if err != nil {
			down.Close()
			continue
		}
		p.mu.Lock()
		p.conns[down], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			defer p.wg.Done()
			_, _ = io.Copy(dst, src)
			dst.Close()
			src.Close()
			p.mu.Lock()
			delete(p.conns, dst)
			delete(p.conns, src)
			p.mu.Unlock()
		}
		p.wg.Add(2)
		go pipe(up, down)
		go pipe(down, up)
	}
}

// cut resets every connection and returns how many there were.
func (p *proxy) cut() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // RST, like a dead network path
		}
		c.Close()
	}
	n := len(p.conns) / 2
	clear(p.conns)
	return n
}

func newClient(t *testing.T, url string, opts Options) *Client {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quiet
	}
	c, err := New(url, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func flush(t *testing.T, c *Client, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := c.Flush(ctx); err != nil {
		t.Fatalf("flush: %v (stats %+v)", err, c.Stats())
	}
}

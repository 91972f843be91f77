package websocket

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/internal/auth"
	"github.com/sluicehq/sluice/internal/lograte"
	"github.com/sluicehq/sluice/pipeline"
)

var _ pipeline.Source = (*Source)(nil)

// Source accepts device connections and turns their frames into records.
type Source struct {
	cfg   Config
	log   *slog.Logger
	lines *lograte.Limiter // lines a client can cause
	m     *metrics
	guard *auth.Guard // nil without auth

	// recs carries the records of one frame from a connection to Run,
	// which batches them. One send per frame keeps a device's order.
	recs chan []pipeline.Record

	// dispatch is held for reading while a connection hands records to
	// recs, and for writing when Run stops taking them.
	dispatch sync.RWMutex
	stopping bool

	mu    sync.Mutex
	conns map[*conn]struct{}
	wg    sync.WaitGroup
}

// New returns a source that serves cfg.Path on cfg.Listen via env.HTTP.
func New(_ context.Context, cfg Config, env pipeline.Env) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if env.HTTP == nil {
		return nil, errors.New("websocket: no HTTP server set in the environment")
	}
	log := env.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Source{
		cfg:   cfg,
		log:   log,
		lines: lograte.Default(log),
		m:     newMetrics(env.Metrics),
		recs:  make(chan []pipeline.Record, 64),
		conns: map[*conn]struct{}{},
	}
	if cfg.Auth != nil {
		g, err := auth.NewGuard(env.Dir, *cfg.Auth, log, auth.NewMetrics(env.Metrics, "sluice_websocket_auth_failures_total"))
		if err != nil {
			return nil, err
		}
		s.guard = g
	}
	if err := auth.Listen(env.HTTP, env.Dir, cfg.Listen, "the websocket source ("+cfg.Path+")", cfg.TLS, log); err != nil {
		return nil, err
	}
	if err := env.HTTP.Handle(cfg.Listen, cfg.Path, s); err != nil {
		return nil, fmt.Errorf("websocket: %w", err)
	}
	return s, nil
}

// ServeHTTP upgrades a device's request and serves its connection until it
// closes.
func (s *Source) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.dispatch.RLock()
	stopping := s.stopping
	s.dispatch.RUnlock()
	if stopping {
		http.Error(w, "sluice is shutting down", http.StatusServiceUnavailable)
		return
	}
	device := r.URL.Query().Get("device_id")
	var devices *auth.Grant
	if s.guard != nil {
		// Authenticated before the upgrade: a refused client gets HTTP 401
		// and never a WebSocket.
		id := s.guard.Check(w, r)
		if id == nil {
			return
		}
		g := s.guard.Devices(id)
		switch {
		case g.All:
		case len(g.Names) == 0:
			s.guard.Forbid(w, r, id, fmt.Sprintf("the token grants no device (claim %s)", s.cfg.Auth.DeviceClaim))
			return
		case device != "" && !g.Allows(device):
			s.guard.Forbid(w, r, id, fmt.Sprintf("device_id %q is not granted by the token (claim %s)", device, s.cfg.Auth.DeviceClaim))
			return
		case device == "" && len(g.Names) == 1:
			device = g.Names[0]
		}
		if !g.All {
			devices = &g
		}
	}
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		OriginPatterns: s.cfg.OriginPatterns,
		// Selected when offered, so that a browser may carry its token in
		// a second subprotocol (docs/security.md).
		Subprotocols: []string{auth.Subprotocol},
	})
	if err != nil {
		s.lines.Info("websocket handshake failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	// Draining an oversized frame is bounded by this hard limit; past it the
	// connection is closed with status 1009 (message too big).
	ws.SetReadLimit(int64(max(64<<20, 16*s.cfg.MaxRecordBytes)))
	c := newConn(s, ws, r, device, devices)
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	s.m.conns.Inc()
	defer func() {
		s.m.conns.Dec()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		s.wg.Done()
	}()
	c.serve()
}

// deliver hands the records of one frame to Run. It returns false when the
// source is stopping and took none of them; they stay unacknowledged and the
// device sends them again after it reconnects.
func (s *Source) deliver(recs []pipeline.Record) bool {
	s.dispatch.RLock()
	defer s.dispatch.RUnlock()
	if s.stopping {
		return false
	}
	s.recs <- recs
	return true
}

// Run batches records from every connection until ctx is done.
func (s *Source) Run(ctx context.Context, out chan<- pipeline.Batch) error {
	var batch pipeline.Batch
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	flush := func() {
		if len(batch) > 0 {
			out <- batch
			batch = nil
		}
		timer.Stop()
	}
	add := func(recs []pipeline.Record) {
		if len(batch) == 0 {
			timer.Reset(s.cfg.Linger)
			batch = make(pipeline.Batch, 0, s.cfg.BatchSize)
		}
		batch = append(batch, recs...)
		if len(batch) >= s.cfg.BatchSize {
			flush()
		}
	}
	stopped := make(chan struct{})
	context.AfterFunc(ctx, func() {
		s.dispatch.Lock()
		s.stopping = true
		s.dispatch.Unlock()
		close(stopped)
	})
	for {
		select {
		case recs := <-s.recs:
			add(recs)
		case <-timer.C:
			flush()
		case <-stopped:
			// No connection is inside deliver any more: take what is queued.
			for {
				select {
				case recs := <-s.recs:
					add(recs)
				default:
					flush()
					return nil
				}
			}
		}
	}
}

// Close waits until every record handed to the pipeline is settled (or ctx
// is done), sends the last acks, and closes every connection with status
// 1001 (going away). Records not settled by then stay unacknowledged; the
// devices send them again.
func (s *Source) Close(ctx context.Context) error {
	s.dispatch.Lock()
	s.stopping = true
	s.dispatch.Unlock()
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.shutdown(ctx)
		}()
	}
	wg.Wait()
	// Every connection is closed now; their handlers return at once. This
	// wait has its own bound: ctx may have ended while waiting for records
	// above.
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-time.After(closeGrace):
		return fmt.Errorf("websocket: connections still open %v after shutdown", closeGrace)
	}
}

// closeGrace bounds the last steps of Close, the final acks and the
// handlers' return, which run even when Close's context has ended.
const closeGrace = 2 * time.Second

type metrics struct {
	conns    prometheus.Gauge
	received prometheus.Counter
	rejected prometheus.Counter
	spoofed  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		conns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_websocket_connections", Help: "Open device connections."}),
		received: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_websocket_records_received_total", Help: "Records received from devices."}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_websocket_records_rejected_total", Help: "Records nacked on arrival (malformed, oversized, device not granted)."}),
		spoofed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_websocket_records_device_refused_total", Help: "Records nacked because their device_id is not granted by the connection's token (auth.device_claim)."}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.conns, m.received, m.rejected, m.spoofed} {
			_ = reg.Register(c) // a second source on the same registry keeps its own unregistered copy
		}
	}
	return m
}

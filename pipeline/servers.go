package pipeline

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// Servers is the set of HTTP servers of a process, one per listen address,
// each with a mux that components mount their handlers on. Handlers are
// mounted before Start; Start binds every address; Shutdown stops them.
type Servers struct {
	log *slog.Logger

	mu      sync.Mutex
	muxes   map[string]*http.ServeMux
	tls     map[string][]TLSDecl // by address, in the order declared
	servers []*http.Server
	addrs   map[string]net.Addr
}

// TLSDecl is how one component wants its address served: over TLS with
// Config, or plain when Config is nil.
type TLSDecl struct {
	// Owner names the component in errors, e.g. "the websocket source (/ingest)".
	Owner string
	// Config serves the address over TLS; nil serves plain HTTP.
	Config *tls.Config
	// ID tells TLS settings apart (e.g. the certificate and key files):
	// components that share an address must declare equal IDs.
	ID string
}

func (d TLSDecl) describe() string {
	if d.Config == nil {
		return "without TLS"
	}
	return "over TLS (" + d.ID + ")"
}

// NewServers returns an empty set of servers that logs to log.
func NewServers(log *slog.Logger) *Servers {
	return &Servers{log: log, muxes: map[string]*http.ServeMux{}, tls: map[string][]TLSDecl{}, addrs: map[string]net.Addr{}}
}

// DeclareTLS records how the component d.Owner wants listen served. Every
// component that declares for an address must agree with the ones before
// it (all plain, or all TLS with the same ID); the error names both.
// Handlers of components that declare nothing (e.g. /metrics) are served
// however the address is.
func (s *Servers) DeclareTLS(listen string, d TLSDecl) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.servers) > 0 {
		return fmt.Errorf("http %s: TLS declared after the servers started", listen)
	}
	for _, prev := range s.tls[listen] {
		if (prev.Config == nil) != (d.Config == nil) || prev.ID != d.ID {
			return fmt.Errorf("listen %s is shared with %s, served %s, but %s asks to be served %s: components on one address must have the same tls settings",
				listen, prev.Owner, prev.describe(), d.Owner, d.describe())
		}
	}
	s.tls[listen] = append(s.tls[listen], d)
	return nil
}

// TLS returns the TLS config that listen will be served with, or nil.
func (s *Servers) TLS(listen string) *tls.Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tlsLocked(listen)
}

func (s *Servers) tlsLocked(listen string) *tls.Config {
	if ds := s.tls[listen]; len(ds) > 0 {
		return ds[0].Config
	}
	return nil
}

// Handle mounts h at pattern on the server for listen ("host:port"). Two
// handlers for the same address and pattern are an error.
func (s *Servers) Handle(listen, pattern string, h http.Handler) (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.servers) > 0 {
		return fmt.Errorf("http %s: handler %s added after the servers started", listen, pattern)
	}
	mux, ok := s.muxes[listen]
	if !ok {
		mux = http.NewServeMux()
		s.muxes[listen] = mux
	}
	defer func() {
		if r := recover(); r != nil { // ServeMux panics on a duplicate pattern.
			err = fmt.Errorf("http %s: %v", listen, r)
		}
	}()
	mux.Handle(pattern, h)
	return nil
}

// Start binds every address and serves in the background. The listen
// address "host:0" binds a free port; Addr tells which.
func (s *Servers) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for listen, mux := range s.muxes {
		ln, err := net.Listen("tcp", listen)
		if err != nil {
			for _, srv := range s.servers {
				_ = srv.Close()
			}
			s.servers = nil
			return fmt.Errorf("http: listen on %s: %w", listen, err)
		}
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		scheme := "http"
		if cfg := s.tlsLocked(listen); cfg != nil {
			// Served by hand rather than by ServeTLS, which would offer
			// HTTP/2: a WebSocket upgrades an HTTP/1.1 request. Handshake
			// failures (scanners, plain HTTP on this port) are logged at
			// debug level, not on stderr.
			ln = tls.NewListener(ln, cfg)
			srv.ErrorLog = slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)
			scheme = "https"
		}
		s.servers = append(s.servers, srv)
		s.addrs[listen] = ln.Addr()
		s.log.Info("listening", "addr", ln.Addr().String(), "scheme", scheme)
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("http server stopped", "addr", ln.Addr().String(), "err", err)
			}
		}()
	}
	return nil
}

// Addr returns the address that listen is bound to, or nil before Start.
func (s *Servers) Addr(listen string) net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addrs[listen]
}

// Shutdown stops every server, waiting for handlers until ctx is done and
// closing what is left then. Hijacked connections (WebSockets) are the
// handlers' own to close.
func (s *Servers) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	servers := s.servers
	s.mu.Unlock()
	var errs []error
	for _, srv := range servers {
		if err := srv.Shutdown(ctx); err != nil {
			errs = append(errs, err, srv.Close())
		}
	}
	return errors.Join(errs...)
}

package pipeline

import (
	"context"
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
	servers []*http.Server
	addrs   map[string]net.Addr
}

// NewServers returns an empty set of servers that logs to log.
func NewServers(log *slog.Logger) *Servers {
	return &Servers{log: log, muxes: map[string]*http.ServeMux{}, addrs: map[string]net.Addr{}}
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
		s.servers = append(s.servers, srv)
		s.addrs[listen] = ln.Addr()
		s.log.Info("listening", "addr", ln.Addr().String())
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

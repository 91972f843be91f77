// Package faultproxy is a TCP proxy that tests put between Sluice and a
// service (Kafka, ClickHouse) to break the network between them on demand:
//
//   - [Proxy.Stall]: connections stay open but no byte moves in either
//     direction, like a partition that TCP does not notice, until
//     [Proxy.Pass] lets the buffered bytes through again;
//   - [Proxy.DropAll]: every open connection is reset (RST); new ones pass;
//   - [Proxy.Down]: every open connection is reset and new ones are reset as
//     soon as they are accepted, until Pass;
//   - [Proxy.CutReplyAfter]: once a connection has forwarded n bytes to the
//     service, the service's next reply is thrown away and the connection is
//     reset: the request (an INSERT, a produce) reached the service and was
//     probably carried out, but the client never learns it. This is the
//     fault that turns a retry into a duplicate.
//
// With [Options.Kafka] the proxy understands Kafka's framing and rewrites
// the broker addresses in Metadata and FindCoordinator responses to its own,
// so that a client that bootstraps through the proxy keeps using it for
// every broker connection (a Kafka client otherwise connects to the
// advertised address and bypasses the proxy). One proxy fronts one broker.
//
// The proxy listens on loopback only and is meant for tests.
package faultproxy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// Options configures a Proxy.
type Options struct {
	// Listen is the address to listen on (default 127.0.0.1:0, a free
	// port).
	Listen string
	// Kafka rewrites the upstream broker's address to the proxy's in Kafka
	// Metadata and FindCoordinator responses (default false: bytes are
	// forwarded untouched).
	Kafka bool
	// CutTimeout is how long a connection whose reply is to be cut waits
	// for that reply before it is reset anyway (default 3s).
	CutTimeout time.Duration
	// Logf, if set, receives one line per fault applied.
	Logf func(format string, args ...any)
}

// Stats counts what a Proxy did since Start.
type Stats struct {
	Accepted  int   // connections accepted
	Open      int   // connections open now
	Up, Down  int64 // bytes forwarded to the service and back
	Dropped   int   // connections reset by DropAll, Down or CutReplyAfter
	Refused   int   // connections reset on accept while Down
	Cuts      int   // replies thrown away by CutReplyAfter
	Rewritten int   // Kafka responses whose broker addresses were rewritten
}

type state int

const (
	statePass state = iota
	stateStall
	stateDown
)

func (s state) String() string {
	switch s {
	case statePass:
		return "pass"
	case stateStall:
		return "stall"
	case stateDown:
		return "down"
	}
	return "?"
}

// Proxy forwards TCP connections from Addr to an upstream address and
// injects faults on demand. Its methods are safe for concurrent use.
type Proxy struct {
	upstream string
	opts     Options
	ln       net.Listener
	host     string // advertised in rewritten Kafka responses
	port     int32
	upHost   string
	upPort   int32

	mu       sync.Mutex
	state    state
	changed  chan struct{} // closed and replaced on every state change
	conns    map[*pconn]struct{}
	cutAfter int64 // bytes upstream after which a reply is cut; 0: off
	cutsLeft int
	stats    Stats
	closed   bool
	wg       sync.WaitGroup
}

// Start listens and forwards every accepted connection to upstream.
func Start(upstream string, opts Options) (*Proxy, error) {
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:0"
	}
	if opts.CutTimeout <= 0 {
		opts.CutTimeout = 3 * time.Second
	}
	upHost, upPortS, err := net.SplitHostPort(upstream)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: upstream %q: %w", upstream, err)
	}
	upPort, err := strconv.Atoi(upPortS)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: upstream %q: bad port", upstream)
	}
	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen %s: %w", opts.Listen, err)
	}
	a := ln.Addr().(*net.TCPAddr)
	p := &Proxy{
		upstream: upstream,
		opts:     opts,
		ln:       ln,
		host:     a.IP.String(),
		port:     int32(a.Port),
		upHost:   upHost,
		upPort:   int32(upPort),
		changed:  make(chan struct{}),
		conns:    map[*pconn]struct{}{},
	}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's address, host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Upstream is the address the proxy forwards to.
func (p *Proxy) Upstream() string { return p.upstream }

// Stats returns the proxy's counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Open = len(p.conns)
	return s
}

func (p *Proxy) logf(format string, args ...any) {
	if p.opts.Logf != nil {
		p.opts.Logf("faultproxy %s→%s: "+format, append([]any{p.Addr(), p.upstream}, args...)...)
	}
}

func (p *Proxy) setState(s state) {
	p.mu.Lock()
	old := p.state
	p.state = s
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
	if old != s {
		p.logf("%s", s)
	}
}

// Pass forwards bytes again: stalled connections resume where they were.
func (p *Proxy) Pass() { p.setState(statePass) }

// Stall stops forwarding bytes on every connection, open or new, until
// Pass. Connections stay open; what the peers send waits in the proxy and
// the kernels' buffers.
func (p *Proxy) Stall() { p.setState(stateStall) }

// Down resets every open connection and every new one until Pass, like a
// service whose host went away.
func (p *Proxy) Down() {
	p.setState(stateDown)
	n := p.dropAll()
	p.logf("down: reset %d connections", n)
}

// DropAll resets every open connection (RST to both peers). New
// connections are not affected.
func (p *Proxy) DropAll() int {
	n := p.dropAll()
	p.logf("dropped %d connections", n)
	return n
}

func (p *Proxy) dropAll() int {
	p.mu.Lock()
	conns := make([]*pconn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	n := 0
	for _, c := range conns {
		if c.abort() {
			n++
		}
	}
	p.mu.Lock()
	p.stats.Dropped += n
	p.mu.Unlock()
	return n
}

// CutReplyAfter arms the proxy: on any connection, once n more bytes have
// been forwarded to the service (counted from now), the next bytes the
// service sends back are thrown away and the connection is reset, at most
// times times in all. The request that crossed the threshold reaches the
// service whole; only its reply is lost. n must be positive; times <= 0
// disarms.
func (p *Proxy) CutReplyAfter(n int64, times int) {
	p.mu.Lock()
	if times <= 0 || n <= 0 {
		p.cutAfter, p.cutsLeft = 0, 0
	} else {
		p.cutAfter, p.cutsLeft = n, times
	}
	for c := range p.conns {
		c.mu.Lock()
		c.upSinceArm = 0
		c.mu.Unlock()
	}
	p.mu.Unlock()
	p.logf("cut the reply after %d bytes upstream, %d times", n, times)
}

// CutsLeft tells how many armed reply cuts have not happened yet.
func (p *Proxy) CutsLeft() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cutsLeft
}

// Close stops listening, resets every connection and waits for the
// proxy's goroutines.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	err := p.ln.Close()
	p.dropAll()
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		p.mu.Lock()
		p.stats.Accepted++
		down := p.state == stateDown || p.closed
		if down {
			p.stats.Refused++
		}
		p.mu.Unlock()
		if down {
			reset(c)
			continue
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

// reset closes c with an RST rather than a FIN, as a crashed peer or a
// broken path would.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// pconn is one proxied connection.
type pconn struct {
	p          *Proxy
	client     net.Conn
	server     net.Conn
	done       chan struct{}
	once       sync.Once
	mu         sync.Mutex
	upSinceArm int64
	cutting    bool
	aborted    bool
	// Kafka: requests whose responses are rewritten, by correlation id.
	pending map[int32]request
}

type request struct {
	key, version int16
}

func (p *Proxy) serve(client net.Conn) {
	defer p.wg.Done()
	server, err := net.DialTimeout("tcp", p.upstream, 5*time.Second)
	if err != nil {
		p.logf("dial upstream: %v", err)
		reset(client)
		return
	}
	c := &pconn{p: p, client: client, server: server, done: make(chan struct{}), pending: map[int32]request{}}
	p.mu.Lock()
	if p.closed || p.state == stateDown {
		p.mu.Unlock()
		reset(client)
		reset(server)
		return
	}
	p.conns[c] = struct{}{}
	p.mu.Unlock()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); c.pipe(true) }()
	go func() { defer wg.Done(); c.pipe(false) }()
	wg.Wait()
	c.close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// abort resets both sides; it reports whether this call did it.
func (c *pconn) abort() bool {
	first := false
	c.once.Do(func() {
		first = true
		c.mu.Lock()
		c.aborted = true
		c.mu.Unlock()
		close(c.done)
		reset(c.client)
		reset(c.server)
	})
	return first
}

// close closes both sides normally once both directions ended.
func (c *pconn) close() {
	c.once.Do(func() {
		close(c.done)
		_ = c.client.Close()
		_ = c.server.Close()
	})
}

// gate blocks while the proxy stalls; false means the connection is gone.
func (c *pconn) gate() bool {
	for {
		c.p.mu.Lock()
		st, ch := c.p.state, c.p.changed
		c.p.mu.Unlock()
		switch st {
		case statePass:
			select {
			case <-c.done:
				return false
			default:
				return true
			}
		case stateDown:
			c.abort()
			return false
		}
		select {
		case <-ch:
		case <-c.done:
			return false
		}
	}
}

// pipe forwards one direction until either side fails.
func (c *pconn) pipe(up bool) {
	src, dst := c.server, c.client
	if up {
		src, dst = c.client, c.server
	}
	if c.p.opts.Kafka {
		c.pipeFrames(src, dst, up)
		return
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !c.forward(dst, buf[:n], up) {
				return
			}
		}
		if err != nil {
			c.finish(dst, err)
			return
		}
	}
}

// finish passes a clean end of stream on as a half close, and anything
// else as a reset of the whole connection.
func (c *pconn) finish(dst net.Conn, err error) {
	if errors.Is(err, io.EOF) {
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
			return
		}
	}
	c.abort()
}

// forward writes b to dst once the gate opens, applying an armed reply cut.
func (c *pconn) forward(dst net.Conn, b []byte, up bool) bool {
	if !c.gate() {
		return false
	}
	if !up {
		c.mu.Lock()
		cutting := c.cutting
		c.mu.Unlock()
		if cutting {
			if c.abort() {
				c.p.mu.Lock()
				c.p.stats.Cuts++
				c.p.stats.Dropped++
				c.p.mu.Unlock()
				c.p.logf("cut: threw away a %d-byte reply and reset the connection", len(b))
			}
			return false
		}
	}
	if _, err := dst.Write(b); err != nil {
		c.abort()
		return false
	}
	c.p.mu.Lock()
	if up {
		c.p.stats.Up += int64(len(b))
	} else {
		c.p.stats.Down += int64(len(b))
	}
	after := c.p.cutAfter
	c.p.mu.Unlock()
	if up && after > 0 {
		c.countUp(int64(len(b)), after)
	}
	return true
}

// countUp counts bytes sent upstream and arms this connection's cut once
// the threshold is crossed.
func (c *pconn) countUp(n, after int64) {
	c.mu.Lock()
	c.upSinceArm += n
	crossed := !c.cutting && c.upSinceArm >= after
	c.mu.Unlock()
	if !crossed {
		return
	}
	c.p.mu.Lock()
	if c.p.cutsLeft <= 0 {
		c.p.mu.Unlock()
		return
	}
	c.p.cutsLeft--
	if c.p.cutsLeft == 0 {
		c.p.cutAfter = 0
	}
	c.p.mu.Unlock()
	c.mu.Lock()
	c.cutting = true
	c.mu.Unlock()
	// No reply within CutTimeout: reset anyway.
	time.AfterFunc(c.p.opts.CutTimeout, func() {
		if c.abort() {
			c.p.mu.Lock()
			c.p.stats.Cuts++
			c.p.stats.Dropped++
			c.p.mu.Unlock()
			c.p.logf("cut: no reply within %v; reset the connection", c.p.opts.CutTimeout)
		}
	})
}

// maxFrame bounds a Kafka frame the proxy buffers.
const maxFrame = 256 << 20

// pipeFrames forwards Kafka frames (int32 size, then the body), noting the
// requests whose responses carry broker addresses and rewriting those
// responses.
func (c *pconn) pipeFrames(src, dst net.Conn, up bool) {
	var size [4]byte
	for {
		if _, err := io.ReadFull(src, size[:]); err != nil {
			c.finish(dst, err)
			return
		}
		n := binary.BigEndian.Uint32(size[:])
		if n > maxFrame {
			c.p.logf("kafka frame of %d bytes: not Kafka? resetting", n)
			c.abort()
			return
		}
		frame := make([]byte, 4+n)
		copy(frame, size[:])
		if _, err := io.ReadFull(src, frame[4:]); err != nil {
			c.abort()
			return
		}
		if up {
			c.noteRequest(frame[4:])
		} else {
			frame = c.rewriteResponse(frame)
		}
		if !c.forward(dst, frame, up) {
			return
		}
	}
}

// Kafka API keys whose responses name brokers.
const (
	apiMetadata        = 3
	apiFindCoordinator = 10
)

func (c *pconn) noteRequest(body []byte) {
	if len(body) < 8 {
		return
	}
	key := int16(binary.BigEndian.Uint16(body[0:]))
	ver := int16(binary.BigEndian.Uint16(body[2:]))
	corr := int32(binary.BigEndian.Uint32(body[4:]))
	if key == apiMetadata || key == apiFindCoordinator {
		c.mu.Lock()
		c.pending[corr] = request{key, ver}
		c.mu.Unlock()
	}
}

func (c *pconn) rewriteResponse(frame []byte) []byte {
	if len(frame) < 8 {
		return frame
	}
	corr := int32(binary.BigEndian.Uint32(frame[4:]))
	c.mu.Lock()
	req, ok := c.pending[corr]
	delete(c.pending, corr)
	c.mu.Unlock()
	if !ok {
		return frame
	}
	out, changed, err := rewrite(frame, req, c.p.upHost, c.p.upPort, c.p.host, c.p.port)
	if err != nil {
		c.p.logf("kafka: cannot parse response to api %d v%d: %v (forwarded unchanged)", req.key, req.version, err)
		return frame
	}
	if changed {
		c.p.mu.Lock()
		c.p.stats.Rewritten++
		c.p.mu.Unlock()
	}
	return out
}

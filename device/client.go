package device

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/coder/websocket"
)

var (
	// ErrClosed is returned by calls on a closed Client.
	ErrClosed = errors.New("device: client closed")
	// ErrOutboxFull is returned by TrySend when OutboxLimit records are
	// queued and not yet settled.
	ErrOutboxFull = errors.New("device: outbox full")
)

// Options configures a Client. Only DeviceID is required.
type Options struct {
	// DeviceID names the device (required). It is added to every record as
	// the device field and sent as ?device_id= when connecting. Together
	// with seq it is the record's identity, which Sluice uses downstream to
	// drop the duplicates that resending after a reconnect produces.
	DeviceID string
	// Window is how many records may be sent and not yet acknowledged on a
	// connection (default 1024). Keep it at or below the server's window
	// (default 4096): past that the server stops reading and TCP holds the
	// rest.
	Window int
	// OutboxLimit is how many records may be queued and not yet settled
	// (default 100000). When it is reached Send blocks and TrySend returns
	// ErrOutboxFull.
	OutboxLimit int
	// OutboxDir, if set, keeps the outbox in DIR/outbox.log so that queued
	// records survive a crash or power loss and are sent first, with the
	// same seqs, by the next Client on the same directory. Only one Client
	// may use a directory at a time. Empty keeps the outbox in memory only.
	OutboxDir string
	// SyncSend makes Send return only once the record is fsynced to the
	// outbox file (power-loss safe). Without it Send returns once the
	// record is written to the file (safe from the process being killed);
	// the fsync follows within milliseconds and always before the record
	// goes on the wire. Ignored without OutboxDir.
	SyncSend bool
	// FirstSeq is the seq of the first record of a device that has no
	// outbox file yet (default: the current Unix time in microseconds, so
	// that a restarted device without an outbox does not reuse the seqs of
	// its previous run; seqs then grow by one per record).
	FirstSeq uint64
	// MaxRecordBytes is the largest record Send accepts once stamped with
	// device id and seq (default 1 MiB, the server's default
	// max_record_bytes).
	MaxRecordBytes int
	// MaxFrameBytes bounds a frame of several newline-separated records
	// (default 64 KiB). It must not exceed the server's max_record_bytes,
	// because the server numbers an oversized frame as one record; a record
	// larger than MaxFrameBytes is sent alone in its own frame. If the
	// server rejects a frame as too large anyway, the client reconnects and
	// uses the server's limit from then on.
	MaxFrameBytes int
	// DeviceField and SeqField name the record fields for the device id and
	// the seq (defaults device_id and seq, as on the server).
	DeviceField string
	SeqField    string
	// Backoff paces reconnects (default: exponential from 100ms to 5s with
	// ±50% jitter). It is reset once a connection gets an ack.
	Backoff backoff.BackOff
	// DialTimeout bounds one connection attempt (default 10s).
	DialTimeout time.Duration
	// DialOptions are passed to websocket.Dial (extra HTTP headers, a
	// custom HTTP client); nil uses the defaults.
	DialOptions *websocket.DialOptions
	// Token is the bearer token (a static token or a JWT) for a source
	// with auth:, sent as "Authorization: Bearer <token>". See
	// docs/security.md.
	Token string
	// TokenFunc, if set, returns the token before every connection
	// attempt instead of Token, so that a renewed JWT is used after a
	// reconnect. An error fails that attempt; the client retries.
	TokenFunc func(ctx context.Context) (string, error)
	// TLSConfig configures wss:// connections, e.g. RootCAs trusting a
	// private CA (nil: the system's roots). It cannot be combined with
	// DialOptions.HTTPClient: configure that client's transport instead.
	TLSConfig *tls.Config
	// Logger receives connection events (default slog.Default()).
	Logger *slog.Logger
	// OnNack, if set, is called for each record the server rejected for
	// good, with the record as sent and the reason. Nacked records are not
	// resent. It runs on the goroutine that reads acks and must not block
	// for long.
	OnNack func(record []byte, err *NackError)
}

func (o *Options) fill() error {
	if o.DeviceID == "" {
		return errors.New("device: Options.DeviceID is required: records without a device id cannot be deduplicated")
	}
	if o.Window <= 0 {
		o.Window = 1024
	}
	if o.OutboxLimit <= 0 {
		o.OutboxLimit = 100_000
	}
	if o.FirstSeq == 0 {
		o.FirstSeq = uint64(time.Now().UnixMicro())
	}
	if o.MaxRecordBytes <= 0 {
		o.MaxRecordBytes = 1 << 20
	}
	if o.MaxFrameBytes <= 0 {
		o.MaxFrameBytes = 64 << 10
	}
	if o.DeviceField == "" {
		o.DeviceField = "device_id"
	}
	if o.SeqField == "" {
		o.SeqField = "seq"
	}
	if o.Backoff == nil {
		b := backoff.NewExponentialBackOff()
		b.InitialInterval = 100 * time.Millisecond
		b.MaxInterval = 5 * time.Second
		b.RandomizationFactor = 0.5
		o.Backoff = b
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.TLSConfig != nil && o.DialOptions != nil && o.DialOptions.HTTPClient != nil {
		return errors.New("device: set Options.TLSConfig or DialOptions.HTTPClient, not both (give the client's transport the TLS config)")
	}
	return nil
}

// NackError is a record the server rejected for good: invalid, or failed
// in a transform or a sink. The record was dead-lettered by the server and
// must not be sent again.
type NackError struct {
	Seq      uint64
	DeviceID string
	// Reason is the server's error text, e.g. "sinks[0].kafka: …".
	Reason string
}

func (e *NackError) Error() string {
	return fmt.Sprintf("device: record %s/%d rejected: %s", e.DeviceID, e.Seq, e.Reason)
}

// Stats counts what a Client did since New.
type Stats struct {
	// Sent counts records written to a connection for the first time.
	Sent uint64
	// Resent counts records written again: after a reconnect, or loaded
	// from the outbox file at start.
	Resent uint64
	// Acked and Nacked count settled records.
	Acked  uint64
	Nacked uint64
	// Inflight is how many records are sent on the current connection and
	// not yet acknowledged (at most Window).
	Inflight int
	// Queued is how many records are in the outbox and not settled,
	// Inflight included.
	Queued int
	// Connects counts connections made.
	Connects uint64
}

// entry is one record in the outbox.
type entry struct {
	seq   uint64
	line  []byte     // the record as sent: compact JSON with device id and seq
	sends int        // times written to a connection
	ord   uint64     // ordinal on the current connection; 0 if not sent on it
	frame int        // records in the frame it was sent in
	nack  *NackError // set when the server nacked it
}

// Client sends records to Sluice over one WebSocket connection at a time,
// resending what is unacknowledged after a reconnect. It is safe for
// concurrent use.
type Client struct {
	url  string
	opts Options
	// httpClient dials with Options.TLSConfig (nil without one).
	httpClient *http.Client
	log        *slog.Logger
	box        *outbox
	prefix     []byte // {"device_id":"…",
	seqKey     []byte // "seq":

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // run has returned
	synced chan struct{} // persist has returned
	wake   chan struct{} // the writer may have something to send
	dirty  chan struct{} // the outbox file has lines to fsync

	mu         sync.Mutex
	changed    chan struct{} // closed and replaced when waiters should look again
	closed     bool
	q          []*entry // unsettled records in seq order
	wIdx       int      // q[:wIdx] was sent or skipped on this connection
	inflight   int
	nextOrd    uint64 // ordinal of the last record sent on this connection
	ackedOrd   uint64
	nextSeq    uint64
	lastSeq    uint64 // seq of the last record queued
	durableSeq uint64 // records up to here may go on the wire
	frameLimit int
	stats      Stats
}

// New returns a client for the WebSocket endpoint url (e.g.
// ws://host:8080/ingest) and starts connecting in the background. With
// OutboxDir it first loads the records a previous run left unsettled; they
// are sent before any new record.
func New(rawURL string, opts Options) (*Client, error) {
	if err := opts.fill(); err != nil {
		return nil, err
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("device: url %q: %w", rawURL, err)
	}
	if u.Scheme != "ws" && u.Scheme != "wss" {
		return nil, fmt.Errorf("device: url %q: scheme must be ws or wss", rawURL)
	}
	q := u.Query()
	q.Set("device_id", opts.DeviceID)
	u.RawQuery = q.Encode()

	c := &Client{
		url:        u.String(),
		opts:       opts,
		log:        opts.Logger,
		done:       make(chan struct{}),
		synced:     make(chan struct{}),
		wake:       make(chan struct{}, 1),
		dirty:      make(chan struct{}, 1),
		changed:    make(chan struct{}),
		frameLimit: opts.MaxFrameBytes,
		nextSeq:    opts.FirstSeq,
	}
	if opts.TLSConfig != nil {
		// A transport of its own, HTTP/1.1 only: a WebSocket upgrades an
		// HTTP/1.1 request.
		c.httpClient = &http.Client{Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			TLSClientConfig:     opts.TLSConfig.Clone(),
			TLSHandshakeTimeout: 10 * time.Second,
		}}
	}
	dev, _ := json.Marshal(opts.DeviceID)
	c.prefix = append(append(append([]byte{'{'}, quoteKey(opts.DeviceField)...), dev...), ',')
	c.seqKey = quoteKey(opts.SeqField)

	if opts.OutboxDir != "" {
		box, l, err := openOutbox(opts.OutboxDir)
		var torn *tornError
		if errors.As(err, &torn) {
			c.log.Warn("device: outbox repaired", "dir", opts.OutboxDir, "err", err)
		} else if err != nil {
			return nil, err
		}
		c.box = box
		c.q = l.records
		if !l.empty {
			c.nextSeq = l.maxSeq + 1
		}
		if len(l.records) > 0 {
			c.log.Info("device: resending records from the outbox", "records", len(l.records),
				"first_seq", l.records[0].seq, "last_seq", l.records[len(l.records)-1].seq)
		}
	}
	c.lastSeq = c.nextSeq - 1
	c.durableSeq = c.lastSeq
	c.ctx, c.cancel = context.WithCancel(context.Background())
	if c.box != nil {
		go c.persist()
	} else {
		close(c.synced)
	}
	go c.run()
	return c, nil
}

// Send queues record, a JSON object, and returns the seq it was given. The
// client adds the device field (the record may carry it only with the
// client's own DeviceID) and the seq field (the record must not carry it),
// and sends the record as soon as the window allows. Send returns before
// the record is acknowledged: call Flush to wait for that, or watch
// OnNack. It blocks while OutboxLimit records are queued, until there is
// room or ctx is done.
func (c *Client) Send(ctx context.Context, record []byte) (uint64, error) {
	return c.send(ctx, record, true)
}

// TrySend is Send that returns ErrOutboxFull instead of waiting for room.
func (c *Client) TrySend(record []byte) (uint64, error) {
	return c.send(context.Background(), record, false)
}

func (c *Client) send(ctx context.Context, record []byte, block bool) (uint64, error) {
	b, err := c.prepare(record)
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	for len(c.q) >= c.opts.OutboxLimit && !c.closed {
		if !block {
			c.mu.Unlock()
			return 0, ErrOutboxFull
		}
		ch := c.changed
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		c.mu.Lock()
	}
	if c.closed {
		c.mu.Unlock()
		return 0, ErrClosed
	}
	seq := c.nextSeq
	line := c.stamp(b, seq)
	if len(line) > c.opts.MaxRecordBytes {
		c.mu.Unlock()
		return 0, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(line), c.opts.MaxRecordBytes)
	}
	if c.box != nil {
		if err := c.box.appendRecord(seq, line); err != nil {
			c.mu.Unlock()
			return 0, err
		}
	}
	c.nextSeq++
	c.lastSeq = seq
	c.q = append(c.q, &entry{seq: seq, line: line})
	if c.box == nil {
		c.durableSeq = seq
	}
	c.mu.Unlock()
	if c.box != nil {
		signal(c.dirty)
		if c.opts.SyncSend {
			return seq, c.wait(ctx, func() bool { return c.durableSeq >= seq })
		}
	} else {
		signal(c.wake)
	}
	return seq, nil
}

// Flush waits until every record queued before the call is settled: acked,
// or nacked (reported to OnNack and counted in Stats). It returns early
// with ctx's error, or ErrClosed when the client is closed.
func (c *Client) Flush(ctx context.Context) error {
	c.mu.Lock()
	target := c.lastSeq
	c.mu.Unlock()
	return c.wait(ctx, func() bool { return len(c.q) == 0 || c.q[0].seq > target })
}

// wait blocks until cond, called under c.mu, holds.
func (c *Client) wait(ctx context.Context, cond func() bool) error {
	for {
		c.mu.Lock()
		ok, closed, ch := cond(), c.closed, c.changed
		c.mu.Unlock()
		switch {
		case ok:
			return nil
		case closed:
			return ErrClosed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Stats returns the client's counters.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.Inflight = c.inflight
	s.Queued = len(c.q)
	return s
}

// Close closes the connection (status 1000) and stops the client. Records
// not yet acknowledged are dropped, or, with OutboxDir, left in the outbox
// file for the next Client; call Flush first to wait for them.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		<-c.done
		return nil
	}
	c.closed = true
	c.broadcastLocked()
	c.mu.Unlock()
	c.cancel()
	<-c.done
	<-c.synced
	if c.box == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.q) == 0 && c.box.size > 0 {
		if err := c.box.compact(c.lastSeq, nil); err != nil {
			c.log.Warn("device: compacting the outbox failed", "err", err)
		}
	}
	return c.box.close()
}

func (c *Client) broadcastLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// persist fsyncs the outbox file after writes, a batch at a time, and lets
// the writer send what became durable.
func (c *Client) persist() {
	defer close(c.synced)
	for {
		select {
		case <-c.dirty:
		case <-c.ctx.Done():
			return
		}
		c.mu.Lock()
		target := c.lastSeq
		c.mu.Unlock()
		if err := c.box.sync(); err != nil {
			c.log.Error("device: outbox fsync failed; records wait", "err", err)
			select {
			case <-time.After(time.Second):
				signal(c.dirty)
			case <-c.ctx.Done():
				return
			}
			continue
		}
		c.mu.Lock()
		if target > c.durableSeq {
			c.durableSeq = target
			if c.opts.SyncSend {
				c.broadcastLocked()
			}
		}
		c.mu.Unlock()
		signal(c.wake)
	}
}

// run keeps one connection open until the client is closed.
func (c *Client) run() {
	defer close(c.done)
	bo := c.opts.Backoff
	bo.Reset()
	for c.ctx.Err() == nil {
		progressed, err := c.session()
		if c.ctx.Err() != nil {
			return
		}
		if progressed {
			bo.Reset()
		}
		wait := bo.NextBackOff()
		if wait == backoff.Stop {
			wait = 5 * time.Second
		}
		level := slog.LevelWarn
		if websocket.CloseStatus(err) == websocket.StatusGoingAway {
			level = slog.LevelInfo // the server is restarting
		}
		c.log.Log(c.ctx, level, "device: disconnected; reconnecting", "url", c.url, "err", err, "retry_in", wait.Round(time.Millisecond))
		select {
		case <-time.After(wait):
		case <-c.ctx.Done():
			return
		}
	}
}

// dialOptions returns the options of one connection attempt: DialOptions
// with the token and the TLS config.
func (c *Client) dialOptions(ctx context.Context) (*websocket.DialOptions, error) {
	tok := c.opts.Token
	if c.opts.TokenFunc != nil {
		t, err := c.opts.TokenFunc(ctx)
		if err != nil {
			return nil, err
		}
		tok = t
	}
	if tok == "" && c.httpClient == nil {
		return c.opts.DialOptions, nil
	}
	var o websocket.DialOptions
	if c.opts.DialOptions != nil {
		o = *c.opts.DialOptions
	}
	if c.httpClient != nil {
		o.HTTPClient = c.httpClient
	}
	if tok != "" {
		o.HTTPHeader = o.HTTPHeader.Clone()
		if o.HTTPHeader == nil {
			o.HTTPHeader = http.Header{}
		}
		o.HTTPHeader.Set("Authorization", "Bearer "+tok)
	}
	return &o, nil
}

// errFrameRejected: the server numbered a whole frame as one record.
var errFrameRejected = errors.New("server rejected a frame of several records as a whole")

// session serves one connection: a writer sends from the outbox within the
// window, a reader settles records from acks. It returns once either fails
// or the client is closed, with whether any ack arrived.
func (c *Client) session() (progressed bool, err error) {
	dctx, cancel := context.WithTimeout(c.ctx, c.opts.DialTimeout)
	opts, err := c.dialOptions(dctx)
	if err != nil {
		cancel()
		return false, fmt.Errorf("connect: token: %w", err)
	}
	ws, resp, err := websocket.Dial(dctx, c.url, opts)
	cancel()
	if err != nil {
		if resp != nil && (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden) {
			return false, fmt.Errorf("connect: refused by the server (%s %s): check the token", resp.Status, resp.Header.Get("WWW-Authenticate"))
		}
		return false, fmt.Errorf("connect: %w", err)
	}
	ws.SetReadLimit(1 << 20)

	c.mu.Lock()
	c.stats.Connects++
	c.wIdx, c.inflight, c.nextOrd, c.ackedOrd = 0, 0, 0, 0
	queued := len(c.q)
	c.mu.Unlock()
	c.log.Info("device: connected", "url", c.url, "queued", queued)

	sctx, stop := context.WithCancelCause(context.Background())
	var wg sync.WaitGroup
	var acked bool
	var readErr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		stop(c.writeLoop(sctx, ws))
	}()
	go func() {
		defer wg.Done()
		readErr = c.readLoop(sctx, ws, &acked)
		stop(readErr)
	}()
	select {
	case <-sctx.Done():
		_ = ws.CloseNow()
	case <-c.ctx.Done():
		_ = ws.Close(websocket.StatusNormalClosure, "device client closing")
		stop(ErrClosed)
	}
	wg.Wait()
	_ = ws.CloseNow()

	c.mu.Lock()
	// Everything not acknowledged goes back to be resent first, in order.
	for _, e := range c.q[:c.wIdx] {
		e.ord, e.frame = 0, 0
	}
	c.wIdx, c.inflight, c.nextOrd, c.ackedOrd = 0, 0, 0, 0
	c.popSettledLocked(0)
	c.mu.Unlock()
	err = context.Cause(sctx)
	if websocket.CloseStatus(readErr) != -1 {
		err = readErr // the server's close status says more than a failed write
	}
	if websocket.CloseStatus(err) == websocket.StatusMessageTooBig {
		c.shrinkFrames(0)
	}
	return acked, err
}

func (c *Client) writeLoop(ctx context.Context, ws *websocket.Conn) error {
	var frame []byte
	var members []*entry
	for {
		c.mu.Lock()
		frame, members = c.nextFrameLocked(frame[:0], members[:0])
		c.mu.Unlock()
		if len(members) == 0 {
			select {
			case <-c.wake:
				continue
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		}
		if err := ws.Write(ctx, websocket.MessageText, frame); err != nil {
			return fmt.Errorf("write: %w", err)
		}
	}
}

// nextFrameLocked appends to frame the next records the window allows,
// newline-separated, and numbers them on this connection.
func (c *Client) nextFrameLocked(frame []byte, members []*entry) ([]byte, []*entry) {
	for c.wIdx < len(c.q) && c.inflight < c.opts.Window {
		e := c.q[c.wIdx]
		if e.nack != nil { // nacked on an earlier connection: final
			c.wIdx++
			continue
		}
		if e.seq > c.durableSeq || (len(members) > 0 && len(frame)+1+len(e.line) > c.frameLimit) {
			break
		}
		if len(members) > 0 {
			frame = append(frame, '\n')
		}
		frame = append(frame, e.line...)
		c.nextOrd++
		e.ord = c.nextOrd
		if e.sends > 0 {
			c.stats.Resent++
		} else {
			c.stats.Sent++
		}
		e.sends++
		c.inflight++
		c.wIdx++
		members = append(members, e)
	}
	for _, e := range members {
		e.frame = len(members)
	}
	return frame, members
}

// reply is an ack or a nack from the server.
type reply struct {
	Ack    *uint64 `json:"ack"`
	Nack   uint64  `json:"nack"`
	Seq    uint64  `json:"seq"`
	Device string  `json:"device_id"`
	Error  string  `json:"error"`
}

var ackPrefix = []byte(`{"ack":`)

func (c *Client) readLoop(ctx context.Context, ws *websocket.Conn, acked *bool) error {
	for {
		typ, data, err := ws.Read(ctx)
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		if typ != websocket.MessageText {
			return errors.New("protocol: binary message from server")
		}
		var r reply
		if bytes.HasPrefix(data, ackPrefix) && data[len(data)-1] == '}' {
			n, err := strconv.ParseUint(string(data[len(ackPrefix):len(data)-1]), 10, 64)
			if err != nil {
				return fmt.Errorf("protocol: bad ack %q", data)
			}
			r.Ack = &n
		} else if err := json.Unmarshal(data, &r); err != nil {
			return fmt.Errorf("protocol: bad message %q: %w", data, err)
		}
		switch {
		case r.Ack != nil:
			if err := c.ack(*r.Ack); err != nil {
				return err
			}
			*acked = true
		case r.Nack > 0:
			if err := c.nack(r); err != nil {
				return err
			}
		default:
			// Neither ack nor nack: reserved for later protocol versions.
			c.log.Debug("device: ignoring a message from the server", "message", string(data))
		}
	}
}

// ack settles every record sent on this connection up to ordinal n.
func (c *Client) ack(n uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n > c.nextOrd {
		return fmt.Errorf("protocol: ack %d for %d records sent", n, c.nextOrd)
	}
	if n <= c.ackedOrd {
		return nil
	}
	c.ackedOrd = n
	c.popSettledLocked(n)
	signal(c.wake)
	return nil
}

// popSettledLocked removes from the front of the outbox the records acked
// up to ordinal n and those nacked, and records the progress in the file.
func (c *Client) popSettledLocked(n uint64) {
	k := 0
	var freed int64
pop:
	for k < len(c.q) {
		switch e := c.q[k]; {
		case e.ord != 0 && e.ord <= n:
			c.inflight--
			if e.nack == nil {
				c.stats.Acked++
			}
		case e.ord == 0 && e.nack != nil:
			// Nacked on an earlier connection whose ack never came.
		default:
			break pop
		}
		freed += int64(len(c.q[k].line)) + lineOverhead(c.q[k].seq)
		k++
	}
	if k == 0 {
		return
	}
	defer c.broadcastLocked()
	last := c.q[k-1].seq
	clear(c.q[:k])
	c.q = c.q[k:]
	c.wIdx = max(c.wIdx-k, 0)
	if c.box == nil {
		return
	}
	if err := c.box.appendSettled(last, freed); err != nil {
		c.log.Warn("device: recording acks in the outbox failed; they will be resent after a restart", "err", err)
	}
	if c.box.shouldCompact(len(c.q)) {
		if err := c.box.compact(last, c.q); err != nil {
			c.log.Warn("device: compacting the outbox failed", "err", err)
		} else {
			c.durableSeq = c.lastSeq
		}
	}
}

var frameLimitRE = regexp.MustCompile(`max_record_bytes \((\d+)\)`)

// nack marks the record with ordinal r.Nack as failed for good.
func (c *Client) nack(r reply) error {
	c.mu.Lock()
	var e *entry
	for _, x := range c.q[:c.wIdx] {
		if x.ord == r.Nack {
			e = x
			break
		}
	}
	switch {
	case e == nil:
		c.mu.Unlock()
		return fmt.Errorf("protocol: nack %d matches no record in flight", r.Nack)
	case r.Seq == 0 && e.frame > 1:
		// Our records all carry a seq, so a nack without one rejected the
		// frame as a whole (too large): the server counted it as one
		// record and the ordinals after it no longer match ours.
		c.mu.Unlock()
		limit := 0
		if m := frameLimitRE.FindStringSubmatch(r.Error); m != nil {
			limit, _ = strconv.Atoi(m[1])
		}
		c.shrinkFrames(limit)
		return fmt.Errorf("%w (%s)", errFrameRejected, r.Error)
	case r.Seq != 0 && r.Seq != e.seq:
		c.mu.Unlock()
		return fmt.Errorf("protocol: nack %d names seq %d, but record %d was sent as seq %d", r.Nack, r.Seq, r.Nack, e.seq)
	}
	e.nack = &NackError{Seq: e.seq, DeviceID: c.opts.DeviceID, Reason: r.Error}
	c.stats.Nacked++
	line := e.line
	err := e.nack
	c.mu.Unlock()
	c.log.Warn("device: record rejected", "seq", err.Seq, "err", err.Reason)
	if c.opts.OnNack != nil {
		c.opts.OnNack(line, err)
	}
	return nil
}

// shrinkFrames lowers the frame size after the server refused a frame:
// to the server's limit when known, else by half.
func (c *Client) shrinkFrames(limit int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.frameLimit
	if limit <= 0 || limit >= c.frameLimit {
		limit = c.frameLimit / 2
	}
	c.frameLimit = max(limit, 1)
	c.log.Warn("device: the server refused a frame as too large; sending smaller frames",
		"max_frame_bytes", c.frameLimit, "was", old)
}

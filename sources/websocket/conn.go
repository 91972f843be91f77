package websocket

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/tidwall/gjson"

	"github.com/sluicehq/sluice/internal/auth"
	"github.com/sluicehq/sluice/pipeline"
)

// conn is one device connection: a read loop that numbers and delivers
// records, and a writer that sends acks and nacks back.
type conn struct {
	s      *Source
	ws     *websocket.Conn
	device string // ?device_id= of the connection, for records without one
	// devices, when not nil, are the device ids the connection's token
	// grants: a record of any other device is nacked.
	devices     *auth.Grant
	spoofLogged bool // read loop only
	remote      string
	ctx         context.Context
	cancel      context.CancelFunc

	// window holds one token per unacknowledged record.
	window chan struct{}

	mu        sync.Mutex
	received  uint64 // ordinal of the last record read
	owned     uint64 // every ordinal up to here is settled or in the pipeline
	acked     uint64 // every ordinal up to here is settled
	ring      []bool // settled flags by ordinal % window
	nacks     []nack
	wake      chan struct{}
	writeMu   sync.Mutex // orders frames: acks never go backwards
	ackedSent uint64
}

type nack struct {
	N      uint64 `json:"nack"`
	Seq    uint64 `json:"seq,omitempty"`
	Device string `json:"device_id,omitempty"`
	Error  string `json:"error"`
}

func newConn(s *Source, ws *websocket.Conn, r *http.Request, device string, devices *auth.Grant) *conn {
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	return &conn{
		s:       s,
		ws:      ws,
		device:  device,
		devices: devices,
		remote:  r.RemoteAddr,
		ctx:     ctx,
		cancel:  cancel,
		window:  make(chan struct{}, s.cfg.Window),
		ring:    make([]bool, s.cfg.Window),
		wake:    make(chan struct{}, 1),
	}
}

// serve runs the read loop and the ack writer until the connection ends.
func (c *conn) serve() {
	defer c.cancel()
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		c.writeLoop()
	}()
	err := c.readLoop()
	switch status := websocket.CloseStatus(err); {
	case status == websocket.StatusNormalClosure || status == websocket.StatusGoingAway:
		c.s.log.Debug("device disconnected", "remote", c.remote, "device", c.device)
	case errors.Is(err, context.Canceled):
	default:
		c.s.log.Info("device connection ended", "remote", c.remote, "device", c.device, "err", err)
	}
	c.cancel()
	<-writerDone
	_ = c.ws.CloseNow()
}

func (c *conn) readLoop() error {
	var buf bytes.Buffer
	maxBytes := int64(c.s.cfg.MaxRecordBytes)
	for {
		typ, r, err := c.ws.Reader(c.ctx)
		if err != nil {
			return err
		}
		buf.Reset()
		n, err := io.CopyN(&buf, r, maxBytes+1)
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		if n > maxBytes {
			rest, err := io.Copy(io.Discard, r)
			if err != nil {
				return err
			}
			if err := c.reject(pipeline.ID{}, fmt.Errorf("frame of %d bytes exceeds max_record_bytes (%d)", n+rest, maxBytes)); err != nil {
				return err
			}
			continue
		}
		if typ != websocket.MessageText {
			if err := c.reject(pipeline.ID{}, errors.New("binary frames are not supported: send JSON text frames")); err != nil {
				return err
			}
			continue
		}
		if err := c.frame(bytes.Clone(buf.Bytes())); err != nil {
			return err
		}
	}
}

// frame numbers the records of one frame (newline-separated JSON objects),
// rejects the malformed ones, and delivers the rest.
func (c *conn) frame(data []byte) error {
	now := time.Now()
	var recs []pipeline.Record
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		// Never wait for window space while holding records the window is
		// waiting for.
		if len(c.window) == cap(c.window) && len(recs) > 0 {
			if !c.deliver(recs) {
				return nil
			}
			recs = nil
		}
		id, value, err := c.parse(line)
		if err != nil {
			if err := c.reject(id, err); err != nil {
				return err
			}
			continue
		}
		ord, err := c.take()
		if err != nil {
			return err
		}
		recs = append(recs, pipeline.Record{
			Value:    value,
			ID:       id,
			Received: now,
			Ack:      pipeline.NewAck(func(err error) { c.settle(ord, id, err) }),
		})
	}
	if len(recs) > 0 {
		c.deliver(recs)
	}
	return nil
}

// deliver hands recs to the pipeline and marks them owned by it.
func (c *conn) deliver(recs []pipeline.Record) bool {
	if !c.s.deliver(recs) {
		return false
	}
	c.s.m.received.Add(float64(len(recs)))
	c.mu.Lock()
	c.owned = c.received
	c.mu.Unlock()
	return true
}

// parse checks one record and returns its identity and its value, with the
// connection's device id added when the record has none.
func (c *conn) parse(line []byte) (pipeline.ID, []byte, error) {
	var id pipeline.ID
	if !gjson.ValidBytes(line) {
		var v any
		err := json.Unmarshal(line, &v)
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return id, nil, fmt.Errorf("invalid JSON at byte %d: %v", se.Offset, se)
		}
		return id, nil, fmt.Errorf("invalid JSON: %v", err)
	}
	if line[0] != '{' {
		return id, nil, errors.New("a record must be a JSON object")
	}
	dev := gjson.GetBytes(line, c.s.cfg.DeviceField)
	seq := gjson.GetBytes(line, c.s.cfg.SeqField)
	switch {
	case dev.Exists() && dev.Type != gjson.String:
		return id, nil, fmt.Errorf("%s must be a string, got %s", c.s.cfg.DeviceField, dev.Raw)
	case dev.Exists():
		id.Device = dev.Str
	case c.device != "":
		id.Device = c.device
		line = withField(line, c.s.cfg.DeviceField, c.device)
	}
	if c.devices != nil && !c.devices.Allows(id.Device) {
		c.s.m.spoofed.Inc()
		if !c.spoofLogged {
			c.spoofLogged = true // once per connection: the nacks tell the rest
			c.s.lines.Warn("record refused: device_id not granted by the connection's token", "remote", c.remote, "device", id.Device, "granted", c.devices.String())
		}
		if id.Device == "" {
			return id, nil, fmt.Errorf("missing %s: the token grants several devices (%s); name one in each record or in ?device_id=", c.s.cfg.DeviceField, c.devices)
		}
		return id, nil, fmt.Errorf("%s %q is not granted by the connection's token (claim %s): a device may send only as itself", c.s.cfg.DeviceField, id.Device, c.s.cfg.Auth.DeviceClaim)
	}
	if seq.Exists() {
		n, err := strconv.ParseUint(seq.Raw, 10, 64)
		if err != nil || seq.Type != gjson.Number {
			return id, nil, fmt.Errorf("%s must be a non-negative integer, got %s", c.s.cfg.SeqField, seq.Raw)
		}
		id.Seq = n
	} else if *c.s.cfg.RequireSeq {
		return id, nil, fmt.Errorf("missing %s: every record needs a per-device sequence number (docs/protocol.md)", c.s.cfg.SeqField)
	}
	return id, line, nil
}

// withField returns a copy of the JSON object obj with "key":"value" added
// first.
func withField(obj []byte, key, value string) []byte {
	k, _ := json.Marshal(key)
	v, _ := json.Marshal(value)
	out := make([]byte, 0, len(obj)+len(k)+len(v)+2)
	out = append(out, '{')
	out = append(out, k...)
	out = append(out, ':')
	out = append(out, v...)
	rest := bytes.TrimSpace(obj[1:])
	if len(rest) > 0 && rest[0] != '}' {
		out = append(out, ',')
	}
	return append(out, rest...)
}

// take waits for window space and numbers the next record.
func (c *conn) take() (uint64, error) {
	select {
	case c.window <- struct{}{}:
	case <-c.ctx.Done():
		return 0, c.ctx.Err()
	}
	c.mu.Lock()
	c.received++
	n := c.received
	c.mu.Unlock()
	return n, nil
}

// reject numbers a record that failed on arrival and nacks it at once.
func (c *conn) reject(id pipeline.ID, err error) error {
	c.s.m.rejected.Inc()
	n, terr := c.take()
	if terr != nil {
		return terr
	}
	c.settle(n, id, err)
	c.mu.Lock()
	if c.owned == n-1 {
		c.owned = n
	}
	c.mu.Unlock()
	return nil
}

// settle records the outcome of record n and advances the cumulative ack.
func (c *conn) settle(n uint64, id pipeline.ID, err error) {
	c.mu.Lock()
	w := uint64(len(c.ring))
	c.ring[n%w] = true
	if err != nil {
		c.nacks = append(c.nacks, nack{N: n, Seq: id.Seq, Device: id.Device, Error: err.Error()})
	}
	freed := 0
	for c.acked < c.received && c.ring[(c.acked+1)%w] {
		c.acked++
		c.ring[c.acked%w] = false
		freed++
	}
	c.mu.Unlock()
	for range freed {
		<-c.window
	}
	if freed > 0 || err != nil {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

func (c *conn) writeLoop() {
	for {
		select {
		case <-c.wake:
			if err := c.flush(c.ctx); err != nil {
				c.s.log.Debug("writing acks failed", "remote", c.remote, "err", err)
				c.cancel()
				return
			}
		case <-c.ctx.Done():
			return
		}
	}
}

// flush writes pending nacks, then the cumulative ack.
func (c *conn) flush(ctx context.Context) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	c.mu.Lock()
	nacks := c.nacks
	c.nacks = nil
	acked := c.acked
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for _, n := range nacks {
		b, _ := json.Marshal(n)
		if err := c.ws.Write(ctx, websocket.MessageText, b); err != nil {
			return err
		}
	}
	if acked > c.ackedSent {
		b := strconv.AppendUint([]byte(`{"ack":`), acked, 10)
		if err := c.ws.Write(ctx, websocket.MessageText, append(b, '}')); err != nil {
			return err
		}
		c.ackedSent = acked
	}
	return nil
}

// shutdown waits until every record the pipeline took is settled (or ctx
// ends), sends the last acks (within closeGrace, even after ctx ended) and
// closes the connection as going away.
func (c *conn) shutdown(ctx context.Context) {
	for {
		c.mu.Lock()
		done := c.acked >= c.owned
		c.mu.Unlock()
		if done || ctx.Err() != nil || c.ctx.Err() != nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if c.ctx.Err() == nil {
		// The acks of what was settled go out even when ctx ended while
		// waiting for the rest: otherwise the device resends them.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeGrace)
		_ = c.flush(fctx)
		cancel()
	}
	_ = c.ws.Close(websocket.StatusGoingAway, "sluice is shutting down")
	c.cancel()
}

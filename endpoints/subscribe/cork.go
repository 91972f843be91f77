package subscribe

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"
)

// corkMax is the most bytes a corked connection holds back.
const corkMax = 64 << 10

// corkConn holds back the writes to a connection while it is corked, so
// that the frames of a batch of records leave in one system call instead
// of one each. The WebSocket library flushes every frame; under load the
// pump corks the connection for a batch and uncorks it after.
type corkConn struct {
	net.Conn
	timeout time.Duration

	mu     sync.Mutex
	corked bool
	buf    []byte
}

// Write holds p back while corked (up to corkMax bytes) and otherwise
// writes it, with what was held back, under the write timeout.
func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf = append(c.buf, p...)
	if c.corked && len(c.buf) < corkMax {
		return len(p), nil
	}
	if err := c.flushLocked(); err != nil {
		return 0, err
	}
	return len(p), nil
}

// cork holds writes back until uncork. A nil *corkConn ignores it.
func (c *corkConn) cork() {
	if c == nil {
		return
	}
	c.mu.Lock()
	c.corked = true
	c.mu.Unlock()
}

// uncork writes what was held back, within the write timeout.
func (c *corkConn) uncork() error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = false
	return c.flushLocked()
}

// flushLocked writes what was held back. The write timeout applies to
// progress: a peer that takes some of it in every timeout is kept.
func (c *corkConn) flushLocked() error {
	b := c.buf
	var err error
	for len(b) > 0 {
		_ = c.Conn.SetWriteDeadline(time.Now().Add(c.timeout))
		var n int
		n, err = c.Conn.Write(b)
		b = b[n:]
		if err != nil {
			var ne net.Error
			if n > 0 && errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			break
		}
	}
	_ = c.Conn.SetWriteDeadline(time.Time{})
	c.buf = c.buf[:0]
	if cap(c.buf) > 2*corkMax {
		c.buf = nil
	}
	return err
}

// hijacker hands the WebSocket library a corkable connection, with the
// send buffer set when configured.
type hijacker struct {
	http.ResponseWriter
	sendBuffer int
	timeout    time.Duration
	conn       *corkConn // set by Hijack
}

func (h *hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return c, rw, err
	}
	if h.sendBuffer > 0 {
		if tc, ok := c.(interface{ SetWriteBuffer(int) error }); ok {
			_ = tc.SetWriteBuffer(h.sendBuffer)
		}
	}
	if err := rw.Writer.Flush(); err != nil {
		return c, rw, err
	}
	h.conn = &corkConn{Conn: c, timeout: h.timeout}
	return h.conn, bufio.NewReadWriter(rw.Reader, bufio.NewWriterSize(h.conn, 4096)), nil
}

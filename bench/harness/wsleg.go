package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// WebSocketReceive measures coder/websocket receiving records over
// loopback: a child process (self, "ws-send") writes text frames of
// perFrame newline-separated records on conns connections as fast as it
// can; this process reads each frame into a reused buffer and counts its
// records. Only this process's CPU is the leg's; the sender's is reported
// as the peer's.
func WebSocketReceive(ctx context.Context, m *Meter, self string, corpus [][]byte, conns, perFrame int, n int64, ratio bool) Leg {
	name := fmt.Sprintf("websocket receive (%d/frame)", perFrame)
	detail := fmt.Sprintf("coder/websocket Reader into a reused buffer, %d connections, %d records per text frame, sender in a child process", conns, perFrame)
	return measure(m, name, detail, ratio, func() (legRun, error) {
		var total atomic.Int64
		var first atomic.Int64
		done := make(chan struct{})
		var once sync.Once
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ws, err := websocket.Accept(w, r, nil)
			if err != nil {
				return
			}
			defer ws.CloseNow()
			ws.SetReadLimit(64 << 20)
			var buf bytes.Buffer
			for {
				_, rd, err := ws.Reader(r.Context())
				if err != nil {
					return
				}
				buf.Reset()
				if _, err := buf.ReadFrom(rd); err != nil {
					return
				}
				first.CompareAndSwap(0, time.Now().UnixNano())
				k := int64(bytes.Count(buf.Bytes(), []byte{'\n'}) + 1)
				if total.Add(k) >= n {
					once.Do(func() { close(done) })
				}
			}
		})
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return legRun{}, err
		}
		srv := &http.Server{Handler: h}
		go srv.Serve(ln)
		defer srv.Close()

		cmd := exec.CommandContext(ctx, self, "ws-send", "-url", "ws://"+ln.Addr().String()+"/",
			"-conns", strconv.Itoa(conns), "-records", strconv.FormatInt(n, 10), "-per-frame", strconv.Itoa(perFrame))
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			return legRun{}, err
		}
		var werr error
		select {
		case <-done:
		case <-time.After(2 * time.Minute):
			werr = fmt.Errorf("timeout: %d of %d records", total.Load(), n)
		}
		end := time.Now()
		if err := cmd.Wait(); err != nil && werr == nil {
			werr = fmt.Errorf("sender: %w", err)
		}
		el := time.Duration(0)
		if f := first.Load(); f > 0 {
			el = end.Sub(time.Unix(0, f))
		}
		return legRun{records: total.Load(), elapsed: el}, werr
	})
}

// WSSend is the child side of WebSocketReceive: it sends n records in
// frames of perFrame over conns connections to url, then closes them.
func WSSend(ctx context.Context, url string, conns, perFrame int, n int64) error {
	corpus := Corpus(4096, 64)
	var frames [][]byte
	for off := 0; off+perFrame <= len(corpus); off += perFrame {
		frames = append(frames, bytes.Join(corpus[off:off+perFrame], []byte{'\n'}))
	}
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	per := n / int64(conns)
	for c := range conns {
		quota := per
		if c == 0 {
			quota += n % int64(conns)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ws, _, err := websocket.Dial(ctx, url, nil)
			if err != nil {
				errs <- err
				return
			}
			defer ws.CloseNow()
			var sent int64
			for i := c; sent < quota; i++ {
				f := frames[i%len(frames)]
				k := int64(perFrame)
				if quota-sent < k {
					k = quota - sent
					f = bytes.Join(corpus[:k], []byte{'\n'})
				}
				if err := ws.Write(ctx, websocket.MessageText, f); err != nil {
					errs <- err
					return
				}
				sent += k
			}
			// Let the receiver read everything before the close.
			_ = ws.Close(websocket.StatusNormalClosure, "")
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil && !errors.Is(err, io.EOF) && websocket.CloseStatus(err) == -1 {
			return err
		}
	}
	return nil
}

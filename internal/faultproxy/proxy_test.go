package faultproxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/internal/testenv"
)

// echoServer answers every line with "echo: " and the line; it records the
// bytes it received.
type echoServer struct {
	ln   net.Listener
	mu   sync.Mutex
	got  bytes.Buffer
	wg   sync.WaitGroup
	stop chan struct{}
}

func startEcho(t *testing.T) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &echoServer{ln: ln, stop: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadBytes('\n')
					s.mu.Lock()
					s.got.Write(line)
					s.mu.Unlock()
					if err != nil {
						return
					}
					if _, err := c.Write(append([]byte("echo: "), line...)); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); s.wg.Wait() })
	return s
}

func (s *echoServer) received() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got.String()
}

func startProxy(t *testing.T, upstream string, opts Options) *Proxy {
	t.Helper()
	opts.Logf = t.Logf
	p, err := Start(upstream, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// roundTrip sends line and reads the reply within d.
func roundTrip(c net.Conn, line string, d time.Duration) (string, error) {
	if _, err := c.Write([]byte(line + "\n")); err != nil {
		return "", err
	}
	_ = c.SetReadDeadline(time.Now().Add(d))
	reply, err := bufio.NewReader(c).ReadString('\n')
	return reply, err
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestPassStallDropDown(t *testing.T) {
	echo := startEcho(t)
	p := startProxy(t, echo.ln.Addr().String(), Options{})

	c := dial(t, p.Addr())
	if got, err := roundTrip(c, "one", 2*time.Second); err != nil || got != "echo: one\n" {
		t.Fatalf("pass: got %q, %v; want the echo", got, err)
	}

	// Stall: nothing comes back, then everything does.
	p.Stall()
	if _, err := c.Write([]byte("two\n")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	buf := make([]byte, 64)
	if n, err := c.Read(buf); !isTimeout(err) {
		t.Fatalf("stall: read %q, %v; want a timeout", buf[:n], err)
	}
	if got := echo.received(); got != "one\n" {
		t.Fatalf("stall: the server received %q, want only %q", got, "one\n")
	}
	p.Pass()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || got != "echo: two\n" {
		t.Fatalf("after stall: got %q, %v; want the delayed echo", got, err)
	}

	// DropAll resets the open connection; a new one works.
	if n := p.DropAll(); n != 1 {
		t.Fatalf("DropAll reset %d connections, want 1", n)
	}
	if _, err := roundTrip(c, "three", 2*time.Second); err == nil {
		t.Fatal("after DropAll the old connection still works")
	}
	c2 := dial(t, p.Addr())
	if got, err := roundTrip(c2, "four", 2*time.Second); err != nil || got != "echo: four\n" {
		t.Fatalf("after DropAll: got %q, %v", got, err)
	}

	// Down resets open and new connections until Pass.
	p.Down()
	if _, err := roundTrip(c2, "five", 2*time.Second); err == nil {
		t.Fatal("Down: the open connection still works")
	}
	// A new connection is reset: at connect, or at the first round trip.
	if c3, err := net.DialTimeout("tcp", p.Addr(), 2*time.Second); err == nil {
		_, err = roundTrip(c3, "six", 2*time.Second)
		c3.Close()
		if err == nil {
			t.Fatal("Down: a new connection works")
		}
	}
	p.Pass()
	c4 := dial(t, p.Addr())
	if got, err := roundTrip(c4, "seven", 2*time.Second); err != nil || got != "echo: seven\n" {
		t.Fatalf("after Down and Pass: got %q, %v", got, err)
	}
	s := p.Stats()
	if s.Dropped < 2 || s.Refused < 1 {
		t.Fatalf("stats %+v: want at least 2 dropped, 1 refused", s)
	}
}

func TestCutReplyAfter(t *testing.T) {
	echo := startEcho(t)
	p := startProxy(t, echo.ln.Addr().String(), Options{})
	c := dial(t, p.Addr())
	if _, err := roundTrip(c, "small", 2*time.Second); err != nil {
		t.Fatal(err)
	}
	p.CutReplyAfter(100, 1)
	// A short request stays under the threshold and is answered.
	if got, err := roundTrip(c, "short", 2*time.Second); err != nil || got != "echo: short\n" {
		t.Fatalf("under the threshold: got %q, %v", got, err)
	}
	// This one crosses it: it reaches the server whole, its reply is lost.
	long := string(bytes.Repeat([]byte("x"), 200))
	if got, err := roundTrip(c, long, 2*time.Second); err == nil {
		t.Fatalf("over the threshold: got the reply %q, want a reset", got)
	} else if isTimeout(err) {
		t.Fatalf("over the threshold: timed out instead of a reset")
	}
	deadline := time.Now().Add(2 * time.Second)
	for !bytes.Contains([]byte(echo.received()), []byte(long+"\n")) {
		if time.Now().After(deadline) {
			t.Fatalf("the server did not receive the request whose reply was cut: %q", echo.received())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if s := p.Stats(); s.Cuts != 1 || p.CutsLeft() != 0 {
		t.Fatalf("stats %+v, cuts left %d: want 1 cut, 0 left", s, p.CutsLeft())
	}
	// Disarmed after one cut.
	c2 := dial(t, p.Addr())
	if got, err := roundTrip(c2, long, 2*time.Second); err != nil || got != "echo: "+long+"\n" {
		t.Fatalf("after the cut: got %q, %v", got, err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// frame builds a response frame: size, correlation id, body.
func frame(corr int32, body ...[]byte) []byte {
	b := []byte{0, 0, 0, 0}
	b = binary.BigEndian.AppendUint32(b, uint32(corr))
	for _, x := range body {
		b = append(b, x...)
	}
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b
}

func i16(v int16) []byte { return binary.BigEndian.AppendUint16(nil, uint16(v)) }
func i32(v int32) []byte { return binary.BigEndian.AppendUint32(nil, uint32(v)) }
func str(s string) []byte {
	return append(i16(int16(len(s))), s...)
}
func cstr(s string) []byte { return append(binary.AppendUvarint(nil, uint64(len(s))+1), s...) }
func uv(n uint64) []byte   { return binary.AppendUvarint(nil, n) }

func TestRewrite(t *testing.T) {
	tail := []byte("the rest, copied as it is")
	tests := []struct {
		name      string
		req       request
		in, want  []byte
		unchanged bool
	}{
		{
			name: "metadata v1, two brokers, one matching",
			req:  request{apiMetadata, 1},
			in: frame(7, i32(2),
				i32(1), str("127.0.0.1"), i32(9092), i16(-1),
				i32(2), str("10.0.0.2"), i32(9092), str("rack"), tail),
			want: frame(7, i32(2),
				i32(1), str("localhost"), i32(40000), i16(-1),
				i32(2), str("10.0.0.2"), i32(9092), str("rack"), tail),
		},
		{
			name: "metadata v8 with throttle time",
			req:  request{apiMetadata, 8},
			in:   frame(7, i32(0), i32(1), i32(1), str("127.0.0.1"), i32(9092), i16(-1), tail),
			want: frame(7, i32(0), i32(1), i32(1), str("localhost"), i32(40000), i16(-1), tail),
		},
		{
			name: "metadata v12, flexible",
			req:  request{apiMetadata, 12},
			in:   frame(7, uv(0), i32(0), uv(2), i32(1), cstr("127.0.0.1"), i32(9092), uv(0), uv(0), tail),
			want: frame(7, uv(0), i32(0), uv(2), i32(1), cstr("localhost"), i32(40000), uv(0), uv(0), tail),
		},
		{
			name: "find coordinator v0",
			req:  request{apiFindCoordinator, 0},
			in:   frame(9, i16(0), i32(1), str("127.0.0.1"), i32(9092)),
			want: frame(9, i16(0), i32(1), str("localhost"), i32(40000)),
		},
		{
			name: "find coordinator v2",
			req:  request{apiFindCoordinator, 2},
			in:   frame(9, i32(0), i16(0), i16(-1), i32(1), str("127.0.0.1"), i32(9092)),
			want: frame(9, i32(0), i16(0), i16(-1), i32(1), str("localhost"), i32(40000)),
		},
		{
			name: "find coordinator v4, batched",
			req:  request{apiFindCoordinator, 4},
			in:   frame(9, uv(0), i32(0), uv(2), cstr("group"), i32(1), cstr("127.0.0.1"), i32(9092), i16(0), uv(0), uv(0), uv(0)),
			want: frame(9, uv(0), i32(0), uv(2), cstr("group"), i32(1), cstr("localhost"), i32(40000), i16(0), uv(0), uv(0), uv(0)),
		},
		{
			name:      "no match",
			req:       request{apiMetadata, 1},
			in:        frame(7, i32(1), i32(1), str("127.0.0.2"), i32(9092), i16(-1), tail),
			unchanged: true,
		},
		{
			name:      "other api",
			req:       request{0, 9},
			in:        frame(7, tail),
			unchanged: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, changed, err := rewrite(tc.in, tc.req, "127.0.0.1", 9092, "localhost", 40000)
			if err != nil {
				t.Fatal(err)
			}
			if tc.unchanged {
				if changed || !bytes.Equal(got, tc.in) {
					t.Fatalf("changed %v: got %x, want the input", changed, got)
				}
				return
			}
			if !changed || !bytes.Equal(got, tc.want) {
				t.Fatalf("changed %v:\n got %x\nwant %x", changed, got, tc.want)
			}
		})
	}
	if _, _, err := rewrite(frame(7, i32(1), i32(1), str("127.0")), request{apiMetadata, 1}, "127.0.0.1", 9092, "x", 1); err == nil {
		t.Fatal("a truncated response parsed without error")
	}
}

// TestKafkaThroughProxy checks against the real broker that a producer and
// a consumer group that bootstrap through the proxy stay behind it: when
// the proxy is down, nothing gets through.
func TestKafkaThroughProxy(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	topic := testenv.Name("faultproxy")
	testenv.CreateTopic(t, brokers, topic, 2)
	p := startProxy(t, brokers[0], Options{Kafka: true})

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(p.Addr()), Timeout: 5 * time.Second}
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range md.Brokers {
		if got := net.JoinHostPort(b.Host, itoa(b.Port)); got != p.Addr() {
			t.Fatalf("metadata through the proxy names broker %s, want the proxy %s", got, p.Addr())
		}
	}

	w := &kafka.Writer{Addr: kafka.TCP(p.Addr()), Topic: topic, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	defer w.Close()
	if err := w.WriteMessages(ctx, kafka.Message{Value: []byte("a")}, kafka.Message{Value: []byte("b")}); err != nil {
		t.Fatal(err)
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{p.Addr()}, GroupID: topic, Topic: topic, MaxWait: 200 * time.Millisecond})
	defer r.Close()
	for range 2 {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.CommitMessages(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if s := p.Stats(); s.Rewritten == 0 || s.Up == 0 {
		t.Fatalf("stats %+v: want rewritten responses and traffic", s)
	}

	// Down: the writer, which knows the broker only through the proxy,
	// cannot write.
	p.Down()
	wctx, wcancel := context.WithTimeout(ctx, 3*time.Second)
	err = w.WriteMessages(wctx, kafka.Message{Value: []byte("c")})
	wcancel()
	if err == nil {
		t.Fatal("a write succeeded while the proxy was down: the writer bypasses the proxy")
	}
	p.Pass()
	if err := w.WriteMessages(ctx, kafka.Message{Value: []byte("d")}); err != nil {
		t.Fatalf("write after Pass: %v", err)
	}
}

func itoa(n int) string { return string(appendInt(nil, n)) }

func appendInt(b []byte, n int) []byte {
	if n >= 10 {
		b = appendInt(b, n/10)
	}
	return append(b, byte('0'+n%10))
}

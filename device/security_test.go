package device

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sluicehq/sluice/internal/auth"
	"github.com/sluicehq/sluice/internal/auth/authtest"
	wssource "github.com/sluicehq/sluice/sources/websocket"
)

const token1 = "device-1-token-0123456789abcdef"

// startSecure runs a source over TLS that accepts token1, bound to dev-1.
func startSecure(t *testing.T) (*server, *authtest.PKI) {
	t.Helper()
	dir := t.TempDir()
	pki := authtest.NewPKI(t, dir)
	if err := os.WriteFile(filepath.Join(dir, "tokens.txt"), []byte(token1+" sub=dev-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, dir: dir, sink: &memSink{}, listen: "127.0.0.1:0", cfg: wssource.Config{
		TLS:  &auth.TLSConfig{Cert: "server.crt", Key: "server.key"},
		Auth: &auth.Config{TokensFile: "tokens.txt", DeviceClaim: "sub"},
	}}
	s.start()
	t.Cleanup(s.stop)
	if !strings.HasPrefix(s.url, "wss://") {
		t.Fatalf("url %s", s.url)
	}
	return s, pki
}

func TestTLSAndToken(t *testing.T) {
	srv, pki := startSecure(t)
	var calls atomic.Int32
	c, err := New(srv.url, Options{
		DeviceID:  "dev-1",
		TLSConfig: pki.ClientConfig(),
		TokenFunc: func(context.Context) (string, error) { calls.Add(1); return token1, nil },
		Logger:    quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := <-sendAll(c, 100, noExtra); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if n := srv.sink.len(); n != 100 {
		t.Fatalf("%d records, want 100", n)
	}
	// A reconnect asks for the token again (a renewed JWT).
	srv.restart()
	if _, err := c.Send(context.Background(), []byte(`{"n":101}`)); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if calls.Load() < 2 {
		t.Fatalf("TokenFunc called %d times", calls.Load())
	}
}

func TestRefusedClientsDoNotConnect(t *testing.T) {
	srv, pki := startSecure(t)
	for name, o := range map[string]Options{
		"no token":          {DeviceID: "dev-1", TLSConfig: pki.ClientConfig()},
		"wrong token":       {DeviceID: "dev-1", TLSConfig: pki.ClientConfig(), Token: "wrong-token-0123456789abcdef"},
		"another device":    {DeviceID: "dev-2", TLSConfig: pki.ClientConfig(), Token: token1},
		"untrusted server":  {DeviceID: "dev-1", Token: token1},
		"token func failed": {DeviceID: "dev-1", TLSConfig: pki.ClientConfig(), TokenFunc: func(context.Context) (string, error) { return "", errors.New("no token yet") }},
	} {
		t.Run(name, func(t *testing.T) {
			o.Logger = quiet
			c, err := New(srv.url, o)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Send(context.Background(), []byte(`{"n":1}`)); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			if err := c.Flush(ctx); err == nil {
				t.Fatal("flushed")
			}
			if st := c.Stats(); st.Connects != 0 {
				t.Fatalf("connected: %+v", st)
			}
		})
	}
	if n := srv.sink.len(); n != 0 {
		t.Fatalf("%d records arrived", n)
	}
}

func TestTLSConfigAndHTTPClientConflict(t *testing.T) {
	_, err := New("wss://127.0.0.1:1/ingest", Options{DeviceID: "d", TLSConfig: (&authtest.PKI{}).ClientConfig(), DialOptions: dialWithClient()})
	if err == nil || !strings.Contains(err.Error(), "not both") {
		t.Fatalf("got %v", err)
	}
}

func dialWithClient() *websocket.DialOptions {
	return &websocket.DialOptions{HTTPClient: &http.Client{}}
}

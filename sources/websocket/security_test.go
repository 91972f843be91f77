package websocket

import (
	"bytes"
	"context"
	"crypto/tls"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/internal/auth"
	"github.com/sluicehq/sluice/internal/auth/authtest"
	"github.com/sluicehq/sluice/pipeline"
)

// secured is a source with TLS and auth, and what its tests look at.
type secured struct {
	*harness
	pki     *authtest.PKI
	logs    *authtest.Logs
	metrics *prometheus.Registry
}

const devToken = "dev-1-token-0123456789abcdef"

// startSecured runs a source over TLS that accepts the static token
// devToken (bound to device dev-1) and HS256 JWTs, with device_claim sub.
func startSecured(t *testing.T) *secured {
	t.Helper()
	dir := t.TempDir()
	pki := authtest.NewPKI(t, dir)
	if err := os.WriteFile(filepath.Join(dir, "tokens.txt"), []byte(devToken+" sub=dev-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "jwt.secret"), []byte(authtest.Secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &authtest.Logs{}
	reg := prometheus.NewRegistry()
	cfg := Config{
		TLS: &auth.TLSConfig{Cert: "server.crt", Key: "server.key"},
		Auth: &auth.Config{
			TokensFile:  "tokens.txt",
			JWT:         &auth.JWTConfig{SecretFile: "jwt.secret", Issuer: "https://id.test"},
			DeviceClaim: "sub",
		},
	}
	h := startEnv(t, cfg, pipeline.Env{Logger: slog.New(slog.NewTextHandler(logs, nil)), Metrics: reg, Dir: dir})
	if !strings.HasPrefix(h.url, "wss://") {
		t.Fatalf("url %s: want wss", h.url)
	}
	return &secured{harness: h, pki: pki, logs: logs, metrics: reg}
}

// dialOpts trusts the test CA and sends token (if any) in the header.
func (s *secured) dialOpts(token string) *websocket.DialOptions {
	o := &websocket.DialOptions{HTTPClient: &http.Client{Transport: &http.Transport{TLSClientConfig: s.pki.ClientConfig()}}}
	if token != "" {
		o.HTTPHeader = http.Header{"Authorization": {"Bearer " + token}}
	}
	return o
}

func dialWith(t *testing.T, url string, o *websocket.DialOptions) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, url, o)
	if c != nil {
		t.Cleanup(func() { c.CloseNow() })
	}
	return c, resp, err
}

func TestTLSIngest(t *testing.T) {
	s := startSecured(t)
	c, resp, err := dialWith(t, s.url, s.dialOpts(devToken))
	if err != nil {
		t.Fatal(err)
	}
	if resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
		t.Fatalf("connection state %+v: want TLS 1.2 or later", resp.TLS)
	}
	send(t, c, `{"seq":1,"temp":20}`+"\n"+`{"device_id":"dev-1","seq":2,"temp":21}`)
	if nacks := readUntilAck(t, c, 2); len(nacks) != 0 {
		t.Fatalf("nacks %+v", nacks)
	}
	recs := s.sink.records()
	if len(recs) != 2 || recs[0].ID.Device != "dev-1" || !strings.HasPrefix(string(recs[0].Value), `{"device_id":"dev-1",`) {
		t.Fatalf("records %+v", recs)
	}

	// TLS 1.1 is refused.
	old := s.pki.ClientConfig()
	old.MinVersion, old.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	o := s.dialOpts(devToken)
	o.HTTPClient.Transport.(*http.Transport).TLSClientConfig = old
	if _, _, err := dialWith(t, s.url, o); err == nil {
		t.Fatal("a TLS 1.1 client connected")
	}
	// A client that does not trust the certificate refuses it.
	o = s.dialOpts(devToken)
	o.HTTPClient.Transport.(*http.Transport).TLSClientConfig = &tls.Config{}
	if _, _, err := dialWith(t, s.url, o); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("an untrusting client: %v", err)
	}
}

func TestPlainWebSocketToTLSPortFails(t *testing.T) {
	s := startSecured(t)
	plain := "ws://" + strings.TrimPrefix(s.url, "wss://")
	_, resp, err := dialWith(t, plain, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + devToken}}})
	if err == nil {
		t.Fatal("plain ws:// connected to a TLS port")
	}
	if resp != nil && resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if len(s.sink.records()) != 0 {
		t.Fatal("records arrived")
	}
}

func TestAuthRefusals(t *testing.T) {
	s := startSecured(t)
	now := time.Now()
	expired := authtest.HS256(t, authtest.Secret, jwt.MapClaims{"sub": "dev-1", "iss": "https://id.test", "exp": now.Add(-time.Hour).Unix()})
	wrongIss := authtest.HS256(t, authtest.Secret, jwt.MapClaims{"sub": "dev-1", "iss": "https://evil.test", "exp": now.Add(time.Hour).Unix()})
	forged := authtest.HS256(t, strings.Repeat("k", 40), jwt.MapClaims{"sub": "dev-1", "iss": "https://id.test", "exp": now.Add(time.Hour).Unix()})
	for _, tc := range []struct {
		name, token, reason, body string
	}{
		{"missing", "", auth.ReasonMissing, "no token"},
		{"wrong", "not-the-token-0123456789", auth.ReasonUnknownToken, "unknown token"},
		{"expired", expired, auth.ReasonExpired, "expired"},
		{"wrong issuer", wrongIss, auth.ReasonWrongIssuer, "issuer"},
		{"forged", forged, auth.ReasonBadSignature, "signature"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, resp, err := dialWith(t, s.url, s.dialOpts(tc.token))
			if err == nil {
				t.Fatal("connected")
			}
			if resp == nil || resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("want 401, got %v (%v)", resp, err)
			}
			if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer ") {
				t.Fatalf("WWW-Authenticate %q", resp.Header.Get("WWW-Authenticate"))
			}
			if n := failures(t, s.metrics, "sluice_websocket_auth_failures_total", tc.reason); n != 1 {
				t.Fatalf("failures{reason=%s} = %v", tc.reason, n)
			}
		})
	}
	// A token in the URL is refused, and never logged.
	_, resp, _ := dialWith(t, s.url+"?access_token="+devToken, s.dialOpts(""))
	if resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("token in the URL: %v", resp)
	}
	logs := s.logs.String()
	if !strings.Contains(logs, "authentication failed") || !strings.Contains(logs, "reason=expired") {
		t.Fatalf("logs lack the refusals:\n%s", logs)
	}
	for _, tok := range []string{devToken, expired, wrongIss, forged, "not-the-token"} {
		if strings.Contains(logs, tok) {
			t.Fatalf("a token is in the logs:\n%s", logs)
		}
	}

	// The browser way: the token as a subprotocol; the server selects
	// "sluice" and never echoes the token.
	o := s.dialOpts("")
	o.Subprotocols = []string{auth.Subprotocol, auth.TokenProtocol(devToken)}
	c, resp, err := dialWith(t, s.url, o)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subprotocol() != auth.Subprotocol || strings.Contains(resp.Header.Get("Sec-WebSocket-Protocol"), "bearer") {
		t.Fatalf("selected subprotocol %q", c.Subprotocol())
	}
	send(t, c, `{"seq":7}`)
	readUntilAck(t, c, 1)

	// A valid JWT works too.
	good := authtest.HS256(t, authtest.Secret, jwt.MapClaims{"sub": "dev-1", "iss": "https://id.test", "exp": now.Add(time.Hour).Unix()})
	if _, _, err := dialWith(t, s.url, s.dialOpts(good)); err != nil {
		t.Fatal(err)
	}
}

// failures returns the value of the auth failure counter name{reason}.
func failures(t *testing.T, reg *prometheus.Registry, name, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func TestDeviceCannotSpoofAnother(t *testing.T) {
	s := startSecured(t)
	c, _, err := dialWith(t, s.url, s.dialOpts(devToken))
	if err != nil {
		t.Fatal(err)
	}
	send(t, c, `{"seq":1}`+"\n"+`{"device_id":"dev-2","seq":2,"temp":99}`+"\n"+`{"device_id":"dev-1","seq":3}`)
	nacks := readUntilAck(t, c, 3)
	if len(nacks) != 1 || nacks[0].Nack != 2 || nacks[0].Device != "dev-2" ||
		nacks[0].Error != `device_id "dev-2" is not granted by the connection's token (claim sub): a device may send only as itself` {
		t.Fatalf("nacks %+v", nacks)
	}
	for _, r := range s.sink.records() {
		if r.ID.Device != "dev-1" {
			t.Fatalf("a record of %s got through: %s", r.ID.Device, r.Value)
		}
	}
	if n := len(s.sink.records()); n != 2 {
		t.Fatalf("%d records, want 2", n)
	}
	if !strings.Contains(s.logs.String(), "device_id not granted") {
		t.Fatal("the spoofing attempt was not logged")
	}

	// Asking for another device's connection is refused before the upgrade.
	_, resp, err := dialWith(t, s.url+"?device_id=dev-2", s.dialOpts(devToken))
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("want 403, got %v, %v", resp, err)
	}
	// A JWT for several devices: each record names one of them.
	multi := authtest.HS256(t, authtest.Secret, jwt.MapClaims{"sub": []string{"gw-a", "gw-b"}, "iss": "https://id.test", "exp": time.Now().Add(time.Hour).Unix()})
	c, _, err = dialWith(t, s.url, s.dialOpts(multi))
	if err != nil {
		t.Fatal(err)
	}
	send(t, c, `{"device_id":"gw-b","seq":1}`+"\n"+`{"seq":2}`+"\n"+`{"device_id":"dev-1","seq":3}`)
	nacks = readUntilAck(t, c, 3)
	if len(nacks) != 2 || !strings.HasPrefix(nacks[0].Error, "missing device_id: the token grants several devices") ||
		!strings.Contains(nacks[1].Error, `"dev-1" is not granted`) {
		t.Fatalf("nacks %+v", nacks)
	}
}

func TestSharedAddressMustAgreeOnTLS(t *testing.T) {
	dir := t.TempDir()
	authtest.NewPKI(t, dir)
	log := slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil))
	servers := pipeline.NewServers(log)
	env := pipeline.Env{Logger: log, HTTP: servers, Dir: dir}
	if _, err := New(context.Background(), Config{Listen: "127.0.0.1:0", Path: "/a", TLS: &auth.TLSConfig{Cert: "server.crt", Key: "server.key"}}, env); err != nil {
		t.Fatal(err)
	}
	_, err := New(context.Background(), Config{Listen: "127.0.0.1:0", Path: "/b"}, env)
	if err == nil || !strings.Contains(err.Error(), "listen: listen 127.0.0.1:0 is shared with the websocket source (/a), served over TLS") ||
		!strings.Contains(err.Error(), "the websocket source (/b) asks to be served without TLS") {
		t.Fatalf("got %v", err)
	}
	_, err = New(context.Background(), Config{Listen: "127.0.0.1:1", Path: "/c", TLS: &auth.TLSConfig{Cert: "missing.crt", Key: "server.key"}}, env)
	if err == nil || !strings.Contains(err.Error(), "tls.cert: "+filepath.Join(dir, "missing.crt")+": no such file") {
		t.Fatalf("got %v", err)
	}
}

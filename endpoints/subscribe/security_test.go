package subscribe

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/sluicehq/sluice/internal/auth"
	"github.com/sluicehq/sluice/internal/auth/authtest"
	"github.com/sluicehq/sluice/internal/testenv"
	"github.com/sluicehq/sluice/pipeline"
)

const dashToken = "dashboard-token-0123456789abcdef"

// TestSubscriptionSecurity runs an endpoint over TLS with auth serving two
// topics, and checks who may read what: a JWT restricted by its claims to
// one topic and one device, a static token restricted to one topic, and
// the refusals.
func TestSubscriptionSecurity(t *testing.T) {
	brokers, topic := newTopic(t, 2)
	other := testenv.Name("subscribe-other")
	testenv.CreateTopic(t, brokers, other, 1)

	dir := t.TempDir()
	pki := authtest.NewPKI(t, dir)
	if err := os.WriteFile(filepath.Join(dir, "tokens.txt"), []byte(dashToken+" sub=dashboard topics="+topic+" devices=*\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SLUICE_TEST_JWT_SECRET", authtest.Secret)
	logs := &authtest.Logs{}
	h := startEnv(t, brokers, topic, Config{
		Topics: []string{other},
		UI:     "/ui",
		TLS:    &auth.TLSConfig{Cert: "server.crt", Key: "server.key"},
		Auth: &auth.Config{
			TokensFile:  "tokens.txt",
			JWT:         &auth.JWTConfig{SecretEnv: "SLUICE_TEST_JWT_SECRET", Audience: []string{"sluice"}},
			TopicClaim:  "topics",
			DeviceClaim: "devices",
		},
	}, pipeline.Env{Logger: slog.New(slog.NewTextHandler(logs, nil)), Dir: dir}, nil)
	if !strings.HasPrefix(h.url, "wss://") {
		t.Fatalf("url %s", h.url)
	}
	recs := records(3, 20, 0) // d0, d1, d2
	produce(t, brokers, topic, recs)

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: pki.ClientConfig()}}
	dial := func(query string, o websocket.DialOptions) (*websocket.Conn, *http.Response, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if o.HTTPClient == nil {
			o.HTTPClient = client
		}
		c, resp, err := websocket.Dial(ctx, h.url+"?"+query, &o)
		if c != nil {
			t.Cleanup(func() { c.CloseNow() })
			c.SetReadLimit(16 << 20)
		}
		return c, resp, err
	}
	bearer := func(tok string) websocket.DialOptions {
		return websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + tok}}}
	}
	claims := func(extra jwt.MapClaims) string {
		c := authtest.Claims("viewer-1", jwt.MapClaims{"aud": "sluice", "topics": []string{topic}, "devices": "d1"})
		for k, v := range extra {
			c[k] = v
		}
		return authtest.HS256(t, authtest.Secret, c)
	}
	restricted := claims(nil)

	t.Run("restricted to its topic and device", func(t *testing.T) {
		c, _, err := dial("topic="+url.QueryEscape(topic)+"&from=earliest", bearer(restricted))
		if err != nil {
			t.Fatal(err)
		}
		s := &sub{t: t, c: c}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if m, err := s.read(ctx); err != nil || m.Type != "subscribed" {
			t.Fatalf("first message %+v, %v", m, err)
		}
		want := expect(recs, func(r rec) bool { return r.Device == "d1" })
		got, err := s.records(ctx, count(want))
		if err != nil {
			t.Fatal(err)
		}
		if err := sameRecords(byDevice(got), want); err != nil {
			t.Fatal(err)
		}
		if err := s.quiet(300 * time.Millisecond); err != nil {
			t.Fatalf("records of other devices: %v", err)
		}
	})

	forbidden := func(t *testing.T, query string, o websocket.DialOptions, reason string) {
		t.Helper()
		c, _, err := dial(query, o)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _, err = c.Read(ctx)
		var ce websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != StatusForbidden || !strings.Contains(ce.Reason, reason) {
			t.Fatalf("got %v, want close %d with %q", err, StatusForbidden, reason)
		}
	}
	t.Run("another topic is refused", func(t *testing.T) {
		forbidden(t, "topic="+url.QueryEscape(other), bearer(restricted), `topic "`+other+`" is not granted by the token (claim topics)`)
		forbidden(t, "topic="+url.QueryEscape(other), bearer(dashToken), "is not granted")
		if n := metric(t, h.metrics, "sluice_subscribe_auth_failures_total", map[string]string{"reason": auth.ReasonForbidden}); n < 2 {
			t.Fatalf("forbidden counted %v times", n)
		}
	})
	t.Run("another device is refused", func(t *testing.T) {
		forbidden(t, "topic="+url.QueryEscape(topic)+"&device_id=d1,d2", bearer(restricted), `device_id "d2" is not granted`)
	})
	t.Run("a token without the claims reads nothing", func(t *testing.T) {
		bare := authtest.HS256(t, authtest.Secret, authtest.Claims("viewer-2", jwt.MapClaims{"aud": "sluice"}))
		forbidden(t, "topic="+url.QueryEscape(topic), bearer(bare), "is not granted")
	})
	t.Run("static token as a subprotocol", func(t *testing.T) {
		c, _, err := dial("topic="+url.QueryEscape(topic)+"&from=earliest&device_id=d2", websocket.DialOptions{
			Subprotocols: []string{auth.Subprotocol, auth.TokenProtocol(dashToken)},
		})
		if err != nil {
			t.Fatal(err)
		}
		if c.Subprotocol() != auth.Subprotocol {
			t.Fatalf("subprotocol %q", c.Subprotocol())
		}
		s := &sub{t: t, c: c}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if _, err := s.read(ctx); err != nil {
			t.Fatal(err)
		}
		want := expect(recs, func(r rec) bool { return r.Device == "d2" })
		if got, err := s.records(ctx, count(want)); err != nil || sameRecords(byDevice(got), want) != nil {
			t.Fatalf("got %d records, %v", len(got), err)
		}
	})
	t.Run("unauthenticated is 401 before the upgrade", func(t *testing.T) {
		for name, tok := range map[string]string{
			"missing":        "",
			"wrong":          "wrong-token-0123456789abcdef",
			"expired":        claims(jwt.MapClaims{"exp": time.Now().Add(-time.Hour).Unix()}),
			"wrong audience": claims(jwt.MapClaims{"aud": "other"}),
		} {
			o := websocket.DialOptions{}
			if tok != "" {
				o = bearer(tok)
			}
			_, resp, err := dial("topic="+url.QueryEscape(topic), o)
			if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("%s: want 401, got %v, %v", name, resp, err)
			}
		}
		if logged := logs.String(); strings.Contains(logged, restricted) || strings.Contains(logged, dashToken) || strings.Contains(logged, "wrong-token") {
			t.Fatal("a token is in the logs")
		}
	})
	t.Run("plain ws to the TLS port fails", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		plain := "ws://" + strings.TrimPrefix(h.url, "wss://") + "?topic=" + url.QueryEscape(topic)
		_, resp, err := websocket.Dial(ctx, plain, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + dashToken}}})
		if err == nil {
			t.Fatal("connected")
		}
		if resp != nil && resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
	t.Run("the browser view is served over https", func(t *testing.T) {
		resp, err := client.Get(h.base + "/ui/config.json")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"auth":true`) {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
	})
}

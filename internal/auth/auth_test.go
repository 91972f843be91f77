package auth

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	dto "github.com/prometheus/client_model/go"

	"github.com/sluicehq/sluice/internal/auth/authtest"
	"github.com/sluicehq/sluice/pipeline"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func fieldErr(t *testing.T, err error, field, contains string) {
	t.Helper()
	var fe *pipeline.FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("want a FieldError on %s, got %v", field, err)
	}
	if fe.Field != field || !strings.Contains(fe.Msg, contains) {
		t.Fatalf("want %s: …%s…, got %s: %s", field, contains, fe.Field, fe.Msg)
	}
}

func TestTokenFrom(t *testing.T) {
	req := func(mod func(r *http.Request)) *http.Request {
		r := httptest.NewRequest("GET", "/ingest?device_id=d", nil)
		mod(r)
		return r
	}
	for _, tc := range []struct {
		name   string
		r      *http.Request
		want   string
		reason string
	}{
		{"header", req(func(r *http.Request) { r.Header.Set("Authorization", "Bearer abc.def") }), "abc.def", ""},
		{"header case", req(func(r *http.Request) { r.Header.Set("Authorization", "bearer  xyz") }), "xyz", ""},
		{"basic", req(func(r *http.Request) { r.Header.Set("Authorization", "Basic xyz") }), "", ReasonBadHeader},
		{"subprotocol", req(func(r *http.Request) {
			r.Header.Set("Sec-WebSocket-Protocol", "sluice, "+TokenProtocol("tök/en+="))
		}), "tök/en+=", ""},
		{"bad subprotocol", req(func(r *http.Request) { r.Header.Set("Sec-WebSocket-Protocol", "sluice, sluice.bearer.!!") }), "", ReasonBadHeader},
		{"query", req(func(r *http.Request) { r.URL.RawQuery = "access_token=abc" }), "", ReasonInQuery},
		{"none", req(func(*http.Request) {}), "", ReasonMissing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := TokenFrom(tc.r)
			if tc.reason != "" {
				var f *Failure
				if !errors.As(err, &f) || f.Reason != tc.reason {
					t.Fatalf("want failure %s, got %q, %v", tc.reason, got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestStaticTokens(t *testing.T) {
	dir := t.TempDir()
	hashed := "second-token-0123456789"
	sum := sha256.Sum256([]byte(hashed))
	file := filepath.Join(dir, "tokens.txt")
	write := func(body string) {
		if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("# devices\nfirst-token-0123456789 sub=dev-1\n\nsha256:" + hex.EncodeToString(sum[:]) + " sub=dash topics=telemetry,alerts\n")
	v, err := NewVerifier(dir, Config{TokensFile: "tokens.txt"}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	id, err := v.Verify("first-token-0123456789")
	if err != nil || id.Subject != "dev-1" || id.Method != "token" {
		t.Fatalf("plain token: %+v, %v", id, err)
	}
	if g := id.Grant("sub"); g.All || !g.Allows("dev-1") || g.Allows("dev-2") {
		t.Fatalf("grant %+v", g)
	}
	id, err = v.Verify(hashed)
	if err != nil || id.Subject != "dash" {
		t.Fatalf("hashed token: %+v, %v", id, err)
	}
	if g := id.Grant("topics"); !g.Allows("alerts") || !g.Allows("telemetry") || g.Allows("other") {
		t.Fatalf("topics grant %+v", g)
	}
	if g := id.Grant("missing"); g.All || g.Allows("x") {
		t.Fatalf("a missing claim grants nothing, got %+v", g)
	}
	if g := id.Grant(""); !g.All {
		t.Fatal("no claim configured grants everything")
	}
	if _, err := v.Verify("first-token-012345678"); !isReason(err, ReasonUnknownToken) {
		t.Fatalf("unknown token: %v", err)
	}

	// Rewritten: the old token stops working, the new one works.
	write("third-token-0123456789\n")
	later := time.Now().Add(2 * time.Second)
	if err := os.Chtimes(file, later, later); err != nil {
		t.Fatal(err)
	}
	v.tokens.now = func() time.Time { return later }
	if _, err := v.Verify("first-token-0123456789"); err == nil {
		t.Fatal("removed token still accepted")
	}
	if _, err := v.Verify("third-token-0123456789"); err != nil {
		t.Fatalf("new token: %v", err)
	}

	for body, want := range map[string]string{
		"short\n":                      "too easy to guess",
		"sha256:abcd\n":                "64 hex digits",
		"long-enough-token-1234 sub\n": "name=value",
		"# nothing\n":                  "holds no token",
	} {
		write(body)
		_, err := NewVerifier(dir, Config{TokensFile: "tokens.txt"}, quiet)
		fieldErr(t, err, "auth.tokens_file", want)
	}
	_, err = NewVerifier(dir, Config{TokensFile: "nope.txt"}, quiet)
	fieldErr(t, err, "auth.tokens_file", "no such file")
}

func isReason(err error, reason string) bool {
	var f *Failure
	return errors.As(err, &f) && f.Reason == reason
}

func TestJWT(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("TEST_JWT_SECRET", authtest.Secret)
	ecKey := authtest.ES256Key(t, filepath.Join(dir, "jwt.pub"))
	cfg := Config{JWT: &JWTConfig{SecretEnv: "TEST_JWT_SECRET", PublicKeyFile: "jwt.pub", Issuer: "https://id.test", Audience: []string{"sluice"}}}
	if err := cfg.Validate(false); err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(dir, cfg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	good := jwt.MapClaims{"iss": "https://id.test", "aud": "sluice"}
	now := time.Now()
	with := func(extra jwt.MapClaims) jwt.MapClaims {
		c := authtest.Claims("dev-1", good)
		for k, x := range extra {
			if x == nil {
				delete(c, k)
			} else {
				c[k] = x
			}
		}
		return c
	}
	id, err := v.Verify(authtest.HS256(t, authtest.Secret, with(jwt.MapClaims{"devices": []string{"a", "b"}})))
	if err != nil || id.Subject != "dev-1" || id.Method != "jwt" {
		t.Fatalf("HS256: %+v, %v", id, err)
	}
	if g := id.Grant("devices"); !g.Allows("a") || !g.Allows("b") || g.Allows("c") {
		t.Fatalf("grant %+v", g)
	}
	if id, err := v.Verify(authtest.ES256(t, ecKey, with(nil))); err != nil || id.Subject != "dev-1" {
		t.Fatalf("ES256: %+v, %v", id, err)
	}
	for name, tc := range map[string]struct {
		token  string
		reason string
	}{
		"expired":       {authtest.HS256(t, authtest.Secret, with(jwt.MapClaims{"exp": now.Add(-time.Minute).Unix()})), ReasonExpired},
		"not yet":       {authtest.HS256(t, authtest.Secret, with(jwt.MapClaims{"nbf": now.Add(time.Hour).Unix()})), ReasonNotYetValid},
		"issuer":        {authtest.HS256(t, authtest.Secret, with(jwt.MapClaims{"iss": "https://evil.test"})), ReasonWrongIssuer},
		"audience":      {authtest.HS256(t, authtest.Secret, with(jwt.MapClaims{"aud": "other"})), ReasonWrongAudience},
		"no exp":        {authtest.HS256(t, authtest.Secret, with(jwt.MapClaims{"exp": nil})), ReasonClaimMissing},
		"wrong secret":  {authtest.HS256(t, strings.Repeat("x", 40), with(nil)), ReasonBadSignature},
		"malformed":     {"a.b.c", ReasonMalformed},
		"alg none":      {noneToken(t, with(nil)), ReasonBadSignature}, // jwt: an algorithm not accepted is a signature error
		"not a JWT":     {"some-opaque-token", ReasonUnknownToken},
		"other ES256":   {authtest.ES256(t, authtest.ES256Key(t, filepath.Join(dir, "other.pub")), with(nil)), ReasonBadSignature},
		"within leeway": {authtest.HS256(t, authtest.Secret, with(jwt.MapClaims{"exp": now.Add(-10 * time.Second).Unix()})), ""},
	} {
		_, err := v.Verify(tc.token)
		if tc.reason == "" {
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
			continue
		}
		if !isReason(err, tc.reason) {
			t.Errorf("%s: want %s, got %v", name, tc.reason, err)
		}
		if err != nil && strings.Contains(err.Error(), tc.token) {
			t.Errorf("%s: the error holds the token", name)
		}
	}
}

func noneToken(t *testing.T, c jwt.MapClaims) string {
	s, err := jwt.NewWithClaims(jwt.SigningMethodNone, c).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestJWTConfigErrors(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "short"), []byte("tooshort\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := authtest.NewPKI(t, dir)
	for _, tc := range []struct {
		cfg          JWTConfig
		field, wants string
	}{
		{JWTConfig{SecretFile: "short"}, "auth.jwt.secret_file", "at least 32"},
		{JWTConfig{SecretFile: "missing"}, "auth.jwt.secret_file", "cannot read"},
		{JWTConfig{SecretEnv: "SLUICE_TEST_UNSET_VAR"}, "auth.jwt.secret_env", "not set"},
		{JWTConfig{PublicKeyFile: filepath.Base(p.KeyFile)}, "auth.jwt.public_key_file", "private key"},
		{JWTConfig{PublicKeyFile: "short"}, "auth.jwt.public_key_file", "no PEM"},
	} {
		c := Config{JWT: &tc.cfg}
		if err := c.Validate(false); err != nil {
			t.Fatal(err)
		}
		_, err := NewVerifier(dir, c, quiet)
		fieldErr(t, err, tc.field, tc.wants)
	}
	// A certificate is a valid public key file.
	c := Config{JWT: &JWTConfig{PublicKeyFile: filepath.Base(p.CertFile)}}
	_ = c.Validate(false)
	if _, err := NewVerifier(dir, c, quiet); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		cfg          Config
		topics       bool
		field, wants string
	}{
		{Config{}, false, "auth", "tokens_file or jwt"},
		{Config{JWT: &JWTConfig{}}, false, "auth.jwt", "set a key"},
		{Config{JWT: &JWTConfig{SecretFile: "a", SecretEnv: "B"}}, false, "auth.jwt.secret_env", "not both"},
		{Config{TokensFile: "t", TopicClaim: "topics"}, false, "auth.topic_claim", "only the subscriptions"},
	} {
		fieldErr(t, tc.cfg.Validate(tc.topics), tc.field, tc.wants)
	}
}

func TestCertificate(t *testing.T) {
	dir := t.TempDir()
	p := authtest.NewPKI(t, dir)
	c, err := LoadCertificate(dir, TLSConfig{Cert: "server.crt", Key: "server.key"}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	cfg := c.ServerConfig()
	if cfg.MinVersion != 0x0303 {
		t.Fatalf("min version %x", cfg.MinVersion)
	}
	got, _ := cfg.GetCertificate(nil)
	if got.Leaf.SerialNumber.Int64() != 2 {
		t.Fatalf("serial %v", got.Leaf.SerialNumber)
	}
	// Renewed on disk: served from the next check on, no restart.
	p.Issue(t, p.CertFile, p.KeyFile, "localhost", 3)
	later := time.Now().Add(2 * time.Second)
	for _, f := range []string{p.CertFile, p.KeyFile} {
		if err := os.Chtimes(f, later, later); err != nil {
			t.Fatal(err)
		}
	}
	c.now = func() time.Time { return later }
	got, _ = cfg.GetCertificate(nil)
	if got.Leaf.SerialNumber.Int64() != 3 {
		t.Fatalf("after renewal: serial %v", got.Leaf.SerialNumber)
	}
	// A broken pair on disk keeps the old one in service.
	if err := os.WriteFile(p.KeyFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if c.Reload(true) {
		t.Fatal("a broken key was loaded")
	}
	got, _ = cfg.GetCertificate(nil)
	if got.Leaf.SerialNumber.Int64() != 3 {
		t.Fatalf("after a broken renewal: serial %v", got.Leaf.SerialNumber)
	}

	// Errors name the field and the file.
	other := t.TempDir()
	q := authtest.NewPKI(t, other)
	p.Issue(t, p.CertFile, p.KeyFile, "localhost", 4)
	for _, tc := range []struct {
		cfg          TLSConfig
		field, wants string
	}{
		{TLSConfig{Cert: "nope.crt", Key: "server.key"}, "tls.cert", "nope.crt: no such file"},
		{TLSConfig{Cert: "server.crt", Key: "nope.key"}, "tls.key", "nope.key: no such file"},
		{TLSConfig{Cert: "server.crt", Key: q.KeyFile}, "tls.key", "does not hold the private key of the certificate in " + p.CertFile},
		{TLSConfig{Cert: "server.key", Key: "server.key"}, "tls.cert", "no PEM CERTIFICATE"},
		{TLSConfig{Cert: "server.crt"}, "tls.key", "required"},
	} {
		_, err := LoadCertificate(dir, tc.cfg, quiet)
		fieldErr(t, err, tc.field, tc.wants)
	}
}

func TestListenAgreement(t *testing.T) {
	dir := t.TempDir()
	authtest.NewPKI(t, dir)
	tc := &TLSConfig{Cert: "server.crt", Key: "server.key"}
	srv := pipeline.NewServers(quiet)
	if err := Listen(srv, dir, "127.0.0.1:0", "the websocket source (/ingest)", tc, quiet); err != nil {
		t.Fatal(err)
	}
	if err := Listen(srv, dir, "127.0.0.1:0", "the subscriptions endpoint (/subscribe)", tc, quiet); err != nil {
		t.Fatalf("same tls settings must agree: %v", err)
	}
	err := Listen(srv, dir, "127.0.0.1:0", "the subscriptions endpoint (/other)", nil, quiet)
	fieldErr(t, err, "listen", "the websocket source (/ingest), served over TLS")
	if !strings.Contains(err.Error(), "the subscriptions endpoint (/other) asks to be served without TLS") {
		t.Fatal(err)
	}
	if err := Listen(srv, dir, "127.0.0.1:1", "the websocket source (/ingest)", nil, quiet); err != nil {
		t.Fatal(err)
	}
	err = Listen(srv, dir, "127.0.0.1:1", "the subscriptions endpoint (/subscribe)", tc, quiet)
	fieldErr(t, err, "tls", "shared with the websocket source (/ingest), served without TLS")
}

// A client retrying with a bad token is answered 401 and counted every
// time, but logged only up to the limit: it cannot flood the log.
func TestRefusalsDoNotFloodTheLog(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tokens.txt"), []byte("good-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs authtest.Logs
	m := NewMetrics(nil, "test_auth_failures_total")
	g, err := NewGuard(dir, Config{TokensFile: "tokens.txt"}, slog.New(slog.NewTextHandler(&logs, nil)), m)
	if err != nil {
		t.Fatal(err)
	}
	const attempts = 500
	for range attempts {
		req := httptest.NewRequest("GET", "/ingest", nil)
		req.Header.Set("Authorization", "Bearer wrong-token-0123456789")
		w := httptest.NewRecorder()
		if g.Check(w, req) != nil || w.Code != http.StatusUnauthorized {
			t.Fatalf("a wrong token: status %d, want 401", w.Code)
		}
	}
	var counted dto.Metric
	if err := m.failures.WithLabelValues(ReasonUnknownToken).Write(&counted); err != nil {
		t.Fatal(err)
	}
	if got := counted.GetCounter().GetValue(); got != attempts {
		t.Fatalf("counted %v refusals, want %d", got, attempts)
	}
	lines := strings.Count(logs.String(), "client refused")
	if lines == 0 || lines > 25 {
		t.Fatalf("%d log lines for %d refusals at once, want the burst (20) or about", lines, attempts)
	}
	if strings.Contains(logs.String(), "wrong-token") {
		t.Fatal("the token was logged")
	}
}

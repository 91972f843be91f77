package auth

import (
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/internal/lograte"
)

// Subprotocol is the WebSocket subprotocol a server selects; a client that
// sends its token as a subprotocol offers it beside the token.
const Subprotocol = "sluice"

// TokenProtocolPrefix starts the subprotocol that carries a token:
// "sluice.bearer." followed by the token in unpadded base64url.
const TokenProtocolPrefix = "sluice.bearer."

// TokenProtocol returns the subprotocol that carries token.
func TokenProtocol(token string) string {
	return TokenProtocolPrefix + base64.RawURLEncoding.EncodeToString([]byte(token))
}

// Reasons a request is refused, the values of the reason label.
const (
	ReasonMissing       = "missing"        // no token
	ReasonInQuery       = "token_in_query" // ?access_token= (not accepted: URLs are logged)
	ReasonBadHeader     = "bad_header"     // Authorization or subprotocol not readable
	ReasonUnknownToken  = "unknown_token"  // not a static token, and not a JWT
	ReasonMalformed     = "malformed"      // not a well-formed JWT
	ReasonBadSignature  = "bad_signature"  // JWT signature does not verify
	ReasonBadAlgorithm  = "bad_algorithm"  // JWT alg not one configured
	ReasonExpired       = "expired"        // JWT exp passed
	ReasonNotYetValid   = "not_yet_valid"  // JWT nbf in the future
	ReasonWrongIssuer   = "wrong_issuer"   // JWT iss not the configured issuer
	ReasonWrongAudience = "wrong_audience" // JWT aud not the configured audience
	ReasonClaimMissing  = "missing_claim"  // JWT lacks exp (require_exp)
	ReasonInvalid       = "invalid"        // any other JWT error
	ReasonForbidden     = "forbidden"      // authenticated, but the token does not grant what was asked
)

// Failure is why a request was refused.
type Failure struct {
	Reason string // one of the Reason constants
	Msg    string // for the client and the log; never holds the token
}

func (f *Failure) Error() string { return f.Msg }

func fail(reason, format string, args ...any) *Failure {
	return &Failure{Reason: reason, Msg: fmt.Sprintf(format, args...)}
}

// Metrics counts refused requests by reason.
type Metrics struct {
	failures *prometheus.CounterVec
}

// NewMetrics registers name (e.g. sluice_websocket_auth_failures_total) on
// reg, which may be nil.
func NewMetrics(reg prometheus.Registerer, name string) *Metrics {
	m := &Metrics{failures: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: name, Help: "Clients refused by authentication or authorization, by reason.",
	}, []string{"reason"})}
	if reg != nil {
		_ = reg.Register(m.failures)
	}
	return m
}

// Count adds one refusal for reason.
func (m *Metrics) Count(reason string) {
	if m != nil {
		m.failures.WithLabelValues(reason).Inc()
	}
}

// Guard checks the requests of one component: it authenticates them with
// its Verifier, answers 401, logs and counts when that fails.
type Guard struct {
	v     *Verifier
	cfg   Config
	lines *lograte.Limiter // refusals: a client must not flood the log
	m     *Metrics
}

// NewGuard loads what cfg names (relative to dir). Its errors are
// *pipeline.FieldError naming the field and the file.
func NewGuard(dir string, cfg Config, log *slog.Logger, m *Metrics) (*Guard, error) {
	if log == nil {
		log = slog.Default()
	}
	v, err := NewVerifier(dir, cfg, log)
	if err != nil {
		return nil, err
	}
	return &Guard{v: v, cfg: cfg, lines: lograte.Default(log), m: m}, nil
}

// Check authenticates r. On failure it has answered 401 (with a
// WWW-Authenticate header and the reason), logged and counted, and returns
// nil.
func (g *Guard) Check(w http.ResponseWriter, r *http.Request) *Identity {
	tok, err := TokenFrom(r)
	var id *Identity
	if err == nil {
		id, err = g.v.Verify(tok)
	}
	if err == nil {
		return id
	}
	f := asFailure(err)
	g.m.Count(f.Reason)
	g.lines.Warn("client refused: authentication failed", "remote", r.RemoteAddr, "path", r.URL.Path, "reason", f.Reason, "err", f.Msg)
	desc := strings.NewReplacer(`"`, "'", `\`, "/").Replace(f.Msg)
	w.Header().Set("WWW-Authenticate", `Bearer realm="sluice", error="invalid_token", error_description="`+desc+`"`)
	http.Error(w, "unauthorized: "+f.Msg, http.StatusUnauthorized)
	return nil
}

// Forbid answers 403 for an authenticated client that asked for something
// its token does not grant, logs and counts it.
func (g *Guard) Forbid(w http.ResponseWriter, r *http.Request, id *Identity, msg string) {
	g.Refused(r, id, msg)
	http.Error(w, "forbidden: "+msg, http.StatusForbidden)
}

// Refused logs and counts an authorization failure that the caller reports
// to the client itself (e.g. in a WebSocket close frame).
func (g *Guard) Refused(r *http.Request, id *Identity, msg string) {
	g.m.Count(ReasonForbidden)
	g.lines.Warn("client refused: not granted by its token", "remote", r.RemoteAddr, "path", r.URL.Path, "subject", id.Subject, "err", msg)
}

// Devices returns what id grants by the device claim; every device when
// none is configured.
func (g *Guard) Devices(id *Identity) Grant { return id.Grant(g.cfg.DeviceClaim) }

// Topics returns what id grants by the topic claim; every topic when none
// is configured.
func (g *Guard) Topics(id *Identity) Grant { return id.Grant(g.cfg.TopicClaim) }

func asFailure(err error) *Failure {
	var f *Failure
	if errors.As(err, &f) {
		return f
	}
	return fail(ReasonInvalid, "%v", err)
}

// TokenFrom returns the bearer token of r: from the Authorization header,
// or else from a "sluice.bearer.<base64url>" subprotocol. A token in the
// URL (?access_token=) is refused: URLs end up in access logs and browser
// history.
func TokenFrom(r *http.Request) (string, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		tok = strings.TrimSpace(tok)
		if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
			return "", fail(ReasonBadHeader, "the Authorization header must be \"Bearer <token>\"")
		}
		return tok, nil
	}
	for _, h := range r.Header.Values("Sec-WebSocket-Protocol") {
		for p := range strings.SplitSeq(h, ",") {
			p = strings.TrimSpace(p)
			if len(p) < len(TokenProtocolPrefix) || !strings.EqualFold(p[:len(TokenProtocolPrefix)], TokenProtocolPrefix) {
				continue
			}
			enc := strings.TrimRight(p[len(TokenProtocolPrefix):], "=")
			b, err := base64.RawURLEncoding.DecodeString(enc)
			if err != nil || len(b) == 0 {
				return "", fail(ReasonBadHeader, "the %s<token> subprotocol must carry the token in base64url", TokenProtocolPrefix)
			}
			return string(b), nil
		}
	}
	q := r.URL.Query()
	if q.Has("access_token") || q.Has("token") {
		return "", fail(ReasonInQuery, "a token in the URL is not accepted (URLs are logged): send it in the Authorization header or as the %s<base64url token> subprotocol", TokenProtocolPrefix)
	}
	return "", fail(ReasonMissing, "no token: send \"Authorization: Bearer <token>\" or the %s<base64url token> subprotocol", TokenProtocolPrefix)
}

package auth

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluicehq/sluice/pipeline"
)

// Identity is an authenticated client.
type Identity struct {
	// Subject is the token's sub claim ("" when it has none).
	Subject string
	// Method is "token" (a static token) or "jwt".
	Method string
	claims map[string]any
}

// Grant is a set of names (device ids, topics) that a token grants.
type Grant struct {
	// All grants every name.
	All bool
	// Names are the granted names when not All.
	Names []string
}

// Allows reports whether name is granted. The empty name is granted only
// by All.
func (g Grant) Allows(name string) bool {
	if g.All {
		return true
	}
	for _, n := range g.Names {
		if n == name && name != "" {
			return true
		}
	}
	return false
}

// String describes the grant for messages.
func (g Grant) String() string {
	if g.All {
		return "all"
	}
	if len(g.Names) == 0 {
		return "none"
	}
	return strings.Join(g.Names, ",")
}

// Grant returns what the claim grants: every name when claim is "", the
// claim's string or strings otherwise ("*" grants every name). A missing
// claim, or one of another type, grants nothing.
func (id *Identity) Grant(claim string) Grant {
	if claim == "" {
		return Grant{All: true}
	}
	var names []string
	switch v := id.claims[claim].(type) {
	case string:
		names = []string{v}
	case []string:
		names = v
	case []any:
		for _, x := range v {
			if s, ok := x.(string); ok {
				names = append(names, s)
			}
		}
	}
	var g Grant
	for _, n := range names {
		if n == "*" {
			return Grant{All: true}
		}
		if n != "" {
			g.Names = append(g.Names, n)
		}
	}
	return g
}

// Verifier checks tokens against a static token file and/or JWT keys.
type Verifier struct {
	log    *slog.Logger
	tokens *tokenFile // nil without tokens_file

	jwt     *jwt.Parser // nil without jwt
	secret  []byte
	rsaKey  *rsa.PublicKey
	ecKey   *ecdsa.PublicKey
	methods []string
}

// NewVerifier loads the files cfg names, relative to dir.
func NewVerifier(dir string, cfg Config, log *slog.Logger) (*Verifier, error) {
	if log == nil {
		log = slog.Default()
	}
	v := &Verifier{log: log}
	if cfg.TokensFile != "" {
		t := &tokenFile{path: pipeline.Resolve(dir, cfg.TokensFile), log: log, now: time.Now}
		if err := t.load(); err != nil {
			return nil, err
		}
		v.tokens = t
	}
	if j := cfg.JWT; j != nil {
		if err := v.loadJWT(dir, j); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// minSecret is the shortest HS256 secret accepted: 256 bits, the size of
// the hash (RFC 7518 §3.2).
const minSecret = 32

func (v *Verifier) loadJWT(dir string, j *JWTConfig) error {
	switch {
	case j.SecretFile != "":
		path := pipeline.Resolve(dir, j.SecretFile)
		b, err := os.ReadFile(path)
		if err != nil {
			return pipeline.Invalid("auth.jwt.secret_file", "cannot read %s: %v", path, unwrapPath(err))
		}
		b = bytes.TrimRight(b, "\r\n")
		if len(b) < minSecret {
			return pipeline.Invalid("auth.jwt.secret_file", "%s: the secret is %d bytes; HS256 needs at least %d (e.g. openssl rand -base64 48)", path, len(b), minSecret)
		}
		v.secret = b
	case j.SecretEnv != "":
		s := os.Getenv(j.SecretEnv)
		if s == "" {
			return pipeline.Invalid("auth.jwt.secret_env", "environment variable %s is not set or empty", j.SecretEnv)
		}
		if len(s) < minSecret {
			return pipeline.Invalid("auth.jwt.secret_env", "environment variable %s: the secret is %d bytes; HS256 needs at least %d", j.SecretEnv, len(s), minSecret)
		}
		v.secret = []byte(s)
	}
	if v.secret != nil {
		v.methods = append(v.methods, "HS256")
	}
	if j.PublicKeyFile != "" {
		path := pipeline.Resolve(dir, j.PublicKeyFile)
		key, err := readPublicKey(path)
		if err != nil {
			return pipeline.Invalid("auth.jwt.public_key_file", "%v", err)
		}
		switch k := key.(type) {
		case *rsa.PublicKey:
			if k.N.BitLen() < 2048 {
				return pipeline.Invalid("auth.jwt.public_key_file", "%s: an RSA key of %d bits; RS256 needs at least 2048", path, k.N.BitLen())
			}
			v.rsaKey = k
			v.methods = append(v.methods, "RS256")
		case *ecdsa.PublicKey:
			if k.Curve != elliptic.P256() {
				return pipeline.Invalid("auth.jwt.public_key_file", "%s: an ECDSA key on %s; ES256 needs P-256", path, k.Curve.Params().Name)
			}
			v.ecKey = k
			v.methods = append(v.methods, "ES256")
		default:
			return pipeline.Invalid("auth.jwt.public_key_file", "%s: a %T key; want RSA (RS256) or ECDSA P-256 (ES256)", path, key)
		}
	}
	opts := []jwt.ParserOption{jwt.WithValidMethods(v.methods), jwt.WithLeeway(j.Leeway)}
	if j.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(j.Issuer))
	}
	if len(j.Audience) > 0 {
		opts = append(opts, jwt.WithAudience(j.Audience...))
	}
	if j.RequireExp == nil || *j.RequireExp {
		opts = append(opts, jwt.WithExpirationRequired())
	}
	v.jwt = jwt.NewParser(opts...)
	return nil
}

// readPublicKey reads a PEM public key (PKIX or PKCS#1) or certificate.
func readPublicKey(path string) (any, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %v", path, unwrapPath(err))
	}
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			return nil, fmt.Errorf("%s holds no PEM PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE block", path)
		}
		switch blk.Type {
		case "PUBLIC KEY":
			k, err := x509.ParsePKIXPublicKey(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%s: %v", path, err)
			}
			return k, nil
		case "RSA PUBLIC KEY":
			k, err := x509.ParsePKCS1PublicKey(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%s: %v", path, err)
			}
			return k, nil
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%s: %v", path, err)
			}
			return c.PublicKey, nil
		case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY":
			return nil, fmt.Errorf("%s holds a private key: give the public key only (openssl pkey -pubout)", path)
		}
	}
}

// Verify returns the identity of token, or a *Failure.
func (v *Verifier) Verify(token string) (*Identity, error) {
	if v.tokens != nil {
		if id := v.tokens.match(token); id != nil {
			return id, nil
		}
	}
	if v.jwt != nil && strings.Count(token, ".") == 2 {
		return v.verifyJWT(token)
	}
	return nil, fail(ReasonUnknownToken, "unknown token")
}

func (v *Verifier) verifyJWT(token string) (*Identity, error) {
	claims := jwt.MapClaims{}
	_, err := v.jwt.ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		switch t.Method.Alg() {
		case "HS256":
			return v.secret, nil
		case "RS256":
			return v.rsaKey, nil
		case "ES256":
			return v.ecKey, nil
		}
		return nil, fmt.Errorf("algorithm %s", t.Method.Alg())
	})
	if err != nil {
		return nil, jwtFailure(err, v.methods)
	}
	id := &Identity{Method: "jwt", claims: claims}
	id.Subject, _ = claims["sub"].(string)
	return id, nil
}

func jwtFailure(err error, methods []string) *Failure {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return fail(ReasonMalformed, "malformed JWT")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return fail(ReasonBadSignature, "JWT signature is invalid")
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return fail(ReasonBadAlgorithm, "JWT cannot be verified: accepted algorithms are %s", strings.Join(methods, ", "))
	case errors.Is(err, jwt.ErrTokenExpired):
		return fail(ReasonExpired, "JWT has expired")
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return fail(ReasonNotYetValid, "JWT is not valid yet")
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return fail(ReasonWrongIssuer, "JWT issuer is not accepted")
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return fail(ReasonWrongAudience, "JWT audience is not accepted")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return fail(ReasonClaimMissing, "JWT lacks a required claim (exp)")
	}
	return fail(ReasonInvalid, "invalid JWT")
}

// tokenFile is a file of static tokens, re-read when it changes.
type tokenFile struct {
	path string
	log  *slog.Logger
	now  func() time.Time

	mu      sync.Mutex
	entries []tokenEntry
	stamp   stamp
	checked time.Time
}

type tokenEntry struct {
	hash   [sha256.Size]byte
	claims map[string]any
}

func (t *tokenFile) load() error {
	st, _ := stampOf(t.path)
	b, err := os.ReadFile(t.path)
	if err != nil {
		return pipeline.Invalid("auth.tokens_file", "cannot read %s: %v", t.path, unwrapPath(err))
	}
	entries, err := parseTokens(b)
	if err != nil {
		return pipeline.Invalid("auth.tokens_file", "%s:%v", t.path, err)
	}
	if len(entries) == 0 {
		return pipeline.Invalid("auth.tokens_file", "%s holds no token: every client would be refused", t.path)
	}
	t.mu.Lock()
	t.entries, t.stamp, t.checked = entries, st, t.now()
	t.mu.Unlock()
	return nil
}

// parseTokens reads lines "TOKEN|sha256:HEX [claim=value[,value]]...".
func parseTokens(b []byte) ([]tokenEntry, error) {
	var out []tokenEntry
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		var e tokenEntry
		if h, ok := strings.CutPrefix(fields[0], "sha256:"); ok {
			raw, err := hex.DecodeString(h)
			if err != nil || len(raw) != sha256.Size {
				return nil, fmt.Errorf("%d: sha256: must be followed by 64 hex digits", n)
			}
			copy(e.hash[:], raw)
		} else {
			if len(fields[0]) < 16 {
				return nil, fmt.Errorf("%d: a token of %d characters is too easy to guess; use at least 16 (e.g. openssl rand -hex 32)", n, len(fields[0]))
			}
			e.hash = sha256.Sum256([]byte(fields[0]))
		}
		for _, f := range fields[1:] {
			name, value, ok := strings.Cut(f, "=")
			if !ok || name == "" {
				return nil, fmt.Errorf("%d: %q: claims are written name=value or name=v1,v2", n, f)
			}
			if e.claims == nil {
				e.claims = map[string]any{}
			}
			if strings.Contains(value, ",") {
				e.claims[name] = strings.Split(value, ",")
			} else {
				e.claims[name] = value
			}
		}
		out = append(out, e)
	}
	return out, sc.Err()
}

// match returns the identity of token if it is in the file. Every entry is
// compared, in constant time, whatever matches: the time taken tells
// nothing about the tokens.
func (t *tokenFile) match(token string) *Identity {
	t.mu.Lock()
	if now := t.now(); now.Sub(t.checked) >= recheck {
		t.checked = now
		if st, err := stampOf(t.path); err == nil && st != t.stamp {
			t.stamp = st
			t.mu.Unlock()
			if err := t.load(); err != nil {
				t.log.Error("auth: tokens file not reloaded; still using the previous tokens", "err", err)
			} else {
				t.log.Info("auth: tokens file reloaded", "file", t.path)
			}
			t.mu.Lock()
		}
	}
	entries := t.entries
	t.mu.Unlock()
	h := sha256.Sum256([]byte(token))
	found := -1
	for i := range entries {
		if subtle.ConstantTimeCompare(h[:], entries[i].hash[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return nil
	}
	id := &Identity{Method: "token", claims: entries[found].claims}
	id.Subject, _ = id.claims["sub"].(string)
	return id
}

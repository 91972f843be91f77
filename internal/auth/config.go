// Package auth is the TLS and authentication shared by the components that
// accept WebSocket clients: the websocket source (devices pushing records)
// and the subscriptions endpoint (devices and browsers reading topics).
//
// TLS: a certificate and key from files, re-read when the files change,
// TLS 1.2 at least, HTTP/1.1 only (WebSockets upgrade from HTTP/1.1).
//
// Authentication: a bearer token, checked before the WebSocket upgrade, that
// is either one of a file of static tokens (stored as tokens or as SHA-256
// hashes, compared in constant time) or a JWT (HS256 with a shared secret,
// RS256 or ES256 with a public key; exp, nbf, iss and aud checked). A client
// sends it in the Authorization header or, where it cannot set headers (a
// browser), as the WebSocket subprotocol "sluice.bearer.<base64url(token)>"
// next to "sluice". A failed check answers HTTP 401, logs the reason (never
// the token) and counts it.
//
// Authorization: claims of the token (a JWT's, or those written beside a
// static token) grant the devices a connection may send as or read, and the
// topics a subscriber may read. See docs/security.md.
package auth

import (
	"log/slog"
	"strings"
	"time"

	"github.com/sluicehq/sluice/pipeline"
)

// TLSConfig is the tls: block of a component that listens.
//
//	tls: { cert: server.crt, key: server.key }
type TLSConfig struct {
	// Cert is a PEM file with the server certificate, followed by any
	// intermediates (relative to pipeline.yaml).
	Cert string `yaml:"cert"`
	// Key is a PEM file with the certificate's private key.
	Key string `yaml:"key"`
}

// Validate checks that both files are named. It reads nothing.
func (c *TLSConfig) Validate() error {
	if c.Cert == "" {
		return pipeline.Invalid("tls.cert", "required: a PEM certificate file (with tls.key)")
	}
	if c.Key == "" {
		return pipeline.Invalid("tls.key", "required: the PEM private key file of tls.cert")
	}
	return nil
}

// Config is the auth: block of a component that accepts clients.
//
//	auth:
//	  tokens_file: tokens.txt         # static tokens, one a line
//	  jwt: { secret_env: SLUICE_JWT_SECRET, issuer: https://id.example, audience: sluice }
//	  device_claim: sub               # the devices a connection may send as (or read)
//	  topic_claim: topics             # the topics a subscriber may read (subscriptions only)
type Config struct {
	// TokensFile lists static bearer tokens, one a line: the token itself,
	// or sha256:<hex of its SHA-256>, optionally followed by claims written
	// name=value or name=v1,v2 (e.g. "sha256:9f86… sub=dev-0001"). Blank
	// lines and lines starting with # are skipped. Re-read when it changes.
	TokensFile string `yaml:"tokens_file"`
	// JWT accepts JSON Web Tokens signed with a configured key.
	JWT *JWTConfig `yaml:"jwt"`
	// DeviceClaim names the claim (a string, or an array of strings; "*"
	// for any) that lists the device ids the token grants. On the websocket
	// source a record whose device_id is not granted is nacked; on the
	// subscriptions endpoint the subscriber reads only those devices' records.
	// Empty: the token grants every device.
	DeviceClaim string `yaml:"device_claim"`
	// TopicClaim (subscriptions only) names the claim listing the topics
	// the token may read, like DeviceClaim. Empty: every served topic.
	TopicClaim string `yaml:"topic_claim"`
}

// JWTConfig configures JWT verification. At least one key is required: a
// secret (HS256) from a file or an environment variable, and/or a public
// key file (RS256 for an RSA key, ES256 for a P-256 key).
type JWTConfig struct {
	// SecretFile holds the HS256 secret, at least 32 bytes (a trailing
	// newline is dropped).
	SecretFile string `yaml:"secret_file"`
	// SecretEnv names the environment variable holding the HS256 secret.
	SecretEnv string `yaml:"secret_env"`
	// PublicKeyFile is a PEM public key (PUBLIC KEY or RSA PUBLIC KEY) or a
	// certificate whose key verifies RS256 (RSA) or ES256 (ECDSA P-256).
	PublicKeyFile string `yaml:"public_key_file"`
	// Issuer, if set, must equal the token's iss.
	Issuer string `yaml:"issuer"`
	// Audience, if set, must be one of the token's aud.
	Audience []string `yaml:"audience"`
	// Leeway is the clock skew allowed for exp and nbf (default 30s).
	Leeway time.Duration `yaml:"leeway"`
	// RequireExp rejects tokens without exp (default true).
	RequireExp *bool `yaml:"require_exp"`
}

// Validate checks the config without reading files. topics says whether
// the component serves topics (TopicClaim is allowed).
func (c *Config) Validate(topics bool) error {
	if c.TokensFile == "" && c.JWT == nil {
		return pipeline.Invalid("auth", "set tokens_file or jwt (or remove auth: to accept every client)")
	}
	if c.JWT != nil {
		j := c.JWT
		if j.SecretFile == "" && j.SecretEnv == "" && j.PublicKeyFile == "" {
			return pipeline.Invalid("auth.jwt", "set a key: secret_file or secret_env (HS256), and/or public_key_file (RS256, ES256)")
		}
		if j.SecretFile != "" && j.SecretEnv != "" {
			return pipeline.Invalid("auth.jwt.secret_env", "set secret_file or secret_env, not both")
		}
		if j.Leeway < 0 {
			return pipeline.Invalid("auth.jwt.leeway", "must not be negative")
		}
		if j.Leeway == 0 {
			j.Leeway = 30 * time.Second
		}
		if j.RequireExp == nil {
			t := true
			j.RequireExp = &t
		}
		for i, a := range j.Audience {
			if a == "" {
				return pipeline.Invalid("auth.jwt.audience", "audience[%d] is empty", i)
			}
		}
	}
	if strings.TrimSpace(c.DeviceClaim) != c.DeviceClaim {
		return pipeline.Invalid("auth.device_claim", "%q: no spaces around the claim name", c.DeviceClaim)
	}
	if c.TopicClaim != "" && !topics {
		return pipeline.Invalid("auth.topic_claim", "only the subscriptions endpoint serves topics; use device_claim here")
	}
	if strings.TrimSpace(c.TopicClaim) != c.TopicClaim {
		return pipeline.Invalid("auth.topic_claim", "%q: no spaces around the claim name", c.TopicClaim)
	}
	return nil
}

// Listen declares on srv how listen is served for the component owner:
// over TLS with the certificate tlsCfg names (relative to dir), or plain
// when tlsCfg is nil. Its errors are *pipeline.FieldError: tls.cert or
// tls.key for a file that cannot be used, tls (or listen) for an address
// whose other components disagree.
func Listen(srv *pipeline.Servers, dir, listen, owner string, tlsCfg *TLSConfig, log *slog.Logger) error {
	d := pipeline.TLSDecl{Owner: owner}
	field := "listen"
	if tlsCfg != nil {
		cert, err := LoadCertificate(dir, *tlsCfg, log)
		if err != nil {
			return err
		}
		d.Config, d.ID, field = cert.ServerConfig(), cert.ID(), "tls"
	}
	if err := srv.DeclareTLS(listen, d); err != nil {
		return pipeline.Invalid(field, "%v", err)
	}
	return nil
}

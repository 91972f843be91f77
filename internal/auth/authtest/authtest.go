// Package authtest makes what tests of TLS and authentication need, at run
// time: a certificate authority and a server certificate for the loopback
// addresses, and signed JWTs. Nothing secret is committed.
package authtest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// PKI is a test certificate authority with one server certificate, valid
// for 127.0.0.1, ::1 and localhost, written as PEM files.
type PKI struct {
	// CertFile and KeyFile are the server's certificate and key.
	CertFile, KeyFile string
	// Pool trusts the authority.
	Pool *x509.CertPool
	// CA is the authority's certificate.
	CA *x509.Certificate

	caKey *ecdsa.PrivateKey
}

// NewPKI makes an authority and a server certificate in dir.
func NewPKI(t testing.TB, dir string) *PKI {
	t.Helper()
	caKey := newKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "sluice test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	p := &PKI{CA: ca, Pool: x509.NewCertPool(), caKey: caKey}
	p.Pool.AddCert(ca)
	p.CertFile, p.KeyFile = filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	p.Issue(t, p.CertFile, p.KeyFile, "localhost", 2)
	return p
}

// Issue writes a new server certificate (named cn, with the given serial)
// and its key to certFile and keyFile.
func (p *PKI) Issue(t testing.TB, certFile, keyFile, cn string, serial int64) {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.CA, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	WritePEM(t, certFile, "CERTIFICATE", der)
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	WritePEM(t, keyFile, "PRIVATE KEY", kder)
}

// ClientConfig trusts the authority.
func (p *PKI) ClientConfig() *tls.Config {
	return &tls.Config{RootCAs: p.Pool, MinVersion: tls.VersionTLS12}
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// WritePEM writes one PEM block to path.
func WritePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// Secret is an HS256 secret for tests, 32 bytes or more.
const Secret = "test-secret-test-secret-test-secret-0123"

// HS256 signs claims with secret.
func HS256(t testing.TB, secret string, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// ES256Key makes a P-256 key and writes its public half to path as a PEM
// PUBLIC KEY, for public_key_file.
func ES256Key(t testing.TB, path string) *ecdsa.PrivateKey {
	t.Helper()
	k := newKey(t)
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	WritePEM(t, path, "PUBLIC KEY", der)
	return k
}

// ES256 signs claims with key.
func ES256(t testing.TB, key *ecdsa.PrivateKey, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodES256, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Claims returns claims for sub that expire in an hour, plus extra.
func Claims(sub string, extra jwt.MapClaims) jwt.MapClaims {
	c := jwt.MapClaims{"sub": sub, "exp": time.Now().Add(time.Hour).Unix()}
	for k, v := range extra {
		c[k] = v
	}
	return c
}

// Logs collects log output written from several goroutines, so that tests
// can check what was logged (e.g. that no token was).
type Logs struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (l *Logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *Logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

package auth

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/sluicehq/sluice/pipeline"
)

// recheck is how often a file is looked at (stat) for changes at most.
const recheck = time.Second

// Certificate serves a certificate and key pair from files, re-reading
// them when either file changes (checked at most once a second, at a TLS
// handshake), so that a renewed certificate is used without a restart. A
// pair that fails to load keeps the previous one in service and is logged.
type Certificate struct {
	certFile, keyFile string
	log               *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   [2]stamp // of the files last tried
	checked time.Time
	now     func() time.Time
}

// stamp tells a changed file: its modification time and size.
type stamp struct {
	mod  time.Time
	size int64
}

func stampOf(path string) (stamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return stamp{}, err
	}
	return stamp{fi.ModTime(), fi.Size()}, nil
}

// LoadCertificate reads cfg's files (relative to dir). Its errors are
// *pipeline.FieldError naming tls.cert or tls.key, and the file.
func LoadCertificate(dir string, cfg TLSConfig, log *slog.Logger) (*Certificate, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	c := &Certificate{
		certFile: pipeline.Resolve(dir, cfg.Cert),
		keyFile:  pipeline.Resolve(dir, cfg.Key),
		log:      log,
		now:      time.Now,
	}
	cert, st, err := c.load()
	if err != nil {
		return nil, err
	}
	c.cert, c.stamp, c.checked = cert, st, c.now()
	if leaf := cert.Leaf; leaf != nil && c.now().After(leaf.NotAfter) {
		log.Warn("tls certificate has expired: clients will refuse it", "cert", c.certFile, "not_after", leaf.NotAfter)
	}
	return c, nil
}

// ID identifies the files served, so that components sharing an address
// can tell whether they agree.
func (c *Certificate) ID() string { return "cert " + c.certFile + ", key " + c.keyFile }

// load reads and checks both files.
func (c *Certificate) load() (*tls.Certificate, [2]stamp, error) {
	var st [2]stamp
	certPEM, err := readFile(c.certFile, "tls.cert", "certificate")
	if err != nil {
		return nil, st, err
	}
	keyPEM, err := readFile(c.keyFile, "tls.key", "private key")
	if err != nil {
		return nil, st, err
	}
	// The certificate alone first, so that its errors name its field.
	var leaf *x509.Certificate
	for rest := certPEM; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			if leaf, err = x509.ParseCertificate(b.Bytes); err != nil {
				return nil, st, pipeline.Invalid("tls.cert", "%s: the certificate cannot be parsed: %v", c.certFile, err)
			}
			break
		}
	}
	if leaf == nil {
		return nil, st, pipeline.Invalid("tls.cert", "%s holds no PEM CERTIFICATE block", c.certFile)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, st, pipeline.Invalid("tls.key", "%s does not hold the private key of the certificate in %s: %v", c.keyFile, c.certFile, err)
	}
	if pair.Leaf == nil {
		pair.Leaf = leaf
	}
	// The stamps are taken after reading: a file replaced in between is
	// read again at the next check.
	st[0], _ = stampOf(c.certFile)
	st[1], _ = stampOf(c.keyFile)
	return &pair, st, nil
}

func readFile(path, field, what string) ([]byte, error) {
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, pipeline.Invalid(field, "%s: no such file (want a PEM %s)", path, what)
	case err != nil:
		return nil, pipeline.Invalid(field, "cannot read %s: %v", path, unwrapPath(err))
	}
	return b, nil
}

// unwrapPath drops the path that an *fs.PathError repeats.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Get returns the current pair, re-reading the files first when they
// changed. It is the tls.Config's GetCertificate.
func (c *Certificate) Get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := c.now(); now.Sub(c.checked) >= recheck {
		c.checked = now
		c.reloadLocked(false)
	}
	return c.cert, nil
}

// Reload re-reads the files now if they changed since they were last
// read (or always, with force). It reports whether a new pair is served.
func (c *Certificate) Reload(force bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reloadLocked(force)
}

func (c *Certificate) reloadLocked(force bool) bool {
	s0, err0 := stampOf(c.certFile)
	s1, err1 := stampOf(c.keyFile)
	if err0 != nil || err1 != nil {
		// Being replaced, or gone: keep serving what we have.
		return false
	}
	if !force && s0 == c.stamp[0] && s1 == c.stamp[1] {
		return false
	}
	cert, st, err := c.load()
	if err != nil {
		// Try again only when the files change again: a half-written pair
		// is logged once, not at every handshake.
		c.stamp = [2]stamp{s0, s1}
		c.log.Error("tls: new certificate not loaded; still serving the previous one", "err", err)
		return false
	}
	c.cert, c.stamp = cert, st
	c.log.Info("tls: certificate reloaded", "cert", c.certFile, "not_after", cert.Leaf.NotAfter)
	return true
}

// ServerConfig returns the tls.Config that serves c: TLS 1.2 at least and
// HTTP/1.1 only, since a WebSocket upgrades an HTTP/1.1 request.
func (c *Certificate) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"http/1.1"},
		GetCertificate: c.Get,
	}
}

// String describes the pair for logs.
func (c *Certificate) String() string { return fmt.Sprintf("cert=%s key=%s", c.certFile, c.keyFile) }

// Package websocket is the source that devices push JSON records to over
// WebSocket, and that acknowledges each record once its sinks accepted it.
//
// The device protocol is in docs/protocol.md. In short: a device sends text
// frames holding one JSON object each, or several separated by newlines;
// records are numbered 1, 2, 3… per connection; Sluice answers
// {"ack":N} once records 1..N are all settled (durable in every sink, or
// failed), and {"nack":n,"error":"…"} for a record n that failed for good.
// A device keeps up to window records unacknowledged, so it never waits for
// one ack before sending the next.
package websocket

import (
	"time"

	"github.com/sluicehq/sluice/internal/auth"
	"github.com/sluicehq/sluice/pipeline"
)

// Config configures the WebSocket source.
//
//	source:
//	  websocket: { listen: 127.0.0.1:8080, path: /ingest }
type Config struct {
	// Listen is the host:port to serve on (required). Sources and endpoints
	// with the same address share one server.
	Listen string `yaml:"listen"`
	// Path is the URL path devices connect to (default /ingest).
	Path string `yaml:"path"`
	// Window is how many records a connection may have unacknowledged
	// (default 4096). When it is full Sluice stops reading that connection.
	Window int `yaml:"window"`
	// MaxRecordBytes is the largest frame accepted (default 1 MiB). A larger
	// frame is read to its end and discarded, and its record is nacked.
	MaxRecordBytes int `yaml:"max_record_bytes"`
	// DeviceField names the record field that holds the device id (default
	// device_id). A record without it gets the connection's ?device_id=.
	DeviceField string `yaml:"device_field"`
	// SeqField names the record field that holds the per-device sequence
	// number (default seq).
	SeqField string `yaml:"seq_field"`
	// RequireSeq nacks records without a sequence number (default true).
	// Without one a record cannot be told apart from its own resend, and
	// in a table keyed by (device_id, seq) all of a device's records without
	// one would collapse into a single row. Set it to false only for sinks
	// that do not deduplicate by identity.
	RequireSeq *bool `yaml:"require_seq"`
	// BatchSize is the most records handed to the pipeline at once
	// (default 512), gathered across connections.
	BatchSize int `yaml:"batch_size"`
	// Linger is how long a batch may wait to fill (default 2ms).
	Linger time.Duration `yaml:"linger"`
	// OriginPatterns lists the browser origins allowed besides the server's
	// own host (e.g. "localhost:*"); see coder/websocket AcceptOptions.
	OriginPatterns []string `yaml:"origin_patterns"`
	// TLS serves the address over TLS (wss://) with a certificate and key
	// from files, re-read when they change. Every component on the same
	// address must have the same tls settings. See docs/security.md.
	TLS *auth.TLSConfig `yaml:"tls"`
	// Auth requires a bearer token (static or JWT) before the upgrade;
	// auth.device_claim limits the device ids a connection may send as.
	// Without it every client is accepted. See docs/security.md.
	Auth *auth.Config `yaml:"auth"`
}

// Validate fills defaults and checks the config.
func (c *Config) Validate() error {
	if c.Listen == "" {
		return pipeline.Invalid("listen", "required (host:port, e.g. 127.0.0.1:8080)")
	}
	if c.Path == "" {
		c.Path = "/ingest"
	}
	if c.Path[0] != '/' {
		return pipeline.Invalid("path", "must start with /")
	}
	if c.Window == 0 {
		c.Window = 4096
	}
	if c.Window < 0 {
		return pipeline.Invalid("window", "must be positive")
	}
	if c.MaxRecordBytes == 0 {
		c.MaxRecordBytes = 1 << 20
	}
	if c.MaxRecordBytes < 0 {
		return pipeline.Invalid("max_record_bytes", "must be positive")
	}
	if c.DeviceField == "" {
		c.DeviceField = "device_id"
	}
	if c.SeqField == "" {
		c.SeqField = "seq"
	}
	if c.RequireSeq == nil {
		require := true
		c.RequireSeq = &require
	}
	if c.BatchSize == 0 {
		c.BatchSize = 512
	}
	if c.BatchSize < 0 {
		return pipeline.Invalid("batch_size", "must be positive")
	}
	if c.Linger == 0 {
		c.Linger = 2 * time.Millisecond
	}
	if c.Linger < 0 {
		return pipeline.Invalid("linger", "must be positive")
	}
	if c.TLS != nil {
		if err := c.TLS.Validate(); err != nil {
			return err
		}
	}
	if c.Auth != nil {
		if err := c.Auth.Validate(false); err != nil {
			return err
		}
	}
	return nil
}

// Package subscribe is the endpoint that streams Kafka topics to devices and
// browsers over WebSocket, in real time, with resumable positions.
//
// The wire protocol is in docs/subscribe.md. In short: a client connects to
// ws://host/subscribe?topic=telemetry&from=latest and receives one text frame
// per record, {"pos":"0:1524,1:1490,…","key":…,"device_id":…,"seq":…,"value":{…}},
// where pos is the position just after that record: one next offset per
// partition. Reconnecting with from=<the last pos received> continues with
// exactly the records after it.
//
// # Design
//
// Each topic has one hub per Sluice instance: one kafka-go reader per
// partition (no consumer group), reading from the newest offset, whose
// records are offered to every subscriber of the topic. The hub never
// blocks: each subscriber has its own bounded queue (buffer), and a record
// that does not fit is dropped for that subscriber alone, which then lags.
//
// Every record the hub offers carries the hub's previous position on its
// partition (prev) beside its own offset, so the records [prev, offset) do
// not exist. A subscriber keeps its own next offset n per partition and
// accepts a live record only when prev <= n <= offset; a record below n is a
// duplicate and is dropped; a record with prev > n reveals a gap (records
// dropped for it, or a position older than the hub's), and the subscriber
// then reads that partition itself, from n, with a temporary reader of its
// own (catch-up), until n reaches the hub's live position, when it goes
// back to the shared feed. While it catches up on a partition the hub does
// not queue that partition's records for it. The same rule on both streams
// makes the switch gapless and duplicate-free whatever the timing.
package subscribe

import (
	"net"
	"strings"
	"time"

	"github.com/sluicehq/sluice/internal/auth"
	"github.com/sluicehq/sluice/internal/kafkaname"
	"github.com/sluicehq/sluice/pipeline"
)

// Slow-subscriber policies.
const (
	// SlowDisconnect closes a lagging subscriber with status 4000; the client
	// reconnects with from=<the last pos it received>.
	SlowDisconnect = "disconnect"
	// SlowSkip takes a lagging subscriber off the shared feed, tells it
	// {"type":"lagging"}, and serves it from its own catch-up reader at its
	// own pace until it has caught up again. Nothing is lost.
	SlowSkip = "skip"
)

// Config configures the subscription endpoint.
//
//	endpoints:
//	  - subscriptions:
//	      listen: 127.0.0.1:8080
//	      path: /subscribe
//	      brokers: [127.0.0.1:9092]
//	      topics: [telemetry]
//	      buffer: 1024
//	      slow: disconnect
//	      ui: /ui
type Config struct {
	// Listen is the host:port to serve on (required). Sources and endpoints
	// with the same address share one server.
	Listen string `yaml:"listen"`
	// Path is the URL path subscribers connect to (default /subscribe).
	Path string `yaml:"path"`
	// Brokers are the Kafka bootstrap addresses, host:port (required).
	Brokers []string `yaml:"brokers"`
	// Topics are the Kafka topics clients may subscribe to (required).
	// Each has one shared reader per partition for as long as the endpoint
	// runs.
	Topics []string `yaml:"topics"`
	// Buffer is how many records may wait for one subscriber (default
	// 1024). When a record does not fit, the subscriber is lagging and the
	// slow policy applies.
	Buffer int `yaml:"buffer"`
	// Slow is what happens to a lagging subscriber: disconnect (default)
	// closes it with status 4000 so that it resumes from its last position;
	// skip sends it {"type":"lagging"} and serves it from its own catch-up
	// reader until it is live again.
	Slow string `yaml:"slow"`
	// UI is the URL path of the browser view (default "": no view), e.g. /ui.
	UI string `yaml:"ui"`
	// Heartbeat is how long a subscriber may go without a message before
	// it is sent a {"type":"checkpoint"} carrying its position (default 5s).
	// Clients treat three missed heartbeats as a dead connection.
	Heartbeat time.Duration `yaml:"heartbeat"`
	// WriteTimeout bounds one WebSocket write; a subscriber that accepts
	// nothing for this long is closed (default 10s).
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// SendBuffer caps the kernel send buffer of each subscriber connection,
	// in bytes (default 0: the OS sizes it, on Linux up to the maximum of
	// net.ipv4.tcp_wmem, 4 MiB). A small value bounds the kernel memory per
	// subscriber and notices a slow subscriber sooner, at the cost of
	// throughput over links with a long round trip (at most SendBuffer per
	// round trip).
	SendBuffer int `yaml:"send_buffer"`
	// DeviceField names the record field holding the device id, used when a
	// message has no sluice-id header (default device_id).
	DeviceField string `yaml:"device_field"`
	// SeqField names the record field holding the per-device sequence
	// number, used when a message has no sluice-id header (default seq).
	SeqField string `yaml:"seq_field"`
	// OriginPatterns lists the browser origins allowed besides the server's
	// own host (e.g. "localhost:*"); see coder/websocket AcceptOptions.
	OriginPatterns []string `yaml:"origin_patterns"`
	// TLS serves the address over TLS (wss://, https:// for the view) with
	// a certificate and key from files, re-read when they change. Every
	// component on the same address must have the same tls settings.
	TLS *auth.TLSConfig `yaml:"tls"`
	// Auth requires a bearer token (static or JWT) before the upgrade;
	// auth.topic_claim and auth.device_claim limit what a subscriber may
	// read. Without it every client is accepted. See docs/security.md.
	Auth *auth.Config `yaml:"auth"`
}

// Defaults.
const (
	DefaultPath         = "/subscribe"
	DefaultBuffer       = 1024
	DefaultHeartbeat    = 5 * time.Second
	DefaultWriteTimeout = 10 * time.Second
)

// Validate fills defaults and checks the config.
func (c *Config) Validate() error {
	if c.Listen == "" {
		return pipeline.Invalid("listen", "required (host:port, e.g. 127.0.0.1:8080)")
	}
	if c.Path == "" {
		c.Path = DefaultPath
	}
	if !strings.HasPrefix(c.Path, "/") {
		return pipeline.Invalid("path", "must start with /")
	}
	if len(c.Brokers) == 0 {
		return pipeline.Invalid("brokers", "required: at least one host:port")
	}
	for i, b := range c.Brokers {
		if _, port, err := net.SplitHostPort(b); err != nil || port == "" {
			return pipeline.Invalid("brokers", "brokers[%d] %q: want host:port", i, b)
		}
	}
	if len(c.Topics) == 0 {
		return pipeline.Invalid("topics", "required: at least one Kafka topic")
	}
	seen := map[string]bool{}
	for i, t := range c.Topics {
		if err := kafkaname.CheckTopic(t); err != nil {
			return pipeline.Invalid("topics", "topics[%d]: %v", i, err)
		}
		if seen[t] {
			return pipeline.Invalid("topics", "topics[%d]: %q is listed twice", i, t)
		}
		seen[t] = true
	}
	switch {
	case c.Buffer == 0:
		c.Buffer = DefaultBuffer
	case c.Buffer < 0:
		return pipeline.Invalid("buffer", "must be positive")
	}
	switch c.Slow {
	case "":
		c.Slow = SlowDisconnect
	case SlowDisconnect, SlowSkip:
	default:
		return pipeline.Invalid("slow", "%q: want disconnect or skip", c.Slow)
	}
	if c.UI != "" {
		c.UI = strings.TrimSuffix(c.UI, "/")
		if !strings.HasPrefix(c.UI, "/") || c.UI == "" {
			return pipeline.Invalid("ui", "must be a path starting with / other than / itself (e.g. /ui)")
		}
		if c.UI == c.Path {
			return pipeline.Invalid("ui", "must differ from path (%s)", c.Path)
		}
	}
	switch {
	case c.Heartbeat == 0:
		c.Heartbeat = DefaultHeartbeat
	case c.Heartbeat < 0:
		return pipeline.Invalid("heartbeat", "must be positive")
	}
	switch {
	case c.WriteTimeout == 0:
		c.WriteTimeout = DefaultWriteTimeout
	case c.WriteTimeout < 0:
		return pipeline.Invalid("write_timeout", "must be positive")
	}
	if c.SendBuffer < 0 {
		return pipeline.Invalid("send_buffer", "must not be negative")
	}
	if c.DeviceField == "" {
		c.DeviceField = "device_id"
	}
	if c.SeqField == "" {
		c.SeqField = "seq"
	}
	if c.TLS != nil {
		if err := c.TLS.Validate(); err != nil {
			return err
		}
	}
	if c.Auth != nil {
		if err := c.Auth.Validate(true); err != nil {
			return err
		}
	}
	return nil
}

package kafka

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/internal/kafkaname"
	"github.com/sluicehq/sluice/pipeline"
	"github.com/tidwall/gjson"
)

// Config configures the Kafka sink.
//
//	kafka:
//	  brokers: [127.0.0.1:9092]
//	  topic: telemetry
//	  key: "{{device_id}}"
type Config struct {
	// Brokers are the bootstrap addresses, host:port. Required.
	Brokers []string `yaml:"brokers"`
	// Topic is the topic records are written to, unless a transform set the
	// record's Dest. Required (it is the default even when every record has a
	// Dest).
	Topic string `yaml:"topic"`
	// Key is the template of the message key: literal text and {{path}}
	// fields, each a gjson path into the record's JSON, e.g. "{{device_id}}"
	// or "{{device_id}}-{{site}}". A missing field renders as ""; a record
	// with none of the fields has no key. A key set on the record by a
	// transform wins. Default "": no key (round robin).
	Key string `yaml:"key"`
	// BatchSize is the most records the runner hands to one Write
	// (default 1000).
	BatchSize int `yaml:"batch_size"`
	// Linger is how long the runner waits to fill a batch (default 5ms).
	Linger time.Duration `yaml:"linger"`
	// MaxInFlight is how many batches may be written at once (default 2;
	// 1 writes one batch at a time). Batches reach each partition in order;
	// after a write fails, the batches written after it are written again,
	// so that the last copy of every record is in order (see
	// pipeline.Pipeliner).
	MaxInFlight int `yaml:"max_in_flight"`
	// Compression is none, snappy, lz4, zstd or gzip (default none).
	Compression string `yaml:"compression"`
	// CreateTopic creates Topic at start when it is missing (default false:
	// a missing topic is an error; Kafka's auto-creation is never used).
	CreateTopic bool `yaml:"create_topic"`
	// Partitions is the partition count of a topic made by create_topic
	// (default 4).
	Partitions int `yaml:"partitions"`
	// ReplicationFactor is the replication factor of a topic made by
	// create_topic (default 1).
	ReplicationFactor int `yaml:"replication_factor"`
	// WriteTimeout bounds one produce request (default 10s).
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// Headers copies the record's headers to the message (default true).
	// The sluice-id identity header is written either way.
	Headers *bool `yaml:"headers"`
	// MaxMessageBytes is the largest message (key, value and headers) the
	// sink sends; larger records are rejected for good (dead-lettered).
	// Keep it at or below the broker's message.max.bytes (default 1048576).
	MaxMessageBytes int `yaml:"max_message_bytes"`

	key *keyTemplate
}

// Defaults.
const (
	DefaultBatchSize       = 1000
	DefaultLinger          = 5 * time.Millisecond
	DefaultMaxInFlight     = 2
	DefaultPartitions      = 4
	DefaultWriteTimeout    = 10 * time.Second
	DefaultMaxMessageBytes = 1 << 20
)

// Validate fills in defaults and checks every field.
func (c *Config) Validate() error {
	if len(c.Brokers) == 0 {
		return pipeline.Invalid("brokers", "required: at least one host:port")
	}
	for i, b := range c.Brokers {
		if _, port, err := net.SplitHostPort(b); err != nil || port == "" {
			return pipeline.Invalid("brokers", "brokers[%d] %q: want host:port", i, b)
		}
	}
	if c.Topic == "" {
		return pipeline.Invalid("topic", "required (the topic of records without a dest)")
	}
	if err := kafkaname.CheckTopic(c.Topic); err != nil {
		return pipeline.Invalid("topic", "%v", err)
	}
	t, err := parseKey(c.Key)
	if err != nil {
		return pipeline.Invalid("key", "%v", err)
	}
	c.key = t
	switch {
	case c.BatchSize < 0:
		return pipeline.Invalid("batch_size", "must be positive")
	case c.BatchSize == 0:
		c.BatchSize = DefaultBatchSize
	}
	switch {
	case c.Linger < 0:
		return pipeline.Invalid("linger", "must not be negative")
	case c.Linger == 0:
		c.Linger = DefaultLinger
	}
	switch {
	case c.MaxInFlight < 0:
		return pipeline.Invalid("max_in_flight", "must be positive")
	case c.MaxInFlight == 0:
		c.MaxInFlight = DefaultMaxInFlight
	}
	c.Compression = strings.ToLower(c.Compression)
	if _, ok := compressions[c.Compression]; !ok {
		return pipeline.Invalid("compression", "%q: want none, snappy, lz4, zstd or gzip", c.Compression)
	}
	if c.Compression == "" {
		c.Compression = "none"
	}
	switch {
	case c.Partitions < 0:
		return pipeline.Invalid("partitions", "must be positive")
	case c.Partitions == 0:
		c.Partitions = DefaultPartitions
	}
	switch {
	case c.ReplicationFactor < 0:
		return pipeline.Invalid("replication_factor", "must be positive")
	case c.ReplicationFactor == 0:
		c.ReplicationFactor = 1
	}
	switch {
	case c.WriteTimeout < 0:
		return pipeline.Invalid("write_timeout", "must not be negative")
	case c.WriteTimeout == 0:
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.Headers == nil {
		yes := true
		c.Headers = &yes
	}
	switch {
	case c.MaxMessageBytes < 0:
		return pipeline.Invalid("max_message_bytes", "must be positive")
	case c.MaxMessageBytes == 0:
		c.MaxMessageBytes = DefaultMaxMessageBytes
	case c.MaxMessageBytes < 1024:
		return pipeline.Invalid("max_message_bytes", "%d is too small (at least 1024)", c.MaxMessageBytes)
	}
	return nil
}

// keyTemplate renders a message key from a record: lits[0] paths[0] lits[1]
// paths[1] … lits[n].
type keyTemplate struct {
	lits  []string
	paths []string
}

func parseKey(s string) (*keyTemplate, error) {
	if s == "" {
		return nil, nil
	}
	t := &keyTemplate{}
	rest := s
	for {
		i := strings.Index(rest, "{{")
		if i < 0 {
			if strings.Contains(rest, "}}") {
				return nil, fmt.Errorf("%q: \"}}\" without \"{{\"", s)
			}
			t.lits = append(t.lits, rest)
			break
		}
		if strings.Contains(rest[:i], "}}") {
			return nil, fmt.Errorf("%q: \"}}\" without \"{{\"", s)
		}
		t.lits = append(t.lits, rest[:i])
		rest = rest[i+2:]
		j := strings.Index(rest, "}}")
		if j < 0 {
			return nil, fmt.Errorf("%q: \"{{\" without \"}}\"", s)
		}
		path := strings.TrimSpace(rest[:j])
		if path == "" {
			return nil, fmt.Errorf("%q: empty field {{}}", s)
		}
		if strings.Contains(path, "{{") {
			return nil, fmt.Errorf("%q: nested \"{{\"", s)
		}
		t.paths = append(t.paths, path)
		rest = rest[j+2:]
	}
	return t, nil
}

// render returns the key for value, or nil when the template is empty or
// renders to "" (a record without a key).
func (t *keyTemplate) render(value []byte) []byte {
	if t == nil {
		return nil
	}
	if len(t.paths) == 1 && t.lits[0] == "" && t.lits[1] == "" {
		r := gjson.GetBytes(value, t.paths[0])
		if !r.Exists() {
			return nil
		}
		return keyBytes(nil, r)
	}
	var results []gjson.Result
	if len(t.paths) > 0 {
		results = gjson.GetManyBytes(value, t.paths...)
	}
	n := 0
	for _, l := range t.lits {
		n += len(l)
	}
	for _, r := range results {
		n += len(r.Raw)
	}
	found := len(results) == 0 // a template without fields is a constant
	for _, r := range results {
		found = found || r.Exists()
	}
	if !found {
		return nil // none of the fields: no key, rather than the bare literals
	}
	key := make([]byte, 0, n)
	for i, l := range t.lits {
		key = append(key, l...)
		if i < len(results) {
			key = keyBytes(key, results[i])
		}
	}
	if len(key) == 0 {
		return nil
	}
	return key
}

// keyBytes appends the text of r: strings unquoted, numbers as written,
// other JSON as its raw text, a missing field as nothing.
func keyBytes(dst []byte, r gjson.Result) []byte {
	switch r.Type {
	case gjson.String:
		return append(dst, r.Str...)
	case gjson.Number:
		if r.Raw != "" {
			return append(dst, r.Raw...)
		}
		return strconv.AppendFloat(dst, r.Num, 'f', -1, 64)
	case gjson.Null:
		if !r.Exists() {
			return dst
		}
		return append(dst, "null"...)
	default:
		return append(dst, r.Raw...)
	}
}

package kafka

import (
	"net"
	"slices"
	"time"

	"github.com/sluicehq/sluice/internal/kafkaname"
	"github.com/sluicehq/sluice/pipeline"
)

// Config configures the Kafka source.
//
//	kafka:
//	  brokers: [127.0.0.1:9092]
//	  topic: telemetry
//	  group: sluice-archive
type Config struct {
	// Brokers are the bootstrap addresses, host:port. Required.
	Brokers []string `yaml:"brokers"`
	// Topic is the topic to consume. Set topic or topics.
	Topic string `yaml:"topic"`
	// Topics are the topics to consume. Set topic or topics.
	Topics []string `yaml:"topics"`
	// Group is the consumer group; its committed offsets are where a
	// restarted source resumes. Required.
	Group string `yaml:"group"`
	// Start is where a group without committed offsets starts: earliest or
	// latest (default earliest).
	Start string `yaml:"start"`
	// BatchSize is the most records in one batch (default 1000).
	BatchSize int `yaml:"batch_size"`
	// Linger is how long a batch may wait for more records after its first
	// one (default 5ms).
	Linger time.Duration `yaml:"linger"`
	// MinBytes is the least data a fetch waits for (default 1: answer as
	// soon as anything is there).
	MinBytes int `yaml:"min_bytes"`
	// MaxBytes is the most data one fetch of a partition returns
	// (default 1048576).
	MaxBytes int `yaml:"max_bytes"`
	// MaxWait is how long the broker holds a fetch that has less than
	// min_bytes (default 500ms). With min_bytes 1 it does not delay
	// records: the broker answers as soon as one arrives. It bounds how
	// long Close waits for the fetches in flight. kafka-go also uses it as
	// the client's read deadline for the fetch and gives the broker only
	// three quarters of it, so with a short max_wait a broker that answers
	// an idle fetch a little late (e.g. 30ms at 100ms) causes an i/o
	// timeout that tears down the partition's connection.
	MaxWait time.Duration `yaml:"max_wait"`
	// CommitTimeout bounds one offset commit (default 10s).
	CommitTimeout time.Duration `yaml:"commit_timeout"`
	// SessionTimeout is how long the group coordinator waits for a member
	// that stopped heartbeating (a crashed Sluice) before its partitions go
	// to another member (default 10s; kafka-go's own default is 30s).
	SessionTimeout time.Duration `yaml:"session_timeout"`
	// HeartbeatInterval is how often the member heartbeats (default 1s).
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval"`
	// RebalanceTimeout bounds how long members may take to rejoin during a
	// rebalance (default 10s).
	RebalanceTimeout time.Duration `yaml:"rebalance_timeout"`

	topics []string
}

// Defaults.
const (
	DefaultBatchSize         = 1000
	DefaultLinger            = 5 * time.Millisecond
	DefaultMinBytes          = 1
	DefaultMaxBytes          = 1 << 20
	DefaultMaxWait           = 500 * time.Millisecond
	DefaultCommitTimeout     = 10 * time.Second
	DefaultSessionTimeout    = 10 * time.Second
	DefaultHeartbeatInterval = time.Second
	DefaultRebalanceTimeout  = 10 * time.Second
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
	switch {
	case c.Topic != "" && len(c.Topics) > 0:
		return pipeline.Invalid("topics", "set topic or topics, not both")
	case c.Topic != "":
		c.topics = []string{c.Topic}
	case len(c.Topics) > 0:
		c.topics = slices.Clone(c.Topics)
		slices.Sort(c.topics)
		c.topics = slices.Compact(c.topics)
	default:
		return pipeline.Invalid("topic", "required: set topic or topics")
	}
	for _, t := range c.topics {
		if err := kafkaname.CheckTopic(t); err != nil {
			field := "topic"
			if c.Topic == "" {
				field = "topics"
			}
			return pipeline.Invalid(field, "%v", err)
		}
	}
	if c.Group == "" {
		return pipeline.Invalid("group", "required: the consumer group that stores the offsets")
	}
	switch c.Start {
	case "":
		c.Start = "earliest"
	case "earliest", "latest":
	default:
		return pipeline.Invalid("start", "%q: want earliest or latest", c.Start)
	}
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
	case c.MinBytes < 0:
		return pipeline.Invalid("min_bytes", "must be positive")
	case c.MinBytes == 0:
		c.MinBytes = DefaultMinBytes
	}
	switch {
	case c.MaxBytes < 0:
		return pipeline.Invalid("max_bytes", "must be positive")
	case c.MaxBytes == 0:
		c.MaxBytes = DefaultMaxBytes
	}
	if c.MinBytes > c.MaxBytes {
		return pipeline.Invalid("min_bytes", "%d is more than max_bytes (%d)", c.MinBytes, c.MaxBytes)
	}
	switch {
	case c.MaxWait < 0:
		return pipeline.Invalid("max_wait", "must not be negative")
	case c.MaxWait == 0:
		c.MaxWait = DefaultMaxWait
	}
	switch {
	case c.CommitTimeout < 0:
		return pipeline.Invalid("commit_timeout", "must not be negative")
	case c.CommitTimeout == 0:
		c.CommitTimeout = DefaultCommitTimeout
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"session_timeout", &c.SessionTimeout, DefaultSessionTimeout},
		{"heartbeat_interval", &c.HeartbeatInterval, DefaultHeartbeatInterval},
		{"rebalance_timeout", &c.RebalanceTimeout, DefaultRebalanceTimeout},
	} {
		switch {
		case *d.v < 0:
			return pipeline.Invalid(d.name, "must not be negative")
		case *d.v == 0:
			*d.v = d.def
		}
	}
	if c.HeartbeatInterval >= c.SessionTimeout {
		return pipeline.Invalid("heartbeat_interval", "%v must be less than session_timeout (%v)", c.HeartbeatInterval, c.SessionTimeout)
	}
	return nil
}

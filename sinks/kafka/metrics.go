package kafka

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the sink's Prometheus metrics; a nil *metrics records nothing.
type metrics struct {
	messages prometheus.Counter
	rejected prometheus.Counter
	bytes    prometheus.Counter
	failures prometheus.Counter
	duration prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		messages: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_kafka_sink_messages_total",
			Help: "Messages written to Kafka and acknowledged by all in-sync replicas.",
		}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_kafka_sink_rejected_total",
			Help: "Records rejected for good (too large, invalid or missing topic).",
		}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_kafka_sink_value_bytes_total",
			Help: "Bytes of message values written.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_kafka_sink_write_failures_total",
			Help: "Writes that failed as a whole and are retried by the runner.",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sluice_kafka_sink_write_seconds",
			Help:    "Duration of successful batch writes.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
	}
	var err error
	m.messages, err = register(reg, m.messages)
	if err == nil {
		m.rejected, err = register(reg, m.rejected)
	}
	if err == nil {
		m.bytes, err = register(reg, m.bytes)
	}
	if err == nil {
		m.failures, err = register(reg, m.failures)
	}
	if err == nil {
		m.duration, err = register(reg, m.duration)
	}
	if err != nil {
		return nil, fmt.Errorf("kafka: register metrics: %w", err)
	}
	return m, nil
}

// register registers c, or returns the collector already registered under
// its name (two Kafka sinks sharing a registerer share the metrics).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}

func (m *metrics) written(ok, rejected, bytes int, d time.Duration) {
	if m == nil {
		return
	}
	m.messages.Add(float64(ok))
	m.rejected.Add(float64(rejected))
	m.bytes.Add(float64(bytes))
	m.duration.Observe(d.Seconds())
}

func (m *metrics) failed() {
	if m == nil {
		return
	}
	m.failures.Inc()
}

package kafka

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the source's Prometheus metrics; a nil *metrics records
// nothing.
type metrics struct {
	records       prometheus.Counter
	failures      prometheus.Counter
	unsettled     prometheus.Gauge
	commits       prometheus.Counter
	commitFailure prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		records: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_kafka_source_records_total",
			Help: "Records consumed and handed to the pipeline.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_kafka_source_failed_total",
			Help: "Records settled with an error (dead-lettered); their offsets are committed too.",
		}),
		unsettled: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_kafka_source_unsettled",
			Help: "Records handed to the pipeline and not settled yet.",
		}),
		commits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_kafka_source_commits_total",
			Help: "Offset commits that succeeded.",
		}),
		commitFailure: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_kafka_source_commit_failures_total",
			Help: "Offset commits that failed (retried).",
		}),
	}
	var err error
	m.records, err = register(reg, m.records)
	if err == nil {
		m.failures, err = register(reg, m.failures)
	}
	if err == nil {
		m.unsettled, err = register(reg, m.unsettled)
	}
	if err == nil {
		m.commits, err = register(reg, m.commits)
	}
	if err == nil {
		m.commitFailure, err = register(reg, m.commitFailure)
	}
	if err != nil {
		return nil, fmt.Errorf("kafka: register metrics: %w", err)
	}
	return m, nil
}

// register registers c, or returns the collector already registered under
// its name (two Kafka sources sharing a registerer share the metrics).
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

func (m *metrics) fetched(n int) {
	if m == nil {
		return
	}
	m.records.Add(float64(n))
	m.unsettled.Add(float64(n))
}

func (m *metrics) settled() {
	if m == nil {
		return
	}
	m.unsettled.Dec()
}

func (m *metrics) failed() {
	if m == nil {
		return
	}
	m.failures.Inc()
}

func (m *metrics) committed(err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.commitFailure.Inc()
		return
	}
	m.commits.Inc()
}

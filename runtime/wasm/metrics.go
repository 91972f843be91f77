package wasm

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the transform's Prometheus metrics, labelled with the module.
type metrics struct {
	calls         prometheus.Counter
	callSeconds   prometheus.Observer
	recordsIn     prometheus.Counter
	recordsOut    prometheus.Counter
	recordsFailed prometheus.Counter
	failures      *prometheus.CounterVec
	reloads       *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, module string) *metrics {
	labels := prometheus.Labels{"module": module}
	counter := func(name, help string) prometheus.Counter {
		return register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "sluice", Subsystem: "wasm", Name: name, Help: help, ConstLabels: labels,
		}))
	}
	return &metrics{
		calls:         counter("calls_total", "Calls of sluice_process."),
		recordsIn:     counter("records_in_total", "Records handed to the transform."),
		recordsOut:    counter("records_out_total", "Records the transform returned."),
		recordsFailed: counter("records_failed_total", "Records the transform failed."),
		callSeconds: register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "sluice", Subsystem: "wasm", Name: "call_duration_seconds",
			Help:        "Duration of a sluice_process call, encoding and decoding included.",
			ConstLabels: labels,
			Buckets:     prometheus.ExponentialBuckets(10e-6, 4, 10), // 10µs .. 2.6s
		})),
		failures: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "sluice", Subsystem: "wasm", Name: "call_failures_total",
			Help:        "Calls that failed, by reason: trap, timeout, memory, abi.",
			ConstLabels: labels,
		}, []string{"reason"})),
		reloads: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "sluice", Subsystem: "wasm", Name: "reloads_total",
			Help:        "Hot reloads, by result: ok, rejected.",
			ConstLabels: labels,
		}, []string{"result"})),
	}
}

// register registers c, or returns the collector already registered under
// the same description (two transforms running the same module).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}

func (m *metrics) failure(err error) {
	reason := "trap"
	switch {
	case errors.Is(err, ErrTimeout):
		reason = "timeout"
	case errors.Is(err, ErrMemoryLimit):
		reason = "memory"
	case errors.Is(err, ErrABI):
		reason = "abi"
	}
	m.failures.WithLabelValues(reason).Inc()
}

func (m *metrics) reload(ok bool) {
	if m == nil {
		return
	}
	result := "ok"
	if !ok {
		result = "rejected"
	}
	m.reloads.WithLabelValues(result).Inc()
}

package pipeline

import "github.com/prometheus/client_golang/prometheus"

// metrics are the run loop's own metrics, labelled by pipeline and stage.
type metrics struct {
	records     *prometheus.CounterVec   // pipeline, stage, outcome
	writeErrors *prometheus.CounterVec   // pipeline, stage
	writeTime   *prometheus.HistogramVec // pipeline, stage
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_records_total",
			Help: "Records by pipeline, stage and outcome (in, out, filtered, failed, dead_lettered).",
		}, []string{"pipeline", "stage", "outcome"}),
		writeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_sink_write_errors_total",
			Help: "Failed sink writes that will be retried.",
		}, []string{"pipeline", "stage"}),
		writeTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sluice_sink_write_seconds",
			Help:    "Duration of successful sink writes.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"pipeline", "stage"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.records, m.writeErrors, m.writeTime} {
			if err := reg.Register(c); err != nil {
				// Another pipeline registered the same vectors: share them.
				if are, ok := err.(prometheus.AlreadyRegisteredError); ok {
					switch v := are.ExistingCollector.(type) {
					case *prometheus.CounterVec:
						if c == prometheus.Collector(m.records) {
							m.records = v
						} else {
							m.writeErrors = v
						}
					case *prometheus.HistogramVec:
						m.writeTime = v
					}
				}
			}
		}
	}
	return m
}

package clickhouse

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the sink's Prometheus metrics, labelled by table ("db.table");
// a nil *metrics records nothing.
type metrics struct {
	rows    *prometheus.CounterVec
	inserts *prometheus.CounterVec
	seconds *prometheus.HistogramVec
	rejects *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_clickhouse_sink_rows_total",
			Help: "Rows inserted into ClickHouse.",
		}, []string{"table"}),
		inserts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_clickhouse_sink_inserts_total",
			Help: "INSERT statements (batches) sent to ClickHouse, by result (ok or error).",
		}, []string{"table", "result"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sluice_clickhouse_sink_insert_seconds",
			Help:    "Time taken by one INSERT, from preparing the batch to the server's reply.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14), // 5ms .. ~41s
		}, []string{"table"}),
		rejects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_clickhouse_sink_rejected_total",
			Help: "Records rejected for good: a value did not fit its column (conversion error), or the table their Dest names cannot be written.",
		}, []string{"table"}),
	}
	var err error
	m.rows, err = register(reg, m.rows)
	if err != nil {
		return nil, err
	}
	if m.inserts, err = register(reg, m.inserts); err != nil {
		return nil, err
	}
	if m.seconds, err = register(reg, m.seconds); err != nil {
		return nil, err
	}
	if m.rejects, err = register(reg, m.rejects); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or returns the collector already registered under
// its name (two ClickHouse sinks in one registry share the metrics).
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

func (m *metrics) observe(table string, rows int, d time.Duration, err error) {
	if m == nil {
		return
	}
	m.seconds.WithLabelValues(table).Observe(d.Seconds())
	if err != nil {
		m.inserts.WithLabelValues(table, "error").Inc()
		return
	}
	m.inserts.WithLabelValues(table, "ok").Inc()
	m.rows.WithLabelValues(table).Add(float64(rows))
}

func (m *metrics) rejected(table string) {
	if m == nil {
		return
	}
	m.rejects.WithLabelValues(table).Inc()
}

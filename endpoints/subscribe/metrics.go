package subscribe

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the endpoint's Prometheus metrics, labelled by topic.
type metrics struct {
	subscribers *prometheus.GaugeVec   // topic
	sent        *prometheus.CounterVec // topic
	lagging     *prometheus.CounterVec // topic, action (disconnect, skip)
	catchup     *prometheus.GaugeVec   // topic
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		subscribers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_subscribe_subscribers",
			Help: "Open subscriber connections.",
		}, []string{"topic"}),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_subscribe_records_sent_total",
			Help: "Records sent to subscribers (one per subscriber that received it).",
		}, []string{"topic"}),
		lagging: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_subscribe_lagging_total",
			Help: "Subscribers whose buffer overflowed, by the action taken (disconnect or skip).",
		}, []string{"topic", "action"}),
		catchup: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_subscribe_catchup_readers",
			Help: "Partition readers of subscribers catching up from an older position.",
		}, []string{"topic"}),
	}
	if reg != nil {
		m.subscribers = register(reg, m.subscribers)
		m.sent = register(reg, m.sent)
		m.lagging = register(reg, m.lagging)
		m.catchup = register(reg, m.catchup)
	}
	return m
}

// register registers c, or returns the collector already registered under
// its name (a second endpoint on the same registry shares it).
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

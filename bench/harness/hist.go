package harness

import (
	"slices"
	"sync"
	"time"
)

// Latencies collects samples; safe for concurrent use.
type Latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

// Add records one sample.
func (l *Latencies) Add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

// Reset drops every sample.
func (l *Latencies) Reset() {
	l.mu.Lock()
	l.d = l.d[:0]
	l.mu.Unlock()
}

// Summary is the distribution of samples in milliseconds.
type Summary struct {
	N    int     `json:"n"`
	P50  float64 `json:"p50_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p999_ms"`
	Max  float64 `json:"max_ms"`
	Mean float64 `json:"mean_ms"`
}

// Summary sorts the samples and returns their percentiles.
func (l *Latencies) Summary() Summary {
	l.mu.Lock()
	d := slices.Clone(l.d)
	l.mu.Unlock()
	if len(d) == 0 {
		return Summary{}
	}
	slices.Sort(d)
	q := func(p float64) float64 {
		i := int(p*float64(len(d)) + 0.5)
		i = min(max(i-1, 0), len(d)-1)
		return ms(d[i])
	}
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	return Summary{N: len(d), P50: q(0.50), P99: q(0.99), P999: q(0.999), Max: ms(d[len(d)-1]), Mean: ms(sum / time.Duration(len(d)))}
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

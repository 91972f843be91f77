package subscribe

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// BenchmarkSubscribeLatency measures the time from handing a record to the
// Kafka producer to its receipt by a subscriber, at a fixed rate, with
// several subscribers on one hub. It reports p50, p99 and p99.9 in
// milliseconds; b.N is not used (each rate runs for a fixed time).
//
//	go test -run '^$' -bench BenchmarkSubscribeLatency ./endpoints/subscribe
func BenchmarkSubscribeLatency(b *testing.B) {
	const (
		subscribers = 4
		seconds     = 5
	)
	for _, rate := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("rate=%d/s", rate), func(b *testing.B) {
			brokers, topic := newTopic(b, 4)
			// skip: a subscriber starved of CPU for a moment catches up
			// from Kafka instead of being disconnected.
			h := start(b, brokers, topic, Config{Buffer: 4096, Slow: SlowSkip})
			total := rate * seconds
			var wg sync.WaitGroup
			lat := make([][]time.Duration, subscribers)
			fromSend := make([][]time.Duration, subscribers) // from the producer's send
			for i := range subscribers {
				s := subscribe(b, h, "from=latest")
				wg.Add(1)
				go func() {
					defer wg.Done()
					ctx, cancel := context.WithTimeout(context.Background(), time.Duration(seconds+30)*time.Second)
					defer cancel()
					for n := 0; n < total; {
						_, data, err := s.c.Read(ctx)
						if err != nil {
							b.Errorf("subscriber %d: after %d records: %v", i, n, err)
							return
						}
						now := time.Now()
						if bytes.HasPrefix(data, []byte(`{"type"`)) {
							continue
						}
						sent, ts := field(data, `"sent_ns":`), field(data, `"ts":`)
						lat[i] = append(lat[i], now.Sub(time.Unix(0, sent)))
						fromSend[i] = append(fromSend[i], now.Sub(time.UnixMilli(ts)))
						n++
					}
				}()
			}
			// A generator stamps records at the rate; a producer writes
			// whatever is pending in one request at a time, so that its
			// batches grow with Kafka's latency as a real producer's do.
			pending := make(chan kafka.Message, total)
			go func() {
				perSlot := max(1, rate/1000)
				slot := time.Duration(perSlot) * time.Second / time.Duration(rate)
				begin := time.Now()
				for sent, i := 0, 0; sent < total; i++ {
					if d := time.Until(begin.Add(time.Duration(i) * slot)); d > 0 {
						time.Sleep(d)
					}
					now := time.Now().UnixNano()
					for j := 0; j < perSlot && sent < total; j++ {
						r := rec{Device: fmt.Sprintf("d%d", sent%100), Seq: uint64(sent/100 + 1), Kind: "reading", Sent: now}
						pending <- r.message()
						sent++
					}
				}
				close(pending)
			}()
			w := &kafka.Writer{
				Addr:         kafka.TCP(brokers...),
				Topic:        topic,
				Balancer:     &kafka.Hash{},
				BatchTimeout: time.Millisecond,
				BatchSize:    10000,
				RequiredAcks: kafka.RequireOne,
			}
			defer w.Close()
			b.ResetTimer()
			for m := range pending {
				msgs := []kafka.Message{m}
			more:
				for len(msgs) < 10000 {
					select {
					case m, ok := <-pending:
						if !ok {
							break more
						}
						msgs = append(msgs, m)
					default:
						break more
					}
				}
				if err := w.WriteMessages(context.Background(), msgs...); err != nil {
					b.Fatal(err)
				}
			}
			wg.Wait()
			b.StopTimer()
			var all, sendAll []time.Duration
			for i, l := range lat {
				all = append(all, l...)
				sendAll = append(sendAll, fromSend[i]...)
			}
			ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
			b.ReportMetric(ms(percentile(all, 0.50)), "p50-ms")
			b.ReportMetric(ms(percentile(all, 0.99)), "p99-ms")
			b.ReportMetric(ms(percentile(all, 0.999)), "p999-ms")
			b.ReportMetric(ms(percentile(sendAll, 0.50)), "send-p50-ms")
			b.ReportMetric(ms(percentile(sendAll, 0.99)), "send-p99-ms")
			b.ReportMetric(float64(len(all))/float64(subscribers), "records/sub")
		})
	}
}

// field returns the integer after name in a frame: cheaper than parsing it,
// so that the subscribers measure Sluice rather than themselves.
func field(data []byte, name string) int64 {
	i := bytes.Index(data, []byte(name))
	if i < 0 {
		return 0
	}
	var n int64
	for _, c := range data[i+len(name):] {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

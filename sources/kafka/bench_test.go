package kafka

import (
	"context"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testenv"
	"github.com/sluicehq/sluice/pipeline"
)

// BenchmarkSource consumes b.N records of about 200 bytes from a topic of 4
// partitions and settles every batch as soon as it arrives; the time runs
// from the first record to the last (joining the group is not counted).
func BenchmarkSource(b *testing.B) {
	brokers := testenv.KafkaBrokers(b)
	topic := testenv.Name("bench_src")
	testenv.CreateTopic(b, brokers, topic, 4)
	produce(b, brokers, topic, 4, b.N)
	s := newSource(b, Config{Brokers: brokers, Topic: topic, Group: testenv.Name("g")})
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan pipeline.Batch, 8)
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, out) }()

	b.ResetTimer()
	var start time.Time
	got, batches := 0, 0
	timeout := time.After(5 * time.Minute)
	for got < b.N {
		select {
		case batch := <-out:
			if got == 0 {
				start = time.Now()
			}
			got += len(batch)
			batches++
			batch.Settle(nil)
		case <-timeout:
			b.Fatalf("got %d of %d records in 5 minutes", got, b.N)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	cancel()
	<-done
	closeCtx, c := context.WithTimeout(context.Background(), 10*time.Second)
	defer c()
	if err := s.Close(closeCtx); err != nil {
		b.Fatalf("Close: %v", err)
	}
	b.SetBytes(200)
	if elapsed > 0 {
		b.ReportMetric(float64(got)/elapsed.Seconds(), "records/s")
	}
	b.ReportMetric(float64(got)/float64(batches), "records/batch")
}

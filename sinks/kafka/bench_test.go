package kafka

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/internal/testenv"
	"github.com/sluicehq/sluice/pipeline"
)

// BenchmarkSink writes batches of 1000 records of 200 bytes to a topic of
// 4 partitions; one iteration is one batch (one Write).
//
// The local broker fsyncs every append (log.flush.interval.messages=1 in
// scripts/kafka/server.properties.template), which dominates the produce
// latency; the "nofsync" cases override it for their topic
// (flush.messages) to show what the client itself sustains.
func BenchmarkSink(b *testing.B) {
	brokers := testenv.KafkaBrokers(b)
	batch := make(pipeline.Batch, 1000)
	for i := range batch {
		v := fmt.Sprintf(`{"device_id":"dev%d","seq":%d,"pad":"`, i%100, i)
		v += strings.Repeat("x", 200-len(v)-2) + `"}`
		batch[i] = pipeline.Record{Value: []byte(v), ID: pipeline.ID{Device: fmt.Sprintf("dev%d", i%100), Seq: uint64(i)}}
	}
	cases := []struct {
		name    string
		cfg     Config
		noFsync bool
		linger  time.Duration // kafka-go's BatchTimeout when not 0
	}{
		{name: "keyed", cfg: Config{Key: "{{device_id}}"}},
		{name: "keyed-lz4", cfg: Config{Key: "{{device_id}}", Compression: "lz4"}},
		{name: "nofsync/keyed", cfg: Config{Key: "{{device_id}}"}, noFsync: true},
		{name: "nofsync/keyless", cfg: Config{}, noFsync: true},
		{name: "nofsync/keyed-lz4", cfg: Config{Key: "{{device_id}}", Compression: "lz4"}, noFsync: true},
		{name: "nofsync/keyed-zstd", cfg: Config{Key: "{{device_id}}", Compression: "zstd"}, noFsync: true},
		// kafka-go's BatchTimeout = linger (5ms) instead of 1µs: each Write
		// waits for every partition's batch timer.
		{name: "nofsync/keyed-writer-linger-5ms", cfg: Config{Key: "{{device_id}}"}, noFsync: true, linger: 5 * time.Millisecond},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			topic := testenv.Name("bench_sink")
			if c.noFsync {
				createTopic(b, brokers, topic, 4, kafkago.ConfigEntry{ConfigName: "flush.messages", ConfigValue: "9223372036854775807"})
			} else {
				testenv.CreateTopic(b, brokers, topic, 4)
			}
			cfg := c.cfg
			cfg.Brokers, cfg.Topic = brokers, topic
			s := newSink(b, cfg)
			if c.linger > 0 {
				s.w.BatchTimeout = c.linger // before the writer's first use
			}
			ctx := context.Background()
			for range 3 { // warm up: connections, leaders
				if err := s.Write(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(200 * len(batch)))
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				if err := s.Write(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			elapsed := time.Since(start)
			b.ReportMetric(float64(b.N*len(batch))/elapsed.Seconds(), "records/s")
			b.ReportMetric(elapsed.Seconds()*1000/float64(b.N), "ms/batch")
		})
	}
}

// createTopic creates a topic with settings, deleted when the test ends.
func createTopic(t testing.TB, brokers []string, topic string, partitions int, settings ...kafkago.ConfigEntry) {
	t.Helper()
	tr := &kafkago.Transport{}
	defer tr.CloseIdleConnections()
	c := &kafkago.Client{Addr: kafkago.TCP(brokers...), Timeout: 10 * time.Second, Transport: tr}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := c.CreateTopics(ctx, &kafkago.CreateTopicsRequest{Topics: []kafkago.TopicConfig{{
		Topic: topic, NumPartitions: partitions, ReplicationFactor: 1, ConfigEntries: settings,
	}}})
	if err == nil {
		err = res.Errors[topic]
	}
	if err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
	t.Cleanup(func() {
		tr := &kafkago.Transport{}
		defer tr.CloseIdleConnections()
		c := &kafkago.Client{Addr: kafkago.TCP(brokers...), Timeout: 10 * time.Second, Transport: tr}
		_, _ = c.DeleteTopics(context.Background(), &kafkago.DeleteTopicsRequest{Topics: []string{topic}})
	})
}

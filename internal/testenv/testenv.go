// Package testenv gives integration tests the addresses of the real local
// services started by scripts/services.sh, and unique names on them.
//
// Integration tests fail when a service is unreachable: they are the proof
// that a feature works, so a missing service is an error, not a skip. With
// `go test -short` they are skipped, with a message saying so.
package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// KafkaBrokers returns the local Kafka's bootstrap addresses ($SLUICE_KAFKA,
// default 127.0.0.1:9092), failing the test if it does not answer.
func KafkaBrokers(t testing.TB) []string {
	t.Helper()
	addr := env("SLUICE_KAFKA", "127.0.0.1:9092")
	require(t, "Kafka", addr)
	return strings.Split(addr, ",")
}

// ClickHouseAddr returns the local ClickHouse native-protocol address
// ($SLUICE_CLICKHOUSE, default 127.0.0.1:9000), failing the test if it does
// not answer.
func ClickHouseAddr(t testing.TB) string {
	t.Helper()
	addr := env("SLUICE_CLICKHOUSE", "127.0.0.1:9000")
	require(t, "ClickHouse", addr)
	return addr
}

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func require(t testing.TB, service, addr string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("-short: skipping a test that needs the real %s at %s", service, addr)
	}
	first := strings.Split(addr, ",")[0]
	c, err := net.DialTimeout("tcp", first, 2*time.Second)
	if err != nil {
		t.Fatalf("%s is not reachable at %s (start it with `scripts/services.sh start`): %v", service, first, err)
	}
	c.Close()
}

var counter atomic.Int64

// Name returns a name unique to this test process, usable as a Kafka topic
// or a ClickHouse table: prefix_<pid>_<n>_<unixnano>.
func Name(prefix string) string {
	return fmt.Sprintf("%s_%d_%d_%d", prefix, os.Getpid(), counter.Add(1), time.Now().UnixNano()%1e9)
}

// CreateTopic creates a Kafka topic with the given partitions (replication
// factor 1) and deletes it when the test ends.
func CreateTopic(t testing.TB, brokers []string, topic string, partitions int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 20 * time.Second}
	res, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: topic, NumPartitions: partitions, ReplicationFactor: 1,
	}}})
	if err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
	if err := res.Errors[topic]; err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
	// Wait until the topic's partitions have leaders.
	deadline := time.Now().Add(20 * time.Second)
	for {
		md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
		if err == nil && len(md.Topics) == 1 && md.Topics[0].Error == nil && len(md.Topics[0].Partitions) == partitions {
			ready := true
			for _, p := range md.Topics[0].Partitions {
				if p.Leader.ID < 0 || p.Error != nil {
					ready = false
				}
			}
			if ready {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("topic %s: partitions have no leader after 20s (metadata err %v)", topic, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = client.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{topic}})
	})
}

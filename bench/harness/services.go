package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/segmentio/kafka-go"
)

// Services are the local Kafka and ClickHouse (scripts/services.sh).
type Services struct {
	Brokers    []string
	ClickHouse string
	KafkaPID   int
	CHPID      int
	Kafka      string // version, from the broker jar
	CHVersion  string
	client     *kafka.Client
	ch         clickhouse.Conn
}

// OpenServices checks that both services answer and finds their pids from
// the pid files under local (<repo>/.local).
func OpenServices(ctx context.Context, local string, brokers []string, chAddr string) (*Services, error) {
	s := &Services{Brokers: brokers, ClickHouse: chAddr}
	for _, a := range []string{brokers[0], chAddr} {
		c, err := net.DialTimeout("tcp", a, 2*time.Second)
		if err != nil {
			return nil, fmt.Errorf("%s is not reachable (start the services with scripts/services.sh start): %w", a, err)
		}
		c.Close()
	}
	s.KafkaPID = readPID(filepath.Join(local, "kafka", "kafka.pid"))
	s.CHPID = readPID(filepath.Join(local, "clickhouse", "clickhouse.pid"))
	if jars, _ := filepath.Glob(filepath.Join(local, "kafka", "libs", "kafka_2.13-*.jar")); len(jars) > 0 {
		sort.Strings(jars)
		s.Kafka = strings.TrimSuffix(strings.TrimPrefix(filepath.Base(jars[0]), "kafka_2.13-"), ".jar")
	}
	s.client = &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 20 * time.Second}
	ch, err := clickhouse.Open(&clickhouse.Options{Addr: []string{chAddr}, Protocol: clickhouse.Native,
		Compression: &clickhouse.Compression{Method: clickhouse.CompressionLZ4}, MaxOpenConns: 4, ReadTimeout: time.Minute})
	if err != nil {
		return nil, fmt.Errorf("clickhouse %s: %w", chAddr, err)
	}
	if v, err := ch.ServerVersion(); err == nil {
		s.CHVersion = v.Version.String()
	} else {
		return nil, fmt.Errorf("clickhouse %s: %w", chAddr, err)
	}
	s.ch = ch
	return s, nil
}

func readPID(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if n > 0 {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d/stat", n)); err != nil {
			return 0
		}
	}
	return n
}

// Close releases the connections.
func (s *Services) Close() {
	if s.ch != nil {
		s.ch.Close()
	}
}

// CH is the ClickHouse connection.
func (s *Services) CH() clickhouse.Conn { return s.ch }

// Pids are the services' processes by name, for a Meter.
func (s *Services) Pids() map[string]int {
	return map[string]int{"kafka": s.KafkaPID, "clickhouse": s.CHPID}
}

// CreateTopic creates a topic (replication factor 1) and waits for its
// partitions' leaders.
func (s *Services) CreateTopic(ctx context.Context, topic string, partitions int) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res, err := s.client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: topic, NumPartitions: partitions, ReplicationFactor: 1}}})
	if err == nil {
		err = res.Errors[topic]
	}
	if err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
		return fmt.Errorf("kafka: create topic %s: %w", topic, err)
	}
	for {
		md, err := s.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
		if err == nil && len(md.Topics) == 1 && md.Topics[0].Error == nil && len(md.Topics[0].Partitions) == partitions {
			ok := true
			for _, p := range md.Topics[0].Partitions {
				ok = ok && p.Leader.ID >= 0 && p.Leader.Host != ""
			}
			if ok {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kafka: topic %s: no leaders: %w", topic, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// DeleteTopics deletes topics, ignoring errors.
func (s *Services) DeleteTopics(topics ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, _ = s.client.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: topics})
}

// EndOffsets returns the total of the topic's partitions' end offsets
// (the number of messages written, for a fresh topic).
func (s *Services) EndOffsets(ctx context.Context, topic string) (int64, error) {
	md, err := s.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return 0, err
	}
	if len(md.Topics) != 1 {
		return 0, fmt.Errorf("topic %s not found", topic)
	}
	var reqs []kafka.OffsetRequest
	for _, p := range md.Topics[0].Partitions {
		reqs = append(reqs, kafka.LastOffsetOf(p.ID))
	}
	res, err := s.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return 0, err
	}
	var n int64
	for _, po := range res.Topics[topic] {
		if po.Error != nil {
			return 0, po.Error
		}
		n += po.LastOffset
	}
	return n, nil
}

// Count returns SELECT count() FROM table.
func (s *Services) Count(ctx context.Context, table string) (uint64, error) {
	var n uint64
	err := s.ch.QueryRow(ctx, "SELECT count() FROM "+table).Scan(&n)
	return n, err
}

// TelemetryColumns is the default pipeline.yaml's telemetry table.
const TelemetryColumns = `device_id String, seq UInt64, part UInt32, ts DateTime, kind String,
	temp Float64, temp_f Float64, humidity Float64, pressure Float64, site String, msg String, raw String`

// CreateTelemetryTable creates a table shaped like the default pipeline's.
func (s *Services) CreateTelemetryTable(ctx context.Context, table string) error {
	return s.ch.Exec(ctx, "CREATE TABLE "+table+" ("+TelemetryColumns+") ENGINE = ReplacingMergeTree() ORDER BY (device_id, seq, part)")
}

// DropTable drops a table, ignoring errors.
func (s *Services) DropTable(table string) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_ = s.ch.Exec(ctx, "DROP TABLE IF EXISTS "+table)
}

var nameRE = regexp.MustCompile(`[^a-z0-9_]`)

// UniqueName is a topic or table name unique to this run.
func UniqueName(prefix string) string {
	return nameRE.ReplaceAllString(fmt.Sprintf("%s_%s_%d", prefix, time.Now().UTC().Format("20060102_150405"), os.Getpid()%10000), "_")
}

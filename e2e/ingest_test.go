package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/coder/websocket"
	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/internal/app"
	"github.com/sluicehq/sluice/internal/testenv"
	"github.com/sluicehq/sluice/pipeline"
)

const (
	devices          = 50
	recordsPerDevice = 2000
)

// TestIngestToKafkaAndClickHouse is the core promise: 50 devices push
// 100,000 records over WebSocket, a WASM transform compiled from source
// enriches them, and every one of them is acknowledged, in Kafka once and
// in ClickHouse once, transformed.
func TestIngestToKafkaAndClickHouse(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	chAddr := testenv.ClickHouseAddr(t)
	module := testenv.BuildGoGuest(t, "enrich")
	topic := testenv.Name("e2e_telemetry")
	table := testenv.Name("e2e_telemetry")
	testenv.CreateTopic(t, brokers, topic, 4)
	ch := clickhouseConn(t, chAddr)
	createTable(t, ch, table)

	dir := t.TempDir()
	yaml := fmt.Sprintf(`
pipelines:
  ingest:
    source:
      websocket: { listen: 127.0.0.1:0, path: /ingest }
    transforms:
      - wasm: { module: %s, config: { site: lab-1 } }
    sinks:
      - kafka: { brokers: [%s], topic: %s, key: "{{device_id}}" }
    dead_letter:
      file: { path: dead.jsonl }
  store:
    source:
      kafka: { brokers: [%s], topic: %s, group: %s }
    sinks:
      - clickhouse:
          addr: %s
          table: %s
          columns: { raw: "$" }
    dead_letter:
      file: { path: dead-store.jsonl }
`, module, brokers[0], topic, brokers[0], topic, topic+"_store", chAddr, table)
	cfgPath := filepath.Join(dir, "pipeline.yaml")
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	file, err := pipeline.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr := make(chan string, 1)
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	go func() {
		done <- app.Serve(ctx, file, log, func(s *pipeline.Servers) { addr <- s.Addr("127.0.0.1:0").String() })
	}()
	var url string
	select {
	case a := <-addr:
		url = "ws://" + a + "/ingest"
	case err := <-done:
		t.Fatalf("sluice did not start: %v", err)
	}

	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, devices)
	for d := range devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Even devices send one record per frame, odd ones 50 per frame.
			perFrame := 1 + (d%2)*49
			if err := pushDevice(ctx, url, fmt.Sprintf("dev-%03d", d), recordsPerDevice, perFrame); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	total := devices * recordsPerDevice
	t.Logf("%d records pushed and acknowledged in %v (%.0f records/s)", total, time.Since(start), float64(total)/time.Since(start).Seconds())

	checkKafka(t, brokers, topic, total)
	checkClickHouse(t, ch, table, total)

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("sluice stopped with: %v", err)
	}
	for _, f := range []string{"dead.jsonl", "dead-store.jsonl"} {
		if b, err := os.ReadFile(filepath.Join(dir, f)); err == nil && len(b) > 0 {
			t.Fatalf("%s is not empty:\n%s", f, b)
		}
	}
}

// pushDevice sends n records without waiting for acks (the server's window
// bounds them) and returns once all are acknowledged.
func pushDevice(ctx context.Context, url, device string, n, perFrame int) error {
	c, _, err := websocket.Dial(ctx, url+"?device_id="+device, nil)
	if err != nil {
		return fmt.Errorf("%s: dial: %w", device, err)
	}
	defer c.CloseNow()
	sendErr := make(chan error, 1)
	go func() {
		var frame []byte
		for seq := 1; seq <= n; seq++ {
			frame = fmt.Appendf(frame, `{"seq":%d,"ts":"2026-11-26T10:%02d:%02dZ","temp":%g,"note":"r%d"}`, seq, seq/60%60, seq%60, float64(seq%40-5)+0.5, seq)
			if seq%perFrame == 0 || seq == n {
				if err := c.Write(ctx, websocket.MessageText, frame); err != nil {
					sendErr <- err
					return
				}
				frame = frame[:0]
			} else {
				frame = append(frame, '\n')
			}
		}
		sendErr <- nil
	}()
	readCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	for {
		_, data, err := c.Read(readCtx)
		if err != nil {
			return fmt.Errorf("%s: waiting for acks: %w", device, err)
		}
		var reply struct {
			Ack   int    `json:"ack"`
			Nack  int    `json:"nack"`
			Error string `json:"error"`
		}
		if err := json.Unmarshal(data, &reply); err != nil {
			return fmt.Errorf("%s: bad reply %s", device, data)
		}
		if reply.Nack > 0 {
			return fmt.Errorf("%s: record %d nacked: %s", device, reply.Nack, reply.Error)
		}
		if reply.Ack == n {
			if err := <-sendErr; err != nil {
				return fmt.Errorf("%s: send: %w", device, err)
			}
			c.Close(websocket.StatusNormalClosure, "")
			return nil
		}
	}
}

type enriched struct {
	DeviceID string  `json:"device_id"`
	Seq      int     `json:"seq"`
	Temp     float64 `json:"temp"`
	TempF    float64 `json:"temp_f"`
	Site     string  `json:"site"`
	Note     string  `json:"note"`
}

// check verifies one output record against what its device sent.
func (e enriched) check() error {
	if e.Site != "lab-1" {
		return fmt.Errorf("site %q, want lab-1", e.Site)
	}
	wantTemp := float64(e.Seq%40-5) + 0.5
	if e.Temp != wantTemp || math.Abs(e.TempF-(wantTemp*9/5+32)) > 1e-9 {
		return fmt.Errorf("temp %v temp_f %v, want %v and %v", e.Temp, e.TempF, wantTemp, wantTemp*9/5+32)
	}
	if e.Note != fmt.Sprintf("r%d", e.Seq) {
		return fmt.Errorf("note %q", e.Note)
	}
	return nil
}

func checkKafka(t *testing.T, brokers []string, topic string, total int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(brokers...)}
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	count := 0
	for _, p := range md.Topics[0].Partitions {
		offs, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: {kafka.LastOffsetOf(p.ID)}}})
		if err != nil {
			t.Fatal(err)
		}
		end := offs.Topics[topic][0].LastOffset
		if end == 0 {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: p.ID, MaxWait: 100 * time.Millisecond})
		for {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				t.Fatalf("partition %d: %v", p.ID, err)
			}
			var e enriched
			if err := json.Unmarshal(m.Value, &e); err != nil {
				t.Fatalf("kafka record %s: %v", m.Value, err)
			}
			if err := e.check(); err != nil {
				t.Fatalf("kafka record %s: %v", m.Value, err)
			}
			if string(m.Key) != e.DeviceID {
				t.Fatalf("kafka key %q, want the device id %q", m.Key, e.DeviceID)
			}
			id := fmt.Sprintf("%s/%d", e.DeviceID, e.Seq)
			if seen[id] {
				t.Fatalf("kafka: duplicate record %s", id)
			}
			seen[id] = true
			count++
			if m.Offset == end-1 {
				break
			}
		}
		r.Close()
	}
	if count != total {
		t.Fatalf("kafka: %d records, want %d", count, total)
	}
	t.Logf("kafka: %d distinct records, all enriched", count)
}

func clickhouseConn(t *testing.T, addr string) clickhouse.Conn {
	t.Helper()
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}, Protocol: clickhouse.Native})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func createTable(t *testing.T, ch clickhouse.Conn, table string) {
	t.Helper()
	ctx := context.Background()
	err := ch.Exec(ctx, `CREATE TABLE `+table+` (
		device_id String, seq UInt64, ts DateTime, temp Float64, temp_f Float64,
		site String, note String, raw String
	) ENGINE = ReplacingMergeTree() ORDER BY (device_id, seq)`)
	if err != nil {
		t.Fatalf("create table: %v", err)
	}
	t.Cleanup(func() { _ = ch.Exec(context.Background(), "DROP TABLE IF EXISTS "+table) })
}

func checkClickHouse(t *testing.T, ch clickhouse.Conn, table string, total int) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(2 * time.Minute)
	var rows uint64
	for {
		if err := ch.QueryRow(ctx, "SELECT count() FROM "+table).Scan(&rows); err != nil {
			t.Fatal(err)
		}
		if rows >= uint64(total) || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	var distinct, good uint64
	if err := ch.QueryRow(ctx, "SELECT count() FROM (SELECT device_id, seq FROM "+table+" GROUP BY device_id, seq)").Scan(&distinct); err != nil {
		t.Fatal(err)
	}
	q := "SELECT count() FROM " + table + " WHERE site = 'lab-1' AND temp = toInt64(seq % 40) - 5 + 0.5 AND abs(temp_f - (temp * 9 / 5 + 32)) < 1e-9 AND note = concat('r', toString(seq)) AND raw LIKE '{%'"
	if err := ch.QueryRow(ctx, q).Scan(&good); err != nil {
		t.Fatal(err)
	}
	if rows != uint64(total) || distinct != uint64(total) || good != uint64(total) {
		t.Fatalf("clickhouse: %d rows, %d distinct, %d matching the transform; want %d of each", rows, distinct, good, total)
	}
	// A sample row's raw column holds the transformed record as sent.
	var raw string
	if err := ch.QueryRow(ctx, "SELECT raw FROM "+table+" WHERE device_id = 'dev-007' AND seq = 7").Scan(&raw); err != nil {
		t.Fatal(err)
	}
	var e enriched
	if err := json.Unmarshal([]byte(raw), &e); err != nil || e.check() != nil || !strings.Contains(raw, `"device_id":"dev-007"`) {
		t.Fatalf("clickhouse raw %s: %v %v", raw, err, e.check())
	}
	t.Logf("clickhouse: %d rows, all distinct and transformed", rows)
}

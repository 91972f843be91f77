package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/segmentio/kafka-go"
	"github.com/tidwall/gjson"

	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/runtime/wasm"
)

// Leg is the result of one raw leg or one in-process measurement.
type Leg struct {
	Name   string `json:"name"`
	Detail string `json:"detail"`
	// Ratio marks the legs that enter the glue and overhead ratios.
	Ratio   bool    `json:"in_ratios"`
	Records int64   `json:"records"`
	Seconds float64 `json:"seconds"`
	Rate    float64 `json:"records_per_s"`
	// CPUPerM is this (client) process's CPU seconds per million records.
	CPUPerM float64 `json:"client_cpu_s_per_m"`
	// KafkaPerM and CHPerM are the broker's and the ClickHouse server's.
	KafkaPerM float64 `json:"kafka_cpu_s_per_m,omitempty"`
	CHPerM    float64 `json:"clickhouse_cpu_s_per_m,omitempty"`
	// PeerPerM is the CPU of the child process on the other end (the
	// WebSocket sender), not part of the leg's cost.
	PeerPerM   float64 `json:"peer_cpu_s_per_m,omitempty"`
	AllocsPerR float64 `json:"allocs_per_record"`
	BytesPerR  float64 `json:"bytes_per_record"`
	OthersCore float64 `json:"other_load_cores"`
	Load       float64 `json:"loadavg"`
	Err        string  `json:"error,omitempty"`
}

// NsPerRecord is the client CPU per record in nanoseconds.
func (l Leg) NsPerRecord() float64 { return l.CPUPerM * 1e3 }

type legRun struct {
	records int64
	elapsed time.Duration // active time; 0 means the whole measured call
}

// measure runs f and accounts its CPU, allocations and rate.
func measure(m *Meter, name, detail string, ratio bool, f func() (legRun, error)) Leg {
	runtime.GC()
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	s0 := m.Snap()
	r, err := f()
	s1 := m.Snap()
	runtime.ReadMemStats(&ms1)
	d := s1.Sub(s0)
	l := Leg{Name: name, Detail: detail, Ratio: ratio, Records: r.records, Load: d.Load}
	if err != nil {
		l.Err = err.Error()
	}
	el := r.elapsed
	if el <= 0 {
		el = d.Wall
	}
	l.Seconds = el.Seconds()
	if r.records > 0 && el > 0 {
		n := r.records
		l.Rate = float64(n) / el.Seconds()
		l.CPUPerM = PerMillion(d.Self, n)
		l.KafkaPerM = PerMillion(d.Procs["kafka"], n)
		l.CHPerM = PerMillion(d.Procs["clickhouse"], n)
		l.PeerPerM = PerMillion(d.Children, n)
		l.AllocsPerR = float64(ms1.Mallocs-ms0.Mallocs) / float64(n)
		l.BytesPerR = float64(ms1.TotalAlloc-ms0.TotalAlloc) / float64(n)
	}
	if d.Wall > 0 {
		l.OthersCore = d.Others.Seconds() / d.Wall.Seconds()
	}
	return l
}

// parallel calls fn on workers goroutines until d has passed; fn returns
// how many records it handled.
func parallel(workers int, d time.Duration, fn func(w, k int) int) legRun {
	var total atomic.Int64
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, k := 0, w*7919
			for time.Now().Before(deadline) {
				for range 16 {
					n += fn(w, k)
					k++
				}
			}
			total.Add(int64(n))
		}()
	}
	wg.Wait()
	return legRun{records: total.Load(), elapsed: time.Since(start)}
}

// ---------------------------------------------------------------- JSON

// JSONLegs measures encoding/json decode+encode of the record (into its
// struct), the same into map[string]any, and gjson's validation and field
// lookups (what Sluice's source does per record).
func JSONLegs(m *Meter, corpus [][]byte, d time.Duration) []Leg {
	workers := runtime.GOMAXPROCS(0)
	var out []Leg
	out = append(out, measure(m, "json decode+encode", fmt.Sprintf("encoding/json Unmarshal into the record struct + Marshal, %d goroutines", workers), true, func() (legRun, error) {
		var bad atomic.Int64
		r := parallel(workers, d, func(_, k int) int {
			var rd Reading
			i := k % len(corpus)
			if err := json.Unmarshal(corpus[i], &rd); err != nil {
				bad.Add(1)
			}
			if _, err := json.Marshal(&rd); err != nil {
				bad.Add(1)
			}
			return 1
		})
		if bad.Load() > 0 {
			return r, fmt.Errorf("%d records failed", bad.Load())
		}
		return r, nil
	}))
	out = append(out, measure(m, "json decode+encode (map)", "encoding/json into map[string]any + Marshal (a generic transform)", false, func() (legRun, error) {
		return parallel(workers, d, func(_, k int) int {
			var v map[string]any
			i := k % len(corpus)
			_ = json.Unmarshal(corpus[i], &v)
			_, _ = json.Marshal(v)
			return 1
		}), nil
	}))
	out = append(out, measure(m, "json gjson validate+2 fields", "gjson.ValidBytes + GetBytes(device_id), GetBytes(seq): Sluice's per-record parse", false, func() (legRun, error) {
		var sink atomic.Int64
		r := parallel(workers, d, func(_, k int) int {
			b := corpus[k%len(corpus)]
			if gjson.ValidBytes(b) {
				sink.Add(int64(len(gjson.GetBytes(b, "device_id").Str)) + gjson.GetBytes(b, "seq").Int()&1)
			}
			return 1
		})
		return r, nil
	}))
	return out
}

// ---------------------------------------------------------------- WASM

// WASMCase is one transform measured at one batch size.
type WASMCase struct {
	Transform string  `json:"transform"` // identity, enrich
	Batch     int     `json:"batch"`
	WASMNs    float64 `json:"wasm_cpu_ns_per_record"`
	NativeNs  float64 `json:"native_cpu_ns_per_record"`
	WASMRate  float64 `json:"wasm_records_per_s"`
	Ratio     float64 `json:"wasm_over_native"`
	// TaxNs is WASM minus native CPU per record: the cost of the ABI and
	// the sandbox.
	TaxNs float64 `json:"tax_ns_per_record"`
	// BareNs is the same module on a bare wazero host (RawWASMLeg): no
	// instrumentation, no output checks.
	BareNs float64 `json:"bare_wazero_ns_per_record,omitempty"`
}

func newBatch(corpus [][]byte, n, off int) pipeline.Batch {
	b := make(pipeline.Batch, n)
	for i := range b {
		v := corpus[(off+i)%len(corpus)]
		b[i] = pipeline.Record{Value: v, ID: pipeline.ID{Device: "raw-0001", Seq: uint64(off + i)}}
	}
	return b
}

// NativeIdentity copies each value, as a Go transform that returns new
// records would.
func NativeIdentity(in pipeline.Batch) pipeline.Batch {
	out := make(pipeline.Batch, len(in))
	for i := range in {
		out[i] = in[i]
		out[i].Value = append([]byte(nil), in[i].Value...)
	}
	return out
}

// NativeEnrich is the enrich example in native Go, with the same
// byte-level approach as the guest SDK (find fields, append the edits).
func NativeEnrich(in pipeline.Batch) pipeline.Batch {
	out := make(pipeline.Batch, len(in))
	for i := range in {
		v := in[i].Value
		out[i] = in[i]
		end := bytes.LastIndexByte(v, '}')
		nv := make([]byte, 0, len(v)+40)
		nv = append(nv, v[:end]...)
		if !gjson.GetBytes(v, "site").Exists() {
			nv = append(nv, `,"site":"lab-1"`...)
		}
		if t := gjson.GetBytes(v, "temp"); t.Type == gjson.Number {
			nv = append(nv, `,"temp_f":`...)
			nv = strconv.AppendFloat(nv, t.Num*9/5+32, 'f', -1, 64)
		}
		out[i].Value = append(nv, '}')
	}
	return out
}

// WASMModule is a guest to measure.
type WASMModule struct {
	// Name is how the results call it: "identity", "passthrough",
	// "enrich", "enrich (Rust)"...
	Name string
	// Kind is the transform it implements ("identity" or "enrich"): the
	// native Go it is compared with.
	Kind    string
	Path    string
	Desc    string
	Batches []int
	// NoValidate turns runtime/wasm's validate_output off.
	NoValidate bool
}

// WASMLegs measures modules through runtime/wasm against the same
// transform in native Go, at their batch sizes, on GOMAXPROCS goroutines
// (one instance each). The Go guest identity at batch 256 (runtime/wasm's
// default batch_size) is the raw leg of the ratios.
func WASMLegs(ctx context.Context, m *Meter, corpus [][]byte, mods []WASMModule, d time.Duration) ([]Leg, []WASMCase, error) {
	workers := runtime.GOMAXPROCS(0)
	env := pipeline.Env{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	natives := map[string]func(pipeline.Batch) pipeline.Batch{"identity": NativeIdentity, "enrich": NativeEnrich}
	nativeDone := map[string]Leg{}
	var legs []Leg
	var cases []WASMCase
	for _, mod := range mods {
		if mod.Path == "" {
			continue
		}
		var config map[string]any
		if mod.Kind == "enrich" {
			config = map[string]any{"site": "lab-1"}
		}
		native := natives[mod.Kind]
		// One call per batch, up to the largest batch measured.
		cfg := wasm.Config{Module: mod.Path, Config: config, Instances: workers, BatchSize: slices.Max(mod.Batches)}
		if mod.NoValidate {
			cfg.ValidateOutput = new(bool)
		}
		t, err := wasm.New(ctx, cfg, env)
		if err != nil {
			return legs, cases, fmt.Errorf("wasm %s: %w", mod.Path, err)
		}
		for _, n := range mod.Batches {
			batches := make([]pipeline.Batch, workers)
			for w := range batches {
				batches[w] = newBatch(corpus, n, w*1000)
			}
			if _, _, err := t.Process(ctx, batches[0]); err != nil { // warm up
				_ = t.Close(ctx)
				return legs, cases, err
			}
			var perr atomic.Pointer[error]
			wl := measure(m, "", fmt.Sprintf("runtime/wasm Transform.Process, %s, %d goroutines", mod.Desc, workers),
				mod.Name == "identity" && n == 256, func() (legRun, error) {
					r := parallel(workers, d, func(w, _ int) int {
						out, failed, err := t.Process(ctx, batches[w])
						if err != nil || len(failed) > 0 || len(out) != n {
							e := fmt.Errorf("Process: %d out, %d failed, %v", len(out), len(failed), err)
							perr.Store(&e)
						}
						return n
					})
					if p := perr.Load(); p != nil {
						return r, *p
					}
					return r, nil
				})
			wl.Name = fmt.Sprintf("wasm %s (batch %d)", mod.Name, n)
			legs = append(legs, wl)
			key := fmt.Sprintf("%s/%d", mod.Kind, n)
			nl, ok := nativeDone[key]
			if !ok {
				nl = measure(m, "", "the same transform in native Go (a copy of each value; enrich: gjson + append)", false, func() (legRun, error) {
					return parallel(workers, d, func(w, _ int) int { return len(native(batches[w])) }), nil
				})
				nl.Name = fmt.Sprintf("native %s (batch %d)", mod.Kind, n)
				nativeDone[key] = nl
				legs = append(legs, nl)
			}
			c := WASMCase{Transform: mod.Name, Batch: n, WASMNs: wl.NsPerRecord(), NativeNs: nl.NsPerRecord(), WASMRate: wl.Rate}
			if c.NativeNs > 0 {
				c.Ratio = c.WASMNs / c.NativeNs
			}
			c.TaxNs = c.WASMNs - c.NativeNs
			cases = append(cases, c)
		}
		_ = t.Close(ctx)
	}
	return legs, cases, nil
}

// ---------------------------------------------------------------- Kafka

func kafkaMessages(corpus [][]byte, off, n int) []kafka.Message {
	msgs := make([]kafka.Message, n)
	for i := range msgs {
		v := corpus[(off+i)%len(corpus)]
		dev := gjson.GetBytes(v, "device_id").Str
		seq := gjson.GetBytes(v, "seq").Raw
		msgs[i] = kafka.Message{Key: []byte(dev), Value: v,
			Headers: []kafka.Header{{Key: "sluice-id", Value: []byte(dev + "/" + seq + "/0")}}}
	}
	return msgs
}

// KafkaProduce writes records to topic with kafka-go's Writer configured
// as Sluice's sink configures it (RequireAll, keyed by device with
// murmur2, no compression, BatchTimeout 1µs), WriteMessages of batch
// messages with conc calls in flight, until d has passed or max records
// are written. Sluice's sink writes batches of up to 1000, one at a time.
func KafkaProduce(ctx context.Context, m *Meter, s *Services, topic string, corpus [][]byte, batch, conc int, d time.Duration, max int64) Leg {
	detail := fmt.Sprintf("kafka-go Writer, RequireAll, %d-message WriteMessages (Writer.BatchSize %d), %d in flight, key=device (murmur2), topic of 4 partitions", batch, batch, conc)
	return measure(m, fmt.Sprintf("kafka produce (%d×%d)", conc, batch), detail, false, func() (legRun, error) {
		w := &kafka.Writer{Addr: kafka.TCP(s.Brokers...), Topic: topic, Balancer: &kafka.Murmur2Balancer{},
			RequiredAcks: kafka.RequireAll, BatchSize: batch, BatchBytes: 1 << 20, BatchTimeout: time.Microsecond,
			MaxAttempts: 5, WriteTimeout: 10 * time.Second, ReadTimeout: 10 * time.Second}
		defer w.Close()
		msgs := make([][]kafka.Message, conc)
		for i := range msgs {
			msgs[i] = kafkaMessages(corpus, i*batch, batch)
		}
		// Warm up: connections, metadata.
		if err := w.WriteMessages(ctx, msgs[0]...); err != nil {
			return legRun{}, err
		}
		var total atomic.Int64
		var werr atomic.Pointer[error]
		start := time.Now()
		deadline := start.Add(d)
		var wg sync.WaitGroup
		for g := range conc {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(deadline) && total.Load() < max {
					if err := w.WriteMessages(ctx, msgs[g]...); err != nil {
						werr.Store(&err)
						return
					}
					total.Add(int64(batch))
				}
			}()
		}
		wg.Wait()
		r := legRun{records: total.Load(), elapsed: time.Since(start)}
		if p := werr.Load(); p != nil {
			return r, *p
		}
		return r, nil
	})
}

// KafkaConsume reads n records from topic with a consumer-group Reader
// configured as Sluice's source configures it (FetchMessage, no
// per-message commit; one commit at the end). The rate runs from the
// first record to the last (joining the group is not counted).
func KafkaConsume(ctx context.Context, m *Meter, s *Services, topic string, n int64) Leg {
	detail := "kafka-go Reader, consumer group, FetchMessage loop, min_bytes 1, max_wait 500ms, queue 1000"
	return measure(m, "kafka consume", detail, true, func() (legRun, error) {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: s.Brokers, GroupID: UniqueName("bench_raw_group"), GroupTopics: []string{topic},
			QueueCapacity: 1000, MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 500 * time.Millisecond, StartOffset: kafka.FirstOffset, CommitInterval: 0})
		defer r.Close()
		ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		var got int64
		var start time.Time
		last := map[int]kafka.Message{}
		for got < n {
			msg, err := r.FetchMessage(ctx)
			if err != nil {
				return legRun{records: got, elapsed: time.Since(start)}, fmt.Errorf("after %d of %d: %w", got, n, err)
			}
			if got == 0 {
				start = time.Now()
			}
			last[msg.Partition] = msg
			got++
		}
		el := time.Since(start)
		var commit []kafka.Message
		for _, msg := range last {
			commit = append(commit, msg)
		}
		_ = r.CommitMessages(ctx, commit...)
		return legRun{records: got, elapsed: el}, nil
	})
}

// ---------------------------------------------------------------- ClickHouse

// chColumns holds a batch of rows column by column.
type chColumns struct {
	device []string
	seq    []uint64
	part   []uint32
	ts     []time.Time
	kind   []string
	temp   []float64
	tempF  []float64
	hum    []float64
	press  []float64
	site   []string
	msg    []string
	raw    []string
}

func newCHColumns(rows []Reading, raws [][]byte) *chColumns {
	c := &chColumns{}
	for i, r := range rows {
		ts, _ := time.Parse(time.RFC3339Nano, r.TS)
		c.device = append(c.device, r.DeviceID)
		c.seq = append(c.seq, r.Seq)
		c.part = append(c.part, 0)
		c.ts = append(c.ts, ts)
		c.kind = append(c.kind, r.Kind)
		c.temp = append(c.temp, r.Temp)
		c.tempF = append(c.tempF, r.Temp*9/5+32)
		c.hum = append(c.hum, r.Humidity)
		c.press = append(c.press, r.Pressure)
		c.site = append(c.site, "lab-1")
		c.msg = append(c.msg, r.Msg)
		c.raw = append(c.raw, string(raws[i]))
	}
	return c
}

func (c *chColumns) values() []any {
	return []any{c.device, c.seq, c.part, c.ts, c.kind, c.temp, c.tempF, c.hum, c.press, c.site, c.msg, c.raw}
}

// ClickHouseInsert inserts rows shaped like the default pipeline's table
// with clickhouse-go (native protocol, LZ4, column-wise Append, one
// INSERT of batch rows at a time, as Sluice's sink does), until d has
// passed or max rows are inserted. The rows are decoded beforehand: the
// JSON leg accounts for decoding.
func ClickHouseInsert(ctx context.Context, m *Meter, s *Services, table string, corpus [][]byte, batch int, d time.Duration, max int64) Leg {
	detail := fmt.Sprintf("clickhouse-go v2 PrepareBatch + column Append + Send, %d rows per INSERT, LZ4, ReplacingMergeTree of 12 columns", batch)
	return measure(m, "clickhouse insert", detail, true, func() (legRun, error) {
		conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{s.ClickHouse}, Protocol: clickhouse.Native,
			Compression: &clickhouse.Compression{Method: clickhouse.CompressionLZ4}, MaxOpenConns: 1, ReadTimeout: time.Minute})
		if err != nil {
			return legRun{}, err
		}
		defer conn.Close()
		// Distinct rows: the corpus in batches, with seqs moved on each
		// round so that the table's key never repeats.
		var sets []*chColumns
		for off := 0; off+batch <= len(corpus); off += batch {
			rows, err := Decode(corpus[off : off+batch])
			if err != nil {
				return legRun{}, err
			}
			sets = append(sets, newCHColumns(rows, corpus[off:off+batch]))
		}
		if len(sets) == 0 {
			return legRun{}, fmt.Errorf("corpus of %d records is smaller than a batch of %d", len(corpus), batch)
		}
		round := 0
		q := "INSERT INTO " + table + " (device_id, seq, part, ts, kind, temp, temp_f, humidity, pressure, site, msg, raw)"
		insert := func() error {
			set := sets[round%len(sets)]
			if round > 0 && round%len(sets) == 0 {
				for _, c := range sets {
					for i := range c.seq {
						c.seq[i] += uint64(len(corpus))
					}
				}
			}
			round++
			cols := set.values()
			b, err := conn.PrepareBatch(ctx, q)
			if err != nil {
				return err
			}
			for i, v := range cols {
				if err := b.Column(i).Append(v); err != nil {
					_ = b.Abort()
					return fmt.Errorf("column %d: %w", i, err)
				}
			}
			return b.Send()
		}
		if err := insert(); err != nil { // warm up
			return legRun{}, err
		}
		var n int64
		start := time.Now()
		for time.Since(start) < d && n < max {
			if err := insert(); err != nil {
				return legRun{records: n, elapsed: time.Since(start)}, err
			}
			n += int64(batch)
		}
		return legRun{records: n, elapsed: time.Since(start)}, nil
	})
}

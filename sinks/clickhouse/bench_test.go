package clickhouse

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/tidwall/gjson"

	"github.com/sluicehq/sluice/internal/cputime"
	"github.com/sluicehq/sluice/pipeline"
)

const benchCols = "device_id String, seq UInt64, ts DateTime, temp Float64, humidity Float64, pressure Float64, msg String, raw String"

var benchDescs = []colDesc{
	{"device_id", "String", ""}, {"seq", "UInt64", ""}, {"ts", "DateTime", ""}, {"temp", "Float64", ""},
	{"humidity", "Float64", ""}, {"pressure", "Float64", ""}, {"msg", "String", ""}, {"raw", "String", ""},
}

// benchRecords makes n records of 200 bytes each.
func benchRecords(n int) pipeline.Batch {
	b := make(pipeline.Batch, n)
	for i := range b {
		js := fmt.Sprintf(`{"device_id":"dev-%05d","seq":%d,"ts":%d,"temp":%.2f,"humidity":%.1f,"pressure":%.2f,"msg":"`,
			i%1000, i, 1714564800+i, 15+float64(i%2000)/100, 30+float64(i%600)/10, 990+float64(i%4000)/100)
		js += strings.Repeat("x", 200-len(js)-2) + `"}`
		b[i] = pipeline.Record{Value: []byte(js)}
	}
	return b
}

// BenchmarkInsert writes 100k 200-byte records through the sink into the
// real ClickHouse, in batches of batch_size (10000).
func BenchmarkInsert(b *testing.B) {
	for _, method := range []string{"lz4", "none"} {
		b.Run("compression="+method, func(b *testing.B) { benchInsert(b, method) })
	}
}

// benchInsert inserts 100k records per op with the given compression, and
// reports rows/s and the CPU time of this process (the sink's side) per
// row.
func benchInsert(b *testing.B, compression string) {
	srv := newServer(b)
	table := srv.createTable("bench_"+compression, benchCols, "MergeTree() ORDER BY (device_id, seq)")
	sink := srv.newSink(Config{Table: table, Compression: compression, Columns: map[string]string{"raw": "$"}})
	const total = 100_000
	recs := benchRecords(total)
	if len(recs[0].Value) != 200 {
		b.Fatalf("record is %d bytes, want 200", len(recs[0].Value))
	}
	batch, _ := sink.BatchLimits()
	ctx := context.Background()
	b.SetBytes(total * 200)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cputime.Self()
	for i := 0; i < b.N; i++ {
		for off := 0; off < total; off += batch {
			if err := sink.Write(ctx, recs[off:min(off+batch, total)]); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(total*b.N)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64((cputime.Self()-cpu0).Nanoseconds())/float64(total*b.N), "cpu-ns/row")
	if n := srv.count("SELECT count() FROM default." + table); n != uint64(total*b.N) {
		b.Fatalf("count: got %d, want %d", n, total*b.N)
	}
}

// BenchmarkConvert is the sink's CPU work without the server: 100k records
// into columns.
func BenchmarkConvert(b *testing.B) {
	t, err := newTable("default", "bench", benchDescs, map[string]string{"raw": "$"}, true)
	if err != nil {
		b.Fatal(err)
	}
	const total = 100_000
	recs := benchRecords(total)
	b.SetBytes(total * 200)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for off := 0; off < total; off += DefaultBatchSize {
			t.reset()
			for j := off; j < min(off+DefaultBatchSize, total); j++ {
				if err := t.addRecord(&recs[j]); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	b.ReportMetric(float64(total*b.N)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkExtract compares the one pass over the top-level fields that the
// sink uses with gjson.GetManyBytes, one scan per column.
func BenchmarkExtract(b *testing.B) {
	recs := benchRecords(1000)
	paths := []string{"device_id", "seq", "ts", "temp", "humidity", "pressure", "msg"}
	t, err := newTable("default", "bench", benchDescs[:7], nil, true)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("foreach", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			js := unsafeString(recs[i%len(recs)].Value)
			clear(t.slots)
			t.found = 0
			gjson.Parse(js).ForEach(t.visitFn)
		}
	})
	b.Run("getmany", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			_ = gjson.GetManyBytes(recs[i%len(recs)].Value, paths...)
		}
	})
}

// BenchmarkClientAppend compares the two ways to fill a clickhouse-go batch
// with the same 100k converted rows: batch.Append per row, and
// batch.Column(i).Append of a slice per column (what the sink does). The
// "fill" variants time only the filling (the batch is aborted, not sent),
// which isolates the client's CPU cost from the server's.
func BenchmarkClientAppend(b *testing.B) {
	srv := newServer(b)
	table := srv.createTable("benchclient", benchCols, "MergeTree() ORDER BY (device_id, seq)")
	const total = 100_000
	recs := benchRecords(total)
	type row struct {
		dev      string
		seq      uint64
		ts       time.Time
		t, h, p  float64
		msg, raw string
	}
	rows := make([]row, total)
	for i, r := range recs {
		g := gjson.ParseBytes(r.Value)
		rows[i] = row{g.Get("device_id").Str, g.Get("seq").Uint(), time.Unix(g.Get("ts").Int(), 0),
			g.Get("temp").Num, g.Get("humidity").Num, g.Get("pressure").Num, g.Get("msg").Str, string(r.Value)}
	}
	insert := "INSERT INTO default." + table + " (device_id, seq, ts, temp, humidity, pressure, msg, raw)"
	ctx := context.Background()

	byRow := func(batch driver.Batch, part []row) error {
		for _, r := range part {
			if err := batch.Append(r.dev, r.seq, r.ts, r.t, r.h, r.p, r.msg, r.raw); err != nil {
				return err
			}
		}
		return nil
	}
	var (
		dev, msg, raw []string
		seq           []uint64
		ts            []time.Time
		t, h, p       []float64
	)
	byColumn := func(batch driver.Batch, part []row) error {
		dev, seq, ts, t, h, p, msg, raw = dev[:0], seq[:0], ts[:0], t[:0], h[:0], p[:0], msg[:0], raw[:0]
		for _, r := range part {
			dev, seq, ts = append(dev, r.dev), append(seq, r.seq), append(ts, r.ts)
			t, h, p = append(t, r.t), append(h, r.h), append(p, r.p)
			msg, raw = append(msg, r.msg), append(raw, r.raw)
		}
		for i, v := range []any{dev, seq, ts, t, h, p, msg, raw} {
			if err := batch.Column(i).Append(v); err != nil {
				return err
			}
		}
		return nil
	}
	for _, bm := range []struct {
		name string
		fill func(driver.Batch, []row) error
		send bool
	}{
		{"row", byRow, true},
		{"column", byColumn, true},
		{"row/fill", byRow, false},
		{"column/fill", byColumn, false},
	} {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				for off := 0; off < total; off += DefaultBatchSize {
					if !bm.send {
						b.StopTimer()
					}
					batch, err := srv.conn.PrepareBatch(ctx, insert)
					if err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					if err := bm.fill(batch, rows[off:min(off+DefaultBatchSize, total)]); err != nil {
						b.Fatal(err)
					}
					if bm.send {
						err = batch.Send()
					} else {
						b.StopTimer()
						err = batch.Abort()
						b.StartTimer()
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(total*b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

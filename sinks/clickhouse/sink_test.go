package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sluicehq/sluice/internal/testenv"
	"github.com/sluicehq/sluice/pipeline"
)

// server is a direct connection for setting up and checking tables.
type server struct {
	t    testing.TB
	addr string
	conn driver.Conn
}

func newServer(t testing.TB) *server {
	t.Helper()
	addr := testenv.ClickHouseAddr(t)
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}, Protocol: clickhouse.Native, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("open %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return &server{t: t, addr: addr, conn: conn}
}

// with returns the server for the (sub)test t.
func (s *server) with(t testing.TB) *server {
	c := *s
	c.t = t
	return &c
}

func (s *server) exec(q string) {
	s.t.Helper()
	ctx := clickhouse.Context(context.Background(), clickhouse.WithSettings(s.settings(q)))
	if err := s.conn.Exec(ctx, q); err != nil {
		s.t.Fatalf("%s: %v", q, err)
	}
}

// settings allows LowCardinality on 18.x, where it is experimental.
func (s *server) settings(q string) clickhouse.Settings {
	v, err := s.conn.ServerVersion()
	if err == nil && v.Version.Major < 19 && strings.Contains(q, "LowCardinality") {
		return clickhouse.Settings{"allow_experimental_low_cardinality_type": 1}
	}
	return nil
}

// createTable creates a table with the given column list (and engine
// clauses, default MergeTree ordered by the first column) under a unique
// name, dropped when the test ends.
func (s *server) createTable(prefix, cols, engine string) string {
	s.t.Helper()
	name := testenv.Name(prefix)
	if engine == "" {
		first := strings.Fields(cols)[0]
		engine = "MergeTree() ORDER BY " + first
	}
	s.exec(fmt.Sprintf("CREATE TABLE default.%s (%s) ENGINE = %s", name, cols, engine))
	s.dropLater(name)
	return name
}

func (s *server) dropLater(name string) {
	s.t.Cleanup(func() {
		_ = s.conn.Exec(context.Background(), "DROP TABLE IF EXISTS default."+name)
	})
}

// strings runs a query whose one column is a String and returns the rows.
func (s *server) strings(q string) []string {
	s.t.Helper()
	rows, err := s.conn.Query(context.Background(), q)
	if err != nil {
		s.t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			s.t.Fatalf("%s: scan: %v", q, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		s.t.Fatalf("%s: %v", q, err)
	}
	return out
}

func (s *server) count(q string) uint64 {
	s.t.Helper()
	var n uint64
	if err := s.conn.QueryRow(context.Background(), q).Scan(&n); err != nil {
		s.t.Fatalf("%s: %v", q, err)
	}
	return n
}

func (s *server) hasType(name string) bool {
	return s.count(fmt.Sprintf("SELECT count() FROM system.data_type_families WHERE name = '%s'", name)) > 0
}

func (s *server) newSink(cfg Config) *Sink {
	s.t.Helper()
	if len(cfg.Addr) == 0 {
		cfg.Addr = Addrs{s.addr}
	}
	sink, err := New(context.Background(), cfg, pipeline.Env{})
	if err != nil {
		s.t.Fatalf("New: %v", err)
	}
	s.t.Cleanup(func() { sink.Close(context.Background()) })
	return sink
}

func recs(values ...string) pipeline.Batch {
	b := make(pipeline.Batch, len(values))
	for i, v := range values {
		b[i] = pipeline.Record{Value: []byte(v)}
	}
	return b
}

func write(t *testing.T, s *Sink, b pipeline.Batch) {
	t.Helper()
	if err := s.Write(context.Background(), b); err != nil {
		t.Fatalf("Write: %v", err)
	}
}

func equal(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("%s:\ngot  %q\nwant %q", what, got, want)
	}
}

func TestAutoMapping(t *testing.T) {
	srv := newServer(t)
	table := srv.createTable("auto", "device_id String, seq UInt64, ts DateTime, temp Float64, tags Array(String), "+
		"note Nullable(String), level UInt8, k Int8 DEFAULT 7, m UInt8 MATERIALIZED 3", "")
	sink := srv.newSink(Config{Table: table})
	write(t, sink, recs(
		`{"device_id": "d1", "seq": 1, "ts": "2024-05-01T12:00:00Z", "temp": 21.5, "tags": ["a", "b"], "note": "hi", "level": true, "extra": {"x": 1}}`,
		`{"seq": 2, "ts": 1714564801, "temp": -3, "device_id": "d2", "k": 99}`,
		`{"seq": 3, "device_id": "d\u00e9", "note": null, "seq": 4}`,
	))
	// toUnixTimestamp: 18.16 shows DateTime 0 as 0000-00-00 00:00:00.
	got := srv.strings("SELECT toString(tuple(device_id, seq, toUnixTimestamp(ts), temp, tags, note, level, k, m)) FROM default." + table + " ORDER BY seq")
	equal(t, "rows", got, []string{
		`('d1',1,1714564800,21.5,['a','b'],'hi',1,7,3)`,
		`('d2',2,1714564801,-3,[],NULL,0,7,3)`,
		`('dé',3,0,0,[],NULL,0,7,3)`,
	})
}

// Every compression method inserts the same rows (blocks of a few rows and
// of many, where compression changes the bytes sent).
func TestCompression(t *testing.T) {
	srv := newServer(t)
	for _, method := range []string{"lz4", "zstd", "none"} {
		t.Run(method, func(t *testing.T) {
			table := srv.createTable("comp_"+method, "device_id String, seq UInt64, raw String", "")
			sink := srv.newSink(Config{Table: table, Compression: method, Columns: map[string]string{"raw": "$"}})
			var values []string
			for i := range 5000 {
				values = append(values, fmt.Sprintf(`{"device_id":"d%d","seq":%d,"msg":"%s"}`, i%7, i, strings.Repeat("x", i%50)))
			}
			write(t, sink, recs(values[:3]...))
			write(t, sink, recs(values[3:]...))
			q := "SELECT count(), sum(seq), sum(length(raw)) FROM default." + table
			var n, sum, bytes uint64
			if err := srv.conn.QueryRow(context.Background(), q).Scan(&n, &sum, &bytes); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
			var wantBytes uint64
			for _, v := range values {
				wantBytes += uint64(len(v))
			}
			if n != 5000 || sum != 4999*5000/2 || bytes != wantBytes {
				t.Fatalf("got %d rows, sum(seq) %d, %d bytes of raw; want 5000, %d, %d", n, sum, bytes, 4999*5000/2, wantBytes)
			}
		})
	}
}

func TestExplicitMapping(t *testing.T) {
	srv := newServer(t)
	table := srv.createTable("explicit", "device String, seq UInt64, part UInt32, recv DateTime, key String, dest String, "+
		"temp Float64, first_tag String, raw String, id Int64, name String, `a.b` String", "")
	sink := srv.newSink(Config{Table: table, Columns: map[string]string{
		"device":    "@device",
		"seq":       "@seq",
		"part":      "@part",
		"recv":      "@received",
		"key":       "@key",
		"dest":      "@dest",
		"temp":      "sensors.temp",
		"first_tag": "tags.0",
		"raw":       "$",
		"id":        "meta.id",
		"name":      "device_name",
	}})
	raw := `{"sensors": {"temp": 20.25}, "tags": ["x", "y"], "meta": {"id": "-12"}, "device_name": "kitchen", "a.b": "literal"}`
	write(t, sink, pipeline.Batch{{
		Value:    []byte(raw),
		Key:      []byte("k1"),
		Dest:     table,
		ID:       pipeline.ID{Device: "dev-7", Seq: 1<<64 - 1, Part: 2},
		Received: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC),
	}})
	got := srv.strings("SELECT toString(tuple(device, seq, part, toString(recv, 'UTC'), key, dest, temp, first_tag, id, name, `a.b`)) FROM default." + table)
	equal(t, "row", got, []string{
		fmt.Sprintf(`('dev-7',18446744073709551615,2,'2024-05-01 12:00:00','k1','%s',20.25,'x',-12,'kitchen','literal')`, table),
	})
	equal(t, "raw", srv.strings("SELECT raw FROM default."+table), []string{raw})
}

// TestConversions inserts each JSON value into a column of each type on the
// real server and reads back what the server stored, or checks the exact
// per-record error.
func TestConversions(t *testing.T) {
	srv := newServer(t)
	type conv struct {
		json    string // "" leaves the field out
		want    string // toString(v) on the server
		wantErr string // the reason, after "value <json>: "
	}
	tests := []struct {
		name  string
		typ   string
		needs string // a type family the server must have
		expr  string // how to show v (default toString(v)); the same on 18.16 and current releases
		cases []conv
	}{
		{name: "String", typ: "String", cases: []conv{{`"a\tb"`, "a\tb", ""}, {`12.5`, "12.5", ""}, {`{"x":1}`, `{"x":1}`, ""}, {``, "", ""}}},
		{name: "FixedString", typ: "FixedString(3)", expr: "hex(v)", cases: []conv{{`"abc"`, "616263", ""}, {`"ab"`, "616200", ""}, {`"abcd"`, "", "4 bytes, longer than FixedString(3)"}}},
		{name: "Int8", typ: "Int8", cases: []conv{{`-128`, "-128", ""}, {`127`, "127", ""}, {`128`, "", "out of range for Int8"}, {`1.5`, "", "not an integer"}, {`true`, "1", ""}}},
		{name: "Int16", typ: "Int16", cases: []conv{{`-32768`, "-32768", ""}, {`40000`, "", "out of range for Int16"}}},
		{name: "Int32", typ: "Int32", cases: []conv{{`"-7"`, "-7", ""}, {`"x"`, "", "not an integer"}}},
		{name: "Int64", typ: "Int64", cases: []conv{{`-9223372036854775808`, "-9223372036854775808", ""}, {`9223372036854775808`, "", "out of range for Int64"}}},
		{name: "UInt8", typ: "UInt8", cases: []conv{{`255`, "255", ""}, {`false`, "0", ""}, {`-1`, "", "out of range for UInt8"}}},
		{name: "UInt16", typ: "UInt16", cases: []conv{{`65535`, "65535", ""}}},
		{name: "UInt32", typ: "UInt32", cases: []conv{{`4294967295`, "4294967295", ""}, {`4294967296`, "", "out of range for UInt32"}}},
		{name: "UInt64", typ: "UInt64", cases: []conv{{`18446744073709551615`, "18446744073709551615", ""}, {`"18446744073709551615"`, "18446744073709551615", ""}}},
		{name: "Float32", typ: "Float32", cases: []conv{{`1.5`, "1.5", ""}, {`1e39`, "", "out of range for Float32"}}},
		{name: "Float64", typ: "Float64", cases: []conv{{`-1.25e-3`, "-0.00125", ""}, {`"nan"`, "nan", ""}, {`[1]`, "", "not a number"}}},
		{name: "Date", typ: "Date", cases: []conv{{`"2024-02-29"`, "2024-02-29", ""}, {`1709251199`, "2024-02-29", ""}, {`"1969-12-31"`, "", "out of range for Date (1970-01-01 to 2149-06-06)"}}},
		{name: "DateTime", typ: "DateTime('UTC')", cases: []conv{
			{`"2024-05-01T14:00:00+02:00"`, "2024-05-01 12:00:00", ""},
			{`"2024-05-01 12:00:00"`, "2024-05-01 12:00:00", ""},
			{`1714564800`, "2024-05-01 12:00:00", ""},
			{`1714564800999`, "2024-05-01 12:00:00", ""},
			{`4102444800`, "2100-01-01 00:00:00", ""}, // 18.16 shows times after 2105 wrong
			{`4294967296`, "", "out of range for DateTime (1970-01-01T00:00:00Z to 2106-02-07T06:28:15Z)"},
			{`"soon"`, "", "not a time (an RFC 3339 string or a unix timestamp)"},
		}},
		{name: "DateTimeMax", typ: "DateTime", expr: "toString(toUnixTimestamp(v))", cases: []conv{{`4294967295`, "4294967295", ""}, {`"2106-02-07T06:28:15Z"`, "4294967295", ""}}},
		{name: "DateTime64", typ: "DateTime64(3, 'UTC')", needs: "DateTime64", cases: []conv{{`"2024-05-01T12:00:00.123Z"`, "2024-05-01 12:00:00.123", ""}, {`1714564800123`, "2024-05-01 12:00:00.123", ""}}},
		{name: "Bool", typ: "Bool", needs: "Bool", cases: []conv{{`true`, "true", ""}, {`"yes"`, "", "not a boolean (true, false, 0 or 1)"}}},
		{name: "UUID", typ: "UUID", cases: []conv{{`"6BA7B810-9DAD-11D1-80B4-00C04FD430C8"`, "6ba7b810-9dad-11d1-80b4-00c04fd430c8", ""}, {`"nope"`, "", "not a UUID"}}},
		{name: "Decimal", typ: "Decimal(9, 2)", expr: "toString(toInt64(v * 100))", cases: []conv{{`12.345`, "1235", ""}, {`"-0.5"`, "-50", ""}, {`10000000`, "", "out of range for Decimal(9, 2)"}}},
		{name: "Enum8", typ: "Enum8('off' = 0, 'on' = 1)", cases: []conv{{`"on"`, "on", ""}, {`0`, "off", ""}, {``, "off", ""}, {`"dim"`, "", "not a name of Enum8 ('off', 'on')"}}},
		{name: "Nullable", typ: "Nullable(Int32)", cases: []conv{{`5`, "5", ""}, {`null`, "NULL", ""}, {``, "NULL", ""}, {`"x"`, "", "not an integer"}}},
		{name: "LowCardinality", typ: "LowCardinality(String)", cases: []conv{{`"a"`, "a", ""}, {``, "", ""}}},
		{name: "LowCardinalityNullable", typ: "LowCardinality(Nullable(String))", cases: []conv{{`"a"`, "a", ""}, {`null`, "NULL", ""}}},
		{name: "Array", typ: "Array(Int32)", cases: []conv{{`[1, 2]`, "[1,2]", ""}, {`[]`, "[]", ""}, {``, "[]", ""}, {`[1, "x"]`, "", "element 1: not an integer"}, {`3`, "", "not an array"}}},
		{name: "ArrayNullable", typ: "Array(Nullable(String))", cases: []conv{{`["a", null]`, "['a',NULL]", ""}}},
		{name: "NullableDateTime", typ: "Nullable(DateTime('UTC'))", cases: []conv{{`1714564800`, "2024-05-01 12:00:00", ""}, {`null`, "NULL", ""}}},
		{name: "NullableDate", typ: "Nullable(Date)", cases: []conv{{`"2024-05-01"`, "2024-05-01", ""}, {``, "NULL", ""}}},
		{name: "NullableUUID", typ: "Nullable(UUID)", cases: []conv{{`"6ba7b810-9dad-11d1-80b4-00c04fd430c8"`, "6ba7b810-9dad-11d1-80b4-00c04fd430c8", ""}, {`null`, "NULL", ""}}},
		{name: "NullableDecimal", typ: "Nullable(Decimal(18, 4))", expr: "toString(toInt64(v * 10000))", cases: []conv{{`1.23456`, "12346", ""}, {`null`, "NULL", ""}}},
		{name: "NullableEnum", typ: "Nullable(Enum8('none' = 0, 'a' = 1))", cases: []conv{{`"a"`, "a", ""}, {`null`, "NULL", ""}}},
		{name: "NullableFixedString", typ: "Nullable(FixedString(2))", cases: []conv{{`"ab"`, "ab", ""}, {`null`, "NULL", ""}}},
		{name: "LowCardinalityFixedString", typ: "LowCardinality(FixedString(2))", cases: []conv{{`"ab"`, "ab", ""}}},
		{name: "ArrayUUID", typ: "Array(UUID)", cases: []conv{{`["6ba7b810-9dad-11d1-80b4-00c04fd430c8"]`, "['6ba7b810-9dad-11d1-80b4-00c04fd430c8']", ""}}},
		{name: "ArrayDecimal", typ: "Array(Decimal(9, 2))", expr: "toString(arrayMap(x -> toInt64(x * 100), v))", cases: []conv{{`[1.5, "2.25"]`, "[150,225]", ""}}},
		{name: "ArrayEnum", typ: "Array(Enum8('a' = 1, 'b' = 2))", cases: []conv{{`["a", 2]`, "['a','b']", ""}}},
		{name: "ArrayDate", typ: "Array(Date)", cases: []conv{{`["2024-05-01"]`, "['2024-05-01']", ""}}},
		{name: "ArrayFloat64", typ: "Array(Float64)", cases: []conv{{`[1.5, -2]`, "[1.5,-2]", ""}}},
		{name: "ArrayUInt64", typ: "Array(UInt64)", cases: []conv{{`[18446744073709551615]`, "[18446744073709551615]", ""}}},
		{name: "ArrayNullableInt", typ: "Array(Nullable(Int64))", cases: []conv{{`[1, null]`, "[1,NULL]", ""}}},
		{name: "ArrayDateTime", typ: "Array(DateTime('UTC'))", cases: []conv{{`[1714564800, "2024-05-01T12:00:01Z"]`, "['2024-05-01 12:00:00','2024-05-01 12:00:01']", ""}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := srv.with(t)
			if tt.needs != "" && !srv.hasType(tt.needs) {
				t.Skipf("the server has no %s type", tt.needs)
			}
			table := srv.createTable("conv", "id UInt32, v "+tt.typ, "")
			sink := srv.newSink(Config{Table: table})
			var b pipeline.Batch
			var want []string
			wantErrs := map[int]string{}
			for i, c := range tt.cases {
				js := fmt.Sprintf(`{"id": %d, "v": %s}`, i, c.json)
				if c.json == "" {
					js = fmt.Sprintf(`{"id": %d}`, i)
				}
				b = append(b, pipeline.Record{Value: []byte(js)})
				if c.wantErr != "" {
					wantErrs[i] = fmt.Sprintf("clickhouse: table default.%s column v (%s): value %s: %s", table, tt.typ, c.json, c.wantErr)
				} else {
					want = append(want, fmt.Sprintf("%d %s", i, c.want))
				}
			}
			err := sink.Write(context.Background(), b)
			gotErrs := map[int]string{}
			if err != nil {
				re, ok := pipeline.AsRecordErrors(err)
				if !ok {
					t.Fatalf("Write: %v", err)
				}
				for i, e := range re {
					gotErrs[i] = e.Error()
					if !errors.Is(e, ErrConvert) {
						t.Fatalf("record %d: error %v does not wrap ErrConvert", i, e)
					}
				}
			}
			if fmt.Sprint(gotErrs) != fmt.Sprint(wantErrs) {
				t.Fatalf("record errors:\ngot  %v\nwant %v", gotErrs, wantErrs)
			}
			expr := tt.expr
			if expr == "" {
				expr = "toString(v)"
			}
			got := srv.strings("SELECT concat(toString(id), ' ', ifNull(" + expr + ", 'NULL')) FROM default." + table + " ORDER BY id")
			equal(t, tt.typ, got, want)
		})
	}
}

func TestBadRecordFailsAlone(t *testing.T) {
	srv := newServer(t)
	table := srv.createTable("bad", "seq UInt64, temp Float64, level UInt8", "")
	sink := srv.newSink(Config{Table: table})
	err := sink.Write(context.Background(), recs(
		`{"seq": 1, "temp": 1.5, "level": 3}`,
		`{"seq": 2, "temp": 2.5, "level": 300}`,
		`{"seq": 3, "temp": "warm", "level": 1}`,
		`[1, 2]`,
		`{"seq": 5, "temp": 5.5, "level": 5}`,
	))
	re, ok := pipeline.AsRecordErrors(err)
	if !ok {
		t.Fatalf("Write: got %v, want RecordErrors", err)
	}
	want := map[int]string{
		1: fmt.Sprintf("clickhouse: table default.%s column level (UInt8): value 300: out of range for UInt8", table),
		2: fmt.Sprintf(`clickhouse: table default.%s column temp (Float64): value "warm": not a number`, table),
		3: fmt.Sprintf("clickhouse: table default.%s: record is not a JSON object: [1, 2]", table),
	}
	if len(re) != len(want) {
		t.Fatalf("rejected: got %v, want %v", re, want)
	}
	for i, w := range want {
		if re[i] == nil || re[i].Error() != w {
			t.Fatalf("record %d: got %v, want %q", i, re[i], w)
		}
	}
	got := srv.strings("SELECT toString(tuple(seq, temp, level)) FROM default." + table + " ORDER BY seq")
	equal(t, "rows", got, []string{"(1,1.5,3)", "(5,5.5,5)"})
}

func TestMissingTable(t *testing.T) {
	srv := newServer(t)
	name := testenv.Name("missing")
	_, err := New(context.Background(), Config{Addr: Addrs{srv.addr}, Table: name}, pipeline.Env{})
	if !errors.Is(err, ErrNoTable) {
		t.Fatalf("New: got %v, want ErrNoTable", err)
	}
	for _, want := range []string{
		fmt.Sprintf("clickhouse %s: table does not exist: default.%s (", srv.addr, name),
		fmt.Sprintf("; create it, e.g. CREATE TABLE default.%s (...) ENGINE = MergeTree() ORDER BY (...), or declare it under create: {columns: [{name, type}, ...], order_by: [...]} in the sink config", name),
	} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("New: got %q, want it to contain %q", err, want)
		}
	}
}

func TestUnreachable(t *testing.T) {
	// A server that accepts connections and never answers the handshake.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	tests := []struct {
		name string
		addr string
	}{
		{name: "refused", addr: "127.0.0.1:1"},
		{name: "blackhole", addr: "10.255.255.1:9000"}, // some sandboxes answer it with HTTP
		{name: "silent", addr: silent.Addr().String()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const timeout = 500 * time.Millisecond
			start := time.Now()
			_, err := New(context.Background(), Config{Addr: Addrs{tt.addr}, Table: "t", DialTimeout: timeout}, pipeline.Env{})
			elapsed := time.Since(start)
			if err == nil {
				t.Fatalf("New: got nil error, want one")
			}
			t.Logf("after %v: %v", elapsed.Round(time.Millisecond), err)
			if want := fmt.Sprintf("clickhouse %s: connect as default to database default: ", tt.addr); !strings.HasPrefix(err.Error(), want) {
				t.Fatalf("New: got %q, want prefix %q", err, want)
			}
			if elapsed > timeout+time.Second {
				t.Fatalf("New took %v, want at most %v", elapsed, timeout+time.Second)
			}
		})
	}
}

func TestCreateTable(t *testing.T) {
	srv := newServer(t)
	name := testenv.Name("create")
	srv.dropLater(name)
	cfg := Config{Table: name, Create: &CreateConfig{
		Columns: []ColumnDef{
			{Name: "device_id", Type: "LowCardinality(String)"},
			{Name: "ts", Type: "DateTime"},
			{Name: "temp", Type: "Nullable(Float64)"},
		},
		OrderBy:     []string{"device_id", "ts"},
		PartitionBy: "toYYYYMM(ts)",
	}}
	sink := srv.newSink(cfg)
	write(t, sink, recs(`{"device_id": "d1", "ts": "2024-05-01T12:00:00Z", "temp": 1.5}`))
	sink.Close(context.Background())
	sink = srv.newSink(cfg) // the table exists now
	write(t, sink, recs(`{"device_id": "d2", "ts": "2024-06-01T12:00:00Z"}`))

	got := srv.strings(fmt.Sprintf("SELECT concat(name, ' ', type) FROM system.columns WHERE database = 'default' AND table = '%s'", name))
	equal(t, "columns", got, []string{"device_id LowCardinality(String)", "ts DateTime", "temp Nullable(Float64)"})
	got = srv.strings(fmt.Sprintf("SELECT concat(engine, ' ', partition_key, ' ', sorting_key) FROM system.tables WHERE database = 'default' AND name = '%s'", name))
	equal(t, "engine", got, []string{"MergeTree toYYYYMM(ts) device_id, ts"})
	if n := srv.count("SELECT count() FROM default." + name); n != 2 {
		t.Fatalf("count: got %d, want 2", n)
	}
}

// TestReplayDedup is the idempotent-storage setup: a ReplacingMergeTree
// keyed by the record ID, filled from @device/@seq/@part. Writing the same
// batch twice (a retry) leaves each record once under FINAL.
func TestReplayDedup(t *testing.T) {
	srv := newServer(t)
	name := testenv.Name("dedup")
	srv.dropLater(name)
	sink := srv.newSink(Config{
		Table: name,
		Columns: map[string]string{
			"device_id": "@device",
			"seq":       "@seq",
			"part":      "@part",
			"received":  "@received",
		},
		Create: &CreateConfig{
			Columns: []ColumnDef{
				{Name: "device_id", Type: "String"},
				{Name: "seq", Type: "UInt64"},
				{Name: "part", Type: "UInt32"},
				{Name: "received", Type: "DateTime"},
				{Name: "temp", Type: "Float64"},
			},
			Engine:  "ReplacingMergeTree",
			OrderBy: []string{"device_id", "seq", "part"},
		},
	})
	var b pipeline.Batch
	now := time.Now()
	for d := 0; d < 10; d++ {
		for seq := 1; seq <= 10; seq++ {
			for part := 0; part < 1+seq%2; part++ { // odd seqs split in two parts
				b = append(b, pipeline.Record{
					Value:    []byte(fmt.Sprintf(`{"temp": %d.5}`, seq)),
					ID:       pipeline.ID{Device: fmt.Sprintf("dev-%d", d), Seq: uint64(seq), Part: uint32(part)},
					Received: now,
				})
			}
		}
	}
	distinct := uint64(len(b))
	write(t, sink, b)
	write(t, sink, b) // the runner retrying a batch whose ack was lost
	if n := srv.count("SELECT count() FROM default." + name + " FINAL"); n != distinct {
		t.Fatalf("count FINAL: got %d, want %d", n, distinct)
	}
	if n := srv.count("SELECT uniqExact(device_id, seq, part) FROM default." + name); n != distinct {
		t.Fatalf("distinct IDs: got %d, want %d", n, distinct)
	}
	srv.exec("OPTIMIZE TABLE default." + name + " FINAL")
	if n := srv.count("SELECT count() FROM default." + name); n != distinct {
		t.Fatalf("count after OPTIMIZE FINAL: got %d, want %d", n, distinct)
	}
	got := srv.strings(fmt.Sprintf("SELECT concat(engine, ' ', sorting_key) FROM system.tables WHERE database = 'default' AND name = '%s'", name))
	equal(t, "engine", got, []string{"ReplacingMergeTree device_id, seq, part"})
}

func TestRouting(t *testing.T) {
	srv := newServer(t)
	main := srv.createTable("main", "seq UInt64, dest String", "")
	other := srv.createTable("other", "seq UInt64, note String", "")
	missing := testenv.Name("nowhere")
	sink := srv.newSink(Config{Table: main, Columns: map[string]string{"dest": "@dest"}})
	err := sink.Write(context.Background(), pipeline.Batch{
		{Value: []byte(`{"seq": 1}`)},
		{Value: []byte(`{"seq": 2, "note": "n"}`), Dest: other},
		{Value: []byte(`{"seq": 3}`), Dest: "default." + main},
		{Value: []byte(`{"seq": 4}`), Dest: missing},
		{Value: []byte(`{"seq": 5}`), Dest: "bad name"},
	})
	re, ok := pipeline.AsRecordErrors(err)
	if !ok || len(re) != 2 {
		t.Fatalf("Write: got %v, want 2 record errors", err)
	}
	if !errors.Is(re[3], ErrNoTable) {
		t.Fatalf("record 3: got %v, want ErrNoTable", re[3])
	}
	if want := `clickhouse: record destination "default.bad name" is not a table name (table or database.table)`; re[4].Error() != want {
		t.Fatalf("record 4: got %q, want %q", re[4], want)
	}
	equal(t, "main", srv.strings("SELECT concat(toString(seq), ' ', dest) FROM default."+main+" ORDER BY seq"),
		[]string{"1 ", "3 default." + main})
	equal(t, "other", srv.strings("SELECT concat(toString(seq), ' ', note) FROM default."+other+" ORDER BY seq"),
		[]string{"2 n"})
}

// TestSchemaChange drops a column the sink writes: the next insert fails
// (the runner retries it) and the one after re-reads the schema.
func TestSchemaChange(t *testing.T) {
	srv := newServer(t)
	table := srv.createTable("schema", "seq UInt64, note String, temp Float64", "")
	sink := srv.newSink(Config{Table: table})
	write(t, sink, recs(`{"seq": 1, "note": "a", "temp": 1}`))
	srv.exec("ALTER TABLE default." + table + " DROP COLUMN note")
	err := sink.Write(context.Background(), recs(`{"seq": 2, "note": "b", "temp": 2}`))
	if err == nil {
		t.Fatalf("Write after DROP COLUMN: got nil, want an error")
	}
	if _, ok := pipeline.AsRecordErrors(err); ok {
		t.Fatalf("Write after DROP COLUMN: got record errors %v, want a batch error", err)
	}
	write(t, sink, recs(`{"seq": 2, "note": "b", "temp": 2}`))
	equal(t, "rows", srv.strings("SELECT toString(tuple(seq, temp)) FROM default."+table+" ORDER BY seq"), []string{"(1,1)", "(2,2)"})
}

func TestMetrics(t *testing.T) {
	srv := newServer(t)
	table := srv.createTable("metrics", "seq UInt64", "")
	reg := prometheus.NewRegistry()
	sink, err := New(context.Background(), Config{Addr: Addrs{srv.addr}, Table: table}, pipeline.Env{Metrics: reg})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer sink.Close(context.Background())
	_ = sink.Write(context.Background(), recs(`{"seq": 1}`, `{"seq": 2}`, `{"seq": -3}`))
	full := "default." + table
	for _, c := range []struct {
		name string
		got  float64
		want float64
	}{
		{"rows", value(t, sink.metrics.rows.WithLabelValues(full)), 2},
		{"inserts ok", value(t, sink.metrics.inserts.WithLabelValues(full, "ok")), 1},
		{"rejected", value(t, sink.metrics.rejects.WithLabelValues(full)), 1},
	} {
		if c.got != c.want {
			t.Fatalf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
	var h dto.Metric
	if err := sink.metrics.seconds.WithLabelValues(full).(prometheus.Metric).Write(&h); err != nil {
		t.Fatal(err)
	}
	if n := h.GetHistogram().GetSampleCount(); n != 1 {
		t.Fatalf("insert_seconds samples: got %d, want 1", n)
	}
	// A second sink in the same registry shares the metrics.
	sink2, err := New(context.Background(), Config{Addr: Addrs{srv.addr}, Table: table}, pipeline.Env{Metrics: reg})
	if err != nil {
		t.Fatalf("second New: %v", err)
	}
	sink2.Close(context.Background())
}

func value(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	return d.GetCounter().GetValue()
}

func TestBatchLimits(t *testing.T) {
	srv := newServer(t)
	table := srv.createTable("limits", "seq UInt64", "")
	sink := srv.newSink(Config{Table: table, BatchSize: 500})
	n, wait := sink.BatchLimits()
	if n != 500 || wait != DefaultLinger {
		t.Fatalf("BatchLimits: got %d, %v, want 500, %v", n, wait, DefaultLinger)
	}
}

// TestRestart stops and starts the local ClickHouse with scripts/services.sh,
// so it runs only when SLUICE_TEST_RESTART_CLICKHOUSE=1 (it disturbs every
// other test using the server).
func TestRestart(t *testing.T) {
	if os.Getenv("SLUICE_TEST_RESTART_CLICKHOUSE") != "1" {
		t.Skip("set SLUICE_TEST_RESTART_CLICKHOUSE=1 to stop and start the local ClickHouse")
	}
	srv := newServer(t)
	table := srv.createTable("restart", "seq UInt64", "")
	sink := srv.newSink(Config{Table: table, InsertTimeout: 5 * time.Second, DialTimeout: 2 * time.Second})
	write(t, sink, recs(`{"seq": 1}`))
	services := func(cmd string) {
		out, err := exec.Command("../../scripts/services.sh", cmd).CombinedOutput()
		if err != nil {
			t.Fatalf("services.sh %s: %v\n%s", cmd, err, out)
		}
	}
	services("stop-clickhouse")
	start := time.Now()
	err := sink.Write(context.Background(), recs(`{"seq": 2}`))
	t.Logf("write while down (%v): %v", time.Since(start), err)
	if err == nil {
		t.Fatalf("Write while down: got nil, want an error")
	}
	if _, ok := pipeline.AsRecordErrors(err); ok {
		t.Fatalf("Write while down: got record errors, want a batch error")
	}
	services("start-clickhouse")
	var attempts []string
	for i := 0; ; i++ {
		err := sink.Write(context.Background(), recs(`{"seq": 2}`))
		if err == nil {
			break
		}
		attempts = append(attempts, err.Error())
		if i == 5 {
			t.Fatalf("Write after restart still failing: %q", attempts)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("failed writes after restart before success: %d %q", len(attempts), attempts)
	got := srv.strings("SELECT toString(seq) FROM default." + table + " ORDER BY seq")
	sort.Strings(got)
	equal(t, "rows", got, []string{"1", "2"})
}

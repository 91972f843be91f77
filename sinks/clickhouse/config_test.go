package clickhouse

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pipeline"
)

func decode(t *testing.T, body string) (Config, error) {
	t.Helper()
	f, err := pipeline.Parse("pipeline.yaml", []byte(`
pipelines:
  p:
    source: {stdin: {}}
    sinks:
      - clickhouse:
`+body))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	var cfg Config
	err = f.Pipelines[0].Sinks[0].Decode(&cfg)
	return cfg, err
}

func TestDecode(t *testing.T) {
	cfg, err := decode(t, `
          addr: [h1:9000, h2:9000]
          table: t
          linger: 2s
          columns: {device_id: "@device", raw: "$", temp: sensors.temp}
          create:
            columns: [{name: device_id, type: String}]
            engine: ReplacingMergeTree
            order_by: [device_id]
`)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
	got := fmt.Sprintf("%v %s %s %v %v %v %v %v %v", cfg.Addr, cfg.Database, cfg.Username, cfg.BatchSize, cfg.Linger,
		cfg.InsertTimeout, cfg.DialTimeout, cfg.Columns, cfg.Create.OrderBy)
	want := "h1:9000,h2:9000 default default 10000 2s 30s 5s map[device_id:@device raw:$ temp:sensors.temp] [device_id]"
	if got != want {
		t.Fatalf("config: got %s, want %s", got, want)
	}

	cfg, err = decode(t, `
          addr: 127.0.0.1:9000
          table: t
`)
	if err != nil {
		t.Fatalf("decode single addr: %v", err)
	}
	if len(cfg.Addr) != 1 || cfg.Addr[0] != "127.0.0.1:9000" {
		t.Fatalf("addr: got %v, want [127.0.0.1:9000]", cfg.Addr)
	}

	_, err = decode(t, `
          addr: 127.0.0.1:9000
          tabel: t
`)
	if err == nil {
		t.Fatalf("decode unknown key: got nil, want an error")
	}
}

func TestValidate(t *testing.T) {
	ok := func() Config { return Config{Addr: Addrs{"127.0.0.1:9000"}, Table: "t"} }
	tests := []struct {
		name    string
		edit    func(*Config)
		field   string
		wantMsg string
	}{
		{name: "no addr", edit: func(c *Config) { c.Addr = nil }, field: "addr", wantMsg: "required: the server's native-protocol address, e.g. 127.0.0.1:9000"},
		{name: "addr without port", edit: func(c *Config) { c.Addr = Addrs{"localhost"} }, field: "addr", wantMsg: `"localhost" is not host:port`},
		{name: "no table", edit: func(c *Config) { c.Table = "" }, field: "table", wantMsg: "required"},
		{name: "dotted table", edit: func(c *Config) { c.Table = "db.t" }, field: "table", wantMsg: `"db.t" is not a valid table name (letters, digits, _; the database goes in database)`},
		{name: "bad database", edit: func(c *Config) { c.Database = "my-db" }, field: "database", wantMsg: `"my-db" is not a valid database name (letters, digits, _)`},
		{name: "unknown meta", edit: func(c *Config) { c.Columns = map[string]string{"x": "@seqno"} }, field: "columns.x",
			wantMsg: `unknown metadata source "@seqno" (valid: @device, @seq, @part, @received, @key, @dest; escape a field that starts with @ as \@)`},
		{name: "empty source", edit: func(c *Config) { c.Columns = map[string]string{"x": ""} }, field: "columns.x",
			wantMsg: `empty source: use a gjson path, "$" or one of @device, @seq, @part, @received, @key, @dest`},
		{name: "unknown compression", edit: func(c *Config) { c.Compression = "gzip" }, field: "compression", wantMsg: `"gzip" is not one of lz4, zstd, none`},
		{name: "negative batch", edit: func(c *Config) { c.BatchSize = -1 }, field: "batch_size", wantMsg: "must not be negative"},
		{name: "negative linger", edit: func(c *Config) { c.Linger = -time.Second }, field: "linger", wantMsg: "must not be negative"},
		{name: "create without columns", edit: func(c *Config) { c.Create = &CreateConfig{} }, field: "create.columns", wantMsg: "required: at least one {name, type}"},
		{name: "create column without type", edit: func(c *Config) { c.Create = &CreateConfig{Columns: []ColumnDef{{Name: "a"}}} },
			field: "create.columns[0].type", wantMsg: "required, e.g. String or UInt64"},
		{name: "create duplicate column", edit: func(c *Config) {
			c.Create = &CreateConfig{Columns: []ColumnDef{{Name: "a", Type: "String"}, {Name: "a", Type: "String"}}}
		}, field: "create.columns[1].name", wantMsg: `column "a" is declared twice`},
		{name: "create order_by on Log", edit: func(c *Config) {
			c.Create = &CreateConfig{Columns: []ColumnDef{{Name: "a", Type: "String"}}, Engine: "Log", OrderBy: []string{"a"}}
		}, field: "create.order_by", wantMsg: "only MergeTree-family engines have a sorting key, not Log"},
		{name: "create bad engine", edit: func(c *Config) {
			c.Create = &CreateConfig{Columns: []ColumnDef{{Name: "a", Type: "String"}}, Engine: "MergeTree; DROP TABLE x"}
		}, field: "create.engine", wantMsg: `"MergeTree; DROP TABLE x" is not an engine, e.g. MergeTree or ReplacingMergeTree(version)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok()
			tt.edit(&c)
			err := c.Validate()
			var fe *pipeline.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Validate: got %v, want a FieldError", err)
			}
			if fe.Field != tt.field || fe.Msg != tt.wantMsg {
				t.Fatalf("Validate: got %s: %s, want %s: %s", fe.Field, fe.Msg, tt.field, tt.wantMsg)
			}
		})
	}
}

func TestCreateSQL(t *testing.T) {
	tests := []struct {
		name string
		cc   CreateConfig
		want string
	}{
		{
			name: "defaults",
			cc:   CreateConfig{Columns: []ColumnDef{{Name: "a", Type: "String"}}},
			want: "CREATE TABLE IF NOT EXISTS `db`.`t` (`a` String) ENGINE = MergeTree() ORDER BY tuple()",
		},
		{
			name: "replacing",
			cc: CreateConfig{
				Columns:     []ColumnDef{{Name: "device_id", Type: "String"}, {Name: "seq", Type: "UInt64"}, {Name: "ts", Type: "DateTime"}},
				Engine:      "ReplacingMergeTree",
				OrderBy:     []string{"device_id", "seq"},
				PartitionBy: "toYYYYMM(ts)",
			},
			want: "CREATE TABLE IF NOT EXISTS `db`.`t` (`device_id` String, `seq` UInt64, `ts` DateTime) ENGINE = ReplacingMergeTree() PARTITION BY toYYYYMM(ts) ORDER BY (device_id, seq)",
		},
		{
			name: "engine args and Log",
			cc:   CreateConfig{Columns: []ColumnDef{{Name: "odd`name", Type: "String"}}, Engine: "Log"},
			want: "CREATE TABLE IF NOT EXISTS `db`.`t` (`odd\\`name` String) ENGINE = Log()",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cc.validate(); err != nil {
				t.Fatalf("validate: %v", err)
			}
			if got := tt.cc.createSQL("db", "t"); got != tt.want {
				t.Fatalf("createSQL:\ngot  %s\nwant %s", got, tt.want)
			}
		})
	}
}

// TestPlan checks the mapping from a DESCRIBE result without a server.
func TestPlan(t *testing.T) {
	descs := []colDesc{
		{"device_id", "String", ""}, {"seq", "UInt64", ""}, {"temp", "Float64", ""}, {"raw", "String", ""},
		{"inserted", "DateTime", "DEFAULT"}, {"day", "Date", "MATERIALIZED"}, {"x", "String", "ALIAS"},
	}
	tests := []struct {
		name    string
		columns map[string]string
		strict  bool
		want    string
		wantErr string
	}{
		{name: "automatic", want: "INSERT INTO `db`.`t` (`device_id`, `seq`, `temp`, `raw`) [device_id←device_id seq←seq temp←temp raw←raw] skipped [inserted day x]"},
		{name: "explicit", columns: map[string]string{"device_id": "@device", "temp": "s.temp", "raw": "$", "inserted": "@received"},
			want: "INSERT INTO `db`.`t` (`device_id`, `seq`, `temp`, `raw`, `inserted`) [device_id←@device seq←seq temp←s.temp raw←$ inserted←@received] skipped [day x]"},
		{name: "unknown column", columns: map[string]string{"nope": "a", "zzz": "b"}, strict: true,
			wantErr: "clickhouse: table db.t: columns mapping does not match the table: columns nope, zzz mapped in columns but not in the table"},
		{name: "unknown column routed", columns: map[string]string{"nope": "a"},
			want: "INSERT INTO `db`.`t` (`device_id`, `seq`, `temp`, `raw`) [device_id←device_id seq←seq temp←temp raw←raw] skipped [inserted day x]"},
		{name: "materialized mapped", columns: map[string]string{"day": "d"}, strict: true,
			wantErr: "clickhouse: table db.t column day: columns mapping does not match the table: a MATERIALIZED column cannot be inserted; remove it from columns"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb, err := newTable("db", "t", descs, tt.columns, tt.strict)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("newTable: got error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("newTable: %v", err)
			}
			if got := fmt.Sprintf("%s %v skipped %v", tb.insertSQL, tb.describe(), tb.skipped); got != tt.want {
				t.Fatalf("plan:\ngot  %s\nwant %s", got, tt.want)
			}
		})
	}
	_, err := newTable("db", "t", []colDesc{{"m", "Map(String, String)", ""}}, nil, true)
	if want := "clickhouse: table db.t column m: unsupported column type Map(String, String) (supported: "; err == nil || len(err.Error()) < len(want) || err.Error()[:len(want)] != want {
		t.Fatalf("unsupported type: got %v, want prefix %q", err, want)
	}
}

package clickhouse

import (
	"fmt"
	"net"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"go.yaml.in/yaml/v3"

	"github.com/sluicehq/sluice/pipeline"
)

// Defaults of Config.
const (
	DefaultDatabase      = "default"
	DefaultUsername      = "default"
	DefaultBatchSize     = 10000
	DefaultLinger        = time.Second
	DefaultInsertTimeout = 30 * time.Second
	DefaultDialTimeout   = 5 * time.Second
	DefaultEngine        = "MergeTree"
	DefaultCompression   = "lz4"
)

// Config configures the ClickHouse sink.
//
//	clickhouse:
//	  addr: 127.0.0.1:9000            # or [host1:9000, host2:9000]
//	  database: telemetry
//	  table: readings
//	  columns:                        # optional; other columns map by name
//	    device_id: "@device"
//	    seq: "@seq"
//	    part: "@part"
//	    temp: sensors.temp            # gjson path into the record
//	    raw: "$"                      # the whole record JSON
//	  create:                         # optional: create the table if missing
//	    columns:
//	      - { name: device_id, type: String }
//	      - { name: seq, type: UInt64 }
//	    engine: ReplacingMergeTree
//	    order_by: [device_id, seq]
//
// See the package documentation for the mapping and conversion rules.
type Config struct {
	// Addr is the native-protocol address of the server, "host:port", or a
	// list of them tried in order. Required.
	Addr Addrs `yaml:"addr"`
	// Database holds the table (default "default").
	Database string `yaml:"database"`
	// Username is the user to log in as (default "default").
	Username string `yaml:"username"`
	// Password is the user's password (default empty).
	Password string `yaml:"password"`
	// Table is the table to insert into, in Database. Required. A record whose
	// Dest is set goes to the table Dest names instead ("table" or
	// "database.table").
	Table string `yaml:"table"`
	// Columns maps a column to the source of its value, overriding the
	// automatic mapping for that column (default: none, every column is filled
	// from the record's top-level field of the same name). A source is a
	// gjson path into the record, "$" for the whole record JSON, or one of
	// "@device", "@seq", "@part" (the record's ID), "@received", "@key",
	// "@dest".
	Columns map[string]string `yaml:"columns"`
	// Create, when set, creates the table at start if it does not exist
	// (default: the table must exist).
	Create *CreateConfig `yaml:"create"`
	// BatchSize is the most records per INSERT (default 10000).
	BatchSize int `yaml:"batch_size"`
	// Linger is how long the runner waits to fill a batch before it inserts
	// what it has (default 1s). ClickHouse makes one part per INSERT and
	// merges them in the background, so it wants few large inserts (about one
	// a second per table at most); a short linger at low traffic makes many
	// tiny parts.
	Linger time.Duration `yaml:"linger"`
	// InsertTimeout bounds one INSERT, from sending the query to the server's
	// reply (default 30s).
	InsertTimeout time.Duration `yaml:"insert_timeout"`
	// DialTimeout bounds connecting to the server (default 5s).
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// Compression of the data blocks sent to the server: "lz4" (default),
	// "zstd" (smaller, more CPU) or "none" (no compression CPU on either
	// side: for a server on the same host or a fast local network).
	Compression string `yaml:"compression"`
}

// CreateConfig declares the table the sink creates when it is missing:
//
//	CREATE TABLE IF NOT EXISTS db.table (name type, ...)
//	ENGINE = engine() [PARTITION BY partition_by] ORDER BY (order_by...)
//
// The statement is valid for ClickHouse 18.16 and current releases.
type CreateConfig struct {
	// Columns are the table's columns in order. Required.
	Columns []ColumnDef `yaml:"columns"`
	// Engine is the table engine, e.g. "MergeTree", "ReplacingMergeTree" or
	// "ReplacingMergeTree(version)"; "()" is added when there are no
	// arguments (default "MergeTree").
	Engine string `yaml:"engine"`
	// OrderBy is the sorting key of a MergeTree-family engine, a list of
	// columns or expressions (default none: ORDER BY tuple()). For a
	// ReplacingMergeTree it is also the deduplication key, e.g.
	// [device_id, seq, part].
	OrderBy []string `yaml:"order_by"`
	// PartitionBy is the partition expression, e.g. "toYYYYMM(ts)" (default
	// none).
	PartitionBy string `yaml:"partition_by"`
}

// ColumnDef is one column of a CreateConfig.
type ColumnDef struct {
	// Name is the column name. Required.
	Name string `yaml:"name"`
	// Type is the ClickHouse type, e.g. "UInt64" or "Nullable(String)". Required.
	Type string `yaml:"type"`
}

// Addrs is one or more "host:port" addresses; in YAML a string or a list.
type Addrs []string

// UnmarshalYAML accepts a single address or a list of them.
func (a *Addrs) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			*a = nil
			return nil
		}
		*a = Addrs{n.Value}
		return nil
	case yaml.SequenceNode:
		var s []string
		if err := n.Decode(&s); err != nil {
			return err
		}
		*a = s
		return nil
	}
	return fmt.Errorf("line %d: addr must be \"host:port\" or a list of them", n.Line)
}

// String joins the addresses with commas.
func (a Addrs) String() string { return strings.Join(a, ",") }

// Metadata sources for Config.Columns.
const (
	SourceRecord   = "$"
	SourceDevice   = "@device"
	SourceSeq      = "@seq"
	SourcePart     = "@part"
	SourceReceived = "@received"
	SourceKey      = "@key"
	SourceDest     = "@dest"
)

var metaSources = []string{SourceDevice, SourceSeq, SourcePart, SourceReceived, SourceKey, SourceDest}

// compressionMethods are the values of Config.Compression.
var compressionMethods = map[string]clickhouse.CompressionMethod{
	"lz4":  clickhouse.CompressionLZ4,
	"zstd": clickhouse.CompressionZSTD,
	"none": clickhouse.CompressionNone,
}

// identRE is what the sink accepts as a database or table name; column names
// are quoted and may be anything.
var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Validate fills the defaults and checks every field.
func (c *Config) Validate() error {
	if len(c.Addr) == 0 {
		return pipeline.Invalid("addr", "required: the server's native-protocol address, e.g. 127.0.0.1:9000")
	}
	for _, a := range c.Addr {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			return pipeline.Invalid("addr", "%q is not host:port", a)
		}
	}
	if c.Database == "" {
		c.Database = DefaultDatabase
	}
	if !identRE.MatchString(c.Database) {
		return pipeline.Invalid("database", "%q is not a valid database name (letters, digits, _)", c.Database)
	}
	if c.Username == "" {
		c.Username = DefaultUsername
	}
	if c.Compression == "" {
		c.Compression = DefaultCompression
	}
	if _, ok := compressionMethods[c.Compression]; !ok {
		return pipeline.Invalid("compression", "%q is not one of lz4, zstd, none", c.Compression)
	}
	if c.Table == "" {
		return pipeline.Invalid("table", "required")
	}
	if !identRE.MatchString(c.Table) {
		return pipeline.Invalid("table", "%q is not a valid table name (letters, digits, _; the database goes in database)", c.Table)
	}
	names := make([]string, 0, len(c.Columns))
	for col := range c.Columns {
		names = append(names, col)
	}
	sort.Strings(names)
	for _, col := range names {
		if col == "" {
			return pipeline.Invalid("columns", "a column name is empty")
		}
		if err := checkSource(c.Columns[col]); err != nil {
			return pipeline.Invalid("columns."+col, "%v", err)
		}
	}
	if c.Create != nil {
		if err := c.Create.validate(); err != nil {
			return err
		}
	}
	if c.BatchSize < 0 {
		return pipeline.Invalid("batch_size", "must not be negative")
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"linger", &c.Linger, DefaultLinger},
		{"insert_timeout", &c.InsertTimeout, DefaultInsertTimeout},
		{"dial_timeout", &c.DialTimeout, DefaultDialTimeout},
	} {
		if *d.v < 0 {
			return pipeline.Invalid(d.name, "must not be negative")
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	return nil
}

// checkSource checks one source of Config.Columns.
func checkSource(src string) error {
	switch {
	case src == "":
		return fmt.Errorf("empty source: use a gjson path, \"$\" or one of %s", strings.Join(metaSources, ", "))
	case src == SourceRecord:
		return nil
	case strings.HasPrefix(src, "@"):
		for _, m := range metaSources {
			if src == m {
				return nil
			}
		}
		return fmt.Errorf("unknown metadata source %q (valid: %s; escape a field that starts with @ as \\@)", src, strings.Join(metaSources, ", "))
	}
	return nil
}

func (cc *CreateConfig) validate() error {
	if len(cc.Columns) == 0 {
		return pipeline.Invalid("create.columns", "required: at least one {name, type}")
	}
	seen := map[string]bool{}
	for i, col := range cc.Columns {
		field := fmt.Sprintf("create.columns[%d]", i)
		if col.Name == "" {
			return pipeline.Invalid(field+".name", "required")
		}
		if seen[col.Name] {
			return pipeline.Invalid(field+".name", "column %q is declared twice", col.Name)
		}
		seen[col.Name] = true
		if col.Type == "" {
			return pipeline.Invalid(field+".type", "required, e.g. String or UInt64")
		}
		if strings.ContainsAny(col.Type, ";`") {
			return pipeline.Invalid(field+".type", "%q is not a column type", col.Type)
		}
	}
	if cc.Engine == "" {
		cc.Engine = DefaultEngine
	}
	if !engineRE.MatchString(cc.Engine) {
		return pipeline.Invalid("create.engine", "%q is not an engine, e.g. MergeTree or ReplacingMergeTree(version)", cc.Engine)
	}
	if len(cc.OrderBy) > 0 && !cc.mergeTree() {
		return pipeline.Invalid("create.order_by", "only MergeTree-family engines have a sorting key, not %s", cc.Engine)
	}
	if cc.PartitionBy != "" && !cc.mergeTree() {
		return pipeline.Invalid("create.partition_by", "only MergeTree-family engines have partitions, not %s", cc.Engine)
	}
	for i, e := range cc.OrderBy {
		if strings.TrimSpace(e) == "" || strings.Contains(e, ";") {
			return pipeline.Invalid(fmt.Sprintf("create.order_by[%d]", i), "%q is not a column or expression", e)
		}
	}
	if strings.Contains(cc.PartitionBy, ";") {
		return pipeline.Invalid("create.partition_by", "%q is not an expression", cc.PartitionBy)
	}
	return nil
}

var engineRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*(\([^;]*\))?$`)

// createSQL is the CREATE TABLE statement for db.table.
func (cc *CreateConfig) createSQL(db, table string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "CREATE TABLE IF NOT EXISTS %s.%s (", quoteIdent(db), quoteIdent(table))
	for i, col := range cc.Columns {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %s", quoteIdent(col.Name), col.Type)
	}
	b.WriteString(") ENGINE = ")
	b.WriteString(cc.Engine)
	if !strings.Contains(cc.Engine, "(") {
		b.WriteString("()")
	}
	if cc.PartitionBy != "" {
		b.WriteString(" PARTITION BY ")
		b.WriteString(cc.PartitionBy)
	}
	if cc.mergeTree() {
		b.WriteString(" ORDER BY ")
		if len(cc.OrderBy) == 0 {
			b.WriteString("tuple()")
		} else {
			b.WriteString("(" + strings.Join(cc.OrderBy, ", ") + ")")
		}
	}
	return b.String()
}

func (cc *CreateConfig) mergeTree() bool {
	return strings.HasSuffix(strings.SplitN(cc.Engine, "(", 2)[0], "MergeTree")
}

// quoteIdent quotes a ClickHouse identifier with backquotes.
func quoteIdent(s string) string {
	return "`" + strings.NewReplacer(`\`, `\\`, "`", "\\`").Replace(s) + "`"
}

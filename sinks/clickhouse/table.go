package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/tidwall/gjson"

	"github.com/sluicehq/sluice/pipeline"
)

// errMapping is wrapped by errors in the columns mapping against a table.
var errMapping = errors.New("columns mapping does not match the table")

// srcKind is where a column's value comes from.
type srcKind uint8

const (
	srcField    srcKind = iota // top-level field, found in the one pass over the record
	srcPath                    // gjson path
	srcRecord                  // "$"
	srcDevice                  // "@device"
	srcSeq                     // "@seq"
	srcPart                    // "@part"
	srcReceived                // "@received"
	srcKey                     // "@key"
	srcDest                    // "@dest"
)

var metaKinds = map[string]srcKind{
	SourceRecord:   srcRecord,
	SourceDevice:   srcDevice,
	SourceSeq:      srcSeq,
	SourcePart:     srcPart,
	SourceReceived: srcReceived,
	SourceKey:      srcKey,
	SourceDest:     srcDest,
}

// column is one inserted column and how to fill it.
type column struct {
	name, typ string
	src       srcKind
	key       string // srcField: the field name; srcPath: the path
	slot      int    // srcField: index in table.slots
	b         builder
}

// table is the plan for inserting into one table, with the builders that
// accumulate the rows of the current INSERT.
type table struct {
	name      string // db.table
	insertSQL string
	cols      []column
	skipped   []string // columns left to the server (DEFAULT, MATERIALIZED, ALIAS)
	needsObj  bool     // some column reads fields or paths: the record must be an object

	fields  map[string]int // top-level field → slot
	slots   []gjson.Result // per record: the value of each field
	found   int
	visitFn func(k, v gjson.Result) bool
	v       val
	rows    int
}

// simplePathRE is a gjson path that is just a top-level field name.
var simplePathRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// plan reads db.name's columns and maps each to its source. Strict, for
// the configured table, every column in cfg.Columns must be in the table;
// otherwise, for tables that records are routed to, the mappings of columns
// the table lacks are ignored.
func (s *Sink) plan(ctx context.Context, db, name string, strict bool) (*table, error) {
	full := db + "." + name
	qctx, cancel := context.WithTimeout(ctx, s.cfg.InsertTimeout)
	defer cancel()
	rows, err := s.conn.Query(qctx, "DESCRIBE TABLE "+quoteIdent(db)+"."+quoteIdent(name))
	if err != nil {
		var ex *clickhouse.Exception
		if errors.As(err, &ex) && (ex.Code == codeUnknownTable || ex.Code == codeUnknownDatabase) {
			return nil, fmt.Errorf("clickhouse %s: %w: %s (%v)", s.addr, ErrNoTable, full, err)
		}
		return nil, fmt.Errorf("clickhouse %s: describe table %s: %w", s.addr, full, err)
	}
	defer rows.Close()
	var descs []colDesc
	ncol := len(rows.Columns()) // 18.16 returns 5 columns, current releases 7
	if ncol < 3 {
		return nil, fmt.Errorf("clickhouse %s: describe table %s: %d result columns, want at least 3", s.addr, full, ncol)
	}
	strs := make([]string, ncol)
	dest := make([]any, ncol)
	for i := range dest {
		dest[i] = &strs[i]
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("clickhouse %s: describe table %s: %w", s.addr, full, err)
		}
		descs = append(descs, colDesc{strs[0], strs[1], strs[2]})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("clickhouse %s: describe table %s: %w", s.addr, full, err)
	}

	return newTable(db, name, descs, s.cfg.Columns, strict)
}

// colDesc is one row of DESCRIBE TABLE: name, type and default kind
// ("", DEFAULT, MATERIALIZED or ALIAS).
type colDesc struct{ name, typ, def string }

// newTable plans the insert into db.name, whose columns are descs, with the
// explicit mapping columns (see plan for strict).
func newTable(db, name string, descs []colDesc, columns map[string]string, strict bool) (*table, error) {
	full := db + "." + name
	t := &table{name: full, fields: map[string]int{}}
	t.visitFn = t.visit
	byName := map[string]colDesc{}
	for _, d := range descs {
		byName[d.name] = d
	}
	var unknown []string
	for col := range columns {
		if _, ok := byName[col]; !ok {
			unknown = append(unknown, col)
		}
	}
	if len(unknown) > 0 && strict {
		sort.Strings(unknown)
		return nil, fmt.Errorf("clickhouse: table %s: %w: columns %s mapped in columns but not in the table", full, errMapping, strings.Join(unknown, ", "))
	}
	var names []string
	for _, d := range descs {
		src, mapped := columns[d.name]
		switch d.def {
		case "MATERIALIZED", "ALIAS":
			if mapped && strict {
				return nil, fmt.Errorf("clickhouse: table %s column %s: %w: a %s column cannot be inserted; remove it from columns", full, d.name, errMapping, d.def)
			}
			t.skipped = append(t.skipped, d.name)
			continue
		case "DEFAULT", "EPHEMERAL":
			if !mapped {
				// Left to the server's expression unless mapped.
				t.skipped = append(t.skipped, d.name)
				continue
			}
		}
		if strings.ContainsAny(d.name, "`\\") {
			return nil, fmt.Errorf("clickhouse: table %s column %q: names with ` or \\ are not supported", full, d.name)
		}
		b, err := newBuilder(d.typ)
		if err != nil {
			return nil, fmt.Errorf("clickhouse: table %s column %s: %w", full, d.name, err)
		}
		c := column{name: d.name, typ: d.typ, b: b}
		switch {
		case !mapped:
			c.src, c.key = srcField, d.name
		case metaKinds[src] != 0:
			c.src = metaKinds[src]
		case simplePathRE.MatchString(src):
			c.src, c.key = srcField, src
		default:
			c.src, c.key = srcPath, src
		}
		if c.src == srcField {
			slot, ok := t.fields[c.key]
			if !ok {
				slot = len(t.slots)
				t.fields[c.key] = slot
				t.slots = append(t.slots, gjson.Result{})
			}
			c.slot = slot
		}
		if c.src == srcField || c.src == srcPath {
			t.needsObj = true
		}
		t.cols = append(t.cols, c)
		names = append(names, quoteIdent(d.name))
	}
	if len(t.cols) == 0 {
		return nil, fmt.Errorf("clickhouse: table %s: %w: no column to insert (all have DEFAULT, MATERIALIZED or ALIAS expressions); map some in columns", full, errMapping)
	}
	t.insertSQL = fmt.Sprintf("INSERT INTO %s.%s (%s)", quoteIdent(db), quoteIdent(name), strings.Join(names, ", "))
	return t, nil
}

// describe lists "column←source" for the log.
func (t *table) describe() []string {
	out := make([]string, len(t.cols))
	for i, c := range t.cols {
		src := c.key
		for k, v := range metaKinds {
			if v == c.src && c.src != srcField && c.src != srcPath {
				src = k
			}
		}
		out[i] = c.name + "←" + src
	}
	return out
}

// visit is the gjson.ForEach callback over a record's top-level fields.
func (t *table) visit(k, v gjson.Result) bool {
	// The first occurrence of a field wins, as with gjson.Get; an unset
	// slot has an empty Raw, a JSON null has "null".
	if i, ok := t.fields[k.Str]; ok && t.slots[i].Raw == "" {
		t.slots[i] = v
		t.found++
	}
	return t.found < len(t.slots)
}

// addRecord converts rec into one row, or returns why it does not fit and
// leaves the rows as they were.
func (t *table) addRecord(rec *pipeline.Record) error {
	js := unsafeString(rec.Value)
	if t.needsObj {
		if !isObject(js) {
			return fmt.Errorf("clickhouse: table %s: record is not a JSON object: %s", t.name, (&val{r: gjson.Result{Type: gjson.JSON, Raw: js}}).String())
		}
		if len(t.slots) > 0 {
			clear(t.slots)
			t.found = 0
			gjson.Parse(js).ForEach(t.visitFn)
		}
	}
	for i := range t.cols {
		c := &t.cols[i]
		v := &t.v
		*v = val{}
		switch c.src {
		case srcField:
			v.r = t.slots[c.slot]
		case srcPath:
			v.r = gjson.Get(js, c.key)
		case srcRecord:
			if isObject(js) || strings.HasPrefix(strings.TrimSpace(js), "[") {
				v.r = gjson.Result{Type: gjson.JSON, Raw: js}
			} else {
				v.r = gjson.Parse(js)
			}
		case srcDevice:
			v.kind, v.s = vStr, rec.ID.Device
		case srcSeq:
			v.kind, v.u = vUint, rec.ID.Seq
		case srcPart:
			v.kind, v.u = vUint, uint64(rec.ID.Part)
		case srcReceived:
			v.kind, v.t = vTime, rec.Received
		case srcKey:
			v.kind, v.s = vStr, unsafeString(rec.Key)
		case srcDest:
			v.kind, v.s = vStr, rec.Dest
		}
		if err := c.b.add(v); err != nil {
			for j := 0; j < i; j++ {
				t.cols[j].b.truncate(t.rows)
			}
			return fmt.Errorf("clickhouse: table %s column %s (%s): value %s: %w", t.name, c.name, c.typ, v, err)
		}
	}
	t.rows++
	return nil
}

// reset empties the builders, dropping references to record memory.
func (t *table) reset() {
	for i := range t.cols {
		t.cols[i].b.truncate(0)
	}
	t.rows = 0
	clear(t.slots)
}

func isObject(js string) bool {
	for i := 0; i < len(js); i++ {
		switch js[i] {
		case ' ', '\t', '\n', '\r':
			continue
		case '{':
			return true
		}
		return false
	}
	return false
}

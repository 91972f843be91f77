package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sort"
	"strings"
	"time"
	"unsafe"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/sluicehq/sluice/pipeline"
)

// ErrNoTable is wrapped by the error for a table that does not exist.
var ErrNoTable = errors.New("table does not exist")

// ClickHouse exception codes the sink reacts to.
const (
	codeNotFoundColumnInBlock = 10
	codeNoSuchColumnInTable   = 16
	codeTypeMismatch          = 53
	codeUnknownTable          = 60
	codeUnknownDatabase       = 81
)

var _ pipeline.Sink = (*Sink)(nil)

// Sink inserts records into a ClickHouse table over the native protocol.
type Sink struct {
	cfg     Config
	addr    string
	conn    driver.Conn
	log     *slog.Logger
	metrics *metrics
	// tables holds the column plan of each table written so far, by
	// "db.table"; main is the configured table's.
	tables map[string]*table
	main   string
	// scratch for Write
	groups map[string][]int
}

// New connects to ClickHouse, creates the table if cfg.Create says so, and
// reads its columns to plan the mapping. It fails, within cfg.DialTimeout
// for the connection, when the server is unreachable, the table is missing,
// or a column has a type the sink cannot fill.
func New(ctx context.Context, cfg Config, env pipeline.Env) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Sink{
		cfg:    cfg,
		addr:   cfg.Addr.String(),
		log:    log,
		tables: map[string]*table{},
		main:   cfg.Database + "." + cfg.Table,
		groups: map[string][]int{},
	}
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:     cfg.Addr,
		Protocol: clickhouse.Native,
		Auth: clickhouse.Auth{
			Database: cfg.Database,
			Username: cfg.Username,
			Password: cfg.Password,
		},
		DialTimeout:  cfg.DialTimeout,
		ReadTimeout:  cfg.InsertTimeout,
		MaxOpenConns: 2,
		MaxIdleConns: 2,
		Compression:  &clickhouse.Compression{Method: compressionMethods[cfg.Compression]},
		ClientInfo: clickhouse.ClientInfo{Products: []struct{ Name, Version string }{
			{Name: "sluice", Version: ""},
		}},
	})
	if err != nil {
		return nil, fmt.Errorf("clickhouse %s: %w", s.addr, err)
	}
	s.conn = conn
	fail := func(err error) (*Sink, error) {
		_ = conn.Close()
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	err = conn.Ping(pctx)
	if ctxErr := pctx.Err(); err != nil && ctxErr != nil && !errors.Is(err, ctxErr) {
		err = fmt.Errorf("%w (%w after %v)", err, ctxErr, cfg.DialTimeout)
	}
	cancel()
	if err != nil {
		return fail(fmt.Errorf("clickhouse %s: connect as %s to database %s: %w", s.addr, cfg.Username, cfg.Database, err))
	}
	version := "unknown"
	var major uint64
	if v, err := conn.ServerVersion(); err == nil {
		version, major = v.Version.String(), v.Version.Major
	}
	if cfg.Create != nil {
		qctx, cancel := context.WithTimeout(ctx, cfg.InsertTimeout)
		if major > 0 && major < 19 {
			// LowCardinality is experimental before 19.x. The setting is
			// sent only to those servers: later ones need not know it.
			qctx = clickhouse.Context(qctx, clickhouse.WithSettings(clickhouse.Settings{"allow_experimental_low_cardinality_type": 1}))
		}
		q := cfg.Create.createSQL(cfg.Database, cfg.Table)
		err := conn.Exec(qctx, q)
		cancel()
		if err != nil {
			return fail(fmt.Errorf("clickhouse %s: create table %s: %w (statement: %s)", s.addr, s.main, err, q))
		}
	}
	t, err := s.plan(ctx, cfg.Database, cfg.Table, true)
	if err != nil {
		if errors.Is(err, ErrNoTable) {
			err = fmt.Errorf("%w; create it, e.g. CREATE TABLE %s.%s (...) ENGINE = MergeTree() ORDER BY (...), or declare it under create: {columns: [{name, type}, ...], order_by: [...]} in the sink config", err, cfg.Database, cfg.Table)
		}
		return fail(err)
	}
	s.tables[s.main] = t
	if env.Metrics != nil {
		if s.metrics, err = newMetrics(env.Metrics); err != nil {
			return fail(fmt.Errorf("clickhouse: register metrics: %w", err))
		}
	}
	log.Info("clickhouse sink ready", "addr", s.addr, "server_version", version, "table", s.main,
		"columns", t.describe(), "server_defaults", t.skipped)
	return s, nil
}

// BatchLimits is how the runner batches for the sink: up to batch_size
// records or linger, whichever comes first.
func (s *Sink) BatchLimits() (maxRecords int, maxWait time.Duration) {
	return s.cfg.BatchSize, s.cfg.Linger
}

// Close releases the connections.
func (s *Sink) Close(ctx context.Context) error {
	return s.conn.Close()
}

// Write inserts b, one INSERT per destination table. Records whose values
// do not fit their columns are returned in a pipeline.RecordErrors and the
// rest are inserted; a failed INSERT fails the whole call.
func (s *Sink) Write(ctx context.Context, b pipeline.Batch) error {
	var rejected pipeline.RecordErrors
	reject := func(i int, err error) {
		if rejected == nil {
			rejected = pipeline.RecordErrors{}
		}
		rejected[i] = err
	}
	// Group by destination; the common case, no Dest, is one group.
	routed := false
	for i := range b {
		if b[i].Dest != "" {
			routed = true
			break
		}
	}
	if !routed {
		t, err := s.table(ctx, s.main)
		if err != nil {
			return err
		}
		if err := s.writeTable(ctx, t, b, nil, reject); err != nil {
			return err
		}
	} else {
		clear(s.groups)
		for i := range b {
			dest := s.main
			if d := b[i].Dest; d != "" {
				if !strings.Contains(d, ".") {
					d = s.cfg.Database + "." + d
				}
				dest = d
			}
			s.groups[dest] = append(s.groups[dest], i)
		}
		dests := make([]string, 0, len(s.groups))
		for d := range s.groups {
			dests = append(dests, d)
		}
		sort.Strings(dests)
		for _, dest := range dests {
			idx := s.groups[dest]
			t, err := s.table(ctx, dest)
			if err != nil {
				var pe *permanentError
				if errors.As(err, &pe) {
					for _, i := range idx {
						reject(i, err)
						s.metrics.rejected(dest)
					}
					continue
				}
				return err
			}
			if err := s.writeTable(ctx, t, b, idx, reject); err != nil {
				return err
			}
		}
	}
	if rejected != nil {
		return rejected
	}
	return nil
}

// permanentError is a table problem that fails the records routed to it
// for good (their Dest names a table that cannot be written).
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

var destRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$`)

// table returns the plan of "db.table", reading the schema the first time.
func (s *Sink) table(ctx context.Context, dest string) (*table, error) {
	if t, ok := s.tables[dest]; ok {
		return t, nil
	}
	if !destRE.MatchString(dest) {
		return nil, &permanentError{fmt.Errorf("clickhouse: record destination %q is not a table name (table or database.table)", dest)}
	}
	db, name, _ := strings.Cut(dest, ".")
	t, err := s.plan(ctx, db, name, dest == s.main)
	if err != nil {
		if dest != s.main && (errors.Is(err, ErrNoTable) || errors.Is(err, ErrUnsupportedType) || errors.Is(err, errMapping)) {
			return nil, &permanentError{err}
		}
		return nil, err
	}
	s.tables[dest] = t
	return t, nil
}

// writeTable converts the records of b at idx (all when idx is nil) for t
// and inserts those that fit.
func (s *Sink) writeTable(ctx context.Context, t *table, b pipeline.Batch, idx []int, reject func(int, error)) error {
	t.reset()
	n := len(b)
	if idx != nil {
		n = len(idx)
	}
	for k := 0; k < n; k++ {
		i := k
		if idx != nil {
			i = idx[k]
		}
		if err := t.addRecord(&b[i]); err != nil {
			reject(i, err)
			s.metrics.rejected(t.name)
		}
	}
	defer t.reset()
	if t.rows == 0 {
		return nil
	}
	return s.insert(ctx, t)
}

func (s *Sink) insert(ctx context.Context, t *table) (err error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.InsertTimeout)
	defer cancel()
	start := time.Now()
	defer func() {
		s.metrics.observe(t.name, t.rows, time.Since(start), err)
		if err != nil {
			if stale(err) {
				// The table changed under us: read its schema again next time.
				delete(s.tables, t.name)
				s.log.Warn("clickhouse table changed; its schema will be read again", "table", t.name, "err", err)
			}
			err = fmt.Errorf("clickhouse: insert %d rows into %s on %s: %w", t.rows, t.name, s.addr, err)
		}
	}()
	batch, err := s.conn.PrepareBatch(ctx, t.insertSQL)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = batch.Abort()
		}
	}()
	cols := batch.Columns()
	if len(cols) != len(t.cols) {
		return fmt.Errorf("%w: the server expects %d columns, the sink planned %d", errSchemaChanged, len(cols), len(t.cols))
	}
	for i, c := range cols {
		if c.Name() != t.cols[i].name || string(c.Type()) != t.cols[i].typ {
			return fmt.Errorf("%w: column %d is %s %s on the server, %s %s in the sink's plan", errSchemaChanged, i, c.Name(), c.Type(), t.cols[i].name, t.cols[i].typ)
		}
	}
	for i := range t.cols {
		if err := t.cols[i].b.appendTo(batch.Column(i)); err != nil {
			return fmt.Errorf("column %s (%s): %w", t.cols[i].name, t.cols[i].typ, err)
		}
	}
	return batch.Send()
}

var errSchemaChanged = errors.New("table schema changed since the sink read it; reading it again")

// stale reports an insert error after which the table's schema should be
// read again.
func stale(err error) bool {
	if errors.Is(err, errSchemaChanged) {
		return true
	}
	var ex *clickhouse.Exception
	if errors.As(err, &ex) {
		switch ex.Code {
		case codeNotFoundColumnInBlock, codeNoSuchColumnInTable, codeTypeMismatch, codeUnknownTable, codeUnknownDatabase:
			return true
		}
	}
	return false
}

// unsafeString views b as a string without copying. Record values are
// read-only (see pipeline.Record), and the strings made from them are only
// held until the INSERT that copies them has been sent.
func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

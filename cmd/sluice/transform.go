package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/internal/cputime"
	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/runtime/wasm"
)

const transformUsage = `usage: sluice transform test --module m.wasm --input records.jsonl [flags]

Runs a WebAssembly transform on the records of a JSON Lines file (one JSON
value per line; blank lines are skipped) and prints one JSON line per
outcome, in input order:

  {"line":1,"value":{...}}                       an output record
  {"line":1,"value":{...},"key":"k","dest":"t","headers":[["name","value"]]}
                                                 with its key, dest, headers if set
  {"line":2,"filtered":true}                     the input was dropped
  {"line":3,"error":"sluice_process: ..."}       the input failed

"line" is the input's line number. A split input prints one line per
output. A failed record is an outcome, not a failure of the command: the
exit status is 0 unless --expect finds a difference.

With --expect, the outcomes are compared, input line by input line, with a
file in the same format, as JSON values: key order and spacing do not
matter, numbers must be written the same way (1.0 is not 1). On any
difference each one is printed to stderr, with the fields that differ, and
the exit status is 1.

With --bench 3s, it then runs the module for that long on full batches
(the input records repeated to fill --batch-size) through the same host
path a pipeline uses, output checks included, and prints to stderr what a
record costs: wall-clock and CPU ns per record, and records per second on
one core. Compare modules by running them on the same input, one after the
other, on a machine that is otherwise idle.

flags:
`

// transformCmd implements "sluice transform test". args are the arguments
// after "transform". It returns the exit status: 0 on success, 1 on a
// failure or a difference from --expect, 2 on a usage error.
func transformCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "test" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprint(stdout, transformUsage)
			return 0
		}
		fmt.Fprint(stderr, transformUsage)
		return 2
	}
	fs := flag.NewFlagSet("sluice transform test", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, transformUsage)
		fs.PrintDefaults()
	}
	var (
		module     = fs.String("module", "", "the `.wasm` module (required)")
		input      = fs.String("input", "", "the input records, one JSON value per line (`file`; - for stdin) (required)")
		expect     = fs.String("expect", "", "compare the outcomes with this JSON Lines `file`")
		configJSON = fs.String("config-json", "", "the module's config as a JSON `object`")
		timeout    = fs.Duration("timeout", 0, "time limit of one call into the module (default 100ms)")
		memory     = fs.String("memory-limit", "", "memory cap of the module, e.g. 64MiB (default 64MiB)")
		batchSize  = fs.Int("batch-size", 0, "records per call (default 256)")
		benchFor   = fs.Duration("bench", 0, "after the outcomes, measure the module's cost per record for this `long` (e.g. 3s)")
		configKV   kvFlags
	)
	fs.Var(&configKV, "config", "set a config field: `key=value`, repeatable; the value is JSON if it parses (1, true, [..]) else a string; a dotted key (a.b=1) sets a nested field")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *module == "" || *input == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "sluice transform test: --module and --input are required, and there are no positional arguments")
		fs.Usage()
		return 2
	}
	config, err := buildConfig(*configJSON, configKV)
	if err != nil {
		fmt.Fprintf(stderr, "sluice transform test: %v\n", err)
		return 2
	}
	cfg := wasm.Config{Module: *module, Config: config, Timeout: *timeout, BatchSize: *batchSize}
	if *memory != "" {
		if cfg.MemoryLimit, err = wasm.ParseByteSize(*memory); err != nil {
			fmt.Fprintf(stderr, "sluice transform test: --memory-limit: %v\n", err)
			return 2
		}
	}
	if *benchFor < 0 {
		fmt.Fprintln(stderr, "sluice transform test: --bench must be positive")
		return 2
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "sluice transform test: %v\n", err)
		return 2
	}

	records, lines, err := readRecords(*input)
	if err != nil {
		fmt.Fprintf(stderr, "sluice transform test: %v\n", err)
		return 1
	}
	env := pipeline.Env{
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Dir:    ".",
	}
	tr, err := wasm.New(ctx, cfg, env)
	if err != nil {
		fmt.Fprintf(stderr, "sluice transform test: %v\n", err)
		return 1
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = tr.Close(cctx)
	}()
	out, failed, err := tr.Process(ctx, records)
	if err != nil {
		fmt.Fprintf(stderr, "sluice transform test: %v\n", err)
		return 1
	}

	outcomes := outcomeLines(records, lines, out, failed)
	w := bufio.NewWriter(stdout)
	for _, l := range outcomes {
		w.Write(l)
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		fmt.Fprintf(stderr, "sluice transform test: write: %v\n", err)
		return 1
	}
	if *expect != "" {
		if code := checkExpect(outcomes, *expect, stderr); code != 0 {
			return code
		}
	}
	if *benchFor > 0 && len(records) > 0 {
		res, err := benchTransform(ctx, tr, records, cfg.BatchSize, *benchFor)
		if err != nil {
			fmt.Fprintf(stderr, "sluice transform test: --bench: %v\n", err)
			return 1
		}
		fmt.Fprintln(stderr, res)
	}
	return 0
}

// checkExpect compares outcomes with the file expect and reports to
// stderr; it returns the exit status.
func checkExpect(outcomes [][]byte, expect string, stderr io.Writer) int {
	want, err := readExpect(expect)
	if err != nil {
		fmt.Fprintf(stderr, "sluice transform test: --expect: %v\n", err)
		return 1
	}
	if diffs := diffOutcomes(outcomes, want, expect); len(diffs) > 0 {
		for _, d := range diffs {
			fmt.Fprintln(stderr, d)
		}
		fmt.Fprintf(stderr, "FAIL: %d difference(s) from %s\n", len(diffs), expect)
		return 1
	}
	fmt.Fprintf(stderr, "ok: %d outcome(s) match %s\n", len(outcomes), expect)
	return 0
}

// benchResult is what --bench measured.
type benchResult struct {
	batch, inputs int           // records per call; distinct input records
	failed        int           // records of a batch that fail
	calls         int           // Process calls of one batch
	wall, cpu     time.Duration // elapsed; CPU time of the whole process
}

func (r benchResult) String() string {
	n := float64(r.calls * r.batch)
	s := fmt.Sprintf("bench: %d calls of %d records (the input's %d repeated) in %s: %.0f ns/record wall, %.0f ns/record CPU (whole process), %.0f records/s",
		r.calls, r.batch, r.inputs, r.wall.Round(time.Millisecond),
		float64(r.wall.Nanoseconds())/n, float64(r.cpu.Nanoseconds())/n, n/r.wall.Seconds())
	if r.failed > 0 {
		s += fmt.Sprintf("; %d of the %d records of a batch fail, and count in these figures", r.failed, r.batch)
	}
	return s
}

// benchTransform calls tr with batches of batch records, the inputs
// repeated, until d has passed (after one warm-up call), and measures the
// time per record.
func benchTransform(ctx context.Context, tr *wasm.Transform, inputs pipeline.Batch, batch int, d time.Duration) (benchResult, error) {
	in := make(pipeline.Batch, batch)
	for i := range in {
		in[i] = inputs[i%len(inputs)]
		in[i].ID.Seq = uint64(i + 1)
	}
	res := benchResult{batch: batch, inputs: len(inputs)}
	_, failed, err := tr.Process(ctx, in) // warm-up
	if err != nil {
		return res, err
	}
	res.failed = len(failed)
	cpu0, start := cputime.Self(), time.Now()
	for res.calls == 0 || time.Since(start) < d {
		if _, _, err := tr.Process(ctx, in); err != nil {
			return res, err
		}
		res.calls++
	}
	res.wall, res.cpu = time.Since(start), cputime.Self()-cpu0
	return res, nil
}

// kvFlags collects repeated key=value flags.
type kvFlags []string

func (k *kvFlags) String() string { return strings.Join(*k, ",") }

func (k *kvFlags) Set(v string) error {
	key, _, ok := strings.Cut(v, "=")
	if !ok || slices.Contains(strings.Split(key, "."), "") {
		return fmt.Errorf("want key=value (a.b=value for a nested field), got %q", v)
	}
	*k = append(*k, v)
	return nil
}

// buildConfig merges --config-json and then each --config key=value.
func buildConfig(js string, kvs kvFlags) (map[string]any, error) {
	config := map[string]any{}
	if js != "" {
		if err := json.Unmarshal([]byte(js), &config); err != nil {
			return nil, fmt.Errorf("--config-json: want a JSON object: %v", err)
		}
	}
	for _, kv := range kvs {
		key, raw, _ := strings.Cut(kv, "=")
		var value any = raw
		var parsed any
		if json.Unmarshal([]byte(raw), &parsed) == nil {
			value = parsed
		}
		m := config
		parts := strings.Split(key, ".")
		for _, p := range parts[:len(parts)-1] {
			next, ok := m[p].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[p] = next
			}
			m = next
		}
		m[parts[len(parts)-1]] = value
	}
	return config, nil
}

// readRecords reads one record per non-blank line of path ("-" is stdin).
// Each record's ID is input/<line number>.
func readRecords(path string) (pipeline.Batch, []int, error) {
	var r io.Reader = os.Stdin
	name := "stdin"
	if path != "-" {
		name = path
		f, err := os.Open(path)
		if err != nil {
			return nil, nil, fmt.Errorf("--input: %w", err)
		}
		defer f.Close()
		r = f
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	var recs pipeline.Batch
	var lines []int
	now := time.Now()
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		if !json.Valid(line) {
			var v json.RawMessage
			err := json.Unmarshal(line, &v)
			return nil, nil, fmt.Errorf("--input %s:%d: not a JSON value: %v", name, n, err)
		}
		recs = append(recs, pipeline.Record{
			Value:    bytes.Clone(line),
			ID:       pipeline.ID{Device: "input", Seq: uint64(n)},
			Received: now,
		})
		lines = append(lines, n)
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("--input: %w", err)
	}
	return recs, lines, nil
}

// outcome is one printed line.
type outcome struct {
	Line     int             `json:"line"`
	Value    json.RawMessage `json:"value,omitempty"`
	ValueRaw string          `json:"value_raw,omitempty"` // a value that is not JSON (validate_output off)
	Key      string          `json:"key,omitempty"`
	Dest     string          `json:"dest,omitempty"`
	Headers  [][2]string     `json:"headers,omitempty"` // [name, value] pairs, in order: names may repeat
	Filtered bool            `json:"filtered,omitempty"`
	Error    string          `json:"error,omitempty"`
}

// outcomeLines lists, in input order, every output, failure and filtered
// input as a JSON line.
func outcomeLines(in pipeline.Batch, lines []int, out pipeline.Batch, failed []pipeline.Failed) [][]byte {
	bySeq := map[uint64][]outcome{}
	for _, r := range out {
		o := outcome{Line: int(r.ID.Seq), Key: string(r.Key), Dest: r.Dest}
		if json.Valid(r.Value) {
			o.Value = r.Value
		} else {
			o.ValueRaw = string(r.Value)
		}
		for _, h := range r.Headers {
			o.Headers = append(o.Headers, [2]string{h.Key, string(h.Value)})
		}
		bySeq[r.ID.Seq] = append(bySeq[r.ID.Seq], o)
	}
	for _, f := range failed {
		msg := f.Err.Error()
		var we *wasm.Error
		if errors.As(f.Err, &we) { // the module is implied: keep --expect files independent of its path
			msg = strings.TrimPrefix(msg, "wasm "+we.Module+": ")
		}
		bySeq[f.Record.ID.Seq] = append(bySeq[f.Record.ID.Seq], outcome{Line: int(f.Record.ID.Seq), Error: msg})
	}
	var res [][]byte
	for _, n := range lines {
		list := bySeq[uint64(n)]
		if len(list) == 0 {
			list = []outcome{{Line: n, Filtered: true}}
		}
		for _, o := range list {
			b, err := marshalLine(o)
			if err != nil { // a value json.Valid accepted but Marshal did not
				b, _ = marshalLine(outcome{Line: o.Line, ValueRaw: string(o.Value)})
			}
			res = append(res, b)
		}
	}
	return res
}

// marshalLine encodes o on one line, without json.Marshal's HTML escaping:
// a value holding "<" prints as the transform wrote it, not as "\u003c".
func marshalLine(o outcome) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(o); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// expected is one line of an --expect file.
type expected struct {
	n    int    // its line number in the file
	text []byte // the line
}

// readExpect reads the non-blank lines of an --expect file.
func readExpect(path string) ([]expected, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var lines []expected
	for i, l := range bytes.Split(b, []byte("\n")) {
		if l = bytes.TrimSpace(l); len(l) > 0 {
			lines = append(lines, expected{i + 1, l})
		}
	}
	return lines, nil
}

// diffOutcomes compares the outcomes with the --expect file's lines as JSON
// values, input line by input line, so that a missing or extra outcome
// shows as that and does not shift every outcome after it. Each difference
// is one message, with both lines and the fields that differ.
func diffOutcomes(got [][]byte, want []expected, wantPath string) []string {
	var diffs []string
	type item struct {
		text []byte
		v    any
	}
	gotBy, wantBy := map[int][]item{}, map[int][]item{}
	var order []int
	seen := map[int]bool{}
	add := func(by map[int][]item, n int, it item) {
		by[n] = append(by[n], it)
		if !seen[n] {
			seen[n] = true
			order = append(order, n)
		}
	}
	for _, g := range got {
		v, _ := decodeJSON(g) // our own output: always JSON with a line
		add(gotBy, lineOf(v), item{g, v})
	}
	for _, w := range want {
		v, err := decodeJSON(w.text)
		if err != nil {
			diffs = append(diffs, fmt.Sprintf("%s:%d: not JSON: %v", wantPath, w.n, err))
			continue
		}
		n := lineOf(v)
		if n <= 0 {
			diffs = append(diffs, fmt.Sprintf(`%s:%d: no "line" (the input's line number, a positive integer): %s`, wantPath, w.n, w.text))
			continue
		}
		add(wantBy, n, item{w.text, v})
	}
	slices.Sort(order)
	for _, n := range order {
		gs, ws := gotBy[n], wantBy[n]
		for i := range max(len(gs), len(ws)) {
			switch {
			case i >= len(ws):
				diffs = append(diffs, fmt.Sprintf("input line %d: unexpected outcome\n  got  %s", n, gs[i].text))
			case i >= len(gs):
				diffs = append(diffs, fmt.Sprintf("input line %d: missing outcome\n  want %s", n, ws[i].text))
			default:
				if where := differences(gs[i].v, ws[i].v); len(where) > 0 {
					diffs = append(diffs, fmt.Sprintf("input line %d: %s\n  got  %s\n  want %s", n, strings.Join(where, "; "), gs[i].text, ws[i].text))
				}
			}
		}
	}
	return diffs
}

// lineOf returns the "line" member of an outcome, or 0.
func lineOf(v any) int {
	m, _ := v.(map[string]any)
	num, _ := m["line"].(json.Number)
	n, err := strconv.Atoi(string(num))
	if err != nil {
		return 0
	}
	return n
}

// differences lists where got and want (decoded JSON) differ, as paths
// (value.temp_f, headers[1]) with both sides, at most 5; none when they are
// equal.
func differences(got, want any) []string {
	var out []string
	jsonDiff("", got, want, &out)
	if len(out) > 5 {
		out = append(out[:5], fmt.Sprintf("and %d more", len(out)-5))
	}
	return out
}

func jsonDiff(path string, got, want any, out *[]string) {
	at := path
	if at == "" {
		at = "the outcome"
	}
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			break
		}
		keys := slices.Sorted(maps.Keys(w))
		for _, k := range slices.Sorted(maps.Keys(g)) {
			if _, ok := w[k]; !ok {
				keys = append(keys, k)
			}
		}
		for _, k := range keys {
			p := k
			if path != "" {
				p = path + "." + k
			}
			gv, gok := g[k]
			wv, wok := w[k]
			switch {
			case !gok:
				*out = append(*out, fmt.Sprintf("%s: missing, want %s", p, compact(wv)))
			case !wok:
				*out = append(*out, fmt.Sprintf("%s: got %s, want none", p, compact(gv)))
			default:
				jsonDiff(p, gv, wv, out)
			}
		}
		return
	case []any:
		g, ok := got.([]any)
		if !ok {
			break
		}
		if len(g) != len(w) {
			*out = append(*out, fmt.Sprintf("%s: got %d elements, want %d", at, len(g), len(w)))
			return
		}
		for i := range w {
			jsonDiff(fmt.Sprintf("%s[%d]", path, i), g[i], w[i], out)
		}
		return
	}
	if !reflect.DeepEqual(got, want) {
		*out = append(*out, fmt.Sprintf("%s: got %s, want %s", at, compact(got), compact(want)))
	}
}

// compact renders a decoded JSON value, shortened when it is long.
func compact(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	s := strings.TrimSpace(b.String())
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}

func decodeJSON(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, errors.New("more than one JSON value on the line")
	}
	return v, nil
}

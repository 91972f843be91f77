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
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/runtime/wasm"
)

const transformUsage = `usage: sluice transform test --module m.wasm --input records.jsonl [flags]

Runs a WebAssembly transform on the records of a JSON Lines file (one JSON
value per line; blank lines are skipped) and prints one JSON line per
outcome, in input order:

  {"line":1,"value":{...}}                       an output record
  {"line":1,"value":{...},"key":"k","dest":"t"}  with its key, dest, headers if set
  {"line":2,"filtered":true}                     the input was dropped
  {"line":3,"error":"sluice_process: ..."}       the input failed

A split input prints one line per output. With --expect, the outcomes are
compared with a file in the same format (as JSON values: key order and
spacing do not matter) and the exit status is 1 on any difference.

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
	if *expect == "" {
		return 0
	}
	want, err := readLines(*expect)
	if err != nil {
		fmt.Fprintf(stderr, "sluice transform test: --expect: %v\n", err)
		return 1
	}
	if diffs := diffOutcomes(outcomes, want); len(diffs) > 0 {
		for _, d := range diffs {
			fmt.Fprintln(stderr, d)
		}
		fmt.Fprintf(stderr, "FAIL: %d difference(s) from %s\n", len(diffs), *expect)
		return 1
	}
	fmt.Fprintf(stderr, "ok: %d outcome(s) match %s\n", len(outcomes), *expect)
	return 0
}

// kvFlags collects repeated key=value flags.
type kvFlags []string

func (k *kvFlags) String() string { return strings.Join(*k, ",") }

func (k *kvFlags) Set(v string) error {
	if !strings.Contains(v, "=") || strings.HasPrefix(v, "=") {
		return fmt.Errorf("want key=value, got %q", v)
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
	if path != "-" {
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
			return nil, nil, fmt.Errorf("%s:%d: not a JSON value", path, n)
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
	Line     int               `json:"line"`
	Value    json.RawMessage   `json:"value,omitempty"`
	ValueRaw string            `json:"value_raw,omitempty"` // a value that is not JSON (validate_output off)
	Key      string            `json:"key,omitempty"`
	Dest     string            `json:"dest,omitempty"`
	Headers  map[string]string `json:"headers,omitempty"`
	Filtered bool              `json:"filtered,omitempty"`
	Error    string            `json:"error,omitempty"`
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
		if len(r.Headers) > 0 {
			o.Headers = map[string]string{}
			for _, h := range r.Headers {
				o.Headers[h.Key] = string(h.Value)
			}
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
			b, err := json.Marshal(o)
			if err != nil { // a value json.Valid accepted but Marshal did not
				b, _ = json.Marshal(outcome{Line: o.Line, ValueRaw: string(o.Value)})
			}
			res = append(res, b)
		}
	}
	return res
}

func readLines(path string) ([][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var lines [][]byte
	for _, l := range bytes.Split(b, []byte("\n")) {
		if l = bytes.TrimSpace(l); len(l) > 0 {
			lines = append(lines, l)
		}
	}
	return lines, nil
}

// diffOutcomes compares got and want line by line as JSON values.
func diffOutcomes(got, want [][]byte) []string {
	var diffs []string
	for i := 0; i < max(len(got), len(want)); i++ {
		switch {
		case i >= len(want):
			diffs = append(diffs, fmt.Sprintf("outcome %d: unexpected %s", i+1, got[i]))
		case i >= len(got):
			diffs = append(diffs, fmt.Sprintf("outcome %d: missing %s", i+1, want[i]))
		default:
			g, errG := decodeJSON(got[i])
			w, errW := decodeJSON(want[i])
			if errW != nil {
				diffs = append(diffs, fmt.Sprintf("outcome %d: the expected line is not JSON: %v", i+1, errW))
			} else if errG != nil || !reflect.DeepEqual(g, w) {
				diffs = append(diffs, fmt.Sprintf("outcome %d:\n  got  %s\n  want %s", i+1, got[i], want[i]))
			}
		}
	}
	return diffs
}

func decodeJSON(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

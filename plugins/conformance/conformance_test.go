package conformance

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/runtime/wasm"
)

var update = flag.Bool("update", false, "rewrite the golden files from the Go examples' outputs")

// The cases: an example, its config, and the input file. Each language's
// build of the example must produce the outputs in testdata/golden/<name>.txt,
// byte for byte: values, keys, destinations, headers, parts and failures.
var cases = []struct {
	name    string
	example string
	config  string
	input   string
	headers [][]pipeline.Header // when set, record i gets headers[i%len(headers)]
}{
	{"identity", "identity", "", "enrich.jsonl", nil},
	{"enrich", "enrich", `{"site":"lab-1"}`, "enrich.jsonl", nil},
	{"enrich-fields", "enrich", `{"site":"lab \"2\" <é>","zone":{"a":[1, 2.50]},"n":-0.0,"temp":100}`, "enrich.jsonl", nil},
	{"enrich-noconfig", "enrich", "", "enrich.jsonl", nil},
	{"filter", "filter", `{"field":"temp","min":0}`, "filter.jsonl", nil},
	{"filter-min", "filter", `{"field":"temp","min":-1.5e-300}`, "filter.jsonl", nil},
	{"split", "split", "", "split.jsonl", nil},
	{"split-renamed", "split", `{"field":"readings","as":"d"}`, "split.jsonl", nil},
	{"route", "route", `{"field":"kind","routes":{"alert":"alerts","reading":"readings"}}`, "route.jsonl", nil},
	{"route-default", "route", `{"routes":{"alert":"alerts"},"default":"other","key":""}`, "route.jsonl", nil},
	{"headers", "headers", `{"lift":{"trace-id":"trace_id"},"tag":{"event-type":"kind"},"drop":["x-debug"]}`, "headers.jsonl", headerSets},
	{"headers-more", "headers", `{"lift":{"x-debug":"debug","trace-id":"debug","h":"kind"},"tag":{"x-debug":"kind","trace-id":"kind","é":"device_id"},"drop":["trace-id","event-type","nope"]}`, "headers.jsonl", headerSets},
	{"headers-none", "headers", "", "headers.jsonl", headerSets},
}

// headerSets are the inputs' headers in the headers cases: repeated names,
// a name that differs only in case, empty values, escapes and Unicode.
var headerSets = [][]pipeline.Header{
	nil,
	{{Key: "trace-id", Value: []byte("abc-1")}, {Key: "x-debug", Value: []byte("1")}, {Key: "x-debug", Value: []byte("2")}},
	{{Key: "event-type", Value: []byte("old")}, {Key: "trace-id", Value: []byte("tr\"ace\\\n✓ é")}, {Key: "event-type", Value: []byte("older")}},
	{{Key: "x-debug", Value: []byte("only")}},
	{{Key: "trace-id"}, {Key: "Event-Type", Value: []byte("case")}, {Key: "é", Value: []byte("accent")}},
}

func TestConformance(t *testing.T) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := batch(t, readLines(t, c.input))
			if c.headers != nil {
				for i := range in {
					in[i].Headers = c.headers[i%len(c.headers)]
				}
			}
			golden := filepath.Join("testdata", "golden", c.name+".txt")
			got := map[string]string{}
			for _, lang := range langs {
				tr, err := newTransform(t, module(lang, c.example), c.config)
				if err != nil {
					t.Fatalf("%s: New: %v", lang, err)
				}
				got[lang] = run(t, tr, in)
				tr.Close(t.Context())
			}
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, []byte(got["go"]), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to write it from the Go example)", err)
			}
			for _, lang := range langs {
				if got[lang] != string(want) {
					t.Errorf("%s differs from %s:\n%s", lang, golden, diff(string(want), got[lang]))
				}
			}
		})
	}
}

// TestPassthrough checks the WAT module, written to the ABI by hand, against
// the identity examples.
func TestPassthrough(t *testing.T) {
	for _, input := range []string{"enrich.jsonl", "filter.jsonl", "split.jsonl", "route.jsonl"} {
		in := batch(t, readLines(t, input))
		want := ""
		for _, lang := range append([]string{"wat"}, langs...) {
			path := module(lang, "identity")
			if lang == "wat" {
				path = module("wat", "passthrough")
			}
			tr, err := newTransform(t, path, "")
			if err != nil {
				t.Fatalf("%s: New: %v", lang, err)
			}
			got := run(t, tr, in)
			tr.Close(t.Context())
			if lang == "wat" {
				want = got
				continue
			}
			if got != want {
				t.Errorf("%s: %s identity differs from the WAT passthrough:\n%s", input, lang, diff(want, got))
			}
		}
	}
}

// TestConfigErrors checks that every language refuses the same bad configs.
// The messages may differ; the refusal may not.
func TestConfigErrors(t *testing.T) {
	bad := []struct {
		example string
		config  string
	}{
		{"filter", ""},
		{"filter", `{"field":"temp"}`},
		{"filter", `{"min":0}`},
		{"filter", `{"field":"","min":0}`},
		{"filter", `{"field":"temp","min":"0"}`},
		{"filter", `{"field":"temp","min":null}`},
		{"filter", `{"field":7,"min":0}`},
		{"route", ""},
		{"route", `{"routes":{}}`},
		{"route", `{"routes":{"a":1}}`},
		{"route", `{"routes":{"a":"b"},"field":3}`},
		{"route", `{"routes":{"a":"b"},"default":true}`},
		{"headers", `{"lift":[]}`},
		{"headers", `{"lift":{"a":1}}`},
		{"headers", `{"tag":"kind"}`},
		{"headers", `{"tag":{"a":null}}`},
		{"headers", `{"drop":"x-debug"}`},
		{"headers", `{"drop":["a",1]}`},
	}
	for _, b := range bad {
		for _, lang := range langs {
			tr, err := newTransform(t, module(lang, b.example), b.config)
			if err == nil {
				tr.Close(t.Context())
				t.Errorf("%s %s with config %s: New succeeded, want an init error", lang, b.example, b.config)
				continue
			}
			if !errors.Is(err, wasm.ErrInit) {
				t.Errorf("%s %s with config %s: got %v, want ErrInit", lang, b.example, b.config, err)
			}
		}
	}
}

// diff shows the lines of got that are not in want and the reverse.
func diff(want, got string) string {
	wl, gl := strings.Split(want, "\n"), strings.Split(got, "\n")
	in := func(s string, l []string) bool {
		for _, x := range l {
			if x == s {
				return true
			}
		}
		return false
	}
	var b strings.Builder
	for _, l := range wl {
		if !in(l, gl) {
			b.WriteString("- " + l + "\n")
		}
	}
	for _, l := range gl {
		if !in(l, wl) {
			b.WriteString("+ " + l + "\n")
		}
	}
	return b.String()
}

package main

import (
	"bytes"
	"context"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/internal/testenv"
)

// transformTest runs `sluice transform test args...` in process and returns
// its exit code, stdout, and stderr without the host's log lines. Every call
// gets a generous time limit per call into the module: the machine running
// the tests may be busy, and a record that times out would fail.
func transformTest(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	args = append([]string{"transform", "test", "--timeout", "10s"}, args...)
	code := run(context.Background(), args, &stdout, &stderr)
	var errLines []string
	for _, l := range strings.Split(stderr.String(), "\n") {
		if l != "" && !strings.HasPrefix(l, "time=") { // slog's text lines
			errLines = append(errLines, l)
		}
	}
	return code, stdout.String(), strings.Join(errLines, "\n")
}

func lines(s ...string) string { return strings.Join(s, "\n") + "\n" }

// TestTransformTest runs `sluice transform test` on example transforms built
// from source: what it prints, --config, --expect and its diff, and the
// errors a guest author sees for bad input.
func TestTransformTest(t *testing.T) {
	enrich := testenv.BuildGoGuest(t, "enrich")
	filter := testenv.BuildGoGuest(t, "filter")
	split := testenv.BuildGoGuest(t, "split")
	meta := testenv.BuildWAT(t, "cmd/sluice/testdata/meta.wat")
	abi2 := testenv.BuildWAT(t, "cmd/sluice/testdata/abi2.wat")

	// Line 2 is blank (skipped, but counted), line 3 is not an object, so
	// enrich fails it; line 4 has characters json.Marshal would escape.
	records := write(t, "records.jsonl", lines(
		`{"device_id":"d1","temp":21.5}`,
		``,
		`[1, 2]`,
		`{"device_id":"d2","note":"<ok> & \"quoted\""}`,
	))
	enrichOut := lines(
		`{"line":1,"value":{"device_id":"d1","temp":21.5,"site":"lab-1","temp_f":70.7}}`,
		`{"line":3,"error":"sluice: value is not a JSON object"}`,
		`{"line":4,"value":{"device_id":"d2","note":"<ok> & \"quoted\"","site":"lab-1"}}`,
	)

	t.Run("outcomes", func(t *testing.T) {
		code, out, errOut := transformTest(t, "--module", enrich, "--input", records, "--config", "site=lab-1")
		if code != 0 || out != enrichOut || errOut != "" {
			t.Fatalf("exit %d\nstdout:\n%s\nwant:\n%s\nstderr:\n%s", code, out, enrichOut, errOut)
		}
	})

	t.Run("config reaches the guest", func(t *testing.T) {
		// enrich sets every config field on the record. Values are JSON when
		// they parse (3, true), else strings (7b); a dotted key nests; a
		// --config overrides the same field of --config-json.
		in := write(t, "in.jsonl", `{"temp":0}`+"\n")
		code, out, errOut := transformTest(t, "--module", enrich, "--input", in,
			"--config-json", `{"owner":"ops","site":"overridden"}`,
			"--config", "site=lab-1", "--config", "n=3", "--config", "on=true", "--config", "zone.room=7b")
		want := lines(`{"line":1,"value":{"temp":0,"n":3,"on":true,"owner":"ops","site":"lab-1","zone":{"room":"7b"},"temp_f":32}}`)
		if code != 0 || out != want {
			t.Fatalf("exit %d\nstdout:\n%s\nwant:\n%s\nstderr:\n%s", code, out, want, errOut)
		}
	})

	t.Run("filtered", func(t *testing.T) {
		in := write(t, "in.jsonl", lines(`{"temp":-5}`, `{"temp":5}`, `{"x":1}`))
		code, out, errOut := transformTest(t, "--module", filter, "--input", in, "--config", "field=temp", "--config", "min=0")
		want := lines(`{"line":1,"filtered":true}`, `{"line":2,"value":{"temp":5}}`, `{"line":3,"value":{"x":1}}`)
		if code != 0 || out != want {
			t.Fatalf("exit %d\nstdout:\n%s\nwant:\n%s\nstderr:\n%s", code, out, want, errOut)
		}
	})

	t.Run("split", func(t *testing.T) {
		in := write(t, "in.jsonl", lines(`{"d":1,"readings":[1,{"a":2},"x"]}`, `{"d":2,"readings":[]}`, `{"d":3}`))
		code, out, errOut := transformTest(t, "--module", split, "--input", in)
		want := lines(
			`{"line":1,"value":{"d":1,"reading":1}}`,
			`{"line":1,"value":{"d":1,"reading":{"a":2}}}`,
			`{"line":1,"value":{"d":1,"reading":"x"}}`,
			`{"line":2,"filtered":true}`,
			`{"line":3,"value":{"d":3}}`,
		)
		if code != 0 || out != want {
			t.Fatalf("exit %d\nstdout:\n%s\nwant:\n%s\nstderr:\n%s", code, out, want, errOut)
		}
	})

	t.Run("key, dest and headers", func(t *testing.T) {
		// Headers print as [name, value] pairs in their order, so that a
		// repeated name shows twice.
		in := write(t, "in.jsonl", lines(`{"a":1}`, `"s"`))
		code, out, errOut := transformTest(t, "--module", meta, "--input", in)
		want := lines(
			`{"line":1,"value":{"a":1},"key":"k1","dest":"topic-a","headers":[["h","1"],["h","2"]]}`,
			`{"line":2,"value":"s","key":"k1","dest":"topic-a","headers":[["h","1"],["h","2"]]}`,
		)
		if code != 0 || out != want {
			t.Fatalf("exit %d\nstdout:\n%s\nwant:\n%s\nstderr:\n%s", code, out, want, errOut)
		}
	})

	t.Run("expect matches", func(t *testing.T) {
		// Key order, spacing and blank lines do not matter.
		expect := write(t, "expect.jsonl", lines(
			`{"value": {"site": "lab-1", "temp_f": 70.7, "device_id": "d1", "temp": 21.5}, "line": 1}`,
			``,
			`{"error": "sluice: value is not a JSON object", "line": 3}`,
			`{"line":4,"value":{"device_id":"d2","note":"\u003cok> & \"quoted\"","site":"lab-1"}}`,
		))
		code, out, errOut := transformTest(t, "--module", enrich, "--input", records, "--config", "site=lab-1", "--expect", expect)
		if want := "ok: 3 outcome(s) match " + expect; code != 0 || out != enrichOut || errOut != want {
			t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s\nwant exit 0 and stderr:\n%s", code, out, errOut, want)
		}
	})

	t.Run("expect differs", func(t *testing.T) {
		// Line 1 has another temp_f and no site, line 3's failure is missing,
		// and line 4 expects two outputs: each difference is reported once,
		// against its input line, and does not shift the others.
		expect := write(t, "expect.jsonl", lines(
			`{"line":1,"value":{"device_id":"d1","temp":21.5,"temp_f":70.8}}`,
			`{"line":4,"value":{"device_id":"d2","note":"<ok> & \"quoted\"","site":"lab-1"}}`,
			`{"line":4,"filtered":true}`,
		))
		code, out, errOut := transformTest(t, "--module", enrich, "--input", records, "--config", "site=lab-1", "--expect", expect)
		want := strings.Join([]string{
			`input line 1: value.temp_f: got 70.7, want 70.8; value.site: got "lab-1", want none`,
			`  got  {"line":1,"value":{"device_id":"d1","temp":21.5,"site":"lab-1","temp_f":70.7}}`,
			`  want {"line":1,"value":{"device_id":"d1","temp":21.5,"temp_f":70.8}}`,
			`input line 3: unexpected outcome`,
			`  got  {"line":3,"error":"sluice: value is not a JSON object"}`,
			`input line 4: missing outcome`,
			`  want {"line":4,"filtered":true}`,
			`FAIL: 3 difference(s) from ` + expect,
		}, "\n")
		if code != 1 || out != enrichOut || errOut != want {
			t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s\nwant exit 1 and stderr:\n%s", code, out, errOut, want)
		}
	})

	t.Run("expect file errors", func(t *testing.T) {
		expect := write(t, "expect.jsonl", lines(`{"value":{}}`, `{"line":1,`, `{"line":1} {"line":2}`))
		code, _, errOut := transformTest(t, "--module", enrich, "--input", records, "--config", "site=lab-1", "--expect", expect)
		for _, want := range []string{
			expect + `:1: no "line" (the input's line number, a positive integer): {"value":{}}`,
			expect + `:2: not JSON: unexpected EOF`,
			expect + `:3: not JSON: more than one JSON value on the line`,
		} {
			if code != 1 || !strings.Contains(errOut, want) {
				t.Fatalf("exit %d, stderr:\n%s\nwant exit 1 and a line:\n%s", code, errOut, want)
			}
		}
	})

	t.Run("errors", func(t *testing.T) {
		dir := t.TempDir()
		missing := filepath.Join(dir, "missing.wasm")
		notWasm := write(t, "junk.wasm", "not wasm")
		malformed := write(t, "bad.jsonl", lines(`{"a":1}`, ``, `{"a":`))
		garbage := write(t, "garbage.jsonl", lines(`{"a":1}`, `{"a":1} trailing`))
		noInput := filepath.Join(dir, "none.jsonl")
		tests := []struct {
			name string
			args []string
			code int
			want string // the message, exactly, or a prefix when it ends with "..."
		}{
			{"missing module", []string{"--module", missing, "--input", records}, 1,
				"sluice transform test: wasm " + missing + ": read module: open " + missing + ": no such file or directory"},
			{"not a module", []string{"--module", notWasm, "--input", records}, 1,
				"sluice transform test: wasm " + notWasm + ": load: not a WebAssembly module (no \\0asm magic)"},
			{"wrong ABI version", []string{"--module", abi2, "--input", records}, 1,
				"sluice transform test: wasm " + abi2 + ": sluice_abi_version: returned 2, want 1"},
			{"malformed line", []string{"--module", enrich, "--input", malformed}, 1,
				"sluice transform test: --input " + malformed + ":3: not a JSON value: unexpected end of JSON input"},
			{"trailing garbage", []string{"--module", enrich, "--input", garbage}, 1,
				"sluice transform test: --input " + garbage + ":2: not a JSON value: invalid character 't' after top-level value"},
			{"missing input file", []string{"--module", enrich, "--input", noInput}, 1,
				"sluice transform test: --input: open " + noInput + ": no such file or directory"},
			{"config refused by the guest", []string{"--module", filter, "--input", records}, 1,
				"sluice transform test: wasm " + filter + `: sluice_init: filter: config needs "field" and "min", e.g. {field: temp, min: 0}`},
			{"bad --config", []string{"--module", enrich, "--input", records, "--config", "site"}, 2,
				`invalid value "site" for flag -config: want key=value (a.b=value for a nested field), got "site"...`},
			{"empty --config key", []string{"--module", enrich, "--input", records, "--config", "a..b=1"}, 2,
				`invalid value "a..b=1" for flag -config: want key=value (a.b=value for a nested field), got "a..b=1"...`},
			{"bad --config-json", []string{"--module", enrich, "--input", records, "--config-json", "[1]"}, 2,
				"sluice transform test: --config-json: want a JSON object: json: cannot unmarshal array into Go value of type map[string]interface {}"},
			{"no --input", []string{"--module", enrich}, 2,
				"sluice transform test: --module and --input are required, and there are no positional arguments..."},
			{"missing --expect file", []string{"--module", enrich, "--input", records, "--expect", noInput}, 1,
				"sluice transform test: --expect: open " + noInput + ": no such file or directory"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				code, _, errOut := transformTest(t, tc.args...)
				ok := errOut == tc.want
				if prefix, cut := strings.CutSuffix(tc.want, "..."); cut {
					ok = strings.HasPrefix(errOut, prefix)
				}
				if code != tc.code || !ok {
					t.Fatalf("exit %d, stderr:\n%s\nwant exit %d and:\n%s", code, errOut, tc.code, tc.want)
				}
			})
		}
	})

	t.Run("bench", func(t *testing.T) {
		// The outcomes as without --bench, then one line of figures; the
		// failing line 3 is counted in them (one record in three of each
		// batch of 6), not an error.
		code, out, errOut := transformTest(t, "--module", enrich, "--input", records, "--config", "site=lab-1",
			"--batch-size", "6", "--bench", "200ms")
		m := regexp.MustCompile(`^bench: (\d+) calls of 6 records \(the input's 3 repeated\) in \S+: (\d+) ns/record wall, (\d+) ns/record CPU \(whole process\), (\d+) records/s; 2 of the 6 records of a batch fail, and count in these figures$`).FindStringSubmatch(errOut)
		if code != 0 || out != enrichOut || m == nil {
			t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
		}
		calls, _ := strconv.Atoi(m[1])
		wall, _ := strconv.Atoi(m[2])
		rate, _ := strconv.Atoi(m[4])
		if calls < 1 || wall <= 0 || rate <= 0 {
			t.Fatalf("figures out of range: %s", errOut)
		}
		// records/s and ns/record are the same measure.
		if r := float64(rate) * float64(wall) / 1e9; r < 0.98 || r > 1.02 {
			t.Fatalf("records/s × ns/record = %.3f s, want 1: %s", r, errOut)
		}
		if code, _, errOut := transformTest(t, "--module", enrich, "--input", records, "--bench", "-1s"); code != 2 || errOut != "sluice transform test: --bench must be positive" {
			t.Fatalf("--bench -1s: exit %d, stderr %q", code, errOut)
		}
	})

	t.Run("usage", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), []string{"transform", "tset"}, &stdout, &stderr); code != 2 ||
			!strings.HasPrefix(stderr.String(), "usage: sluice transform test") {
			t.Fatalf("transform tset: exit %d, stderr:\n%s", code, stderr.String())
		}
		stdout.Reset()
		if code := run(context.Background(), []string{"transform", "--help"}, &stdout, &stderr); code != 0 ||
			!strings.Contains(stdout.String(), `{"line":2,"filtered":true}`) {
			t.Fatalf("transform --help: exit %d, stdout:\n%s", code, stdout.String())
		}
	})
}

package wasm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sluicehq/sluice/pipeline"
	"go.yaml.in/yaml/v3"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		field string // of the error, "" for none
	}{
		{"defaults", Config{Module: "m.wasm"}, ""},
		{"no module", Config{}, "module"},
		{"negative timeout", Config{Module: "m.wasm", Timeout: -1}, "timeout"},
		{"memory too big", Config{Module: "m.wasm", MemoryLimit: 5 << 30}, "memory_limit"},
		{"negative instances", Config{Module: "m.wasm", Instances: -1}, "instances"},
		{"negative batch", Config{Module: "m.wasm", BatchSize: -2}, "batch_size"},
		{"bad env", Config{Module: "m.wasm", Grants: Grants{Env: map[string]string{"A=B": "x"}}}, "grants.env"},
		{"config not JSON", Config{Module: "m.wasm", Config: map[string]any{"f": func() {}}}, "config"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			var fe *pipeline.FieldError
			switch {
			case tt.field == "" && err != nil:
				t.Fatalf("got %v, want nil", err)
			case tt.field != "" && (!errors.As(err, &fe) || fe.Field != tt.field):
				t.Fatalf("got %v, want an error on %s", err, tt.field)
			}
		})
	}
	c := Config{Module: "m.wasm"}
	c.Validate()
	if c.MemoryLimit != 64<<20 || c.Timeout != 100*time.Millisecond || c.Instances < 1 || c.BatchSize != 256 || !*c.ValidateOutput {
		t.Fatalf("defaults: got %+v", c)
	}
}

func TestConfigYAML(t *testing.T) {
	src := `
module: enrich.wasm
config: { site: lab-1, n: 2 }
memory_limit: 32MiB
timeout: 250ms
grants: { allow_clock: true, env: { A: b } }
`
	var c Config
	if err := yaml.Unmarshal([]byte(src), &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg, _ := c.configJSON()
	if c.MemoryLimit != 32<<20 || c.Timeout != 250*time.Millisecond || !c.Grants.AllowClock || c.Grants.Env["A"] != "b" || string(cfg) != `{"n":2,"site":"lab-1"}` {
		t.Fatalf("got %+v, config %s", c, cfg)
	}
	if err := yaml.Unmarshal([]byte("module: m\nmemory_limit: 64 furlongs\n"), &c); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("bad size: got %v", err)
	}
}

func TestByteSize(t *testing.T) {
	tests := []struct {
		in   string
		want ByteSize
		ok   bool
	}{
		{"65536", 65536, true}, {"64MiB", 64 << 20, true}, {"512 KiB", 512 << 10, true}, {"1GiB", 1 << 30, true},
		{"10B", 10, true}, {"64MB", 0, false}, {"MiB", 0, false}, {"-1", 0, false}, {"", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseByteSize(tt.in)
		if got != tt.want || (err == nil) != tt.ok {
			t.Errorf("ParseByteSize(%q): got %v %v, want %v ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
	if s := ByteSize(64 << 20).String(); s != "64MiB" {
		t.Errorf("String: got %s", s)
	}
}

func TestSplitPart(t *testing.T) {
	tests := []struct {
		parent uint32
		k, n   int
		want   uint32
		ok     bool
	}{
		{0, 0, 2, 1, true}, {0, 1, 2, 2, true}, {0, 65534, 65535, 65535, true},
		{3, 0, 2, 3 | 1<<16, true}, {3, 1, 2, 3 | 2<<16, true},
		{3 | 1<<16, 0, 2, 0, false}, {0, 0, 65536, 0, false},
	}
	for _, tt := range tests {
		got, ok := splitPart(tt.parent, tt.k, tt.n)
		if got != tt.want || ok != tt.ok {
			t.Errorf("splitPart(%d, %d, %d): got %d %v, want %d %v", tt.parent, tt.k, tt.n, got, ok, tt.want, tt.ok)
		}
	}
	// Two levels of splits never collide, with each other or with parts
	// passed through unchanged.
	seen := map[uint32]bool{}
	for p := uint32(1); p <= 50; p++ {
		seen[p] = true // part p passed through a second split unchanged
	}
	for p := uint32(1); p <= 50; p++ {
		for k := range 50 {
			q, _ := splitPart(p, k, 50)
			if seen[q] {
				t.Fatalf("part %d collides", q)
			}
			seen[q] = true
		}
	}
}

// Hand-made outputs exercise the checks that no test module triggers.
func TestDecoderCheck(t *testing.T) {
	recs := batch(nil, `{"a":1}`, `{"b":2}`)
	rec := func(idx uint32, value string) []byte {
		b := le.AppendUint32(nil, idx)
		b = le.AppendUint32(b, 0)
		b = le.AppendUint32(b, uint32(len(value)))
		b = append(b, value...)
		return append(b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
	}
	out := func(n uint32, entries ...[]byte) []byte {
		return append(le.AppendUint32(nil, n), bytes.Join(entries, nil)...)
	}
	tests := []struct {
		name string
		out  []byte
		want string // in the error; "" for valid
	}{
		{"valid", out(2, rec(0, `{"a":1}`), rec(1, `{"x":1}`)), ""},
		{"empty", out(0), ""},
		{"short", []byte{1, 0}, "shorter than the entry count"},
		{"count too big", out(1000, rec(0, `{}`)), "1000 entries cannot fit"},
		{"backwards", out(2, rec(1, `{}`), rec(0, `{}`)), "index 0 after 1"},
		{"out of range", out(1, rec(2, `{}`)), "index 2 out of range"},
		{"trailing", append(out(1, rec(0, `{}`)), 9), "1 bytes after the 1 entries"},
		{"truncated", out(2, rec(0, `{}`))[:20], "entry 0: key length past the end"},
		{"headers overflow", out(1, append(rec(0, `{}`)[:len(rec(0, `{}`))-4], 0xff, 0xff, 0xff, 0x0f)), "headers cannot fit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d decoder
			m := d.check(tt.out, recs, true)
			switch {
			case tt.want == "" && m != nil:
				t.Fatalf("got %v, want valid", m)
			case tt.want != "" && (m == nil || !strings.Contains(m.msg, tt.want)):
				t.Fatalf("got %v, want %q", m, tt.want)
			}
		})
	}
}

func TestValidJSON(t *testing.T) {
	docs := []string{
		`{}`, `[]`, `""`, `0`, `-0`, `1.5e-3`, `true`, `null`, ` {"a" : [1, 2, {"b": null}], "c": "\u00e9\n"} `,
		`{"a":1,}`, `[1,]`, `{"a"}`, `{"a":}`, `01`, `1.`, `.5`, `-`, `1e`, `"\x"`, `"\u12"`, "\"\x01\"", `{"a":1}}`,
		`[1 2]`, `tru`, `nulll`, ``, ` `, `{"a":1`, `[`, `"abc`, "\"\xff\"", "\"é\"", `[[[[[]]]]]`, `{"a":{"b":{"c":[{}]}}}`,
		`1 2`, `{"a":1}x`, "\t[\r\n]\n",
		// validFlat's shape, and near misses
		`{"device_id":"dev-000123","seq":4567,"temp":-21.5e-1,"fw":"1.4.2"}`, `{"abcdefghijklmnop":"qrstuvwxyz0123456789"}`,
		`{"a":1,"b":}`, `{"a":01}`, `{"a":"x}`, `{"a":"x"`, `{"a""b"}`, `{"a":1 }`, `{"a":1,}`, `{"a":-}`, `{"a":1}}`,
		`{"abcdefgh":"ijklmnop\"q"}`, `{"abcdefgh":"ijklmnop\q"}`, "{\"abcdefgh\":\"ijkl\x01mnop\"}", "{\"abcdefgh\":\"ijklé\"}",
		"{\"abcdefgh\":\"ijkl\xffmnop\"}", `{"a":true}`, `{"a":{"b":1}}`, `{"":""}`, `{"a":"b","c":"d"`,
	}
	for _, d := range docs {
		want := json.Valid([]byte(d)) && utf8.ValidString(d)
		if got := validJSON([]byte(d)); got != want {
			t.Errorf("validJSON(%q): got %v, want %v", d, got, want)
		}
	}
	for _, n := range []int{10000, 10001} {
		deep := []byte(strings.Repeat("[", n) + strings.Repeat("]", n))
		if got, want := validJSON(deep), json.Valid(deep); got != want {
			t.Errorf("validJSON of %d nested arrays: got %v, want %v", n, got, want)
		}
	}
}

func FuzzValidJSON(f *testing.F) {
	for _, s := range []string{`{"a":[1,"x",null,true]}`, `[1.5e3,-0]`, `"\u00e9"`, `{"a":}`, `{"device_id":"dev-000123","seq":4567,"temp":21.5}`, `{"abcdefgh":"ijklmnop","q":-1}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := validJSON(b), json.Valid(b) && utf8.Valid(b); got != want {
			t.Fatalf("validJSON(%q): got %v, want %v", b, got, want)
		}
	})
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	env := testEnv(t)
	env.Metrics = reg
	tr, err := New(context.Background(), Config{Module: "hostile.wasm", CacheDir: cacheDir}, env)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close(context.Background())
	if _, _, err := tr.Process(context.Background(), batch(nil, `{"a":1}`, `{"poison":true}`, `{"drop":true}`)); err != nil {
		t.Fatal(err)
	}
	// A second transform of the same module shares the collectors.
	tr2, err := New(context.Background(), Config{Module: "hostile.wasm", CacheDir: cacheDir}, env)
	if err != nil {
		t.Fatal(err)
	}
	tr2.Close(context.Background())
	got := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" {
					name += "{" + l.GetValue() + "}"
				}
			}
			switch {
			case m.Counter != nil:
				got[name] = m.Counter.GetValue()
			case m.Histogram != nil:
				got[name] = float64(m.Histogram.GetSampleCount())
			}
		}
	}
	want := map[string]float64{
		"sluice_wasm_records_in_total":          3,
		"sluice_wasm_records_out_total":         1,
		"sluice_wasm_records_failed_total":      1,
		"sluice_wasm_calls_total":               4, // the batch, then one call per record
		"sluice_wasm_call_duration_seconds":     4,
		"sluice_wasm_call_failures_total{trap}": 2,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
}

// The module's sluice.log calls and its stdout and stderr reach the log,
// tagged with the module and the instance.
func TestGuestLogs(t *testing.T) {
	var mu sync.Mutex
	var buf bytes.Buffer
	env := pipeline.Env{Logger: slog.New(slog.NewTextHandler(lockedWriter{&mu, &buf}, &slog.HandlerOptions{Level: slog.LevelDebug})), Dir: modDir}
	tr, err := New(context.Background(), Config{Module: "hostile.wasm", CacheDir: cacheDir}, env)
	if err != nil {
		t.Fatal(err)
	}
	tr.Close(context.Background())
	tr, err = New(context.Background(), Config{Module: "sandbox.wasm", CacheDir: cacheDir}, env)
	if err != nil {
		t.Fatal(err)
	}
	tr.Process(context.Background(), batch(nil, `{"probe":"print"}`, `{"probe":"exit"}`))
	tr.Close(context.Background())
	mu.Lock()
	logs := buf.String()
	mu.Unlock()
	for _, want := range []string{
		`level=INFO msg="hostile guest ready" module=hostile.wasm instance=hostile.wasm@1#1`,
		`level=WARN msg="to stderr" module=sandbox.wasm instance=sandbox.wasm@1#1 stream=stderr`,
		`level=INFO msg="to stdout" module=sandbox.wasm instance=sandbox.wasm@1#1 stream=stdout`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log lacks %q:\n%s", want, logs)
		}
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

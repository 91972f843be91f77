package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/runtime/wasm"
)

// The languages whose SDKs implement the same examples. Go is the
// reference: its outputs make the golden files.
var langs = []string{"go", "rust", "c", "assemblyscript"}

// The examples every language implements.
var examples = []string{"identity", "enrich", "filter", "split", "route", "headers"}

// modDir holds the built modules as <lang>/<example>.wasm.
var modDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sluice-conformance-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	modDir = dir
	if err := buildGuests(dir); err != nil {
		fmt.Fprintln(os.Stderr, "plugins/conformance:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildGuests builds every example in every language from source: the Go
// ones with plugins/Makefile (next to their sources, then copied), the
// others with plugins/build-guests.sh, which names the toolchain and its
// install command when one is missing.
func buildGuests(dir string) error {
	plugins, err := filepath.Abs("..")
	if err != nil {
		return err
	}
	gobin := filepath.Join(os.Getenv("GOROOT"), "bin", "go") // the go running the test
	if _, err := os.Stat(gobin); err != nil {
		gobin = "go"
	}
	var goErr, otherErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		cmd := exec.Command("make", "-C", plugins, "go", "GO="+gobin)
		if b, err := cmd.CombinedOutput(); err != nil {
			goErr = fmt.Errorf("make -C plugins go (the Go examples; Debian: apt-get install make): %v\n%s", err, b)
			return
		}
		if err := os.MkdirAll(filepath.Join(dir, "go"), 0o755); err != nil {
			goErr = err
			return
		}
		for _, ex := range examples {
			b, err := os.ReadFile(filepath.Join(plugins, "examples", "go", ex, ex+".wasm"))
			if err == nil {
				err = os.WriteFile(filepath.Join(dir, "go", ex+".wasm"), b, 0o644)
			}
			if err != nil {
				goErr = errors.Join(goErr, err)
			}
		}
	})
	wg.Go(func() {
		cmd := exec.Command("bash", filepath.Join(plugins, "build-guests.sh"), "--out", dir)
		if b, err := cmd.CombinedOutput(); err != nil {
			otherErr = fmt.Errorf("plugins/build-guests.sh: %v\n%s", err, b)
		}
	})
	wg.Wait()
	return errors.Join(goErr, otherErr)
}

// module returns the path of a built module.
func module(lang, name string) string { return filepath.Join(modDir, lang, name+".wasm") }

// newTransform loads a module with a config (JSON text, "" for none).
func newTransform(t testing.TB, path, config string) (*wasm.Transform, error) {
	t.Helper()
	cfg, err := transformConfig(path, config)
	if err != nil {
		return nil, err
	}
	return wasm.New(context.Background(), cfg, testEnv())
}

// transformConfig is the host config of the tests: one instance, a long
// timeout (a loaded machine must not fail records), and a compilation cache
// so that each module compiles once for all the tests.
func transformConfig(path, config string) (wasm.Config, error) {
	cfg := wasm.Config{Module: path, Instances: 1, Timeout: 10 * time.Second, CacheDir: filepath.Join(modDir, "cache")}
	if config != "" {
		if err := json.Unmarshal([]byte(config), &cfg.Config); err != nil {
			return cfg, fmt.Errorf("config %s: %w", config, err)
		}
	}
	return cfg, nil
}

func testEnv() pipeline.Env {
	return pipeline.Env{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// batch makes the input records: each line of a JSONL file is one value,
// byte for byte. Some records carry a key, a destination or headers, so
// that the SDKs' pass-through of them is checked too.
func batch(t testing.TB, lines [][]byte) pipeline.Batch {
	t.Helper()
	b := make(pipeline.Batch, len(lines))
	for i, l := range lines {
		r := pipeline.Record{Value: l, ID: pipeline.ID{Device: "dev", Seq: uint64(i)}}
		if i%2 == 1 {
			r.Key = fmt.Appendf(nil, "key-%d", i)
		}
		if i%3 == 1 {
			r.Dest = "in-dest"
		}
		if i%4 == 1 {
			r.Headers = []pipeline.Header{{Key: "h", Value: fmt.Appendf(nil, "v%d", i)}, {Key: "empty"}}
		}
		b[i] = r
	}
	return b
}

// readLines returns the lines of a testdata file.
func readLines(t testing.TB, name string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var lines [][]byte
	for _, l := range bytes.Split(data, []byte("\n")) {
		if len(l) > 0 {
			lines = append(lines, l)
		}
	}
	return lines
}

// run processes the batch and renders every outcome, in input order, one
// line each:
//
//	3.0 key="key-3" dest="" headers=[] value={"a":1}
//	4 FAIL record failed: sluice: value is not a JSON object
//
// An input with no line was filtered.
func run(t testing.TB, tr *wasm.Transform, in pipeline.Batch) string {
	t.Helper()
	out, failed, err := tr.Process(context.Background(), in)
	if err != nil {
		t.Fatalf("Process: %v", err)
	}
	lines := make([][]string, len(in))
	for _, r := range out {
		i := r.ID.Seq
		if i >= uint64(len(in)) || r.ID.Device != "dev" {
			t.Fatalf("output with an unknown identity %+v", r.ID)
		}
		lines[i] = append(lines[i], outputLine(r))
	}
	for _, f := range failed {
		i := f.Record.ID.Seq
		var we *wasm.Error
		if !errors.As(f.Err, &we) {
			t.Fatalf("record %d failed with %T %v, want a *wasm.Error", i, f.Err, f.Err)
		}
		if len(lines[i]) > 0 {
			t.Fatalf("record %d both failed and has outputs", i)
		}
		lines[i] = []string{fmt.Sprintf("%d FAIL %v: %s", i, we.Kind, we.Msg)}
	}
	var b strings.Builder
	for _, l := range lines {
		for _, s := range l {
			b.WriteString(s)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// outputLine renders an output record (its input is ID.Seq).
func outputLine(r pipeline.Record) string {
	var hs []string
	for _, h := range r.Headers {
		hs = append(hs, fmt.Sprintf("%s=%q", h.Key, h.Value))
	}
	value := string(r.Value)
	if strings.ContainsAny(value, "\n\r") {
		value = fmt.Sprintf("%q", value)
	}
	return fmt.Sprintf("%d.%d key=%q dest=%q headers=[%s] value=%s",
		r.ID.Seq, r.ID.Part, r.Key, r.Dest, strings.Join(hs, " "), value)
}

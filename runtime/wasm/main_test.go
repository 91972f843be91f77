package wasm

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pipeline"
)

// The tests run real modules, built from source here: the Go examples
// (plugins/examples/go) with GOOS=wasip1, and the hostile WAT guests
// (testdata/*.wat) with wat2wasm from Debian's wabt package.

var (
	modDir   string // built modules: <name>.wasm
	cacheDir string // wazero compilation cache shared by the tests
)

var goGuests = []string{"identity", "enrich", "filter", "split", "route", "hostile/sandbox"}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sluice-wasm-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	modDir = filepath.Join(dir, "modules")
	cacheDir = filepath.Join(dir, "cache")
	if err := buildModules(); err != nil {
		fmt.Fprintln(os.Stderr, "runtime/wasm tests:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func buildModules() error {
	if err := os.MkdirAll(modDir, 0o755); err != nil {
		return err
	}
	examples, err := filepath.Abs("../../plugins/examples/go")
	if err != nil {
		return err
	}
	gobin := filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	if _, err := os.Stat(gobin); err != nil {
		gobin = "go"
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(goGuests)+16)
	for _, g := range goGuests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := filepath.Join(modDir, filepath.Base(g)+".wasm")
			cmd := exec.Command(gobin, "build", "-buildmode=c-shared", "-o", out, "./"+g)
			cmd.Dir = examples
			cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "GOFLAGS=-mod=mod")
			if b, err := cmd.CombinedOutput(); err != nil {
				errs <- fmt.Errorf("go build %s: %v\n%s", g, err, b)
			}
		}()
	}
	wat, err := exec.LookPath("wat2wasm")
	if err != nil {
		return fmt.Errorf("wat2wasm not found: install Debian's wabt package (apt-get install -y wabt)")
	}
	files, _ := filepath.Glob("testdata/*.wat")
	for _, f := range files {
		out := filepath.Join(modDir, strings.TrimSuffix(filepath.Base(f), ".wat")+".wasm")
		if b, err := exec.Command(wat, f, "-o", out).CombinedOutput(); err != nil {
			return fmt.Errorf("wat2wasm %s: %v\n%s", f, err, b)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return err
	}
	return nil
}

// mod returns the path of a built module.
func mod(name string) string { return filepath.Join(modDir, name+".wasm") }

// testEnv is an Env whose log goes to the test.
func testEnv(t testing.TB) pipeline.Env {
	return pipeline.Env{Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})), Dir: modDir}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// newT makes a Transform of module name with cfg's other fields, closed at
// the end of the test.
func newT(t testing.TB, name string, cfg Config) *Transform {
	t.Helper()
	cfg.Module = name + ".wasm"
	if cfg.CacheDir == "" {
		cfg.CacheDir = cacheDir
	}
	tr, err := New(context.Background(), cfg, testEnv(t))
	if err != nil {
		t.Fatalf("New(%s): %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := tr.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return tr
}

// batch makes records from JSON values, with IDs dev/1.., and acks that
// count their settlements in a.
func batch(a *acks, values ...string) pipeline.Batch {
	b := make(pipeline.Batch, len(values))
	for i, v := range values {
		b[i] = pipeline.Record{Value: []byte(v), ID: pipeline.ID{Device: "dev", Seq: uint64(i + 1)}}
		if a != nil {
			b[i].Ack = a.new(i)
		}
	}
	return b
}

// acks tracks the acks of a batch.
type acks struct {
	mu   sync.Mutex
	done map[int]int   // settled acks (callback calls) by input
	errs map[int]error // their errors
	raw  map[int]*pipeline.Ack
}

func newAcks() *acks {
	return &acks{done: map[int]int{}, errs: map[int]error{}, raw: map[int]*pipeline.Ack{}}
}

func (a *acks) new(i int) *pipeline.Ack {
	ack := pipeline.NewAck(func(err error) {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.done[i]++
		a.errs[i] = err
	})
	a.raw[i] = ack
	return ack
}

func (a *acks) settled(i int) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.done[i]
}

func values(b pipeline.Batch) []string {
	s := make([]string, len(b))
	for i, r := range b {
		s[i] = string(r.Value)
	}
	return s
}

package wasm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pipeline"
)

// copyModule puts module name at dir/mod.wasm, replacing what is there.
func copyModule(t *testing.T, dir, name string) {
	t.Helper()
	b, err := os.ReadFile(mod(name))
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "mod.wasm.tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "mod.wasm")); err != nil {
		t.Fatal(err)
	}
}

func newReloadable(t *testing.T, first string, cfg Config) (*Transform, string) {
	t.Helper()
	dir := t.TempDir()
	copyModule(t, dir, first)
	cfg.Module = "mod.wasm"
	cfg.CacheDir = cacheDir
	env := testEnv(t)
	env.Dir = dir
	tr, err := New(context.Background(), cfg, env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close(context.Background()) })
	return tr, dir
}

// Batches keep flowing through reloads: every input comes out exactly once,
// from the old module or the new, never lost or twice.
func TestReloadUnderLoad(t *testing.T) {
	newT(t, "enrich", Config{}) // compile both modules into the cache first
	tr, dir := newReloadable(t, "identity", Config{Config: map[string]any{"site": "lab-1"}, Instances: 2})
	const workers, size, reloads = 4, 50, 6
	var (
		mu                       sync.Mutex
		seen                     = map[pipeline.ID]int{}
		sent                     atomic.Int64
		fromEnrich, fromIdentity atomic.Int64
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := 0; ; b++ {
				select {
				case <-stop:
					return
				default:
				}
				in := make(pipeline.Batch, size)
				for i := range in {
					in[i] = pipeline.Record{Value: []byte(`{"n":1}`), ID: pipeline.ID{Device: fmt.Sprint("w", w), Seq: uint64(b*size + i)}}
				}
				sent.Add(size)
				out, failed, err := tr.Process(context.Background(), in)
				if err != nil || len(failed) > 0 {
					t.Errorf("Process: %v %v", failed, err)
					return
				}
				mu.Lock()
				for _, r := range out {
					seen[r.ID]++
					if strings.Contains(string(r.Value), "lab-1") {
						fromEnrich.Add(1)
					} else {
						fromIdentity.Add(1)
					}
				}
				mu.Unlock()
			}
		}()
	}
	for i := range reloads {
		time.Sleep(50 * time.Millisecond)
		copyModule(t, dir, map[bool]string{true: "enrich", false: "identity"}[i%2 == 0])
		if err := tr.Reload(context.Background()); err != nil {
			t.Errorf("Reload: %v", err)
		}
	}
	time.Sleep(50 * time.Millisecond)
	close(stop)
	wg.Wait()
	if int64(len(seen)) != sent.Load() {
		t.Fatalf("got %d distinct records out, want %d", len(seen), sent.Load())
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("record %v came out %d times", id, n)
		}
	}
	if fromEnrich.Load() == 0 || fromIdentity.Load() == 0 {
		t.Fatalf("%d records from enrich, %d from identity: the test did not exercise reloads", fromEnrich.Load(), fromIdentity.Load())
	}
	// Old generations are closed once their batches are done.
	if n := tr.live.Load(); n > 2 {
		t.Fatalf("%d instances open after %d reloads, want at most 2", n, reloads)
	}
	t.Logf("%d records through %d reloads: %d from enrich, %d from identity", sent.Load(), reloads, fromEnrich.Load(), fromIdentity.Load())
}

func TestReloadRejectsBadModule(t *testing.T) {
	tr, dir := newReloadable(t, "enrich", Config{Config: map[string]any{"site": "lab-1"}})
	check := func(want string) {
		t.Helper()
		out, fails := run(t, tr, nil, `{"a":1}`)
		if len(fails) > 0 || len(out) != 1 || string(out[0].Value) != want {
			t.Fatalf("got %q %v, want %s", values(out), fails, want)
		}
	}
	check(`{"a":1,"site":"lab-1"}`)
	for _, bad := range []struct{ module, want string }{
		{"abi2", "sluice_abi_version: returned 2, want 1"},
		{"noexport", "sluice_process: missing export"},
		{"initfail", "sluice_init: bad config"},
	} {
		copyModule(t, dir, bad.module)
		err := tr.Reload(context.Background())
		if err == nil || !strings.Contains(err.Error(), "wasm mod.wasm: "+bad.want) {
			t.Fatalf("Reload(%s): got %v, want %q", bad.module, err, bad.want)
		}
		check(`{"a":1,"site":"lab-1"}`) // the old module keeps running
	}
	if err := os.WriteFile(filepath.Join(dir, "mod.wasm"), []byte("not wasm"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := tr.Reload(context.Background()); err == nil || !strings.Contains(err.Error(), "wasm mod.wasm: load: not a WebAssembly module") {
		t.Fatalf("Reload(garbage): got %v", err)
	}
	copyModule(t, dir, "identity")
	if err := tr.Reload(context.Background()); err != nil {
		t.Fatalf("Reload(identity): %v", err)
	}
	check(`{"a":1}`)
	if err := tr.Reload(context.Background()); err != nil { // unchanged: nothing to do
		t.Fatalf("Reload(unchanged): %v", err)
	}
}

func TestWatch(t *testing.T) {
	tr, dir := newReloadable(t, "identity", Config{Config: map[string]any{"site": "lab-1"}})
	tr.watchEvery = 20 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		tr.Watch(ctx)
		close(done)
	}()
	defer func() {
		cancel()
		<-done
	}()
	copyModule(t, dir, "enrich")
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _ := run(t, tr, nil, `{}`)
		if len(out) == 1 && string(out[0].Value) == `{"site":"lab-1"}` {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the new module was not loaded after 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A bad file is logged and ignored.
	copyModule(t, dir, "abi2")
	time.Sleep(200 * time.Millisecond)
	if out, _ := run(t, tr, nil, `{}`); len(out) != 1 || string(out[0].Value) != `{"site":"lab-1"}` {
		t.Fatalf("after a bad module: got %q", values(out))
	}
}

func TestWatchStopsOnClose(t *testing.T) {
	tr, _ := newReloadable(t, "identity", Config{})
	done := make(chan struct{})
	go func() {
		tr.Watch(context.Background())
		close(done)
	}()
	tr.Close(context.Background())
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not return after Close")
	}
	if err := tr.Reload(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Reload after Close: got %v", err)
	}
}

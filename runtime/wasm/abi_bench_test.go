package wasm

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/sluicehq/sluice/internal/cputime"
)

// BenchmarkABI measures the ABI tax: what runtime/wasm adds per record
// around a guest, against the same module on a bare wazero host (no
// instrumentation, no output checks, no records built from the output),
// in the same run, so that the two can be compared on a noisy machine:
//
//	go test ./runtime/wasm -run '^$' -bench ABI -count 3
//
// bare-instrumented is the bare host running the module as instrument
// rewrites it: its difference from bare is the interrupt checks' cost.
//
// The tax is sluice − bare for passthrough (plugins/examples/wat), a guest
// that copies each record and does nothing else. The C and Rust identity
// examples are built with plugins/build-guests.sh when their toolchains are
// installed, and skipped otherwise.
func BenchmarkABI(b *testing.B) {
	guests := []struct {
		name, path, config string
	}{
		{"passthrough", "wat/passthrough", ""},
		{"identity-go", "identity", ""},
		{"enrich-go", "enrich", `{"site":"lab-1"}`},
		{"identity-c", "c/identity", ""},
		{"identity-rust", "rust/identity", ""},
	}
	for _, g := range guests {
		for _, n := range []int{1, 64, 256, 1024} {
			for _, host := range []string{"sluice", "bare", "bare-instrumented"} {
				b.Run(fmt.Sprintf("%s/%s/batch=%d", g.name, host, n), func(b *testing.B) {
					path := mod(g.path)
					if filepath.Dir(g.path) != "." {
						path = otherGuest(b, g.path)
					}
					if host != "sluice" {
						benchBare(b, path, g.config, n, host == "bare-instrumented")
					} else {
						benchSluice(b, path, g.config, n)
					}
				})
			}
		}
	}
}

var (
	otherOnce sync.Once
	otherDir  string
	otherErr  error
)

// otherGuest returns the path of a non-Go example (lang/name), built once
// from source by plugins/build-guests.sh; it skips b when that fails.
func otherGuest(b *testing.B, path string) string {
	otherOnce.Do(func() {
		otherDir = filepath.Join(filepath.Dir(modDir), "guests")
		script, _ := filepath.Abs("../../plugins/build-guests.sh")
		out, err := exec.Command("bash", script, "--out", otherDir, "c", "rust", "wat").CombinedOutput()
		if err != nil {
			otherErr = fmt.Errorf("build-guests.sh: %v\n%s", err, out)
		}
	})
	p := filepath.Join(otherDir, path+".wasm")
	if _, err := os.Stat(p); err != nil {
		b.Skipf("%s not built: %v", path, otherErr)
	}
	return p
}

func benchSluice(b *testing.B, path, config string, n int) {
	ctx := context.Background()
	cfg := Config{Module: path, BatchSize: max(n, defaultBatchSize), CacheDir: cacheDir, Instances: 1}
	if config != "" {
		cfg.Config = map[string]any{"site": "lab-1"}
	}
	tr, err := New(ctx, cfg, testEnv(b))
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close(ctx)
	benchProcess(b, tr, n)
}

// benchBare runs the module as bench/harness's bare wazero host does: the
// module as built (or as instrument rewrites it), the batch encoded once and
// written into guest memory for each call, the output's entry count read.
func benchBare(b *testing.B, path, config string, n int, instrumented bool) {
	ctx := context.Background()
	bin, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	if instrumented {
		if bin, err = instrument(bin); err != nil {
			b.Fatal(err)
		}
	}
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler())
	defer r.Close(ctx)
	wasi_snapshot_preview1.MustInstantiate(ctx, r)
	if _, err := r.NewHostModuleBuilder("sluice").NewFunctionBuilder().
		WithFunc(func(context.Context, uint32, uint32, uint32) {}).Export("log").Instantiate(ctx); err != nil {
		b.Fatal(err)
	}
	cm, err := r.CompileModule(ctx, bin)
	if err != nil {
		b.Fatal(err)
	}
	m, err := r.InstantiateModule(ctx, cm, wazero.NewModuleConfig().WithName("").WithStartFunctions())
	if err != nil {
		b.Fatal(err)
	}
	for _, fn := range []string{startExport, "_initialize"} {
		if f := m.ExportedFunction(fn); f != nil {
			if _, err := f.Call(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	alloc, process, mem := m.ExportedFunction("sluice_alloc"), m.ExportedFunction("sluice_process"), m.Memory()
	write := func(p []byte) uint32 {
		res, err := alloc.Call(ctx, uint64(len(p)))
		if err != nil || !mem.Write(uint32(res[0]), p) {
			b.Fatalf("sluice_alloc: %v", err)
		}
		return uint32(res[0])
	}
	if config == "" {
		config = "{}"
	}
	p := write([]byte(config))
	if res, err := m.ExportedFunction("sluice_init").Call(ctx, uint64(p), uint64(len(config))); err != nil || res[0] != 0 {
		b.Fatalf("sluice_init: %v", err)
	}
	recs := benchBatch(n)
	size, _ := encodedSize(recs)
	batch := make([]byte, size)
	encodeBatch(batch, recs)
	call := func() {
		p := write(batch)
		res, err := process.Call(ctx, uint64(p), uint64(len(batch)))
		if err != nil {
			b.Fatal(err)
		}
		out, ok := mem.Read(uint32(res[0]>>32), uint32(res[0]))
		if !ok || len(out) < 4 || int(le.Uint32(out)) != n {
			b.Fatalf("output at %#x", res[0])
		}
	}
	call()
	b.ResetTimer()
	cpu0 := cputime.Self()
	for b.Loop() {
		call()
	}
	report(b, n, cpu0)
}

package harness

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// A bare wazero host for the transform ABI (docs/abi.md): no code
// instrumentation (runtime/wasm adds a fuel and interrupt check at every
// function entry and loop head), no output validation, no records built
// from the output. It runs the same modules, so comparing it with
// runtime/wasm splits a guest's cost into the guest's own code and what
// the Sluice host adds.

type rawInst struct {
	mod     api.Module
	alloc   api.Function
	process api.Function
	mem     api.Memory
}

func newRawInst(ctx context.Context, r wazero.Runtime, cm wazero.CompiledModule, config []byte) (*rawInst, error) {
	mod, err := r.InstantiateModule(ctx, cm, wazero.NewModuleConfig().WithName("").WithStartFunctions("_initialize"))
	if err != nil {
		return nil, err
	}
	ri := &rawInst{mod: mod, alloc: mod.ExportedFunction("sluice_alloc"), process: mod.ExportedFunction("sluice_process"), mem: mod.Memory()}
	if ri.alloc == nil || ri.process == nil || ri.mem == nil {
		return nil, fmt.Errorf("not a Sluice transform (sluice_alloc, sluice_process, memory)")
	}
	if init := mod.ExportedFunction("sluice_init"); init != nil {
		p, err := ri.write(ctx, config)
		if err != nil {
			return nil, err
		}
		res, err := init.Call(ctx, uint64(p), uint64(len(config)))
		if err != nil {
			return nil, err
		}
		if res[0] != 0 {
			return nil, fmt.Errorf("sluice_init failed")
		}
	}
	return ri, nil
}

func (ri *rawInst) write(ctx context.Context, b []byte) (uint32, error) {
	res, err := ri.alloc.Call(ctx, uint64(len(b)))
	if err != nil {
		return 0, err
	}
	p := uint32(res[0])
	if p == 0 || !ri.mem.Write(p, b) {
		return 0, fmt.Errorf("sluice_alloc(%d) = %#x", len(b), p)
	}
	return p, nil
}

// call processes an encoded batch and returns the output's length.
func (ri *rawInst) call(ctx context.Context, batch []byte) (int, error) {
	p, err := ri.write(ctx, batch)
	if err != nil {
		return 0, err
	}
	res, err := ri.process.Call(ctx, uint64(p), uint64(len(batch)))
	if err != nil {
		return 0, err
	}
	out, ok := ri.mem.Read(uint32(res[0]>>32), uint32(res[0]))
	if !ok || len(out) < 4 {
		return 0, fmt.Errorf("bad output location %#x", res[0])
	}
	return int(binary.LittleEndian.Uint32(out)), nil
}

// EncodeBatch encodes records as the ABI's input batch (no key, dest or
// headers).
func EncodeBatch(values [][]byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(len(values)))
	for _, v := range values {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
		b = binary.LittleEndian.AppendUint32(b, 0) // key
		b = binary.LittleEndian.AppendUint32(b, 0) // dest
		b = binary.LittleEndian.AppendUint32(b, 0) // headers
	}
	return b
}

// RawWASMLeg runs mod on batches of n records through a bare wazero host
// (compiler engine, WASI, no instrumentation or checks), on GOMAXPROCS
// goroutines, one instance each.
func RawWASMLeg(ctx context.Context, m *Meter, corpus [][]byte, mod WASMModule, n int, d time.Duration) Leg {
	name := fmt.Sprintf("bare wazero %s (batch %d)", mod.Name, n)
	detail := "the module on a bare wazero host: no fuel/interrupt instrumentation, no output validation, no records built from the output"
	workers := runtime.GOMAXPROCS(0)
	bin, err := os.ReadFile(mod.Path)
	if err != nil {
		return Leg{Name: name, Detail: detail, Err: err.Error()}
	}
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler())
	defer r.Close(ctx)
	wasi_snapshot_preview1.MustInstantiate(ctx, r)
	if _, err := r.NewHostModuleBuilder("sluice").NewFunctionBuilder().
		WithFunc(func(context.Context, uint32, uint32, uint32) {}).Export("log").Instantiate(ctx); err != nil {
		return Leg{Name: name, Detail: detail, Err: err.Error()}
	}
	cm, err := r.CompileModule(ctx, bin)
	if err != nil {
		return Leg{Name: name, Detail: detail, Err: err.Error()}
	}
	config := []byte("{}")
	if mod.Kind == "enrich" {
		config = []byte(`{"site":"lab-1"}`)
	}
	insts := make([]*rawInst, workers)
	batches := make([][]byte, workers)
	for w := range insts {
		if insts[w], err = newRawInst(ctx, r, cm, config); err != nil {
			return Leg{Name: name, Detail: detail, Err: err.Error()}
		}
		vals := make([][]byte, n)
		for i := range vals {
			vals[i] = corpus[(w*1000+i)%len(corpus)]
		}
		batches[w] = EncodeBatch(vals)
		if got, err := insts[w].call(ctx, batches[w]); err != nil || got != n {
			return Leg{Name: name, Detail: detail, Err: fmt.Sprintf("warm-up: %d entries, %v", got, err)}
		}
	}
	return measure(m, name, detail, false, func() (legRun, error) {
		var perr atomic.Pointer[error]
		r := parallel(workers, d, func(w, _ int) int {
			if got, err := insts[w].call(ctx, batches[w]); err != nil || got != n {
				e := fmt.Errorf("%d entries, %v", got, err)
				perr.Store(&e)
			}
			return n
		})
		if p := perr.Load(); p != nil {
			return r, *p
		}
		return r, nil
	})
}

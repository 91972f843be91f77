package wasm

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/pipeline"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// Transform runs a WebAssembly module that implements docs/abi.md on
// batches of records. It is safe for concurrent use: each concurrent
// Process call gets its own instance of the module, up to Config.Instances.
type Transform struct {
	cfg         Config
	name        string // the module as written in the config
	base        string // its file name, for instance names
	path        string // resolved
	log         *slog.Logger
	rt          wazero.Runtime
	cache       wazero.CompilationCache // nil without cache_dir
	config      []byte                  // for sluice_init
	modConfig   wazero.ModuleConfig     // without name and stdio
	limit       uint64                  // memory cap in bytes
	initTimeout time.Duration           // bound on instantiation and handshake
	metrics     *metrics                // nil without env.Metrics
	watchEvery  time.Duration
	done        chan struct{} // closed by Close
	live        atomic.Int64  // instances open, for tests

	mu     sync.Mutex
	cur    *generation // the module new batches run on
	gens   int         // generations made
	closed bool
	active sync.WaitGroup // Process calls in flight

	reloadMu sync.Mutex // one Reload at a time
}

var _ pipeline.Transform = (*Transform)(nil)

// generation is one compiled version of the module with its pool of
// instances. A reload makes a new generation; the old one is retired and
// closed once the batches running on it are done.
type generation struct {
	t        *Transform
	id       int
	compiled wazero.CompiledModule
	hash     [32]byte
	idle     chan *instance // instances not in use
	tokens   chan struct{}  // one per instance that may still be made
	seq      atomic.Int64   // instance numbers
	refs     int            // Process calls using it; guarded by t.mu
	retired  bool           // guarded by t.mu
}

// New compiles the module, checks its exports, and makes one instance to
// run the handshake and sluice_init, so that a bad module or config fails
// here, with an error naming the module, the function and the reason.
func New(ctx context.Context, cfg Config, env pipeline.Env) (*Transform, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &Transform{
		cfg:         cfg,
		name:        cfg.Module,
		base:        filepath.Base(cfg.Module),
		path:        pipeline.Resolve(env.Dir, cfg.Module),
		log:         log.With("module", cfg.Module),
		limit:       uint64(cfg.memoryPages()) * pageSize,
		initTimeout: max(10*cfg.Timeout, 5*time.Second),
		watchEvery:  500 * time.Millisecond,
		done:        make(chan struct{}),
	}
	t.config, _ = cfg.configJSON() // checked by Validate
	// No WithCloseOnContextDone: calls are stopped by the interrupt check
	// that instrument adds, which costs a fraction of what it costs.
	rc := wazero.NewRuntimeConfig().
		WithMemoryLimitPages(cfg.memoryPages())
	if cfg.CacheDir != "" {
		dir := pipeline.Resolve(env.Dir, cfg.CacheDir)
		cache, err := wazero.NewCompilationCacheWithDir(dir)
		if err != nil {
			return nil, fmt.Errorf("wasm %s: compilation cache %s: %w", t.name, dir, err)
		}
		t.cache = cache
		rc = rc.WithCompilationCache(cache)
	}
	t.rt = wazero.NewRuntimeWithConfig(ctx, rc)
	t.modConfig = t.sandbox()
	if err := t.instantiateHost(ctx); err != nil {
		t.closeRuntime()
		return nil, err
	}
	bin, err := os.ReadFile(t.path)
	if err != nil {
		t.closeRuntime()
		return nil, fmt.Errorf("wasm %s: read module: %w", t.name, err)
	}
	g, err := t.load(ctx, bin)
	if err != nil {
		t.closeRuntime()
		return nil, err
	}
	t.cur = g
	if env.Metrics != nil {
		t.metrics = newMetrics(env.Metrics, cfg.Module)
	}
	t.log.Info("module loaded", "path", t.path, "instances", cfg.Instances, "memory_limit", cfg.MemoryLimit.String(), "timeout", cfg.Timeout)
	return t, nil
}

// sandbox is the module config of every instance: no filesystem (no
// preopens), no network (no sockets are ever passed in), fake clocks and
// random source unless granted, the granted environment.
func (t *Transform) sandbox() wazero.ModuleConfig {
	mc := wazero.NewModuleConfig().WithStartFunctions() // _initialize is called by the handshake, with a timeout
	g := t.cfg.Grants
	if g.AllowClock {
		limit := t.cfg.Timeout
		mc = mc.WithSysWalltime().WithSysNanotime().WithNanosleep(func(ns int64) {
			// A sleep cannot be interrupted: cap it so that a sleeping call still
			// stops soon after its timeout.
			time.Sleep(min(time.Duration(ns), limit))
		})
	}
	if g.AllowRandom {
		mc = mc.WithRandSource(rand.Reader)
	}
	keys := make([]string, 0, len(g.Env))
	for k := range g.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		mc = mc.WithEnv(k, g.Env[k])
	}
	return mc
}

// instantiateHost provides the imports: WASI preview 1 and sluice.log.
func (t *Transform) instantiateHost(ctx context.Context) error {
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, t.rt); err != nil {
		return fmt.Errorf("wasm %s: instantiate WASI: %w", t.name, err)
	}
	_, err := t.rt.NewHostModuleBuilder("sluice").
		NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(t.hostLog),
			[]api.ValueType{api.ValueTypeI32, api.ValueTypeI32, api.ValueTypeI32}, nil).
		WithParameterNames("level", "ptr", "len").
		Export("log").
		Instantiate(ctx)
	if err != nil {
		return fmt.Errorf("wasm %s: instantiate the sluice host module: %w", t.name, err)
	}
	return nil
}

// hostLog is the sluice.log import: (level i32, ptr i32, len i32).
func (t *Transform) hostLog(ctx context.Context, m api.Module, stack []uint64) {
	level := slog.LevelInfo
	switch int32(stack[0]) {
	case 0:
		level = slog.LevelDebug
	case 1:
		level = slog.LevelInfo
	case 2:
		level = slog.LevelWarn
	case 3:
		level = slog.LevelError
	}
	if !t.log.Enabled(ctx, level) {
		return
	}
	ptr, n := uint32(stack[1]), min(uint32(stack[2]), 64<<10)
	msg, ok := m.Memory().Read(ptr, n)
	if !ok {
		t.log.Warn("sluice.log: message outside memory", "instance", m.Name(), "ptr", ptr, "len", n)
		return
	}
	t.log.Log(ctx, level, cleanMessage(msg), "instance", m.Name())
}

// load instruments and compiles bin, checks it, and makes its first
// instance.
func (t *Transform) load(ctx context.Context, bin []byte) (*generation, error) {
	hash := sha256.Sum256(bin)
	ibin, err := instrument(bin)
	if err != nil {
		return nil, fmt.Errorf("wasm %s: load: %w", t.name, err)
	}
	cctx := experimental.WithCompilationWorkers(ctx, runtime.NumCPU())
	cm, err := t.rt.CompileModule(cctx, ibin)
	if err != nil {
		return nil, fmt.Errorf("wasm %s: compile: %w", t.name, err)
	}
	if err := t.checkModule(cm); err != nil {
		_ = cm.Close(ctx)
		return nil, err
	}
	t.mu.Lock()
	t.gens++
	id := t.gens
	t.mu.Unlock()
	g := &generation{
		t:        t,
		id:       id,
		compiled: cm,
		hash:     hash,
		idle:     make(chan *instance, t.cfg.Instances),
		tokens:   make(chan struct{}, t.cfg.Instances),
	}
	for range t.cfg.Instances {
		g.tokens <- struct{}{}
	}
	<-g.tokens
	in, err := g.newInstance(ctx)
	if err != nil {
		_ = cm.Close(ctx)
		return nil, err
	}
	g.idle <- in
	return g, nil
}

// get returns an idle instance, or makes one if fewer than Instances
// exist, or waits for one.
func (g *generation) get(ctx context.Context) (*instance, error) {
	select {
	case in := <-g.idle:
		return in, nil
	default:
	}
	select {
	case in := <-g.idle:
		return in, nil
	case <-g.tokens:
		in, err := g.newInstance(ctx)
		if err != nil {
			g.tokens <- struct{}{}
			return nil, err
		}
		return in, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// put returns a healthy instance to the pool.
func (g *generation) put(in *instance) { g.idle <- in }

// discard closes an instance that trapped or misbehaved.
func (g *generation) discard(in *instance) {
	in.close()
	g.tokens <- struct{}{}
}

// shut closes g's instances and compiled module; every instance is idle.
func (g *generation) shut() {
	for {
		select {
		case in := <-g.idle:
			in.close()
		default:
			_ = g.compiled.Close(context.Background())
			return
		}
	}
}

// acquire returns the current generation, counted as in use.
func (t *Transform) acquire() (*generation, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, &Error{Module: t.name, Kind: ErrClosed, Msg: "transform closed"}
	}
	t.cur.refs++
	t.active.Add(1)
	return t.cur, nil
}

func (t *Transform) release(g *generation) {
	t.mu.Lock()
	g.refs--
	last := g.retired && g.refs == 0
	t.mu.Unlock()
	if last {
		g.shut()
	}
	t.active.Done()
}

// procState is one Process call's result under construction. Acks are
// settled only at the end, so that a Process cut short by ctx settles
// nothing.
//
// While every call so far returned each of its inputs unchanged, as an
// identity or a validating transform does, the outputs are the inputs
// in[:next] themselves: out is not built (alias), and Process returns
// in[:next] unless a later call changes or drops a record, which builds
// out from in[:next] and goes on. Returning the inputs saves a copy of
// every record (150 bytes, six pointers for the garbage collector); the
// caller gets the records it passed in, which it and Process only read.
type procState struct {
	in     pipeline.Batch
	counts []int32 // per input: outputs so far, or -1 once failed
	out    pipeline.Batch
	failed []pipeline.Failed
	alias  bool // out is in[:next], not built yet
	next   int
}

// materialize builds out from in[:next] when it is still an alias.
func (st *procState) materialize() {
	if !st.alias {
		return
	}
	st.alias = false
	st.out = make(pipeline.Batch, st.next, len(st.in))
	copy(st.out, st.in[:st.next])
}

// result returns the outputs.
func (st *procState) result() pipeline.Batch {
	if st.alias {
		return st.in[:st.next:st.next]
	}
	return st.out
}

func (st *procState) fail(i int, err error) {
	if st.counts[i] < 0 {
		return
	}
	st.counts[i] = -1
	st.failed = append(st.failed, pipeline.Failed{Record: st.in[i], Err: err})
}

// Process runs the module on in, at most BatchSize records per call, and
// returns the outputs and the failed inputs per the pipeline.Transform
// contract:
//
//   - an output keeps its input's ID, Received and Ack; an input split into
//     n outputs has its Ack's Add(n-1) called and its parts numbered (see
//     splitPart);
//   - an input with no output was filtered: its Ack is settled with
//     Done(nil);
//   - a failed input is returned unsettled with an *Error: the module's
//     message (ErrRecord), an invalid output value (ErrInvalidOutput), or
//     the trap, timeout or memory cap (ErrTrap, ErrTimeout, ErrMemoryLimit)
//     that it alone caused;
//   - a non-nil error means ctx ended (or the transform was closed) and
//     nothing was settled.
//
// When a call traps, times out, hits the memory cap or returns a malformed
// output, its instance is discarded and the call's records are run again
// one at a time on fresh instances, so that only the records that cause
// the failure fail.
func (t *Transform) Process(ctx context.Context, in pipeline.Batch) (pipeline.Batch, []pipeline.Failed, error) {
	if len(in) == 0 {
		return nil, nil, nil
	}
	g, err := t.acquire()
	if err != nil {
		return nil, nil, err
	}
	defer t.release(g)
	st := &procState{in: in, counts: make([]int32, len(in)), alias: true}
	var inst *instance
	defer func() {
		if inst != nil {
			g.put(inst)
		}
	}()
	for lo := 0; lo < len(in); lo += t.cfg.BatchSize {
		hi := min(lo+t.cfg.BatchSize, len(in))
		if err := t.chunk(ctx, g, &inst, st, lo, hi); err != nil {
			return nil, nil, err
		}
	}
	for i, n := range st.counts {
		switch {
		case n == 0:
			in[i].Ack.Done(nil)
		case n > 1:
			in[i].Ack.Add(int(n - 1))
		}
	}
	out := st.result()
	if m := t.metrics; m != nil {
		m.recordsIn.Add(float64(len(in)))
		m.recordsOut.Add(float64(len(out)))
		m.recordsFailed.Add(float64(len(st.failed)))
	}
	return out, st.failed, nil
}

// chunk runs in[lo:hi] in one call, and one record per call if that fails.
// It returns an error only when ctx ended (a call under way then is
// stopped, and its records are left to the caller, unsettled).
func (t *Transform) chunk(ctx context.Context, g *generation, inst **instance, st *procState, lo, hi int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := t.run(ctx, g, inst, st, lo, hi)
	if err == nil || ctx.Err() != nil {
		return err
	}
	t.log.Warn("call failed; running its records one at a time", "records", hi-lo, "err", err)
	for j := lo; j < hi; j++ {
		if err := t.run(ctx, g, inst, st, j, j+1); err != nil {
			return err
		}
	}
	return nil
}

// run makes one call on in[lo:hi] and adds its outputs to st. A failed call
// fails its record when it has only one; the returned error is nil unless
// the call failed with several records (to be run one by one) or ctx ended.
func (t *Transform) run(ctx context.Context, g *generation, inst **instance, st *procState, lo, hi int) error {
	if *inst == nil {
		in, err := g.get(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			for j := lo; j < hi; j++ {
				st.fail(j, err)
			}
			return nil
		}
		*inst = in
	}
	in := *inst
	start := time.Now()
	out, err := in.call(ctx, st.in[lo:hi])
	if m := t.metrics; m != nil {
		m.calls.Inc()
		m.callSeconds.Observe(time.Since(start).Seconds())
	}
	if err == nil {
		in.dec.emit(out, lo, st, t.name)
		return nil
	}
	g.discard(in)
	*inst = nil
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if m := t.metrics; m != nil {
		m.failure(err)
	}
	if hi-lo == 1 {
		st.fail(lo, err)
		return nil
	}
	return err
}

// Reload compiles the module file again and, if it compiles, passes the
// handshake and accepts the config, makes it the module that new batches
// run on. Batches in flight finish on the old module, whose instances are
// closed once they are done. If the new module is bad, Reload returns the
// error and the old module keeps running. A file identical to the running
// module is not reloaded.
func (t *Transform) Reload(ctx context.Context) error {
	t.reloadMu.Lock()
	defer t.reloadMu.Unlock()
	t.mu.Lock()
	closed, cur := t.closed, t.cur
	t.mu.Unlock()
	if closed {
		return &Error{Module: t.name, Kind: ErrClosed, Msg: "transform closed"}
	}
	bin, err := os.ReadFile(t.path)
	if err != nil {
		t.metrics.reload(false)
		return fmt.Errorf("wasm %s: reload: read module: %w", t.name, err)
	}
	if sha256.Sum256(bin) == cur.hash {
		t.log.Info("module unchanged; not reloaded")
		return nil
	}
	g, err := t.load(ctx, bin)
	if err != nil {
		t.metrics.reload(false)
		t.log.Error("reload rejected; the previous module keeps running", "err", err)
		return err
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		g.shut()
		return &Error{Module: t.name, Kind: ErrClosed, Msg: "transform closed"}
	}
	old := t.cur
	t.cur = g
	old.retired = true
	last := old.refs == 0
	t.mu.Unlock()
	if last {
		old.shut()
	}
	t.metrics.reload(true)
	t.log.Info("module reloaded", "generation", g.id)
	return nil
}

// Watch reloads the module when its file changes, polling its size and
// modification time every 500ms, until ctx ends or the transform is closed.
// It waits for the file to stay the same for one poll before reloading, so
// that a file being written is not loaded half-way. A failed reload is
// logged and the old module keeps running.
func (t *Transform) Watch(ctx context.Context) {
	type stamp struct {
		size int64
		mod  time.Time
	}
	read := func() (stamp, bool) {
		fi, err := os.Stat(t.path)
		if err != nil {
			return stamp{}, false
		}
		return stamp{fi.Size(), fi.ModTime()}, true
	}
	loaded, _ := read()
	seen := loaded
	tick := time.NewTicker(t.watchEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.done:
			return
		case <-tick.C:
		}
		now, ok := read()
		if !ok || now == loaded {
			seen = now
			continue
		}
		if now != seen { // still changing
			seen = now
			continue
		}
		loaded = now
		if err := t.Reload(ctx); err != nil && !errors.Is(err, ErrClosed) {
			t.log.Error("hot reload failed", "err", err)
		}
	}
}

// Close waits for the Process calls in flight (until ctx ends), then closes
// every instance and the runtime. Process calls after Close fail with
// ErrClosed.
func (t *Transform) Close(ctx context.Context) error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	close(t.done)
	t.mu.Unlock()
	idle := make(chan struct{})
	go func() {
		t.active.Wait()
		close(idle)
	}()
	var err error
	select {
	case <-idle:
	case <-ctx.Done():
		err = fmt.Errorf("wasm %s: close: %w (closing with calls in flight)", t.name, ctx.Err())
	}
	t.closeRuntime()
	return err
}

func (t *Transform) closeRuntime() {
	_ = t.rt.Close(context.Background())
	if t.cache != nil {
		_ = t.cache.Close(context.Background())
	}
}

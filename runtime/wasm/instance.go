package wasm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/sluicehq/sluice/pipeline"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"
)

// The exports of ABI v1 and their signatures.
var exports = []struct {
	name           string
	params, result []api.ValueType
	optional       bool
}{
	{"sluice_abi_version", nil, []api.ValueType{api.ValueTypeI32}, false},
	{"sluice_alloc", []api.ValueType{api.ValueTypeI32}, []api.ValueType{api.ValueTypeI32}, false},
	{"sluice_init", []api.ValueType{api.ValueTypeI32, api.ValueTypeI32}, []api.ValueType{api.ValueTypeI64}, false},
	{"sluice_process", []api.ValueType{api.ValueTypeI32, api.ValueTypeI32}, []api.ValueType{api.ValueTypeI64}, false},
	{"_initialize", nil, nil, true},
}

// checkModule checks a compiled module's exports and imports against the
// ABI before anything runs.
func (t *Transform) checkModule(cm wazero.CompiledModule) error {
	if _, ok := cm.ExportedMemories()["memory"]; !ok {
		return t.abiError("memory", "missing export (the module must export its linear memory as \"memory\")")
	}
	fns := cm.ExportedFunctions()
	for _, want := range exports {
		def, ok := fns[want.name]
		if !ok {
			if want.optional {
				continue
			}
			return t.abiError(want.name, "missing export")
		}
		if !sameTypes(def.ParamTypes(), want.params) || !sameTypes(def.ResultTypes(), want.result) {
			return t.abiError(want.name, fmt.Sprintf("signature is %s, want %s",
				signature(def.ParamTypes(), def.ResultTypes()), signature(want.params, want.result)))
		}
	}
	for _, imp := range cm.ImportedFunctions() {
		mod, name, _ := imp.Import()
		switch {
		case mod == "wasi_snapshot_preview1":
		case mod == "sluice" && name == "log":
			want := []api.ValueType{api.ValueTypeI32, api.ValueTypeI32, api.ValueTypeI32}
			if !sameTypes(imp.ParamTypes(), want) || len(imp.ResultTypes()) != 0 {
				return t.abiError("sluice.log", fmt.Sprintf("imported as %s, want %s",
					signature(imp.ParamTypes(), imp.ResultTypes()), signature(want, nil)))
			}
		default:
			return t.abiError(mod+"."+name, "imported, but Sluice provides only sluice.log and wasi_snapshot_preview1")
		}
	}
	for _, m := range cm.ImportedMemories() {
		mod, name, _ := m.Import()
		return t.abiError(mod+"."+name, "imports a memory; a module must define and export its own")
	}
	return nil
}

func sameTypes(a, b []api.ValueType) bool {
	return bytes.Equal(a, b)
}

func signature(params, results []api.ValueType) string {
	name := func(ts []api.ValueType) string {
		s := make([]string, len(ts))
		for i, t := range ts {
			s[i] = api.ValueTypeName(t)
		}
		return "(" + strings.Join(s, ", ") + ")"
	}
	return name(params) + " -> " + name(results)
}

func (t *Transform) abiError(fn, msg string) *Error {
	return &Error{Module: t.name, Func: fn, Kind: ErrABI, Msg: msg}
}

// instance is one instantiated module. It serves one call at a time.
type instance struct {
	t       *Transform
	name    string
	mod     api.Module
	mem     api.Memory
	alloc   api.Function
	process api.Function
	stack   [2]uint64
	stderr  *logWriter
	dog     watchdog
	dec     decoder
}

// watchdog stops a call that runs too long by setting the module's
// interrupt global (see instrument) from a timer.
//
// Arming and disarming a timer on every call cost more than a small call
// itself, so the timer is left running: arm moves it earlier only when it
// is idle or set for later than the new deadline, disarm leaves it, and
// when it fires before the armed call's deadline (it was set for an
// earlier call) it sets itself again for that deadline. A busy instance's
// timer thus fires about once per time limit; an idle one's stops.
type watchdog struct {
	flag  api.MutableGlobal
	timer *time.Timer

	limit time.Duration // of the armed call

	mu       sync.Mutex
	armed    bool
	fired    bool
	deadline time.Time // of the armed call
	pending  bool      // the timer is set, for at
	at       time.Time
}

// expired reports whether the armed call ran out of time.
func (w *watchdog) expired() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.fired
}

func (w *watchdog) init(flag api.MutableGlobal) {
	w.flag = flag
	w.timer = time.AfterFunc(time.Hour, w.fire)
	w.timer.Stop()
}

// fire runs on the timer's goroutine. It stops the armed call if its
// deadline has passed, sets the timer again for it if not (the timer was
// set for an earlier call), and lets the timer go idle when no call is
// armed.
func (w *watchdog) fire() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pending = false
	if !w.armed || w.fired {
		return
	}
	if now := time.Now(); now.Before(w.deadline) {
		w.pending, w.at = true, w.deadline
		w.timer.Reset(w.deadline.Sub(now))
		return
	}
	w.fired = true
	w.flag.Set(1)
}

// cancel stops the armed call now: its context was canceled.
func (w *watchdog) cancel() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.armed && !w.fired {
		w.fired = true
		w.flag.Set(1)
	}
}

// arm starts the clock for a call of at most d.
func (w *watchdog) arm(d time.Duration) {
	w.limit = d
	now := time.Now()
	w.mu.Lock()
	w.armed, w.fired, w.deadline = true, false, now.Add(d)
	if !w.pending || w.at.After(w.deadline) {
		w.pending, w.at = true, w.deadline
		w.timer.Reset(d)
	}
	w.mu.Unlock()
}

// disarm stops the clock and reports whether it ran out.
func (w *watchdog) disarm() bool {
	w.mu.Lock()
	fired := w.fired
	w.armed, w.fired = false, false
	if fired {
		w.flag.Set(0)
	}
	w.mu.Unlock()
	return fired
}

// newInstance instantiates g's module and runs the handshake: _initialize
// (if exported), sluice_abi_version, then sluice_init with the config.
func (g *generation) newInstance(ctx context.Context) (*instance, error) {
	t := g.t
	name := fmt.Sprintf("%s@%d#%d", t.base, g.id, g.seq.Add(1))
	log := t.log.With("instance", name)
	in := &instance{t: t, name: name, stderr: newLogWriter(log, slog.LevelWarn, "stderr")}
	cfg := t.modConfig.WithName(name).
		WithStdout(newLogWriter(log, slog.LevelInfo, "stdout")).
		WithStderr(in.stderr)
	mod, err := t.rt.InstantiateModule(ctx, g.compiled, cfg)
	if err != nil {
		return nil, fmt.Errorf("wasm %s: instantiate: %w", t.name, err)
	}
	in.mod = mod
	t.live.Add(1)
	in.mem = mod.Memory()
	in.alloc = mod.ExportedFunction("sluice_alloc")
	in.process = mod.ExportedFunction("sluice_process")
	flag, ok := mod.ExportedGlobal(interruptExport).(api.MutableGlobal)
	if !ok {
		_ = mod.Close(ctx)
		t.live.Add(-1)
		return nil, fmt.Errorf("wasm %s: instantiate: no %s global (the module was not instrumented)", t.name, interruptExport)
	}
	in.dog.init(flag)
	in.dog.arm(t.initTimeout)
	err = in.handshake(ctx)
	in.dog.disarm()
	if err != nil {
		in.close()
		return nil, err
	}
	return in, nil
}

// handshake runs the start function and _initialize if the module has
// them, checks sluice_abi_version and calls sluice_init. The watchdog is
// armed for all of it.
func (in *instance) handshake(ctx context.Context) error {
	t := in.t
	for _, fn := range []string{startExport, "_initialize"} {
		if f := in.mod.ExportedFunction(fn); f != nil {
			if _, err := f.Call(ctx); err != nil {
				if fn == startExport {
					fn = "start function"
				}
				return in.failure(fn, err)
			}
		}
	}
	res, err := in.mod.ExportedFunction("sluice_abi_version").Call(ctx)
	if err != nil {
		return in.failure("sluice_abi_version", err)
	}
	if v := int32(res[0]); v != 1 {
		return &Error{Module: t.name, Func: "sluice_abi_version", Kind: ErrABI, Msg: fmt.Sprintf("returned %d, want 1", v)}
	}
	ptr, err := in.allocate(ctx, len(t.config))
	if err != nil {
		return err
	}
	in.mem.Write(ptr, t.config)
	in.stack[0], in.stack[1] = uint64(ptr), uint64(len(t.config))
	if err := in.mod.ExportedFunction("sluice_init").CallWithStack(ctx, in.stack[:]); err != nil {
		return in.failure("sluice_init", err)
	}
	if packed := in.stack[0]; packed != 0 {
		msg, ok := in.mem.Read(uint32(packed>>32), min(uint32(packed), 4<<10))
		if !ok {
			return t.abiError("sluice_init", fmt.Sprintf("returned an error message at %#x+%d, outside memory (%d bytes)", packed>>32, uint32(packed), in.mem.Size()))
		}
		return &Error{Module: t.name, Func: "sluice_init", Kind: ErrInit, Msg: cleanMessage(msg)}
	}
	return nil
}

// allocate calls sluice_alloc(size) and checks the region it returns.
func (in *instance) allocate(ctx context.Context, size int) (uint32, error) {
	in.stack[0] = uint64(size)
	if err := in.alloc.CallWithStack(ctx, in.stack[:]); err != nil {
		return 0, in.failure("sluice_alloc", err)
	}
	ptr := uint32(in.stack[0])
	if ptr == 0 {
		return 0, &Error{Module: in.t.name, Func: "sluice_alloc", Kind: ErrABI, Msg: fmt.Sprintf("returned 0 for %d bytes (out of memory)", size)}
	}
	if uint64(ptr)+uint64(size) > uint64(in.mem.Size()) {
		return 0, in.t.abiError("sluice_alloc", fmt.Sprintf("returned %#x for %d bytes, outside memory (%d bytes)", ptr, size, in.mem.Size()))
	}
	return ptr, nil
}

// call runs sluice_process on recs and checks the output into in.dec. The
// output view it returns is valid until the next call into the instance.
func (in *instance) call(ctx context.Context, recs []pipeline.Record) ([]byte, error) {
	t := in.t
	size, err := encodedSize(recs)
	if err != nil {
		return nil, &Error{Module: t.name, Func: "sluice_process", Kind: ErrABI, Msg: err.Error()}
	}
	in.stderr.reset()
	in.dog.arm(t.cfg.Timeout)
	ptr, err := in.allocate(ctx, size)
	if err != nil {
		in.dog.disarm()
		return nil, err
	}
	view, _ := in.mem.Read(ptr, uint32(size)) // checked by allocate
	encodeBatch(view, recs)
	in.stack[0], in.stack[1] = uint64(ptr), uint64(size)
	// The call ends at its time cap, or when ctx is canceled (a
	// context.Background never is, and costs nothing here).
	stop := context.AfterFunc(ctx, in.dog.cancel)
	err = in.process.CallWithStack(ctx, in.stack[:])
	stop()
	if fired := in.dog.disarm(); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("wasm %s: sluice_process: stopped: %w", t.name, ctx.Err())
		}
		if fired {
			return nil, &Error{Module: t.name, Func: "sluice_process", Kind: ErrTimeout, Msg: "timeout after " + t.cfg.Timeout.String() + in.memoryNote()}
		}
		return nil, in.failure("sluice_process", err)
	}
	optr, olen := uint32(in.stack[0]>>32), uint32(in.stack[0])
	out, ok := in.mem.Read(optr, olen)
	if !ok {
		return nil, t.abiError("sluice_process", fmt.Sprintf("malformed output: returned %#x+%d, outside memory (%d bytes)", optr, olen, in.mem.Size()))
	}
	if m := in.dec.check(out, recs, *t.cfg.ValidateOutput); m != nil {
		return nil, t.abiError("sluice_process", m.msg)
	}
	return out, nil
}

// failure turns an error of a call into an *Error that says what happened:
// a timeout, the memory cap, or a trap (with the module's last words on
// stderr, e.g. a Go panic).
func (in *instance) failure(fn string, err error) error {
	t := in.t
	e := &Error{Module: t.name, Func: fn, Kind: ErrTrap}
	if in.dog.expired() {
		e.Kind = ErrTimeout
		e.Msg = "timeout after " + in.dog.limit.String() + in.memoryNote()
		return e
	}
	var exit *sys.ExitError
	switch {
	case errors.As(err, &exit):
		e.Msg = fmt.Sprintf("trap: exited with code %d", exit.ExitCode())
	default:
		msg, _, _ := strings.Cut(err.Error(), "\n")
		e.Msg = "trap: " + strings.TrimPrefix(msg, "wasm error: ")
	}
	note, oom := in.stderr.lastWords()
	if note != "" {
		e.Msg += " (stderr: " + note + ")"
	}
	if oom || uint64(in.mem.Size()) >= t.limit-t.limit/16 {
		e.Kind = ErrMemoryLimit
		e.Msg = fmt.Sprintf("memory limit %s reached: %s", t.cfg.MemoryLimit, e.Msg)
	}
	if fn == "_initialize" || fn == "sluice_abi_version" {
		if _, isCommand := in.mod.ExportedFunctionDefinitions()["_start"]; isCommand {
			e.Msg += "; the module exports _start, not _initialize: build it as a WASI reactor (Go: -buildmode=c-shared)"
		}
	}
	return e
}

// memoryNote says how full memory is when it is near the cap, which tells
// a module thrashing at its memory limit from one that is merely slow.
func (in *instance) memoryNote() string {
	size := uint64(in.mem.Size())
	if size < in.t.limit-in.t.limit/16 {
		return ""
	}
	return fmt.Sprintf(" (memory %s of the %s limit in use)", ByteSize(size), in.t.cfg.MemoryLimit)
}

func (in *instance) close() {
	in.dog.timer.Stop()
	_ = in.mod.Close(context.Background())
	in.t.live.Add(-1)
}

// logWriter sends what a module writes to stdout or stderr to the log, a
// line at a time, and remembers the last words of the current call.
type logWriter struct {
	log    *slog.Logger
	level  slog.Level
	stream string

	mu    sync.Mutex
	buf   []byte
	fatal string // first "panic:" or "fatal error:" line since reset
	last  string // last non-empty line since reset
	oom   bool   // a line since reset said "out of memory"
}

func newLogWriter(log *slog.Logger, level slog.Level, stream string) *logWriter {
	return &logWriter{log: log, level: level, stream: stream}
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			if len(w.buf) >= 4<<10 {
				i = len(w.buf)
			} else {
				break
			}
		}
		w.line(string(bytes.TrimRight(w.buf[:i], "\r")))
		w.buf = w.buf[min(i+1, len(w.buf)):]
	}
	if len(w.buf) == 0 {
		w.buf = nil
	}
	return len(p), nil
}

func (w *logWriter) line(s string) {
	w.log.Log(context.Background(), w.level, s, "stream", w.stream)
	if strings.Contains(s, "out of memory") {
		w.oom = true
	}
	if s == "" {
		return
	}
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	if w.fatal == "" && (strings.HasPrefix(s, "panic: ") || strings.HasPrefix(s, "fatal error: ")) {
		w.fatal = s
	}
	w.last = s
}

func (w *logWriter) reset() {
	w.mu.Lock()
	w.fatal, w.last, w.oom = "", "", false
	w.mu.Unlock()
}

// lastWords flushes a partial line and returns the most telling line of the
// current call (a panic or fatal error, else the last line) and whether the
// module said it was out of memory.
func (w *logWriter) lastWords() (string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.line(string(w.buf))
		w.buf = nil
	}
	if w.fatal != "" {
		return w.fatal, w.oom
	}
	return w.last, w.oom
}

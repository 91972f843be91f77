package wasm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pipeline"
)

// run processes values (records dev/1, dev/2, ...) and returns the outputs
// and the failures by sequence number.
func run(t *testing.T, tr *Transform, a *acks, vals ...string) (pipeline.Batch, map[uint64]error) {
	t.Helper()
	out, failed, err := tr.Process(context.Background(), batch(a, vals...))
	if err != nil {
		t.Fatalf("Process: %v", err)
	}
	fails := map[uint64]error{}
	for _, f := range failed {
		fails[f.Record.ID.Seq] = f.Err
	}
	return out, fails
}

func TestExamples(t *testing.T) {
	type outRec struct {
		value, key, dest string
		seq              uint64
		part             uint32
	}
	tests := []struct {
		name   string
		module string
		config map[string]any
		in     []string
		want   []outRec
	}{
		{"identity", "identity", nil,
			[]string{`{"a":1}`, `[1,2]`, `"s"`},
			[]outRec{{`{"a":1}`, "", "", 1, 0}, {`[1,2]`, "", "", 2, 0}, {`"s"`, "", "", 3, 0}}},
		{"enrich", "enrich", map[string]any{"site": "lab-1"},
			[]string{`{"device_id":"d1","temp":21.5}`, `{"device_id":"d2"}`, `{"site":"old","temp":"hot"}`},
			[]outRec{
				{`{"device_id":"d1","temp":21.5,"site":"lab-1","temp_f":70.7}`, "", "", 1, 0},
				{`{"device_id":"d2","site":"lab-1"}`, "", "", 2, 0},
				{`{"site":"lab-1","temp":"hot"}`, "", "", 3, 0},
			}},
		{"filter", "filter", map[string]any{"field": "temp", "min": 0},
			[]string{`{"temp":-5}`, `{"temp":0}`, `{"temp":12.5}`, `{"other":1}`, `{"temp":"cold"}`},
			[]outRec{{`{"temp":0}`, "", "", 2, 0}, {`{"temp":12.5}`, "", "", 3, 0}, {`{"other":1}`, "", "", 4, 0}, {`{"temp":"cold"}`, "", "", 5, 0}}},
		{"split", "split", nil,
			[]string{`{"d":"x","readings":[1,{"t":2}],"z":true}`, `{"d":"y","readings":[]}`, `{"d":"z"}`, `{"readings":[7]}`},
			[]outRec{
				{`{"d":"x","z":true,"reading":1}`, "", "", 1, 1},
				{`{"d":"x","z":true,"reading":{"t":2}}`, "", "", 1, 2},
				{`{"d":"z"}`, "", "", 3, 0},
				{`{"reading":7}`, "", "", 4, 0},
			}},
		{"route", "route", map[string]any{"field": "kind", "routes": map[string]any{"alarm": "alarms", "reading": "readings"}},
			[]string{`{"device_id":"d1","kind":"alarm"}`, `{"device_id":"d2","kind":"reading"}`, `{"kind":"other"}`},
			[]outRec{
				{`{"device_id":"d1","kind":"alarm"}`, "d1", "alarms", 1, 0},
				{`{"device_id":"d2","kind":"reading"}`, "d2", "readings", 2, 0},
				{`{"kind":"other"}`, "", "", 3, 0},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newT(t, tt.module, Config{Config: tt.config})
			out, fails := run(t, tr, nil, tt.in...)
			if len(fails) > 0 {
				t.Fatalf("failures: %v", fails)
			}
			got := make([]outRec, len(out))
			for i, r := range out {
				got[i] = outRec{string(r.Value), string(r.Key), r.Dest, r.ID.Seq, r.ID.Part}
				if r.ID.Device != "dev" {
					t.Errorf("output %d: device %q, want dev", i, r.ID.Device)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("got  %v\nwant %v", got, tt.want)
			}
		})
	}
}

// Key, dest and headers pass through an identity unchanged, and the
// outputs share the input's bytes rather than copies.
func TestIdentityKeepsMetadata(t *testing.T) {
	tr := newT(t, "identity", Config{})
	in := pipeline.Batch{{Value: []byte(`{"a":1}`), Key: []byte("k"), Dest: "topic",
		Headers: []pipeline.Header{{Key: "h", Value: []byte("v")}}, ID: pipeline.ID{Device: "d", Seq: 9, Part: 3}}}
	out, failed, err := tr.Process(context.Background(), in)
	if err != nil || len(failed) > 0 || len(out) != 1 {
		t.Fatalf("Process: %v %v %v", out, failed, err)
	}
	r := out[0]
	if string(r.Value) != `{"a":1}` || string(r.Key) != "k" || r.Dest != "topic" || len(r.Headers) != 1 ||
		r.Headers[0].Key != "h" || string(r.Headers[0].Value) != "v" || r.ID != in[0].ID {
		t.Fatalf("got %+v, want the input", r)
	}
	if &r.Value[0] != &in[0].Value[0] {
		t.Error("the unchanged value was copied")
	}
}

func TestAcks(t *testing.T) {
	t.Run("filter settles", func(t *testing.T) {
		tr := newT(t, "filter", Config{Config: map[string]any{"field": "temp", "min": 0}})
		a := newAcks()
		out, _ := run(t, tr, a, `{"temp":-1}`, `{"temp":1}`)
		if a.settled(0) != 1 || a.errs[0] != nil {
			t.Fatalf("filtered record: settled %d times (err %v), want once with nil", a.settled(0), a.errs[0])
		}
		if a.settled(1) != 0 {
			t.Fatalf("passed record: settled %d times, want 0", a.settled(1))
		}
		out.Settle(nil)
		if a.settled(1) != 1 {
			t.Fatalf("passed record after the sink: settled %d times, want 1", a.settled(1))
		}
	})
	t.Run("split adds", func(t *testing.T) {
		tr := newT(t, "split", Config{})
		a := newAcks()
		out, _ := run(t, tr, a, `{"readings":[1,2,3]}`)
		if len(out) != 3 {
			t.Fatalf("got %d outputs, want 3", len(out))
		}
		for i, r := range out {
			if r.Ack != a.raw[0] {
				t.Fatalf("output %d does not carry the input's ack", i)
			}
			r.Ack.Done(nil)
			if want := map[bool]int{true: 1, false: 0}[i == 2]; a.settled(0) != want {
				t.Fatalf("after %d of 3 outputs settled: callback ran %d times, want %d", i+1, a.settled(0), want)
			}
		}
	})
	t.Run("failure unsettled", func(t *testing.T) {
		tr := newT(t, "hostile", Config{})
		a := newAcks()
		out, fails := run(t, tr, a, `{"fail":true}`, `{"ok":1}`)
		if len(out) != 1 || len(fails) != 1 || !errors.Is(fails[1], ErrRecord) {
			t.Fatalf("got %d outputs and failures %v, want 1 and record 1 failed", len(out), fails)
		}
		if a.settled(0) != 0 {
			t.Fatal("the failed record was settled by Process")
		}
		if got := fails[1].Error(); got != "wasm hostile.wasm: failed on purpose" {
			t.Fatalf("error: got %q", got)
		}
	})
}

// The hostile guest misbehaves on the records that ask for it; only those
// fail, with an error that says why, and the next batch is fine.
func TestHostile(t *testing.T) {
	tests := []struct {
		name   string
		record string
		kind   error
		msg    string // in the error
	}{
		{"trap", `{"poison":true}`, ErrTrap, "sluice_process: trap: unreachable"},
		{"infinite loop", `{"loop":true}`, ErrTimeout, "sluice_process: timeout after 500ms"},
		{"memory bomb", `{"bomb":true}`, ErrMemoryLimit, "sluice_process: memory limit 16MiB reached: trap: unreachable"},
		{"error entry", `{"fail":true}`, ErrRecord, "failed on purpose"},
		{"index out of range", `{"bad_index":true}`, ErrABI, "malformed output: entry 0: index 6 out of range"},
		{"unknown status", `{"bad_status":true}`, ErrABI, "malformed output: entry 0: unknown status 7"},
		{"length past the end", `{"bad_len":true}`, ErrABI, "malformed output: entry 0: value length past the end"},
		{"invalid JSON", `{"bad_json":true}`, ErrInvalidOutput, `output value is not valid JSON: "{nope"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A timeout that the memory bomb (wazero copies memory as it grows,
			// slowly under -race) stays within on a loaded machine;
			// TestTimeoutBound checks 100ms.
			timeout := 500 * time.Millisecond
			if tt.kind == ErrMemoryLimit {
				timeout = 20 * time.Second
			}
			tr := newT(t, "hostile", Config{Timeout: timeout, MemoryLimit: 16 << 20})
			a := newAcks()
			start := time.Now()
			out, fails := run(t, tr, a, `{"n":1}`, tt.record, `{"n":3}`, `{"drop":true}`)
			elapsed := time.Since(start)
			if len(out) != 2 || string(out[0].Value) != `{"n":1}` || string(out[1].Value) != `{"n":3}` {
				t.Fatalf("outputs: got %q, want records 1 and 3", values(out))
			}
			err := fails[2]
			if len(fails) != 1 || err == nil {
				t.Fatalf("failures: got %v, want record 2 only", fails)
			}
			if !errors.Is(err, tt.kind) || !strings.Contains(err.Error(), tt.msg) || !strings.HasPrefix(err.Error(), "wasm hostile.wasm: ") {
				t.Fatalf("error: got %q (%T), want kind %v containing %q", err, err, tt.kind, tt.msg)
			}
			if a.settled(3) != 1 {
				t.Errorf("the dropped record was not settled")
			}
			if elapsed > 3*timeout+2*time.Second {
				t.Errorf("took %v", elapsed)
			}
			// The pipeline goes on.
			out, fails = run(t, tr, nil, `{"next":1}`, `{"next":2}`)
			if len(out) != 2 || len(fails) != 0 {
				t.Fatalf("next batch: got %q and %v, want 2 records", values(out), fails)
			}
			if n := tr.live.Load(); n > int64(tr.cfg.Instances) {
				t.Errorf("%d instances open, want at most %d", n, tr.cfg.Instances)
			}
		})
	}
}

// A record that never finishes is stopped within twice the timeout.
func TestTimeoutBound(t *testing.T) {
	const timeout = 100 * time.Millisecond
	for _, c := range []struct{ module, record string }{
		{"hostile", `{"loop":true}`},    // a loop
		{"fib", `{}`},                   // recursion with no loop
		{"sandbox", `{"probe":"spin"}`}, // a Go loop: a wasm loop of its own after threadJumps
	} {
		t.Run(c.module, func(t *testing.T) {
			tr := newT(t, c.module, Config{Timeout: timeout})
			start := time.Now()
			_, fails := run(t, tr, nil, c.record)
			if elapsed := time.Since(start); elapsed > 2*timeout {
				t.Errorf("stopped after %v, want under %v", elapsed, 2*timeout)
			}
			if !errors.Is(fails[1], ErrTimeout) {
				t.Fatalf("got %v, want a timeout", fails[1])
			}
		})
	}
}

// Unbounded recursion ends in a stack overflow trap (wazero lets the stack
// grow to 400MB first) or in the timeout, whichever comes first; with a
// long timeout, the trap.
func TestStackOverflow(t *testing.T) {
	tr := newT(t, "recurse", Config{Timeout: 30 * time.Second})
	_, fails := run(t, tr, nil, `{}`)
	if err := fails[1]; !errors.Is(err, ErrTrap) || !strings.Contains(err.Error(), "stack overflow") {
		t.Fatalf("got %v, want a stack overflow trap", err)
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		module string
		kind   error
		want   string
	}{
		{"abi2", ErrABI, "wasm abi2.wasm: sluice_abi_version: returned 2, want 1"},
		{"noexport", ErrABI, "wasm noexport.wasm: sluice_process: missing export"},
		{"badsig", ErrABI, "wasm badsig.wasm: sluice_process: signature is (i32) -> (i64), want (i32, i32) -> (i64)"},
		{"badimport", ErrABI, "wasm badimport.wasm: env.open_socket: imported, but Sluice provides only sluice.log and wasi_snapshot_preview1"},
		{"initfail", ErrInit, "wasm initfail.wasm: sluice_init: bad config: want a field"},
		{"alloc0", ErrABI, "wasm alloc0.wasm: sluice_alloc: returned 0 for 2 bytes (out of memory)"},
		{"startloop", ErrTimeout, "wasm startloop.wasm: start function: timeout after 5s"},
		{"initloop", ErrTimeout, "wasm initloop.wasm: _initialize: timeout after 5s"},
		{"missing", nil, "wasm missing.wasm: read module: open "},
	}
	for _, tt := range tests {
		t.Run(tt.module, func(t *testing.T) {
			start := time.Now()
			_, err := New(context.Background(), Config{Module: tt.module + ".wasm", Timeout: 10 * time.Millisecond, CacheDir: cacheDir}, testEnv(t))
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("New: got %v, want %q", err, tt.want)
			}
			if tt.kind != nil && !errors.Is(err, tt.kind) {
				t.Fatalf("New: got %v, want kind %v", err, tt.kind)
			}
			if elapsed := time.Since(start); elapsed > 10*time.Second {
				t.Fatalf("took %v", elapsed)
			}
		})
	}
}

// A module's start function runs before the handshake.
func TestStartFunction(t *testing.T) {
	tr := newT(t, "start", Config{})
	a := newAcks()
	out, fails := run(t, tr, a, `{}`)
	if len(out) != 0 || len(fails) != 0 || a.settled(0) != 1 {
		t.Fatalf("got %v %v, want the record filtered", out, fails)
	}
}

func TestSandbox(t *testing.T) {
	probe := func(t *testing.T, tr *Transform, what string) (string, error) {
		t.Helper()
		out, fails := run(t, tr, nil, fmt.Sprintf(`{"probe":%q,"mb":100}`, what))
		if err := fails[1]; err != nil {
			return "", err
		}
		if len(out) != 1 {
			t.Fatalf("probe %s: %d outputs", what, len(out))
		}
		s := string(out[0].Value)
		i := strings.Index(s, `"result":`)
		return strings.Trim(s[i+len(`"result":`):len(s)-1], `"`), nil
	}
	closed := newT(t, "sandbox", Config{Timeout: 2 * time.Second})
	for _, what := range []string{"file", "write"} {
		t.Run(what, func(t *testing.T) {
			res, err := probe(t, closed, what)
			if err == nil || !errors.Is(err, ErrRecord) {
				t.Fatalf("got %q, %v; want the guest to fail to %s", res, err, what)
			}
			t.Logf("%s: %v", what, err)
		})
	}
	t.Run("socket", func(t *testing.T) {
		// A real listener on the host: the guest must not reach it.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		accepted := make(chan struct{}, 1)
		go func() {
			if c, err := ln.Accept(); err == nil {
				c.Close()
				accepted <- struct{}{}
			}
		}()
		out, fails := run(t, closed, nil, fmt.Sprintf(`{"probe":"socket","addr":%q}`, ln.Addr().String()))
		if err := fails[1]; err == nil || !errors.Is(err, ErrRecord) {
			t.Fatalf("got %q, %v; want the guest to fail to connect", values(out), err)
		}
		select {
		case <-accepted:
			t.Fatal("the guest reached a host socket")
		case <-time.After(100 * time.Millisecond):
		}
		t.Logf("socket: %v", fails[1])
	})
	t.Run("env", func(t *testing.T) {
		if res, _ := probe(t, closed, "env"); res != "" {
			t.Errorf("environment without a grant: %q", res)
		}
		open := newT(t, "sandbox", Config{Grants: Grants{Env: map[string]string{"SITE": "lab-1"}}})
		if res, _ := probe(t, open, "env"); res != "SITE=lab-1" {
			t.Errorf("environment with a grant: got %q, want SITE=lab-1", res)
		}
	})
	t.Run("clock", func(t *testing.T) {
		if res, _ := probe(t, closed, "clock"); !strings.HasPrefix(res, "2022-01-01") {
			t.Errorf("clock without a grant: got %q, want the fake 2022-01-01", res)
		}
		open := newT(t, "sandbox", Config{Grants: Grants{AllowClock: true}})
		if res, _ := probe(t, open, "clock"); !strings.HasPrefix(res, time.Now().UTC().Format("2006-01-02")) {
			t.Errorf("clock with a grant: got %q, want today", res)
		}
	})
	t.Run("random", func(t *testing.T) {
		other := newT(t, "sandbox", Config{})
		a, _ := probe(t, closed, "random")
		b, _ := probe(t, other, "random")
		if a != b {
			t.Errorf("random without a grant: %q and %q, want the same deterministic bytes", a, b)
		}
		open := newT(t, "sandbox", Config{Grants: Grants{AllowRandom: true}})
		if c, _ := probe(t, open, "random"); c == a {
			t.Errorf("random with a grant: got the deterministic %q", c)
		}
	})
	t.Run("memory", func(t *testing.T) {
		// A long timeout: growing memory is slow under -race.
		_, err := probe(t, newT(t, "sandbox", Config{Timeout: 30 * time.Second}), "alloc")
		if !errors.Is(err, ErrMemoryLimit) || !strings.Contains(err.Error(), "memory limit 64MiB reached") {
			t.Fatalf("got %v, want the memory limit", err)
		}
		t.Logf("alloc: %v", err)
	})
	t.Run("panic", func(t *testing.T) {
		if _, err := probe(t, closed, "panic"); !errors.Is(err, ErrRecord) || !strings.HasSuffix(err.Error(), ": panic: boom") {
			t.Fatalf("got %v, want the recovered panic", err)
		}
	})
	t.Run("exit", func(t *testing.T) {
		if _, err := probe(t, closed, "exit"); !errors.Is(err, ErrTrap) || !strings.Contains(err.Error(), "exited with code 3") {
			t.Fatalf("got %v, want exit code 3", err)
		}
	})
	// Still serving.
	if res, err := probe(t, closed, "none"); err != nil || res != "" {
		t.Fatalf("after the probes: got %q, %v", res, err)
	}
}

func TestContextCanceled(t *testing.T) {
	tr := newT(t, "hostile", Config{Timeout: 5 * time.Second})
	a := newAcks()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	start := time.Now()
	out, failed, err := tr.Process(ctx, batch(a, `{"drop":true}`, `{"loop":true}`))
	if !errors.Is(err, context.Canceled) || out != nil || failed != nil {
		t.Fatalf("got %v %v %v, want context.Canceled and nothing", out, failed, err)
	}
	// The call under way stops when ctx is canceled, long before its 5s
	// timeout; nothing is run after it.
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Errorf("Process returned %v after the cancel, want about 20ms", elapsed)
	}
	if _, _, err := tr.Process(ctx, batch(a, `{"drop":true}`)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Process with a canceled context: got %v", err)
	}
	if a.settled(0) != 0 {
		t.Fatal("a record was settled by a Process that returned an error")
	}
	// A new context works.
	if out, _ := run(t, tr, nil, `{"a":1}`); len(out) != 1 {
		t.Fatalf("after the cancel: %d outputs", len(out))
	}
}

func TestClose(t *testing.T) {
	tr, err := New(context.Background(), Config{Module: "identity.wasm", CacheDir: cacheDir}, testEnv(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := tr.Process(context.Background(), batch(nil, `{}`)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Process after Close: got %v, want ErrClosed", err)
	}
	if err := tr.Reload(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Reload after Close: got %v, want ErrClosed", err)
	}
	if err := tr.Close(context.Background()); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// Big batches are cut into calls of batch_size records, in order.
func TestBatchSize(t *testing.T) {
	tr := newT(t, "split", Config{BatchSize: 7})
	var vals []string
	for i := range 50 {
		vals = append(vals, fmt.Sprintf(`{"i":%d,"readings":[1,2]}`, i))
	}
	out, fails := run(t, tr, nil, vals...)
	if len(out) != 100 || len(fails) != 0 {
		t.Fatalf("got %d outputs, %v failures, want 100", len(out), fails)
	}
	for i, r := range out {
		if want := fmt.Sprintf(`{"i":%d,"reading":%d}`, i/2, i%2+1); string(r.Value) != want || r.ID.Seq != uint64(i/2+1) || r.ID.Part != uint32(i%2+1) {
			t.Fatalf("output %d: got %s %+v, want %s", i, r.Value, r.ID, want)
		}
	}
}

// A module spinning while the host collects garbage: native code cannot be
// preempted, so the collector's stop-the-world waits for the module, and
// the timer that would stop the module cannot run until it has. The
// interrupt check's yields to Go (see instrument) break that deadlock.
func TestTimeoutDuringGC(t *testing.T) {
	for _, c := range []struct{ module, record string }{
		{"hostile", `{"loop":true}`},
		{"sandbox", `{"probe":"spin"}`}, // a Go loop: its head counts fuel down and yields through the dispatch loop
	} {
		t.Run(c.module, func(t *testing.T) { timeoutDuringGC(t, c.module, c.record) })
	}
}

func timeoutDuringGC(t *testing.T, module, record string) {
	tr := newT(t, module, Config{Timeout: 100 * time.Millisecond})
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
				runtime.GC()
			}
		}
	}()
	defer func() { close(stop); <-done }()
	for range 5 {
		start := time.Now()
		_, fails := run(t, tr, nil, record)
		if !errors.Is(fails[1], ErrTimeout) {
			t.Fatalf("got %v, want a timeout", fails[1])
		}
		if elapsed := time.Since(start); elapsed > 2*time.Second {
			t.Fatalf("took %v", elapsed)
		}
	}
}

// While the module returns every record unchanged, Process returns the
// inputs themselves; a call that drops or changes a record builds the
// outputs from then on. Either way the result is the same.
func TestUnchangedOutputs(t *testing.T) {
	tr := newT(t, "filter", Config{BatchSize: 2, Config: map[string]any{"field": "t", "min": 0}})
	a := newAcks()
	in := batch(a, `{"t":1}`, `{"t":2}`, `{"t":3}`, `{"t":-1}`, `{"t":5}`, `{"t":-6}`, `{"t":7}`, `{"t":8}`)
	out, failed, err := tr.Process(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(values(out), " "), `{"t":1} {"t":2} {"t":3} {"t":5} {"t":7} {"t":8}`; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	if len(failed) != 0 {
		t.Fatalf("failed: %v", failed)
	}
	for i, r := range out {
		if want := []uint64{1, 2, 3, 5, 7, 8}[i]; r.ID.Seq != want || r.Ack != a.raw[int(want-1)] {
			t.Fatalf("output %d: %+v, want the record %d", i, r.ID, want)
		}
	}
	if a.settled(3) != 1 || a.settled(5) != 1 || a.settled(0) != 0 {
		t.Fatalf("acks: filtered settled %d and %d times, passed %d times", a.settled(3), a.settled(5), a.settled(0))
	}

	// All unchanged: the inputs come back, and appending to them cannot
	// write over the caller's spare capacity.
	id := newT(t, "identity", Config{BatchSize: 3})
	in = append(make(pipeline.Batch, 0, 20), batch(nil, `{"a":1}`, `{"a":2}`, `{"a":3}`, `{"a":4}`, `{"a":5}`)...)
	out, failed, err = id.Process(context.Background(), in)
	if err != nil || len(failed) != 0 {
		t.Fatal(err, failed)
	}
	if got, want := strings.Join(values(out), " "), `{"a":1} {"a":2} {"a":3} {"a":4} {"a":5}`; got != want || cap(out) != len(out) {
		t.Fatalf("got %s (cap %d), want %s", got, cap(out), want)
	}
}

// Command sluice-bench measures Sluice's throughput, latency and cost per
// record against the raw ceilings of its own legs, in one run, on the real
// local Kafka and ClickHouse (scripts/services.sh). `make bench` runs it
// through scripts/bench.sh; BENCHMARKS.md explains the method and holds
// the latest results.
//
//	sluice-bench [--quick] [--json] [--out DIR] [--cpuprofile F] [--memprofile F]
//
// It runs, in order:
//
//  1. Raw legs, each alone, on the same ~200-byte record: coder/websocket
//     receive over loopback (sender in a child process), encoding/json
//     decode+encode, runtime/wasm calling the identity module per batch
//     (and enrich, against native Go), kafka-go produce (RequireAll) and
//     consume, clickhouse-go batch insert; plus the pipeline runner alone
//     (memory source → enrich → null sink) for its allocations per record.
//  2. Sluice end to end: ./cmd/sluice as its own process on the default
//     pipeline.yaml's shape (WebSocket → WASM enrich → Kafka; Kafka →
//     ClickHouse; subscriptions endpoint), loaded by device clients
//     (package device) and one subscriber from this process: a saturation
//     phase (sustained rate, every record acknowledged, in ClickHouse and
//     at the subscriber), then paced phases at 50% of it and at 10k
//     records/s for latency.
//  3. A profiling run: bench/cmd/sluice-prof (the same app.Serve with
//     pprof) at saturation, for the CPU profile and allocations per record.
//
// CPU is read per process (getrusage for this one, /proc/<pid>/stat for
// Sluice, the Kafka broker and clickhouse-server).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/bench/harness"
)

type options struct {
	repo, out           string
	jsonOut             bool
	cpuprofile, memprof string
	quick               bool
	legSeconds          float64
	e2eSeconds          float64
	latSeconds          float64
	profSeconds         float64
	maxRecords          int64
	devices, probes     int
	probeRate           float64
	skipRaw, skipE2E    bool
	skipProfile         bool
	keep                bool
	brokers, clickhouse string
	minLoad             float64
	tune                harness.Tuning
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "ws-send" {
		os.Exit(wsSend(os.Args[2:]))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:]))
}

func wsSend(args []string) int {
	fs := flag.NewFlagSet("ws-send", flag.ContinueOnError)
	url := fs.String("url", "", "")
	conns := fs.Int("conns", 8, "")
	records := fs.Int64("records", 1000, "")
	perFrame := fs.Int("per-frame", 1, "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := harness.WSSend(context.Background(), *url, *conns, *perFrame, *records); err != nil {
		fmt.Fprintln(os.Stderr, "ws-send:", err)
		return 1
	}
	return 0
}

func run(ctx context.Context, args []string) int {
	var o options
	fs := flag.NewFlagSet("sluice-bench", flag.ContinueOnError)
	fs.StringVar(&o.repo, "repo", "", "repository root (default: found from the working directory)")
	fs.StringVar(&o.out, "out", "", "directory for logs, profiles and results (default <repo>/.local/bench/<time>)")
	fs.BoolVar(&o.jsonOut, "json", false, "print the results as JSON on stdout instead of the tables")
	fs.StringVar(&o.cpuprofile, "cpuprofile", "", "write this (bench) process's CPU profile to the file")
	fs.StringVar(&o.memprof, "memprofile", "", "write this (bench) process's allocation profile to the file at the end")
	fs.BoolVar(&o.quick, "quick", false, "short phases (about 2 minutes in all), for development")
	fs.Float64Var(&o.legSeconds, "leg-seconds", 3, "seconds per raw leg")
	fs.Float64Var(&o.e2eSeconds, "e2e-seconds", 30, "seconds of the saturation phase")
	fs.Float64Var(&o.latSeconds, "latency-seconds", 30, "seconds of each latency phase")
	fs.Float64Var(&o.profSeconds, "profile-seconds", 20, "seconds of the CPU profile of Sluice (0: no profiling run)")
	fs.Int64Var(&o.maxRecords, "max-records", 5_000_000, "most records sent in the saturation phase")
	fs.IntVar(&o.devices, "devices", 50, "device clients (one connection each)")
	fs.IntVar(&o.probes, "probes", 16, "latency probe devices (Send then Flush, one record at a time)")
	fs.Float64Var(&o.probeRate, "probe-rate", 60, "records/s per probe device")
	fs.BoolVar(&o.skipRaw, "skip-raw", false, "skip the raw legs")
	fs.BoolVar(&o.skipE2E, "skip-e2e", false, "skip Sluice end to end")
	fs.BoolVar(&o.keep, "keep", false, "keep the Kafka topics and ClickHouse tables")
	fs.StringVar(&o.brokers, "kafka", "127.0.0.1:9092", "Kafka bootstrap address")
	fs.StringVar(&o.clickhouse, "clickhouse", "127.0.0.1:9000", "ClickHouse native address")
	fs.IntVar(&o.tune.KafkaBatch, "kafka-batch", 0, "experiment: the Kafka sink's batch_size (0: the default pipeline's)")
	fs.IntVar(&o.tune.KafkaInFlight, "kafka-in-flight", 0, "experiment: the Kafka sink's max_in_flight (0: the default pipeline's)")
	fs.StringVar(&o.tune.CHCompression, "clickhouse-compression", "", "experiment: the ClickHouse sink's compression, lz4, zstd or none (empty: the default pipeline's, none)")
	fs.StringVar(&o.tune.WASMTimeout, "wasm-timeout", "", "experiment: the WASM transform's timeout, e.g. 1s (empty: the default pipeline's)")
	fs.Float64Var(&o.minLoad, "wait-load", 0, "before starting, wait up to 5 minutes for the 1-minute load average to drop below this (0: do not wait)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if o.quick {
		o.legSeconds, o.e2eSeconds, o.latSeconds, o.profSeconds = 1, 10, 10, 8
	}
	o.skipProfile = o.profSeconds <= 0
	if o.repo == "" {
		o.repo = findRepo()
	}
	if o.repo == "" {
		fmt.Fprintln(os.Stderr, "sluice-bench: repository root not found; pass --repo")
		return 2
	}
	if o.out == "" {
		o.out = filepath.Join(o.repo, ".local", "bench", time.Now().UTC().Format("20060102-150405"))
	}
	// The pipeline.yaml written there names files relative to itself.
	if abs, err := filepath.Abs(o.out); err == nil {
		o.out = abs
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "sluice-bench:", err)
		return 1
	}
	if o.cpuprofile != "" {
		f, err := os.Create(o.cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "sluice-bench:", err)
			return 1
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "sluice-bench:", err)
			return 1
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	if o.memprof != "" {
		runtime.MemProfileRate = 64 << 10
		defer func() {
			f, err := os.Create(o.memprof)
			if err == nil {
				_ = pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
		}()
	}
	b := &bench{o: o, log: os.Stderr}
	res, err := b.run(ctx)
	if res != nil {
		res.Machine.LoadEnd = harness.LoadAvg()
		res.Elapsed = time.Since(b.t0).Seconds()
		res.Compute()
		if js, jerr := json.MarshalIndent(res, "", "  "); jerr == nil {
			_ = os.WriteFile(filepath.Join(o.out, "results.json"), js, 0o644)
			if o.jsonOut {
				os.Stdout.Write(append(js, '\n'))
			}
		}
		if f, ferr := os.Create(filepath.Join(o.out, "results.md")); ferr == nil {
			res.Markdown(f)
			f.Close()
		}
		if !o.jsonOut {
			fmt.Println()
			res.Markdown(os.Stdout)
			fmt.Printf("\nResults, logs and profiles: %s (%.0f s)\n", o.out, res.Elapsed)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sluice-bench:", err)
		return 1
	}
	return 0
}

// command is how this run was started, as a user would type it.
func command() string {
	var args []string
	for i := 1; i < len(os.Args); i++ {
		if os.Args[i] == "--repo" || os.Args[i] == "-repo" {
			i++
			continue
		}
		args = append(args, os.Args[i])
	}
	if os.Getenv("MAKELEVEL") != "" && len(args) == 0 {
		return "make bench"
	}
	return strings.TrimSpace("scripts/bench.sh " + strings.Join(args, " "))
}

var langName = map[string]string{"rust": "Rust", "c": "C", "assemblyscript": "AssemblyScript"}

// guestLangs are the SDK languages besides Go whose examples are measured.
var guestLangs = []string{"rust", "c", "assemblyscript"}

// stale reports whether any file under srcs is newer than the oldest
// .wasm under out (or out has none).
func stale(out string, srcs ...string) bool {
	var oldest time.Time
	_ = filepath.WalkDir(out, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".wasm") {
			if st, err := d.Info(); err == nil && (oldest.IsZero() || st.ModTime().Before(oldest)) {
				oldest = st.ModTime()
			}
		}
		return nil
	})
	if oldest.IsZero() {
		return true
	}
	newer := false
	for _, src := range srcs {
		_ = filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				if st, err := d.Info(); err == nil && st.ModTime().After(oldest) {
					newer = true
				}
			}
			return nil
		})
	}
	return newer
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

func findRepo() string {
	dir, _ := os.Getwd()
	for dir != "" {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			if _, err := os.Stat(filepath.Join(dir, "pipeline")); err == nil {
				return dir
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
	return ""
}

type bench struct {
	o       options
	log     io.Writer
	t0      time.Time
	svc     *harness.Services
	meter   *harness.Meter
	res     *harness.Results
	bins    map[string]string
	cleanup []func()
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.log, "[bench %5.0fs] %s\n", time.Since(b.t0).Seconds(), fmt.Sprintf(format, args...))
}

func (b *bench) run(ctx context.Context) (*harness.Results, error) {
	b.t0 = time.Now()
	o := b.o
	defer func() {
		for i := len(b.cleanup) - 1; i >= 0; i-- {
			b.cleanup[i]()
		}
	}()
	if o.minLoad > 0 {
		deadline := time.Now().Add(5 * time.Minute)
		for l := harness.LoadAvg(); l >= o.minLoad && time.Now().Before(deadline); l = harness.LoadAvg() {
			b.logf("load average %.2f ≥ %.2f: waiting (up to 5 minutes)", l, o.minLoad)
			time.Sleep(15 * time.Second)
		}
	}
	svc, err := harness.OpenServices(ctx, filepath.Join(o.repo, ".local"), strings.Split(o.brokers, ","), o.clickhouse)
	if err != nil {
		return nil, err
	}
	b.svc = svc
	b.cleanup = append(b.cleanup, svc.Close)
	if svc.KafkaPID == 0 || svc.CHPID == 0 {
		b.logf("warning: Kafka pid %d, ClickHouse pid %d (from .local/*/*.pid): their CPU will be missing", svc.KafkaPID, svc.CHPID)
	}
	b.meter = harness.NewMeter(svc.Pids())
	res := &harness.Results{Date: time.Now().UTC().Format(time.RFC3339), Command: command(), OutDir: o.out}
	b.res = res
	res.Machine = machine(svc)
	b.logf("machine: %d × %s; Kafka %s (pid %d); ClickHouse %s (pid %d); load %.2f; out %s",
		res.Machine.NProc, res.Machine.CPUModel, svc.Kafka, svc.KafkaPID, svc.CHVersion, svc.CHPID, res.Machine.LoadStart, o.out)

	if err := b.build(ctx); err != nil {
		return res, err
	}
	corpus := harness.Corpus(50_000, 64)
	b.logf("record: %.0f bytes on average, e.g. %s", harness.AvgSize(corpus), corpus[0])

	if !o.skipRaw {
		if err := b.raw(ctx, corpus); err != nil {
			return res, err
		}
	}
	res.Subscribe = "measured (endpoints/subscribe, one subscriber)"
	if !o.skipE2E {
		if err := b.e2e(ctx); err != nil {
			res.Machine.LoadEnd = harness.LoadAvg()
			return res, err
		}
	}
	res.Machine.LoadEnd = harness.LoadAvg()
	return res, nil
}

func machine(svc *harness.Services) harness.Machine {
	m := harness.Machine{NProc: runtime.NumCPU(), Go: runtime.Version(), Kafka: svc.Kafka, ClickHouse: svc.CHVersion, LoadStart: harness.LoadAvg()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// build compiles Sluice, the profiling wrapper and the two guests.
func (b *bench) build(ctx context.Context) error {
	b.bins = map[string]string{
		"sluice":        filepath.Join(b.o.out, "sluice"),
		"sluice-prof":   filepath.Join(b.o.out, "sluice-prof"),
		"identity.wasm": filepath.Join(b.o.out, "identity.wasm"),
		"enrich.wasm":   filepath.Join(b.o.out, "enrich.wasm"),
	}
	steps := []struct {
		dir, out, pkg string
		env           []string
	}{
		{b.o.repo, b.bins["sluice"], "./cmd/sluice", nil},
		{b.o.repo, b.bins["sluice-prof"], "./bench/cmd/sluice-prof", nil},
		{filepath.Join(b.o.repo, "plugins/examples/go/identity"), b.bins["identity.wasm"], ".", []string{"GOOS=wasip1", "GOARCH=wasm"}},
		{filepath.Join(b.o.repo, "plugins/examples/go/enrich"), b.bins["enrich.wasm"], ".", []string{"GOOS=wasip1", "GOARCH=wasm"}},
	}
	for _, s := range steps {
		t := time.Now()
		args := []string{"build", "-o", s.out}
		if s.env != nil {
			args = append(args, "-buildmode=c-shared")
		}
		cmd := exec.CommandContext(ctx, "go", append(args, s.pkg)...)
		cmd.Dir = s.dir
		cmd.Env = append(os.Environ(), s.env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s in %s: %v\n%s", s.pkg, s.dir, err, out)
		}
		b.logf("built %s (%.1fs)", s.out, time.Since(t).Seconds())
	}
	// The same examples in Rust, C and AssemblyScript, when their toolchains are here
	// (plugins/build-guests.sh says what is missing otherwise).
	// Built once into .local/bench/guests, again when a source is newer.
	t := time.Now()
	gdir := filepath.Join(b.o.repo, ".local", "bench", "guests")
	var build []string
	for _, lang := range guestLangs {
		if stale(filepath.Join(gdir, lang), filepath.Join(b.o.repo, "plugins/examples", lang), filepath.Join(b.o.repo, "plugins/sdk", lang)) {
			build = append(build, lang)
		}
	}
	if len(build) > 0 {
		cmd := exec.CommandContext(ctx, filepath.Join(b.o.repo, "plugins/build-guests.sh"), append([]string{"--out", gdir}, build...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.logf("plugins/build-guests.sh %s: %v (the guests that did not build are skipped)\n%s", strings.Join(build, " "), err, out)
		}
	}
	for _, lang := range guestLangs {
		for _, kind := range []string{"identity", "enrich"} {
			if p := filepath.Join(gdir, lang, kind+".wasm"); fileExists(p) {
				b.bins[lang+"/"+kind+".wasm"] = p
			}
		}
	}
	b.logf("built the Rust, C and AssemblyScript guests (%.1fs)", time.Since(t).Seconds())
	// The ABI by hand, without an SDK: the floor of a WASM transform.
	b.bins["passthrough.wasm"] = filepath.Join(b.o.out, "passthrough.wasm")
	wat := filepath.Join(b.o.repo, "plugins/examples/wat/passthrough.wat")
	if out, err := exec.CommandContext(ctx, "wat2wasm", wat, "-o", b.bins["passthrough.wasm"]).CombinedOutput(); err != nil {
		b.logf("wat2wasm %s: %v %s (the passthrough leg is skipped; apt-get install wabt)", wat, err, out)
		b.bins["passthrough.wasm"] = ""
	}
	return nil
}

func (b *bench) legDone(l harness.Leg) {
	b.res.Legs = append(b.res.Legs, l)
	msg := fmt.Sprintf("%-34s %10.0f records/s  %7.3f CPU-s/M (%5.0f ns/rec)", l.Name, l.Rate, l.CPUPerM, l.NsPerRecord())
	if l.KafkaPerM > 0 {
		msg += fmt.Sprintf("  kafka %.3f", l.KafkaPerM)
	}
	if l.CHPerM > 0 {
		msg += fmt.Sprintf("  clickhouse %.3f", l.CHPerM)
	}
	msg += fmt.Sprintf("  allocs/rec %.1f  others %.2f cores", l.AllocsPerR, l.OthersCore)
	if l.Err != "" {
		msg += "  ERROR " + l.Err
	}
	b.logf("%s", msg)
}

func (b *bench) raw(ctx context.Context, corpus [][]byte) error {
	o := b.o
	d := time.Duration(o.legSeconds * float64(time.Second))
	self, err := os.Executable()
	if err != nil {
		return err
	}
	b.logf("raw legs, %.0fs each", o.legSeconds)

	// WebSocket receive: sized to take about d at the expected rate.
	scale := o.legSeconds / 3
	b.legDone(harness.WebSocketReceive(ctx, b.meter, self, corpus, 50, 64, int64(3_000_000*scale), true))
	b.legDone(harness.WebSocketReceive(ctx, b.meter, self, corpus, 50, 1, int64(400_000*scale), false))

	for _, l := range harness.JSONLegs(b.meter, corpus, d) {
		b.legDone(l)
	}

	all := []int{1, 64, 256, 1024}
	mods := []harness.WASMModule{
		{Name: "identity", Kind: "identity", Path: b.bins["identity.wasm"], Desc: "plugins/examples/go/identity (Go guest SDK)", Batches: all},
		{Name: "passthrough", Kind: "identity", Path: b.bins["passthrough.wasm"], Desc: "plugins/examples/wat/passthrough.wat (the ABI by hand, no SDK)", Batches: all},
		{Name: "passthrough, validate_output off", Kind: "identity", Path: b.bins["passthrough.wasm"], Desc: "passthrough.wat with validate_output: false", Batches: []int{64, 256}, NoValidate: true},
		{Name: "enrich", Kind: "enrich", Path: b.bins["enrich.wasm"], Desc: "plugins/examples/go/enrich (Go guest SDK)", Batches: all},
	}
	for _, lang := range guestLangs {
		for _, kind := range []string{"identity", "enrich"} {
			if p := b.bins[lang+"/"+kind+".wasm"]; p != "" {
				mods = append(mods, harness.WASMModule{Name: fmt.Sprintf("%s (%s)", kind, langName[lang]), Kind: kind, Path: p,
					Desc: fmt.Sprintf("plugins/examples/%s/%s (%s guest SDK)", lang, kind, langName[lang]), Batches: []int{256}})
			}
		}
	}
	legs, cases, err := harness.WASMLegs(ctx, b.meter, corpus, mods, d/2)
	for _, l := range legs {
		b.legDone(l)
	}
	if err != nil {
		b.res.WASM = cases
		return err
	}
	// The same modules on a bare wazero host, at batch 256: how much of a
	// guest's cost is its own code and how much the Sluice host adds.
	for _, mod := range mods {
		if mod.NoValidate || mod.Path == "" {
			continue
		}
		sizes := []int{256}
		switch mod.Name {
		case "passthrough":
			sizes = []int{64, 256, 1024}
		case "identity", "enrich":
			sizes = []int{256, 1024}
		}
		for _, n := range sizes {
			l := harness.RawWASMLeg(ctx, b.meter, corpus, mod, n, d/2)
			b.legDone(l)
			for i := range cases {
				if cases[i].Transform == mod.Name && cases[i].Batch == n && l.Err == "" {
					cases[i].BareNs = l.NsPerRecord()
				}
			}
		}
	}
	b.res.WASM = cases

	topic := harness.UniqueName("bench_raw")
	if err := b.svc.CreateTopic(ctx, topic, 4); err != nil {
		return err
	}
	if !o.keep {
		b.cleanup = append(b.cleanup, func() { b.svc.DeleteTopics(topic) })
	}
	var best *harness.Leg
	for _, v := range []struct{ batch, conc int }{{1000, 1}, {1000, 4}, {5000, 1}} {
		l := harness.KafkaProduce(ctx, b.meter, b.svc, topic, corpus, v.batch, v.conc, 2*d, 5_000_000)
		b.legDone(l)
		if l.Err == "" && (best == nil || l.Rate > best.Rate) {
			best = &b.res.Legs[len(b.res.Legs)-1]
		}
	}
	if best != nil {
		best.Ratio = true
	}
	written, err := b.svc.EndOffsets(ctx, topic)
	if err != nil {
		return err
	}
	b.legDone(harness.KafkaConsume(ctx, b.meter, b.svc, topic, written))

	table := harness.UniqueName("bench_raw")
	if err := b.svc.CreateTelemetryTable(ctx, table); err != nil {
		return fmt.Errorf("clickhouse: create %s: %w", table, err)
	}
	if !o.keep {
		b.cleanup = append(b.cleanup, func() { b.svc.DropTable(table) })
	}
	b.legDone(harness.ClickHouseInsert(ctx, b.meter, b.svc, table, corpus, 10000, 2*d, 20_000_000))

	n := int(200_000 * scale)
	b.legDone(harness.RunnerLeg(ctx, b.meter, corpus, n, ""))
	b.legDone(harness.RunnerLeg(ctx, b.meter, corpus, n, b.bins["enrich.wasm"]))
	return nil
}

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/sluicehq/sluice/bench/harness"
)

type target struct {
	topic, dead, table, group string
	httpAddr, wsAddr          string
	config                    string
}

func (b *bench) e2e(ctx context.Context) error {
	o := b.o
	t := target{topic: harness.UniqueName("bench_telemetry"), table: harness.UniqueName("bench_telemetry"), group: harness.UniqueName("bench_store")}
	t.dead = t.topic + "_dead"
	for _, tp := range []struct {
		name  string
		parts int
	}{{t.topic, 4}, {t.dead, 1}} {
		if err := b.svc.CreateTopic(ctx, tp.name, tp.parts); err != nil {
			return err
		}
	}
	if !o.keep {
		b.cleanup = append(b.cleanup, func() { b.svc.DeleteTopics(t.topic, t.dead) }, func() { b.svc.DropTable(t.table) })
	}
	var err error
	if t.httpAddr, err = harness.FreeAddr(); err != nil {
		return err
	}
	if t.wsAddr, err = harness.FreeAddr(); err != nil {
		return err
	}
	t.config = filepath.Join(o.out, "pipeline.yaml")
	yaml := harness.PipelineYAML(t.httpAddr, t.wsAddr, b.bins["enrich.wasm"], b.svc.Brokers, b.svc.ClickHouse, t.topic, t.dead, t.table, t.group, o.tune)
	if s := o.tune.String(); s != "" {
		b.res.Notes = append(b.res.Notes, "NOT the default pipeline: "+s)
		b.logf("e2e: tuning (not the default pipeline): %s", s)
	}
	if err := os.WriteFile(t.config, []byte(yaml), 0o644); err != nil {
		return err
	}

	// ./cmd/sluice: throughput and latency.
	b.logf("e2e: starting %s run -c %s", b.bins["sluice"], t.config)
	proc, err := harness.StartProc(ctx, b.bins["sluice"], []string{"run", "-c", t.config, "--log-level", "warn"}, filepath.Join(o.out, "sluice.log"), t.httpAddr)
	if err != nil {
		return err
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			if err := proc.Stop(30 * time.Second); err != nil {
				b.logf("sluice stopped with: %v", err)
			}
		}
	}
	defer stop()
	b.meter.Watch("sluice", proc.PID())
	defer b.meter.Forget("sluice")
	sess, err := b.session(ctx, "sluice", t)
	if err != nil {
		return err
	}
	defer sess.Close()

	secs := func(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }
	warm, err := sess.Saturate(ctx, "warm-up", 3*time.Second, 300_000, 90*time.Second)
	if err != nil {
		return err
	}
	b.logf("e2e warm-up: %d records, %.0f acked/s, complete %v %s", warm.Records, warm.AckRate, warm.Complete, warm.Incomplete)

	tp, err := sess.Saturate(ctx, "saturation", secs(o.e2eSeconds), o.maxRecords, 150*time.Second)
	if err != nil {
		return err
	}
	b.res.Phases = append(b.res.Phases, tp)
	b.res.Throughput = tp
	b.logf("e2e saturation: %d records, sustained %.0f/s (acked %.0f/s, clickhouse %.0f/s, subscriber %.0f/s), complete %v %s",
		tp.Records, tp.Sustained, tp.AckRate, tp.CHRate, tp.SubRate, tp.Complete, tp.Incomplete)

	rate := 0.5 * tp.Sustained
	if rate <= 0 {
		rate = 0.5 * tp.Offered
	}
	for _, r := range []struct {
		name string
		rate float64
	}{{fmt.Sprintf("latency @50%% (%.0f/s)", rate), rate}, {"latency @10k/s", 10_000}} {
		ph, err := sess.Paced(ctx, r.name, r.rate, o.probeRate, secs(o.latSeconds), 3*time.Second, 60*time.Second)
		if err != nil {
			return err
		}
		ph.Overloaded = r.rate > tp.Sustained
		b.res.Phases = append(b.res.Phases, ph)
		if r.rate == 10_000 {
			b.res.Latency10k = ph
		} else {
			b.res.Latency50 = ph
		}
		b.logf("e2e %s: ack p50/p99/p999 %.1f/%.1f/%.1f ms; clickhouse %.0f/%.0f/%.0f ms; subscriber %.1f/%.1f/%.1f ms; complete %v %s",
			r.name, ph.Ack.P50, ph.Ack.P99, ph.Ack.P999, ph.CH.P50, ph.CH.P99, ph.CH.P999, ph.Sub.P50, ph.Sub.P99, ph.Sub.P999, ph.Complete, ph.Incomplete)
	}
	sess.Close()
	stop()
	b.meter.Forget("sluice")

	if !o.skipProfile {
		b.res.Profile = b.profile(ctx, t)
	}
	return nil
}

func (b *bench) session(ctx context.Context, name string, t target) (*harness.Session, error) {
	devlog, err := os.OpenFile(filepath.Join(b.o.out, "devices.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	b.cleanup = append(b.cleanup, func() { devlog.Close() })
	return harness.NewSession(ctx, name, b.svc, b.meter, harness.SessionOptions{
		IngestURL: "ws://" + t.wsAddr + "/ingest", SubscribeURL: "ws://" + t.wsAddr + "/subscribe",
		Topic: t.topic, Table: t.table, Devices: b.o.devices, Probes: b.o.probes, DeviceLog: devlog, Progress: b.log,
		MetricsAddr: t.httpAddr, OutDir: b.o.out,
	})
}

// profile runs bench/cmd/sluice-prof (app.Serve with pprof) at
// saturation and takes a CPU profile and allocation counts over the middle
// of the run.
func (b *bench) profile(ctx context.Context, t target) *harness.Profile {
	o := b.o
	p := &harness.Profile{Seconds: o.profSeconds}
	fail := func(err error) *harness.Profile { p.Error = err.Error(); b.logf("profile: %v", err); return p }
	pprofAddr, err := harness.FreeAddr()
	if err != nil {
		return fail(err)
	}
	b.logf("profile: starting %s with pprof on %s", b.bins["sluice-prof"], pprofAddr)
	proc, err := harness.StartProc(ctx, b.bins["sluice-prof"], []string{"-c", t.config, "-pprof", pprofAddr, "-log-level", "warn"}, filepath.Join(o.out, "sluice-prof.log"), t.httpAddr)
	if err != nil {
		return fail(err)
	}
	defer func() {
		if err := proc.Stop(30 * time.Second); err != nil {
			b.logf("sluice-prof stopped with: %v", err)
		}
	}()
	b.meter.Watch("sluice", proc.PID())
	defer b.meter.Forget("sluice")
	sess, err := b.session(ctx, "sluice-prof", t)
	if err != nil {
		return fail(err)
	}
	defer sess.Close()

	base := "http://" + pprofAddr
	cpuFile := filepath.Join(o.out, "sluice-cpu.pprof")
	a0, a1 := filepath.Join(o.out, "sluice-allocs-0.pprof"), filepath.Join(o.out, "sluice-allocs-1.pprof")
	type window struct {
		ms0, ms1       harness.MemStats
		acked0, acked1 int64
		cpu0, cpu1     time.Duration
		err            error
	}
	done := make(chan window, 1)
	go func() {
		var w window
		defer func() { done <- w }()
		time.Sleep(4 * time.Second)
		if w.err = harness.Fetch(ctx, base+"/debug/pprof/allocs", a0); w.err != nil {
			return
		}
		if w.ms0, w.err = harness.GetMemStats(ctx, base); w.err != nil {
			return
		}
		w.acked0 = sess.Acked()
		w.cpu0, _ = harness.ProcCPU(proc.PID())
		w.err = harness.Fetch(ctx, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", base, int(o.profSeconds)), cpuFile)
		w.acked1 = sess.Acked()
		w.cpu1, _ = harness.ProcCPU(proc.PID())
		if w.err != nil {
			return
		}
		if w.ms1, w.err = harness.GetMemStats(ctx, base); w.err != nil {
			return
		}
		w.err = harness.Fetch(ctx, base+"/debug/pprof/allocs", a1)
	}()
	ph, err := sess.Saturate(ctx, "profile (sluice-prof)", time.Duration((o.profSeconds+7)*float64(time.Second)), o.maxRecords, 150*time.Second)
	w := <-done
	if err != nil {
		return fail(err)
	}
	p.ProfilePhase = ph
	if w.err != nil {
		return fail(w.err)
	}
	p.Records = w.acked1 - w.acked0
	if p.Records <= 0 {
		return fail(fmt.Errorf("no records acknowledged during the profile"))
	}
	p.AllocsPerRec = float64(w.ms1.Mallocs-w.ms0.Mallocs) / float64(p.Records)
	p.BytesPerRec = float64(w.ms1.TotalAlloc-w.ms0.TotalAlloc) / float64(p.Records)
	p.GCs = w.ms1.NumGC - w.ms0.NumGC
	p.CPUNsPerRec = float64(w.cpu1-w.cpu0) / float64(p.Records)
	cats, over, total, err := harness.Breakdown(cpuFile, p.Records)
	if err != nil {
		return fail(err)
	}
	p.Categories, p.Overlays, p.SampledCPU = cats, over, total
	p.CPUTopFile = filepath.Join(o.out, "sluice-cpu-top.txt")
	p.AllocsTopFile = filepath.Join(o.out, "sluice-allocs-top.txt")
	if err := harness.PprofText(p.CPUTopFile, "-top", "-nodecount=60", b.bins["sluice-prof"], cpuFile); err != nil {
		b.logf("pprof -top: %v", err)
	}
	_ = harness.PprofText(filepath.Join(o.out, "sluice-cpu-top-cum.txt"), "-top", "-cum", "-nodecount=80", b.bins["sluice-prof"], cpuFile)
	if err := harness.PprofText(p.AllocsTopFile, "-sample_index=alloc_objects", "-top", "-nodecount=40", "-diff_base="+a0, b.bins["sluice-prof"], a1); err != nil {
		b.logf("pprof allocs: %v", err)
	}
	p.AllocSites = harness.AllocSites(p.AllocsTopFile, p.Records, 12)
	p.Files = []string{cpuFile, a0, a1, p.CPUTopFile, p.AllocsTopFile}
	b.logf("profile: %d records in %.0fs; %.0f ns CPU/record; %.1f allocs/record, %.0f B/record; %d GCs", p.Records, o.profSeconds, p.CPUNsPerRec, p.AllocsPerRec, p.BytesPerRec, p.GCs)
	for i, c := range cats {
		if i == 8 {
			break
		}
		b.logf("profile:   %5.1f%%  %5.0f ns/rec  %s", 100*c.Share, c.NsPerRecord, c.Name)
	}
	return p
}

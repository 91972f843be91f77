package harness

import (
	"fmt"
	"io"
	"math"
	"strings"
)

// Machine describes where the run happened.
type Machine struct {
	NProc      int     `json:"nproc"`
	CPUModel   string  `json:"cpu_model"`
	Kernel     string  `json:"kernel"`
	Go         string  `json:"go"`
	Kafka      string  `json:"kafka"`
	ClickHouse string  `json:"clickhouse"`
	LoadStart  float64 `json:"loadavg_start"`
	LoadEnd    float64 `json:"loadavg_end"`
}

// Ratios are the three ratios.
type Ratios struct {
	// Composed is 1/Σ(1/rate_i) over the raw legs of the ratios.
	Composed float64 `json:"composed_ceiling_per_s"`
	// Glue is the e2e sustained rate ÷ Composed (target ≥ 0.75).
	Glue float64 `json:"glue"`
	// RawCPUPerM is Σ of the raw legs' client CPU per million records.
	RawCPUPerM float64 `json:"raw_cpu_s_per_m"`
	// Overhead is Sluice's CPU per record ÷ RawCPUPerM (target ≤ 1.33).
	Overhead float64 `json:"overhead"`
	// WASM ÷ native CPU per record, and the ABI tax (ns/record) at
	// batch 64 and 256.
	WASMEnrich   float64 `json:"wasm_enrich_over_native"`
	WASMIdentity float64 `json:"wasm_identity_over_native"`
	// The ABI tax is what runtime/wasm adds per record around a guest that
	// does nothing: the hand-written passthrough module through
	// runtime/wasm minus the same module on a bare wazero host. SDK* is the
	// Go guest SDK's identity minus a native Go copy.
	TaxNs64     float64 `json:"abi_tax_ns_batch64"`
	TaxNs256    float64 `json:"abi_tax_ns_batch256"`
	SDKTaxNs64  float64 `json:"go_sdk_identity_tax_ns_batch64"`
	SDKTaxNs256 float64 `json:"go_sdk_identity_tax_ns_batch256"`
	// EnrichGlue is the glue ratio with the enrich leg (what the e2e
	// pipeline runs) in place of identity in the composed ceiling.
	EnrichComposed float64 `json:"composed_ceiling_with_enrich_per_s"`
	EnrichGlue     float64 `json:"glue_with_enrich_leg"`
	// EnrichOverhead is the overhead ratio with the enrich leg's CPU in
	// place of identity's.
	EnrichRawCPUPerM float64 `json:"raw_cpu_with_enrich_s_per_m"`
	EnrichOverhead   float64 `json:"overhead_with_enrich_leg"`
}

// Target is one of the targets and whether it was met.
type Target struct {
	Name   string  `json:"name"`
	Want   string  `json:"want"`
	Got    float64 `json:"got"`
	Unit   string  `json:"unit"`
	Met    bool    `json:"met"`
	Note   string  `json:"note,omitempty"`
	Absent bool    `json:"not_measured,omitempty"`
}

// Profile is the CPU and allocation analysis of the profiled Sluice run.
type Profile struct {
	Seconds       float64     `json:"seconds"`
	Records       int64       `json:"records"`
	SampledCPU    float64     `json:"sampled_cpu_s"`
	CPUNsPerRec   float64     `json:"cpu_ns_per_record"`
	AllocsPerRec  float64     `json:"allocs_per_record"`
	BytesPerRec   float64     `json:"alloc_bytes_per_record"`
	GCs           uint64      `json:"gcs"`
	Categories    []Category  `json:"categories"`
	AllocSites    []AllocSite `json:"alloc_sites"`
	Overlays      []Category  `json:"overlays"`
	Files         []string    `json:"files"`
	Error         string      `json:"error,omitempty"`
	ProfilePhase  *Phase      `json:"phase,omitempty"`
	CPUTopFile    string      `json:"cpu_top_file,omitempty"`
	AllocsTopFile string      `json:"allocs_top_file,omitempty"`
}

// Results is everything a run measured.
type Results struct {
	Date    string     `json:"date"`
	Command string     `json:"command"`
	Machine Machine    `json:"machine"`
	Legs    []Leg      `json:"raw_legs"`
	WASM    []WASMCase `json:"wasm"`
	Phases  []*Phase   `json:"e2e_phases"`
	// Throughput is the saturation phase; Latency50 the one at 50% of its
	// sustained rate; Latency10k the one at 10k records/s.
	Throughput *Phase   `json:"-"`
	Latency50  *Phase   `json:"-"`
	Latency10k *Phase   `json:"-"`
	Ratios     Ratios   `json:"ratios"`
	Targets    []Target `json:"targets"`
	Profile    *Profile `json:"profile,omitempty"`
	Subscribe  string   `json:"subscribe_endpoint"`
	Notes      []string `json:"notes,omitempty"`
	OutDir     string   `json:"out_dir"`
	Elapsed    float64  `json:"elapsed_s"`
}

// Compute fills Ratios and Targets from the legs and phases.
func (r *Results) Compute() {
	var inv, cpu float64
	n := 0
	for _, l := range r.Legs {
		if !l.Ratio || l.Rate <= 0 {
			continue
		}
		inv += 1 / l.Rate
		cpu += l.CPUPerM
		n++
	}
	if inv > 0 {
		r.Ratios.Composed = 1 / inv
	}
	r.Ratios.RawCPUPerM = cpu
	if t := r.Throughput; t != nil && r.Ratios.Composed > 0 {
		r.Ratios.Glue = t.Sustained / r.Ratios.Composed
		if cpu > 0 {
			r.Ratios.Overhead = t.SluicePerM / cpu
		}
	}
	for _, c := range r.WASM {
		switch {
		case c.Transform == "enrich" && c.Batch == 256:
			r.Ratios.WASMEnrich = c.Ratio
		case c.Transform == "identity" && c.Batch == 256:
			r.Ratios.WASMIdentity = c.Ratio
			r.Ratios.SDKTaxNs256 = c.TaxNs
		case c.Transform == "identity" && c.Batch == 64:
			r.Ratios.SDKTaxNs64 = c.TaxNs
		case c.Transform == "passthrough" && c.Batch == 256 && c.BareNs > 0:
			r.Ratios.TaxNs256 = c.WASMNs - c.BareNs
		case c.Transform == "passthrough" && c.Batch == 64 && c.BareNs > 0:
			r.Ratios.TaxNs64 = c.WASMNs - c.BareNs
		}
	}
	// The same composition with enrich's WASM rate in place of identity's.
	var einv, ecpu float64
	var enrich *Leg
	for i, l := range r.Legs {
		if l.Name == "wasm enrich (batch 256)" && l.Err == "" {
			enrich = &r.Legs[i]
		}
	}
	if enrich != nil && enrich.Rate > 0 {
		for _, l := range r.Legs {
			if l.Ratio && l.Rate > 0 && !strings.HasPrefix(l.Name, "wasm ") {
				einv += 1 / l.Rate
				ecpu += l.CPUPerM
			}
		}
		einv += 1 / enrich.Rate
		ecpu += enrich.CPUPerM
		r.Ratios.EnrichComposed = 1 / einv
		r.Ratios.EnrichRawCPUPerM = ecpu
		if t := r.Throughput; t != nil {
			r.Ratios.EnrichGlue = t.Sustained / r.Ratios.EnrichComposed
			r.Ratios.EnrichOverhead = t.SluicePerM / ecpu
		}
	}
	r.Targets = nil
	add := func(t Target) { r.Targets = append(r.Targets, t) }
	if t := r.Throughput; t != nil {
		add(Target{Name: "e2e sustained throughput", Want: "≥ 100000", Got: t.Sustained, Unit: "records/s", Met: t.Sustained >= 100000 && t.Complete})
		if r.Ratios.Composed > 0 { // the raw legs ran
			add(Target{Name: "glue ratio", Want: "≥ 0.75", Got: r.Ratios.Glue, Met: r.Ratios.Glue >= 0.75})
			add(Target{Name: "overhead ratio", Want: "≤ 1.33", Got: r.Ratios.Overhead, Met: r.Ratios.Overhead > 0 && r.Ratios.Overhead <= 1.33})
		}
	}
	if len(r.WASM) > 0 {
		worst := math.Max(r.Ratios.TaxNs64, r.Ratios.TaxNs256)
		add(Target{Name: "WASM ABI tax at batch ≥ 64 (passthrough.wat: runtime/wasm − bare wazero)", Want: "≤ 100", Got: worst, Unit: "ns/record", Met: worst > 0 && worst <= 100,
			Note: fmt.Sprintf("batch 64: %.0f, batch 256: %.0f", r.Ratios.TaxNs64, r.Ratios.TaxNs256)})
	}
	if p := r.Latency10k; p != nil {
		add(Target{Name: "device→subscriber p99 at 10k records/s", Want: "< 25", Got: p.Sub.P99, Unit: "ms", Met: p.Sub.N > 0 && p.Sub.P99 < 25})
	}
}

func f0(v float64) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", v)
}

func f2(v float64) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", v)
}

func f3(v float64) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf("%.3f", v)
}

// Markdown writes the tables.
func (r *Results) Markdown(w io.Writer) {
	m := r.Machine
	fmt.Fprintf(w, "Run %s — %d × %s, Linux %s, %s, Kafka %s, ClickHouse %s; load average %.2f at start, %.2f at end.\n\n",
		r.Date, m.NProc, m.CPUModel, m.Kernel, m.Go, m.Kafka, m.ClickHouse, m.LoadStart, m.LoadEnd)
	fmt.Fprintf(w, "Command: `%s`\n\n", r.Command)

	if len(r.Legs) > 0 {
		fmt.Fprintln(w, "Raw legs, each alone (★ = in the ratios). CPU is seconds per million records: the client process, and the broker / server where they work.")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| leg | records/s | client CPU s/M | ns/record | Kafka CPU s/M | ClickHouse CPU s/M | allocs/rec | other load (cores) | how |")
		fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---|")
		for _, l := range r.Legs {
			star := ""
			if l.Ratio {
				star = " ★"
			}
			how := l.Detail
			if l.Err != "" {
				how = "ERROR: " + l.Err + "; " + how
			}
			fmt.Fprintf(w, "| %s%s | %s | %s | %s | %s | %s | %s | %.2f | %s |\n", l.Name, star, f0(l.Rate), f3(l.CPUPerM), f0(l.NsPerRecord()),
				f3(l.KafkaPerM), f3(l.CHPerM), f2(l.AllocsPerR), l.OthersCore, how)
		}
		fmt.Fprintln(w)
	}
	if len(r.WASM) > 0 {
		fmt.Fprintln(w, "WASM vs native Go (CPU ns per record; tax = WASM − native; bare wazero = the same module on a bare wazero host without runtime/wasm's instrumentation and output checks):")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| transform | batch | WASM ns/rec | native ns/rec | WASM ÷ native | tax ns/rec | WASM records/s | bare wazero ns/rec |")
		fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|")
		for _, c := range r.WASM {
			fmt.Fprintf(w, "| %s | %d | %.0f | %.0f | %.1f | %.0f | %s | %s |\n", c.Transform, c.Batch, c.WASMNs, c.NativeNs, c.Ratio, c.TaxNs, f0(c.WASMRate), f0(c.BareNs))
		}
		fmt.Fprintln(w)
	}
	if len(r.Phases) > 0 {
		fmt.Fprintln(w, "Sluice end to end (separate processes: Sluice, the load generator with the device clients and the subscriber, Kafka, ClickHouse). Rates over the middle 80% of each phase's records; CPU over the whole phase.")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| phase | records | offered/s | acked/s | ClickHouse rows/s | subscriber/s | sustained/s | all settled | Sluice CPU s/M | Kafka CPU s/M | ClickHouse CPU s/M | load gen CPU s/M | cores: Sluice / Kafka / CH / load gen / others | subscriber lag disconnects | loadavg |")
		fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|---:|---:|")
		for _, p := range r.Phases {
			ok := "yes"
			if !p.Complete {
				ok = "NO: " + p.Incomplete
			}
			fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s | %s | %s | %.2f | %.2f | %.2f | %.2f | %.2f / %.2f / %.2f / %.2f / %.2f | %d | %.1f |\n",
				p.Name, p.Records, f0(p.Offered), f0(p.AckRate), f0(p.CHRate), f0(p.SubRate), f0(p.Sustained), ok,
				p.SluicePerM, p.KafkaPerM, p.CHPerM, p.LoadgenPerM, p.SluiceCores, p.KafkaCores, p.CHCores, p.LoadgenCore, p.OthersCores, p.Lagged, p.Load)
		}
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Sluice's stages during the load (from its /metrics): mean call time, records per call, busy = call time ÷ wall time (the Kafka sink keeps up to max_in_flight writes going, default 2, others one; busy near that number means the sink is the bottleneck).")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| phase | stage | calls | mean ms | records/call | busy |")
		fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|")
		for _, p := range r.Phases {
			for _, st := range p.Stages {
				fmt.Fprintf(w, "| %s | %s | %.0f | %.1f | %.0f | %.2f |\n", p.Name, st.Name, st.Calls, st.AvgMs, st.PerCall, st.Busy)
			}
		}
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Latency (ms) from the device's Send: to its Kafka ack (every bulk record: each device's acked count polled every 1 ms; and lone records of probe devices, Send → Flush), to visible in ClickHouse (probe devices, table polled every 10 ms), to a WebSocket subscriber (every record).")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| phase | target/s | device→Kafka ack p50 / p99 / p999 (n) | lone-record probe ack | device→ClickHouse p50 / p99 / p999 (n) | device→subscriber p50 / p99 / p999 (n) | subscriber disconnected for lagging |")
		fmt.Fprintln(w, "|---|---:|---|---|---|---|---:|")
		lat := func(s Summary) string {
			if s.N == 0 {
				return "not measured"
			}
			return fmt.Sprintf("%.1f / %.1f / %.1f (%d)", s.P50, s.P99, s.P999, s.N)
		}
		for _, p := range r.Phases {
			if p.Target == 0 {
				continue
			}
			name := p.Name
			if p.Overloaded {
				name += " (**above the sustained rate: queueing**)"
			}
			fmt.Fprintf(w, "| %s | %.0f | %s | %s | %s | %s | %d |\n", name, p.Target, lat(p.Ack), lat(p.ProbeAck), lat(p.CH), lat(p.Sub), p.Lagged)
		}
		fmt.Fprintln(w)
	}
	if r.Ratios.Composed > 0 {
		fmt.Fprintln(w, "Ratios:")
		fmt.Fprintln(w)
		var legs []string
		for _, l := range r.Legs {
			if l.Ratio {
				legs = append(legs, fmt.Sprintf("%s %.0f/s", l.Name, l.Rate))
			}
		}
		fmt.Fprintf(w, "- composed ceiling 1/Σ(1/rate) over %s = **%.0f records/s**\n", strings.Join(legs, ", "), r.Ratios.Composed)
		if r.Throughput != nil {
			fmt.Fprintf(w, "- glue ratio = %.0f ÷ %.0f = **%.2f** (target ≥ 0.75)\n", r.Throughput.Sustained, r.Ratios.Composed, r.Ratios.Glue)
			fmt.Fprintf(w, "- overhead ratio = Sluice %.2f CPU-s/M ÷ Σ raw client %.2f CPU-s/M = **%.2f** (target ≤ 1.33)\n", r.Throughput.SluicePerM, r.Ratios.RawCPUPerM, r.Ratios.Overhead)
		}
		if r.Ratios.EnrichComposed > 0 && r.Throughput != nil {
			fmt.Fprintf(w, "- for reference, with the enrich leg (what the pipeline runs) in place of identity: composed ceiling %.0f records/s, glue %.2f; raw CPU %.2f s/M, overhead %.2f\n",
				r.Ratios.EnrichComposed, r.Ratios.EnrichGlue, r.Ratios.EnrichRawCPUPerM, r.Ratios.EnrichOverhead)
		}
		fmt.Fprintf(w, "- WASM ÷ native Go, batch 256: enrich **%.1f×**, identity (Go SDK) **%.1f×**\n", r.Ratios.WASMEnrich, r.Ratios.WASMIdentity)
		fmt.Fprintf(w, "- WASM ABI tax (passthrough.wat through runtime/wasm − the same module on a bare wazero host): **%.0f ns/record** at batch 64, **%.0f** at batch 256 (target ≤ 100); the Go guest SDK's identity costs %.0f and %.0f ns/record more than a native Go copy\n",
			r.Ratios.TaxNs64, r.Ratios.TaxNs256, r.Ratios.SDKTaxNs64, r.Ratios.SDKTaxNs256)
		fmt.Fprintln(w)
	}
	if p := r.Profile; p != nil {
		if p.Error != "" {
			fmt.Fprintf(w, "Profile: ERROR %s\n\n", p.Error)
		} else {
			fmt.Fprintf(w, "Sluice CPU profile (sluice-prof, %.0f s at saturation, %d records ingested): %.0f ns CPU per record, %.1f allocations and %.0f bytes allocated per record, %d GCs.\n\n",
				p.Seconds, p.Records, p.CPUNsPerRec, p.AllocsPerRec, p.BytesPerRec, p.GCs)
			fmt.Fprintln(w, "| cost (exclusive) | share | ns/record |")
			fmt.Fprintln(w, "|---|---:|---:|")
			for _, c := range p.Categories {
				fmt.Fprintf(w, "| %s | %.1f%% | %.0f |\n", c.Name, 100*c.Share, c.NsPerRecord)
			}
			for _, c := range p.Overlays {
				fmt.Fprintf(w, "| _across the above: %s_ | %.1f%% | %.0f |\n", c.Name, 100*c.Share, c.NsPerRecord)
			}
			fmt.Fprintln(w)
			if len(p.AllocSites) > 0 {
				fmt.Fprintln(w, "Where the allocations are (objects allocated per ingested record, by function, over the same window):")
				fmt.Fprintln(w)
				fmt.Fprintln(w, "| function | allocs/record |")
				fmt.Fprintln(w, "|---|---:|")
				for _, a := range p.AllocSites {
					fmt.Fprintf(w, "| `%s` | %.2f |\n", a.Func, a.PerRecord)
				}
				fmt.Fprintln(w)
			}
		}
	}
	if len(r.Targets) > 0 {
		fmt.Fprintln(w, "Targets:")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| target | want | got | met |")
		fmt.Fprintln(w, "|---|---|---:|---|")
		for _, t := range r.Targets {
			met := "**no**"
			if t.Met {
				met = "yes"
			}
			got := fmt.Sprintf("%.2f", t.Got)
			if t.Got >= 100 {
				got = fmt.Sprintf("%.0f", t.Got)
			}
			if t.Unit != "" {
				got += " " + t.Unit
			}
			if t.Note != "" {
				got += " (" + t.Note + ")"
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s |\n", t.Name, t.Want, got, met)
		}
		fmt.Fprintln(w)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "- %s\n", n)
	}
}

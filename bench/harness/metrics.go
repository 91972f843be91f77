package harness

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Scrape reads Sluice's /metrics into series → value. With save, the text
// is also written there.
func Scrape(ctx context.Context, httpAddr, save string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+httpAddr+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if save != "" {
		_ = os.WriteFile(save, body, 0o644)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		m[line[:i]] = v
	}
	return m, nil
}

// Stage is what one pipeline stage did during a phase, from Sluice's own
// metrics.
type Stage struct {
	Name    string  `json:"name"`
	Calls   float64 `json:"calls"`
	Records float64 `json:"records"`
	// AvgMs is the mean duration of a call (a sink write, a WASM call).
	AvgMs float64 `json:"avg_ms"`
	// PerCall is the mean records per call.
	PerCall float64 `json:"records_per_call"`
	// Busy is the summed call time ÷ the phase's wall time: near 1 for a
	// sink that always has a write in flight (one at a time), up to the
	// worker count for the transform.
	Busy float64 `json:"busy"`
}

var stageRE = regexp.MustCompile(`^(sluice_sink_write_seconds|sluice_wasm_call_duration_seconds)_(sum|count)\{(.*)\}$`)
var labelRE = regexp.MustCompile(`(\w+)="([^"]*)"`)

// Stages derives per-stage call statistics from two scrapes.
func Stages(a, b map[string]float64, wall time.Duration) []Stage {
	type acc struct{ sum, count float64 }
	accs := map[string]*acc{}
	for k, v := range b {
		m := stageRE.FindStringSubmatch(k)
		if m == nil {
			continue
		}
		labels := map[string]string{}
		for _, l := range labelRE.FindAllStringSubmatch(m[3], -1) {
			labels[l[1]] = l[2]
		}
		name := labels["pipeline"] + " " + labels["stage"]
		if strings.HasSuffix(labels["stage"], "dead_letter") {
			continue
		}
		x := accs[name]
		if x == nil {
			x = &acc{}
			accs[name] = x
		}
		d := v - a[k]
		if m[2] == "sum" {
			x.sum += d
		} else {
			x.count += d
		}
	}
	records := func(pipeline, stage string) float64 {
		k := `sluice_records_total{outcome="out",pipeline="` + pipeline + `",stage="` + stage + `"}`
		return b[k] - a[k]
	}
	var out []Stage
	for name, x := range accs {
		if x.count == 0 {
			continue
		}
		p, st, _ := strings.Cut(name, " ")
		s := Stage{Name: name, Calls: x.count, AvgMs: x.sum / x.count * 1e3, Records: records(p, st)}
		if s.Calls > 0 {
			s.PerCall = s.Records / s.Calls
		}
		if wall > 0 {
			s.Busy = x.sum / wall.Seconds()
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

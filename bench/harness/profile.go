package harness

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
)

// Fetch GETs url into path.
func Fetch(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// MemStats is the /bench/memstats answer of sluice-prof.
type MemStats struct {
	Mallocs    uint64 `json:"mallocs"`
	TotalAlloc uint64 `json:"total_alloc"`
	NumGC      uint64 `json:"num_gc"`
	PauseNs    uint64 `json:"pause_total_ns"`
}

// GetMemStats reads sluice-prof's memory counters.
func GetMemStats(ctx context.Context, base string) (MemStats, error) {
	var m MemStats
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/bench/memstats", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return m, err
	}
	defer resp.Body.Close()
	return m, json.NewDecoder(resp.Body).Decode(&m)
}

// Category is a share of a CPU profile.
type Category struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
	Share   float64 `json:"share"`
	// NsPerRecord is the category's CPU per record ingested during the
	// profile.
	NsPerRecord float64 `json:"ns_per_record"`
}

// rule assigns a sample to a category when any frame of its stack
// contains one of the substrings. Rules are tried in order.
type rule struct {
	name string
	any  []string
}

var rules = []rule{
	{"GC: background mark workers", []string{"runtime.gcBgMarkWorker"}},
	{"WASM: host encodes the batch into guest memory", []string{"runtime/wasm.encodeBatch", "runtime/wasm.encodedSize"}},
	{"WASM: output check (validJSON, record boundaries)", []string{"runtime/wasm.(*decoder).check", "runtime/wasm.validJSON"}},
	{"WASM: outputs to records (emit)", []string{"runtime/wasm.(*decoder).emit"}},
	// Samples in wazero-compiled guest code have no Go stack: the profiler
	// records them as runtime._ExternalCode.
	{"WASM: guest execution (wazero-compiled Go guest, SDK)", []string{"runtime._ExternalCode", "runtime/wasm.(*instance).call", "tetratelabs/wazero"}},
	{"WASM: Process (other)", []string{"runtime/wasm."}},
	{"ClickHouse: clickhouse-go / ch-go (encode, compress, send)", []string{"ClickHouse/clickhouse-go", "ClickHouse/ch-go"}},
	{"ClickHouse sink: JSON → columns (gjson, conversions)", []string{"sinks/clickhouse."}},
	{"Kafka produce: kafka-go Writer (protocol, batching, syscalls)", []string{"kafka-go.(*Writer)", "kafka-go.(*partitionWriter)", "kafka-go.(*writeBatch)", "kafka-go/protocol/produce", "kafka-go.(*Transport)", "kafka-go.(*connPool)", "kafka-go.(*conn)", "kafka-go.(*connGroup)", "kafka-go/protocol.(*Conn)", "kafka-go/protocol.WriteRequest", "kafka-go/protocol.ReadResponse", "kafka-go/protocol.(*encoder)", "kafka-go/protocol.(*RecordSet)", "kafka-go.(*Client)"}},
	{"Kafka sink: records → messages (key, headers)", []string{"sinks/kafka."}},
	{"Kafka consume: kafka-go Reader (fetch, decode)", []string{"kafka-go.(*Reader)", "kafka-go.(*reader)", "kafka-go.(*Conn)", "kafka-go.(*Batch)", "kafka-go.(*messageSetReader)", "kafka-go.(*ConsumerGroup)", "kafka-go.(*Generation)", "kafka-go.(*Dialer)", "kafka-go"}},
	{"Kafka source: messages → records, offsets", []string{"sources/kafka."}},
	{"WebSocket source: frames → records, acks (coder/websocket, gjson)", []string{"sources/websocket."}},
	{"Subscriptions endpoint: hub, encode, write", []string{"endpoints/subscribe."}},
	{"Runner: batching, fan-out, ordering (pipeline)", []string{"sluice/pipeline."}},
	{"Metrics (prometheus)", []string{"prometheus/client_golang"}},
	{"net/http, coder/websocket (other)", []string{"net/http.", "coder/websocket"}},
	{"Go scheduler, timers, netpoll", []string{"runtime.mcall", "runtime.schedule", "runtime.findRunnable", "runtime.netpoll", "runtime.sysmon", "runtime.timerproc", "runtime.park_m", "runtime.goexit0", "runtime.mstart", "runtime.bgsweep", "runtime.bgscavenge"}},
}

// overlays are counted across categories (a sample may be in several).
var overlays = []rule{
	{"allocation (mallocgc, incl. GC assist)", []string{"runtime.mallocgc"}},
	{"syscalls (read, write, futex, epoll)", []string{"syscall.Syscall", "syscall.RawSyscall", "internal/runtime/syscall.Syscall6", "runtime.futex", "runtime.netpoll", "internal/poll."}},
	{"memmove/memclr", []string{"runtime.memmove", "runtime.memclrNoHeapPointers"}},
}

// Breakdown classifies the samples of a CPU profile (go tool pprof
// -traces) into exclusive categories, plus overlays. perRecord divides
// seconds into ns per record; records is how many were ingested during
// the profile.
func Breakdown(profile string, records int64) (cats, over []Category, total float64, err error) {
	out, err := exec.Command("go", "tool", "pprof", "-traces", profile).Output()
	if err != nil {
		return nil, nil, 0, fmt.Errorf("go tool pprof -traces %s: %w", profile, err)
	}
	sums := map[string]float64{}
	osums := map[string]float64{}
	var stack []string
	var val float64
	flush := func() {
		if len(stack) == 0 {
			return
		}
		total += val
		joined := strings.Join(stack, "\n")
		name := "other"
		for _, r := range rules {
			if containsAny(joined, r.any) {
				name = r.name
				break
			}
		}
		sums[name] += val
		for _, r := range overlays {
			if containsAny(joined, r.any) {
				osums[r.name] += val
			}
		}
		stack, val = stack[:0], 0
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "-----------+") {
			flush()
			continue
		}
		if len(line) < 12 || strings.HasPrefix(line, "File:") || strings.HasPrefix(line, "Type:") {
			continue
		}
		head, fn := strings.TrimSpace(line[:11]), strings.TrimSpace(line[11:])
		if head != "" {
			val = parseDur(head)
		}
		if fn != "" {
			stack = append(stack, fn)
		}
	}
	flush()
	mk := func(m map[string]float64) []Category {
		var cs []Category
		for k, v := range m {
			c := Category{Name: k, Seconds: v}
			if total > 0 {
				c.Share = v / total
			}
			if records > 0 {
				c.NsPerRecord = v / float64(records) * 1e9
			}
			cs = append(cs, c)
		}
		sort.Slice(cs, func(i, j int) bool { return cs[i].Seconds > cs[j].Seconds })
		return cs
	}
	return mk(sums), mk(osums), total, nil
}

func containsAny(s string, subs []string) bool {
	for _, x := range subs {
		if strings.Contains(s, x) {
			return true
		}
	}
	return false
}

// parseDur parses pprof's sample values: "10ms", "1.20s", "500us".
func parseDur(s string) float64 {
	for _, u := range []struct {
		suf string
		mul float64
	}{{"ms", 1e-3}, {"us", 1e-6}, {"µs", 1e-6}, {"ns", 1e-9}, {"s", 1}} {
		if strings.HasSuffix(s, u.suf) {
			v, err := strconv.ParseFloat(strings.TrimSuffix(s, u.suf), 64)
			if err != nil {
				return 0
			}
			return v * u.mul
		}
	}
	return 0
}

// AllocSite is an allocation site's objects per record.
type AllocSite struct {
	Func      string  `json:"func"`
	PerRecord float64 `json:"allocs_per_record"`
}

// AllocSites parses `go tool pprof -sample_index=alloc_objects -top`
// output (flat counts) into allocations per record, most first.
func AllocSites(topFile string, records int64, n int) []AllocSite {
	b, err := os.ReadFile(topFile)
	if err != nil || records <= 0 {
		return nil
	}
	var out []AllocSite
	body := false
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 5 && f[0] == "flat" {
			body = true
			continue
		}
		if !body || len(f) < 6 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil || v <= 0 {
			continue
		}
		out = append(out, AllocSite{Func: strings.Join(f[5:], " "), PerRecord: v / float64(records)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PerRecord > out[j].PerRecord })
	if len(out) > n {
		out = out[:n]
	}
	return out
}

// PprofText runs go tool pprof with args and writes its output to path.
func PprofText(path string, args ...string) error {
	out, err := exec.Command("go", append([]string{"tool", "pprof"}, args...)...).CombinedOutput()
	if werr := os.WriteFile(path, out, 0o644); werr != nil && err == nil {
		err = werr
	}
	return err
}

package harness

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/internal/cputime"
)

// clockTick is the unit of utime/stime in /proc/<pid>/stat (USER_HZ). It
// is 100 on every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// SelfCPU returns the CPU time (user + system) this process has used.
func SelfCPU() time.Duration { return cputime.Self() }

// ChildrenCPU returns the CPU time of this process's waited-for children.
func ChildrenCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ProcCPU returns the CPU time (user + system, all threads) of process pid
// from /proc/<pid>/stat, at 10ms resolution.
func ProcCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may contain spaces: fields count from
	// the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime", pid)
	}
	return time.Duration(ut+st) * clockTick, nil
}

// SystemCPU returns the busy and total CPU time of the whole machine, all
// cores, from /proc/stat.
func SystemCPU() (busy, total time.Duration) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := bytes.Cut(b, []byte{'\n'})
	f := strings.Fields(string(line))
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0
	}
	var all, idle uint64
	for i, s := range f[1:] {
		n, _ := strconv.ParseUint(s, 10, 64)
		if i == 8 || i == 9 { // guest, guest_nice are already in user, nice
			continue
		}
		all += n
		if i == 3 || i == 4 { // idle, iowait
			idle += n
		}
	}
	return time.Duration(all-idle) * clockTick, time.Duration(all) * clockTick
}

// LoadAvg returns the 1-minute load average.
func LoadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// Meter samples the CPU time of this process, of named other processes and
// of the machine.
type Meter struct {
	pids map[string]int
}

// NewMeter returns a meter of this process and of pids by name ("sluice",
// "kafka", "clickhouse").
func NewMeter(pids map[string]int) *Meter {
	m := &Meter{pids: map[string]int{}}
	for k, v := range pids {
		if v > 0 {
			m.pids[k] = v
		}
	}
	return m
}

// Watch adds (or replaces) a named process.
func (m *Meter) Watch(name string, pid int) { m.pids[name] = pid }

// Forget removes a named process.
func (m *Meter) Forget(name string) { delete(m.pids, name) }

// CPUSnap is one sample of a Meter.
type CPUSnap struct {
	At       time.Time
	Self     time.Duration
	Children time.Duration
	Procs    map[string]time.Duration
	SysBusy  time.Duration
	SysTotal time.Duration
	Load     float64
}

// Snap samples every process now.
func (m *Meter) Snap() CPUSnap {
	s := CPUSnap{At: time.Now(), Self: SelfCPU(), Children: ChildrenCPU(), Procs: map[string]time.Duration{}, Load: LoadAvg()}
	for name, pid := range m.pids {
		if d, err := ProcCPU(pid); err == nil {
			s.Procs[name] = d
		}
	}
	s.SysBusy, s.SysTotal = SystemCPU()
	return s
}

// CPUDelta is what was used between two samples.
type CPUDelta struct {
	Wall     time.Duration
	Self     time.Duration
	Children time.Duration
	Procs    map[string]time.Duration
	// SysBusy is the CPU time the whole machine was busy; Cores is
	// SysTotal/Wall (the number of CPUs).
	SysBusy time.Duration
	Cores   float64
	// Others is SysBusy minus this process, its children and every named
	// process: the other engineers' load on a shared machine.
	Others time.Duration
	Load   float64 // load average at the end
}

// Sub returns the CPU used from a to b.
func (b CPUSnap) Sub(a CPUSnap) CPUDelta {
	d := CPUDelta{Wall: b.At.Sub(a.At), Self: b.Self - a.Self, Children: b.Children - a.Children, Procs: map[string]time.Duration{}, SysBusy: b.SysBusy - a.SysBusy, Load: b.Load}
	if d.Wall > 0 {
		d.Cores = float64(b.SysTotal-a.SysTotal) / float64(d.Wall)
	}
	ours := d.Self + d.Children
	for name, v := range b.Procs {
		if v0, ok := a.Procs[name]; ok {
			d.Procs[name] = v - v0
			ours += v - v0
		}
	}
	d.Others = max(d.SysBusy-ours, 0)
	return d
}

// PerMillion is seconds of cpu per million of n records.
func PerMillion(cpu time.Duration, n int64) float64 {
	if n <= 0 {
		return 0
	}
	return cpu.Seconds() / float64(n) * 1e6
}

package chaos

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/device"
	"github.com/sluicehq/sluice/internal/faultproxy"
)

// budget bounds one scenario: a base plus time for the records at a slow
// 500 records/s.
func budget(base time.Duration) time.Duration {
	return base + time.Duration(records()/500)*time.Second
}

// watcher notes when a value first grows beyond what it was when the
// watch started.
type watcher struct {
	done chan struct{}
	at   time.Time
}

// watch polls value every 50ms, from now until it grows beyond its first
// successful reading, or the scenario ends. Readings that fail (the service
// is down) are skipped.
func (s *scenario) watch(value func() (uint64, bool)) *watcher {
	w := &watcher{done: make(chan struct{})}
	go func() {
		var base uint64
		have := false
		for s.ctx.Err() == nil {
			if v, ok := value(); ok {
				if have && v > base {
					w.at = time.Now()
					close(w.done)
					return
				}
				if !have {
					base, have = v, true
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	return w
}

func (f *fleet) ackCount() (uint64, bool) { return f.acked(), true }

func (s *scenario) rowCount() (uint64, bool) {
	n, err := s.chRows()
	return n, err == nil
}

// wait returns when the value grew, or false after limit.
func (w *watcher) wait(limit time.Duration) (time.Time, bool) {
	select {
	case <-w.done:
		return w.at, true
	case <-time.After(limit):
		return time.Time{}, false
	}
}

// waitAcked waits until the fleet has at least frac of its records acked.
func (s *scenario) waitAcked(f *fleet, frac float64) {
	s.t.Helper()
	want := uint64(frac * float64(f.wantTotal()))
	for f.acked() < want {
		if s.ctx.Err() != nil {
			s.t.Fatalf("only %d of %d records acked before the deadline", f.acked(), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestKillSluice: kill -9 Sluice at random 1–5 s intervals (measured from
// when it accepts connections again) while devices send, restarting it each
// time. Devices keep unacknowledged records in their outboxes and resend
// them; the Kafka source replays what it had not committed.
func TestKillSluice(t *testing.T) {
	s := newScenario(t, "kill_sluice", budget(4*time.Minute))
	s.startSluice()
	f := s.startFleet(devices(), records(), ingestFor())
	var starts []time.Duration
	for f.acked() < f.wantTotal() && s.ctx.Err() == nil {
		s.sleep(s.between(time.Second, 5*time.Second))
		if f.acked() >= f.wantTotal() {
			break
		}
		killed := time.Now()
		s.killSluice()
		s.fault()
		base := f.acked()
		startUp := s.startSluice()
		starts = append(starts, startUp)
		s.cleared(time.Now())
		if d, ok := f.ackRecovery(killed, base, time.Minute); ok {
			s.logf("kill %d: restarted in %v, acks again %v after the kill (%d/%d acked)", s.faults, startUp.Round(time.Millisecond), d.Round(time.Millisecond), f.acked(), f.wantTotal())
		} else if f.acked() < f.wantTotal() {
			t.Fatalf("kill %d: no ack within a minute of the restart", s.faults)
		}
	}
	devs := f.finish()
	var sum, worst time.Duration
	for _, d := range starts {
		sum += d
		worst = max(worst, d)
	}
	if len(starts) > 0 {
		s.note("sluice start-up mean %.1fs max %.1fs", (sum / time.Duration(len(starts))).Seconds(), worst.Seconds())
	}
	st := f.total()
	s.note("resent %d, reconnects %d", st.Resent, st.Connects-uint64(len(f.clients)))
	if s.faults < 3 {
		t.Errorf("only %d kills happened during the ingest; want at least 3 (raise -chaos.ingest)", s.faults)
	}
	s.verify(devs, "kill_to_acks")
}

// TestKillKafka: kill -9 the broker mid-ingest and start it again. Long
// suite only: the broker is shared with every other test.
func TestKillKafka(t *testing.T) {
	if !*flagLong {
		t.Skip("long suite only (-chaos.long, scripts/chaos.sh): restarting the shared broker disturbs every other test using it")
	}
	s := newScenario(t, "kill_kafka", budget(6*time.Minute))
	s.startSluice()
	f := s.startFleet(devices(), records(), ingestFor())
	s.waitAcked(f, 0.25)
	killed := time.Now()
	s.services("kill-kafka")
	s.fault()
	// The broker is gone: from here on, the first new ack is the recovery,
	// whenever it comes (possibly before start-kafka returns, which waits
	// until every partition has a leader).
	acks := s.watch(f.ackCount)
	s.services("start-kafka")
	ready := time.Now()
	rows := s.watch(s.rowCount)
	s.cleared(ready)
	s.note("broker down %.1fs (kill → start-kafka saw every partition led)", ready.Sub(killed).Seconds())
	if at, ok := acks.wait(3 * time.Minute); ok {
		s.recovered(at.Sub(killed))
		s.logf("acks again %v after the kill", at.Sub(killed).Round(time.Millisecond))
		s.note("acks again %.1fs after the kill", at.Sub(killed).Seconds())
	} else {
		t.Fatalf("no ack within 3 minutes of the broker's restart")
	}
	if at, ok := rows.wait(3 * time.Minute); ok {
		s.note("clickhouse rows again %.1fs after the broker answered", at.Sub(ready).Seconds())
	}
	devs := f.finish()
	s.verify(devs, "kill_to_acks")
}

// TestStopClickHouse: stop ClickHouse for 20 s mid-ingest, then start it.
// Devices keep being acknowledged (the ingest pipeline writes to Kafka
// only); the store pipeline retries and catches up. Long suite only.
func TestStopClickHouse(t *testing.T) {
	if !*flagLong {
		t.Skip("long suite only (-chaos.long, scripts/chaos.sh): stopping the shared ClickHouse disturbs every other test using it")
	}
	s := newScenario(t, "stop_clickhouse", budget(6*time.Minute))
	s.startSluice()
	f := s.startFleet(devices(), records(), ingestFor())
	s.waitAcked(f, 0.25)
	stopped := time.Now()
	s.services("stop-clickhouse")
	s.fault()
	ackedAtStop := f.acked()
	rows := s.watch(s.rowCount) // its base is the first count after the restart
	s.sleep(20 * time.Second)
	ackedDuring := f.acked() - ackedAtStop
	s.services("start-clickhouse")
	ready := time.Now()
	s.cleared(ready)
	s.note("clickhouse down %.1fs, devices acked %d records meanwhile", ready.Sub(stopped).Seconds(), ackedDuring)
	if at, ok := rows.wait(3 * time.Minute); ok {
		s.recovered(at.Sub(ready))
		s.logf("clickhouse rows again %v after it answered", at.Sub(ready).Round(time.Millisecond))
	} else {
		t.Fatalf("no new rows within 3 minutes of ClickHouse's restart")
	}
	devs := f.finish()
	s.verify(devs, "clickhouse_ready_to_rows")
}

// TestNetworkFaults: Sluice reaches Kafka (ingest sink and store source,
// one proxy each) and ClickHouse through fault proxies, which stall, drop,
// and lose the reply to a request that reached the service.
func TestNetworkFaults(t *testing.T) {
	s := newScenario(t, "network", budget(5*time.Minute))
	logf := func(format string, args ...any) { s.logf(format, args...) }
	kprod, err := faultproxy.Start(s.brokers[0], faultproxy.Options{Kafka: true, Logf: logf})
	if err != nil {
		t.Fatal(err)
	}
	defer kprod.Close()
	kcons, err := faultproxy.Start(s.brokers[0], faultproxy.Options{Kafka: true, Logf: logf})
	if err != nil {
		t.Fatal(err)
	}
	defer kcons.Close()
	chp, err := faultproxy.Start(s.chAddr, faultproxy.Options{Logf: logf})
	if err != nil {
		t.Fatal(err)
	}
	defer chp.Close()
	s.kafkaIngest, s.kafkaStore, s.chSink = kprod.Addr(), kcons.Addr(), chp.Addr()
	// Short timeouts, so that a stall outlasts them.
	s.writeTimeout, s.insertTimeout = 3*time.Second, 4*time.Second
	stall := 5 * time.Second
	s.startSluice()
	f := s.startFleet(devices(), records(), max(ingestFor(), 36*time.Second))
	s.sleep(2 * time.Second)

	type step struct {
		name  string
		kafka bool // the ingest path (device acks) or the ClickHouse path
		apply func() time.Time
	}
	kafkaProxies := []*faultproxy.Proxy{kprod, kcons}
	cuts := func(p *faultproxy.Proxy, n int) func() time.Time {
		return func() time.Time {
			p.CutReplyAfter(2048, n)
			deadline := time.Now().Add(30 * time.Second)
			for p.CutsLeft() > 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if left := p.CutsLeft(); left > 0 {
				t.Errorf("%d of %d reply cuts did not happen within 30s", left, n)
				p.CutReplyAfter(0, 0)
			}
			return time.Now()
		}
	}
	// ClickHouse first, while the store pipeline is healthy; then Kafka,
	// whose faults also cut the store pipeline's consumer-group session:
	// its recovery is bounded by the group's session timeout (30 s in
	// kafka-go), so it is measured once, as the catch-up after the last
	// fault, rather than per step.
	steps := []step{
		{"clickhouse stall", false, func() time.Time {
			chp.Stall()
			s.sleep(stall)
			chp.Pass()
			return time.Now()
		}},
		{"clickhouse down", false, func() time.Time {
			chp.Down()
			s.sleep(3 * time.Second)
			chp.Pass()
			return time.Now()
		}},
		{"clickhouse insert reply lost x3", false, cuts(chp, 3)},
		{"kafka stall", true, func() time.Time {
			for _, p := range kafkaProxies {
				p.Stall()
			}
			s.sleep(stall)
			for _, p := range kafkaProxies {
				p.Pass()
			}
			return time.Now()
		}},
		{"kafka down", true, func() time.Time {
			for _, p := range kafkaProxies {
				p.Down()
			}
			s.sleep(3 * time.Second)
			for _, p := range kafkaProxies {
				p.Pass()
			}
			return time.Now()
		}},
		{"kafka produce reply lost x3", true, cuts(kprod, 3)},
	}
	var results []string
	for _, st := range steps {
		if s.ctx.Err() != nil {
			break
		}
		ackBase := f.acked()
		chBase, _ := s.chRows()
		s.logf("fault: %s", st.name)
		s.fault()
		end := st.apply()
		s.cleared(end)
		var d time.Duration
		var ok bool
		if st.kafka {
			d, ok = f.ackRecovery(end, ackBase, time.Minute)
		} else {
			d, ok = s.chProgress(end, chBase, time.Minute)
		}
		if !ok {
			t.Errorf("%s: no progress within a minute after the fault ended", st.name)
		}
		s.logf("%s: progress again %v after it ended", st.name, d.Round(time.Millisecond))
		results = append(results, fmt.Sprintf("%s %.1fs", strings.ReplaceAll(st.name, " ", "_"), d.Seconds()))
		s.sleep(s.between(time.Second, 2*time.Second))
	}
	if f.sendingDone() {
		s.note("WARNING: sending ended before the last fault; raise -chaos.ingest")
	}
	devs := f.finish()
	ks, cs := kprod.Stats(), chp.Stats()
	s.note("recoveries: %s", strings.Join(results, ", "))
	s.note("proxies: kafka-produce dropped %d cut %d, clickhouse dropped %d cut %d", ks.Dropped, ks.Cuts, cs.Dropped, cs.Cuts)
	fig := s.verify(devs, "fault_end_to_progress")
	if fig.kafkaMsgs <= fig.kafkaIdents && ks.Cuts > 0 {
		s.logf("note: no duplicate reached Kafka from the %d lost produce replies", ks.Cuts)
	}
}

// TestGracefulShutdown: SIGTERM under load. Sluice must stop taking
// records, settle those it took (devices get their acks), close every
// device connection with 1001, commit the store pipeline's offsets only
// over records durable in ClickHouse, and exit within the drain bound;
// started again, it goes on.
func TestGracefulShutdown(t *testing.T) {
	s := newScenario(t, "sigterm", budget(4*time.Minute))
	s.startSluice()
	// Under load: the short suite sends at twice the paced rate, the long
	// one as fast as the windows allow; either way the ingest goes on
	// after the restart.
	spread := ingestFor() / 2
	if *flagLong {
		spread = 0
	}
	f := s.startFleet(devices(), records(), spread)
	s.waitAcked(f, 0.3)
	before := f.total()
	s.fault()
	took, code := s.termSluice(3 * s.drainTimeout)
	stopped := time.Now()
	after := f.total()
	// The clients log the close a moment after reading it.
	waitUntil(2*time.Second, func() bool { return f.events.goingAway.Load() >= int64(len(f.clients)) })
	goingAway := f.events.goingAway.Load()
	committed := s.committedOffsets()
	below, missing, lag := s.belowCommitted(committed)
	unacked, line1 := s.grepLog("stay unacknowledged")
	unsettled, line2 := s.grepLog("unsettled")
	s.note("exit %.1fs code %d, in flight at SIGTERM %d, acked during the drain %d, 1001 closes %d/%d, committed %d messages (lag %d), %d of them missing from clickhouse",
		took.Seconds(), code, before.Inflight, after.Acked-before.Acked, goingAway, len(f.clients), below, lag, missing)
	if code != 0 {
		t.Errorf("sluice exited with code %d after SIGTERM", code)
	}
	if bound := s.drainTimeout + 5*time.Second; took > bound {
		t.Errorf("sluice took %v to exit after SIGTERM; the drain bound is %v", took, bound)
	}
	if goingAway < int64(len(f.clients)) {
		t.Errorf("%d of %d devices saw close status 1001", goingAway, len(f.clients))
	}
	if before.Inflight > 0 && after.Acked <= before.Acked {
		t.Errorf("%d records were in flight at SIGTERM and none was acked during the drain", before.Inflight)
	}
	if unacked > 0 || unsettled > 0 {
		t.Errorf("the drain left records unsettled: %q %q", line1, line2)
	}
	if below == 0 {
		t.Errorf("no offset committed by the store pipeline")
	}
	if missing > 0 {
		t.Errorf("%d messages below the committed offsets are not in ClickHouse: offsets ran ahead of durability", missing)
	}
	base := f.acked()
	s.startSluice()
	s.cleared(time.Now())
	if d, ok := f.ackRecovery(stopped, base, time.Minute); ok {
		s.logf("acks again %v after the exit", d.Round(time.Millisecond))
	}
	devs := f.finish()
	s.verify(devs, "exit_to_acks")
}

func waitUntil(limit time.Duration, cond func() bool) {
	deadline := time.Now().Add(limit)
	for !cond() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
}

// TestKillDevice: a device process (this test binary as a helper) is
// killed with SIGKILL while it has unacknowledged records in its outbox,
// and started again on the same outbox directories, several times. The
// restarted devices resend what was unacknowledged, with the same seqs.
func TestKillDevice(t *testing.T) {
	s := newScenario(t, "kill_device", budget(4*time.Minute))
	s.startSluice()
	n := devices()
	per := max(1, records()/n)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s-%03d", s.name, i)
	}
	spread := ingestFor()
	h := &helper{s: s, ids: ids, per: per, rate: float64(per) / spread.Seconds(),
		dir: filepath.Join(s.dir, "outbox")}
	kills := 3
	if *flagLong {
		kills = 5
	}
	h.start()
	for range kills {
		s.sleep(s.between(2*time.Second, 5*time.Second))
		if s.ctx.Err() != nil {
			break
		}
		// Kill while records are unacknowledged (right after a burst),
		// if that moment comes within two seconds.
		waitUntil(2*time.Second, func() bool {
			p := h.progress()
			return p.sent+p.resent >= p.acked+uint64(len(ids))
		})
		p := h.progress()
		killed := time.Now()
		h.kill()
		s.fault()
		queued := h.queued()
		s.logf("killed the device process: this run had sent %d, resent %d, acked %d; %d records unacknowledged in the outboxes", p.sent, p.resent, p.acked, queued)
		h.mu.Lock()
		h.outboxAtKill = append(h.outboxAtKill, queued)
		h.mu.Unlock()
		h.start()
		s.cleared(time.Now())
		if d, ok := h.waitAcked(time.Minute); ok {
			d = time.Since(killed)
			s.recovered(d)
			s.logf("the restarted devices got acks %v after the kill", d.Round(time.Millisecond))
		}
	}
	devs := h.wait()
	h.mu.Lock()
	s.note("unacked in the outboxes at each kill: %v; resent by the last run %d", h.outboxAtKill, h.lastResent)
	inOutbox := 0
	for _, n := range h.outboxAtKill {
		inOutbox += n
	}
	h.mu.Unlock()
	if inOutbox == 0 {
		t.Errorf("no kill found a record in an outbox: the scenario did not test resending from the outbox")
	}
	s.verify(devs, "kill_to_acks")
}

// helper runs the device helper process.
type helper struct {
	s    *scenario
	ids  []string
	per  int
	rate float64
	dir  string

	mu           sync.Mutex
	cmd          *exec.Cmd
	done         chan struct{}
	runs         int
	cur          *helperRun
	nacked       map[string]map[uint64]bool
	last         map[string]sent
	outboxAtKill []int
	lastResent   uint64
}

type helperRun struct {
	sent, resent, acked atomic.Uint64
	finished            atomic.Bool
}

type helperProgress struct{ sent, resent, acked uint64 }

func (h *helper) progress() helperProgress {
	h.mu.Lock()
	r := h.cur
	h.mu.Unlock()
	return helperProgress{r.sent.Load(), r.resent.Load(), r.acked.Load()}
}

func (h *helper) start() {
	s := h.s
	s.t.Helper()
	logf, err := os.OpenFile(filepath.Join(s.dir, "helper.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(),
		helperEnv+"=1",
		"SLUICE_CHAOS_URL="+s.url(),
		"SLUICE_CHAOS_DIR="+h.dir,
		"SLUICE_CHAOS_IDS="+strings.Join(h.ids, ","),
		"SLUICE_CHAOS_PER="+strconv.Itoa(h.per),
		"SLUICE_CHAOS_RATE="+strconv.FormatFloat(h.rate, 'f', 3, 64),
		"SLUICE_CHAOS_DEADLINE="+time.Until(deadlineOf(s)).String(),
	)
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		s.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	run := &helperRun{}
	done := make(chan struct{})
	h.mu.Lock()
	h.cmd, h.done, h.cur = cmd, done, run
	h.runs++
	if h.nacked == nil {
		h.nacked = map[string]map[uint64]bool{}
		h.last = map[string]sent{}
	}
	h.mu.Unlock()
	go func() {
		defer close(done)
		lineReader(out, func(line string) {
			fmt.Fprintln(logf, "stdout:", line)
			h.parse(run, line)
		})
		_ = cmd.Wait()
		logf.Close()
	}()
	s.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
}

func (h *helper) parse(run *helperRun, line string) {
	fields := strings.Fields(line)
	if len(fields) == 0 {
		return
	}
	kv := map[string]uint64{}
	for _, f := range fields[1:] {
		if k, v, ok := strings.Cut(f, "="); ok {
			n, _ := strconv.ParseUint(v, 10, 64)
			kv[k] = n
		}
	}
	switch fields[0] {
	case "progress":
		run.sent.Store(kv["sent"])
		run.resent.Store(kv["resent"])
		run.acked.Store(kv["acked"])
	case "nack":
		if len(fields) >= 3 {
			seq, _ := strconv.ParseUint(fields[2], 10, 64)
			h.mu.Lock()
			if h.nacked[fields[1]] == nil {
				h.nacked[fields[1]] = map[uint64]bool{}
			}
			h.nacked[fields[1]][seq] = true
			h.mu.Unlock()
		}
	case "done":
		if len(fields) >= 2 {
			h.mu.Lock()
			h.last[fields[1]] = sent{device: fields[1], last: kv["last"], ackedUpTo: kv["last"] - kv["queued"]}
			h.lastResent += kv["resent"]
			h.mu.Unlock()
		}
	case "finished":
		run.finished.Store(true)
	}
}

// queued counts the records the killed process left unacknowledged in
// its outboxes: what a client started on them would resend. The client
// used to look is pointed at a closed port and sends nothing.
func (h *helper) queued() int {
	n := 0
	for _, id := range h.ids {
		c, err := device.New("ws://127.0.0.1:1/ingest", device.Options{DeviceID: id,
			OutboxDir: filepath.Join(h.dir, id), Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			h.s.t.Fatalf("open the outbox of %s: %v", id, err)
		}
		n += c.Stats().Queued
		c.Close()
	}
	return n
}

func (h *helper) kill() {
	h.mu.Lock()
	cmd, done := h.cmd, h.done
	h.mu.Unlock()
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// waitAcked waits until the current run reports an ack.
func (h *helper) waitAcked(limit time.Duration) (time.Duration, bool) {
	start := time.Now()
	h.mu.Lock()
	r := h.cur
	h.mu.Unlock()
	for time.Since(start) < limit && h.s.ctx.Err() == nil {
		if r.acked.Load() > 0 {
			return time.Since(start), true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start), false
}

// wait waits for the current run to finish and returns what each device
// sent and had acknowledged.
func (h *helper) wait() []sent {
	s := h.s
	s.t.Helper()
	h.mu.Lock()
	cmd, done, run := h.cmd, h.done, h.cur
	h.mu.Unlock()
	select {
	case <-done:
	case <-s.ctx.Done():
		_ = cmd.Process.Kill()
		<-done
		s.t.Fatalf("the device process did not finish before the deadline")
	}
	if !run.finished.Load() || cmd.ProcessState.ExitCode() != 0 {
		s.t.Fatalf("the device process exited with %d before finishing (see helper.log)", cmd.ProcessState.ExitCode())
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]sent, 0, len(h.ids))
	for _, id := range h.ids {
		d, ok := h.last[id]
		if !ok {
			s.t.Fatalf("no final line for device %s", id)
		}
		d.nacked = map[uint64]bool{}
		for seq := range h.nacked[id] {
			d.nacked[seq] = true
		}
		out = append(out, d)
	}
	return out
}

func deadlineOf(s *scenario) time.Time {
	if d, ok := s.ctx.Deadline(); ok {
		return d
	}
	return time.Now().Add(5 * time.Minute)
}

// TestShutdownDuringOutage: SIGTERM while Kafka is unreachable from the
// ingest pipeline (the proxy in front of it is down). Records in flight cannot become durable: Sluice
// must give up on them after drain_timeout, leave them unacknowledged (the
// devices resend them) and still exit promptly; started again once Kafka is
// back, it goes on without losing anything.
func TestShutdownDuringOutage(t *testing.T) {
	s := newScenario(t, "sigterm_outage", budget(3*time.Minute))
	kp, err := faultproxy.Start(s.brokers[0], faultproxy.Options{Kafka: true, Logf: func(f string, a ...any) { s.logf(f, a...) }})
	if err != nil {
		t.Fatal(err)
	}
	defer kp.Close()
	// Only the ingest pipeline's way to Kafka breaks; the store pipeline
	// keeps its own (a consumer cut off at shutdown cannot leave its group,
	// and the restarted one waits out the session timeout: see network).
	s.kafkaIngest = kp.Addr()
	s.drainTimeout, s.writeTimeout = 5*time.Second, 3*time.Second
	s.startSluice()
	f := s.startFleet(devices(), records(), ingestFor())
	s.waitAcked(f, 0.3)
	kp.Down()
	s.fault()
	time.Sleep(time.Second) // records pile up in the pipeline, unacknowledged
	before := f.total()
	took, code := s.termSluice(6 * s.drainTimeout)
	after := f.total()
	waitUntil(2*time.Second, func() bool { return f.events.goingAway.Load() >= int64(len(f.clients)) })
	s.note("exit %.1fs code %d (drain_timeout %v), in flight at SIGTERM %d, acked during the drain %d, 1001 closes %d/%d",
		took.Seconds(), code, s.drainTimeout, before.Inflight, after.Acked-before.Acked, f.events.goingAway.Load(), len(f.clients))
	if bound := s.drainTimeout + 5*time.Second; took > bound {
		t.Errorf("sluice took %v to exit after SIGTERM with Kafka down; drain_timeout is %v", took, s.drainTimeout)
	}
	kp.Pass()
	base := f.acked()
	restarted := time.Now()
	s.startSluice()
	s.cleared(time.Now())
	if d, ok := f.ackRecovery(restarted, base, time.Minute); ok {
		s.logf("acks again %v after the restart", d.Round(time.Millisecond))
	}
	devs := f.finish()
	s.verify(devs, "restart_to_acks")
}

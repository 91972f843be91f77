package chaos

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/internal/testenv"
)

// scenario is one fault test: its topic, table, consumer group, Sluice
// config and process, and the figures it reports.
type scenario struct {
	t     *testing.T
	name  string
	dir   string
	art   artifacts
	start time.Time
	ctx   context.Context
	rng   *rand.Rand

	brokers []string // the real broker
	chAddr  string   // the real ClickHouse
	topic   string
	table   string
	group   string
	wsAddr  string
	ch      clickhouse.Conn

	// Addresses written into the config; the proxies' in the network
	// scenario.
	kafkaIngest, kafkaStore, chSink string
	// Config knobs.
	drainTimeout  time.Duration
	writeTimeout  time.Duration
	insertTimeout time.Duration

	mu     sync.Mutex
	proc   *sluiceProc
	starts int
	faults int
	// recoveries are the times the faulted path took to make progress
	// again after each fault ended.
	recoveries []time.Duration
	notes      []string
	// lastFaultEnd is when the last fault was cleared (service back,
	// Sluice restarted, proxy passing again).
	lastFaultEnd time.Time
}

// newScenario makes the topic, the table and the directory of a scenario
// whose work must end within budget.
func newScenario(t *testing.T, name string, budget time.Duration) *scenario {
	t.Helper()
	brokers := testenv.KafkaBrokers(t)
	chAddr := testenv.ClickHouseAddr(t)
	art := build(t)
	seed := *flagSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	s := &scenario{
		t:             t,
		name:          name,
		dir:           t.TempDir(),
		art:           art,
		start:         time.Now(),
		rng:           rand.New(rand.NewPCG(seed, 0x5eed)),
		brokers:       brokers,
		chAddr:        chAddr,
		topic:         testenv.Name("chaos_" + name),
		drainTimeout:  10 * time.Second,
		writeTimeout:  10 * time.Second,
		insertTimeout: 30 * time.Second,
	}
	t.Logf("%s: seed %d (rerun with -chaos.seed=%d), %d records from %d devices, dir %s", name, seed, seed, records(), devices(), s.dir)
	s.table = s.topic
	s.group = s.topic + "_store"
	s.kafkaIngest, s.kafkaStore, s.chSink = brokers[0], brokers[0], chAddr
	testenv.CreateTopic(t, brokers, s.topic, 4)
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{chAddr}, Protocol: clickhouse.Native,
		DialTimeout: 5 * time.Second, ReadTimeout: 60 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	s.ch = conn
	// The table is keyed by the record identity, so that replays leave no
	// visible duplicate under FINAL. device_id, seq and part come from the
	// identity Sluice carries (the sluice-id header), not from the JSON.
	err = conn.Exec(context.Background(), `CREATE TABLE `+s.table+` (
		device_id String, seq UInt64, part UInt32,
		ts DateTime, temp Float64, temp_f Float64, reading Float64, site String, note String, raw String
	) ENGINE = ReplacingMergeTree() ORDER BY (device_id, seq, part)`)
	if err != nil {
		t.Fatalf("create table: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.wsAddr = l.Addr().String()
	l.Close()

	ctx, cancel := context.WithTimeout(context.Background(), budget)
	s.ctx = ctx
	t.Cleanup(func() {
		cancel()
		s.stopSluice()
		if t.Failed() {
			s.dumpLogs()
		}
		if *flagKeep != "" {
			keep := filepath.Join(*flagKeep, name)
			os.RemoveAll(keep)
			if out, err := exec.Command("cp", "-r", s.dir, keep).CombinedOutput(); err != nil {
				t.Logf("keep %s: %v %s", keep, err, out)
			}
		}
		_ = conn.Exec(context.Background(), "DROP TABLE IF EXISTS "+s.table)
		conn.Close()
	})
	return s
}

func (s *scenario) logf(format string, args ...any) {
	s.t.Helper()
	s.t.Logf("%6.1fs %s", time.Since(s.start).Seconds(), fmt.Sprintf(format, args...))
}

func (s *scenario) note(format string, args ...any) {
	s.mu.Lock()
	s.notes = append(s.notes, fmt.Sprintf(format, args...))
	s.mu.Unlock()
}

func (s *scenario) recovered(d time.Duration) {
	s.mu.Lock()
	s.recoveries = append(s.recoveries, d)
	s.mu.Unlock()
}

func (s *scenario) fault() {
	s.mu.Lock()
	s.faults++
	s.mu.Unlock()
}

// cleared notes that the current fault ended at t.
func (s *scenario) cleared(t time.Time) {
	s.mu.Lock()
	s.lastFaultEnd = t
	s.mu.Unlock()
}

// url is where devices connect.
func (s *scenario) url() string { return "ws://" + s.wsAddr + "/ingest" }

// config writes pipeline.yaml: devices → split → enrich → Kafka, and
// Kafka → ClickHouse, each with a dead-letter file.
func (s *scenario) config() string {
	yaml := fmt.Sprintf(`
pipelines:
  ingest:
    drain_timeout: %s
    source:
      websocket: { listen: %s, path: /ingest }
    transforms:
      # every tenth record carries two readings: parts 1 and 2 of its identity
      - wasm: { module: %s, config: { field: readings, as: reading }, timeout: 2s, cache_dir: %s }
      - wasm: { module: %s, config: { site: lab-1 }, timeout: 2s, cache_dir: %s }
    sinks:
      - kafka: { brokers: [%s], topic: %s, key: "{{device_id}}", write_timeout: %s }
    dead_letter:
      file: { path: dead-ingest.jsonl }
  store:
    drain_timeout: %s
    source:
      kafka: { brokers: [%s], topic: %s, group: %s }
    sinks:
      - clickhouse:
          addr: %s
          table: %s
          linger: 200ms
          insert_timeout: %s
          columns: { device_id: "@device", seq: "@seq", part: "@part", raw: "$" }
    dead_letter:
      file: { path: dead-store.jsonl }
`, s.drainTimeout, s.wsAddr, s.art.split, s.art.cache, s.art.enrich, s.art.cache,
		s.kafkaIngest, s.topic, s.writeTimeout,
		s.drainTimeout, s.kafkaStore, s.topic, s.group,
		s.chSink, s.table, s.insertTimeout)
	path := filepath.Join(s.dir, "pipeline.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		s.t.Fatal(err)
	}
	return path
}

// sluiceProc is one run of the sluice binary.
type sluiceProc struct {
	cmd     *exec.Cmd
	done    chan struct{}
	err     error
	started time.Time
}

// startSluice starts sluice and waits until it accepts connections (its
// pipelines are built, Kafka and ClickHouse reached). It returns how long
// that took.
func (s *scenario) startSluice() time.Duration {
	s.t.Helper()
	cfg := s.config()
	logf, err := os.OpenFile(filepath.Join(s.dir, "sluice.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	s.mu.Lock()
	s.starts++
	n := s.starts
	s.mu.Unlock()
	fmt.Fprintf(logf, "=== chaos: start %d at %s\n", n, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(s.art.sluice, "run", "-c", cfg, "--log-level", "info")
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	// The child dies with the test, whatever happens to the test.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		logf.Close()
		s.t.Fatalf("start sluice: %v", err)
	}
	p := &sluiceProc{cmd: cmd, done: make(chan struct{}), started: start}
	go func() {
		p.err = cmd.Wait()
		fmt.Fprintf(logf, "=== chaos: sluice exited: %v\n", p.err)
		logf.Close()
		close(p.done)
	}()
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()
	deadline := time.Now().Add(120 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.wsAddr, time.Second)
		if err == nil {
			c.Close()
			return time.Since(start)
		}
		select {
		case <-p.done:
			s.t.Fatalf("sluice exited during start-up: %v (see sluice.log below)", p.err)
		case <-s.ctx.Done():
			s.t.Fatalf("sluice not ready: %v", s.ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("sluice did not accept connections on %s within 120s", s.wsAddr)
		}
	}
}

// killSluice sends SIGKILL and waits for the process to be gone.
func (s *scenario) killSluice() {
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// termSluice sends SIGTERM and returns how long the process took to exit
// and its exit code (-1 when it had to be killed after limit).
func (s *scenario) termSluice(limit time.Duration) (time.Duration, int) {
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	start := time.Now()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(limit):
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		return time.Since(start), -1
	}
	return time.Since(start), p.cmd.ProcessState.ExitCode()
}

func (s *scenario) stopSluice() {
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p == nil {
		return
	}
	select {
	case <-p.done:
		return
	default:
	}
	if _, code := s.termSluice(30 * time.Second); code != 0 {
		s.t.Logf("sluice exited with %d when stopped at the end", code)
	}
}

// dumpLogs shows the end of the logs after a failure.
func (s *scenario) dumpLogs() {
	for _, f := range []string{"sluice.log", "devices.log", "helper.log"} {
		b, err := os.ReadFile(filepath.Join(s.dir, f))
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(lines) > 60 {
			lines = lines[len(lines)-60:]
		}
		s.t.Logf("--- last lines of %s:\n%s", f, strings.Join(lines, "\n"))
	}
}

// grepLog counts the lines of sluice.log that contain pattern.
func (s *scenario) grepLog(pattern string) (int, string) {
	b, _ := os.ReadFile(filepath.Join(s.dir, "sluice.log"))
	n := 0
	first := ""
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, pattern) {
			if n == 0 {
				first = line
			}
			n++
		}
	}
	return n, first
}

// chRows is the table's row count without FINAL (replays included).
func (s *scenario) chRows() (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var n uint64
	err := s.ch.QueryRow(ctx, "SELECT count() FROM "+s.table).Scan(&n)
	return n, err
}

// waitProgress polls value every step until it exceeds base, and returns
// the time since from; false after limit or at the end of the scenario.
func (s *scenario) waitProgress(from time.Time, base uint64, limit, step time.Duration, value func() uint64) (time.Duration, bool) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) && s.ctx.Err() == nil {
		if value() > base {
			return time.Since(from), true
		}
		time.Sleep(step)
	}
	return time.Since(from), false
}

// chProgress measures the ClickHouse path's recovery after a fault that
// ended at from: the time until the table grows beyond base rows. It
// records the recovery.
func (s *scenario) chProgress(from time.Time, base uint64, limit time.Duration) (time.Duration, bool) {
	d, ok := s.waitProgress(from, base, limit, 100*time.Millisecond, func() uint64 {
		n, _ := s.chRows()
		return n
	})
	if ok {
		s.recovered(d)
	}
	return d, ok
}

// sleep waits d or until the scenario's deadline.
func (s *scenario) sleep(d time.Duration) {
	select {
	case <-time.After(d):
	case <-s.ctx.Done():
	}
}

// between returns a random duration in [lo, hi).
func (s *scenario) between(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(s.rng.Int64N(int64(hi-lo)))
}

// services runs scripts/services.sh with args.
func (s *scenario) services(args ...string) time.Duration {
	s.t.Helper()
	root, err := repoRoot()
	if err != nil {
		s.t.Fatal(err)
	}
	start := time.Now()
	cmd := exec.CommandContext(s.ctx, filepath.Join(root, "scripts", "services.sh"), args...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		s.t.Fatalf("services.sh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	s.logf("services.sh %s (%v): %s", strings.Join(args, " "), time.Since(start).Round(time.Millisecond), strings.TrimSpace(lastLine(string(out))))
	return time.Since(start)
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// ---------------------------------------------------------------- checks

// sent describes what one device sent: seqs 1..last, of which those up to
// ackedUpTo are settled, and which of them were nacked.
type sent struct {
	device    string
	last      uint64
	ackedUpTo uint64
	nacked    map[uint64]bool
}

// ident is a record identity as the Kafka sink writes it in sluice-id.
type ident struct {
	device string
	seq    uint64
}

// parts holds which parts of a device record were found: bit 0 for part 0
// (not split), bits 1 and 2 for the two parts of a split record, bit 3 for
// any other part (never expected).
type parts uint8

const (
	partWhole parts = 1 << 0
	partOne   parts = 1 << 1
	partTwo   parts = 1 << 2
	partOther parts = 1 << 3
)

func partBit(p uint32) parts {
	switch p {
	case 0:
		return partWhole
	case 1:
		return partOne
	case 2:
		return partTwo
	}
	return partOther
}

// complete: the record is there whole (not split), or both its parts are.
func (p parts) complete() bool { return p&partWhole != 0 || p&(partOne|partTwo) == partOne|partTwo }

// odd: a mix that no transform produces.
func (p parts) odd() bool {
	return p&partOther != 0 || (p&partWhole != 0 && p&(partOne|partTwo) != 0) || (p&partWhole == 0 && !p.complete())
}

// kafkaContents reads every message of the topic.
type kafkaContents struct {
	msgs   int
	ids    map[ident]parts
	idents int // distinct (device, seq, part)
	noID   int
}

func (s *scenario) readKafka() kafkaContents {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute+time.Duration(records()/1000)*time.Second)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(s.brokers...), Timeout: 20 * time.Second}
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{s.topic}})
	if err != nil {
		s.t.Fatal(err)
	}
	out := kafkaContents{ids: map[ident]parts{}}
	seen := map[string]bool{}
	for _, p := range md.Topics[0].Partitions {
		end := s.endOffset(ctx, client, p.ID)
		if end == 0 {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: s.brokers, Topic: s.topic, Partition: p.ID,
			MinBytes: 1, MaxBytes: 8 << 20, MaxWait: 200 * time.Millisecond})
		for {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				r.Close()
				s.t.Fatalf("read partition %d: %v", p.ID, err)
			}
			out.msgs++
			var id []byte
			for _, h := range m.Headers {
				if h.Key == "sluice-id" {
					id = h.Value
				}
			}
			dev, seq, part, ok := parseID(id)
			if !ok {
				out.noID++
			} else {
				key := string(id)
				if !seen[key] {
					seen[key] = true
					out.idents++
				}
				k := ident{dev, seq}
				out.ids[k] |= partBit(part)
			}
			if m.Offset >= end-1 {
				break
			}
		}
		r.Close()
	}
	return out
}

func (s *scenario) endOffset(ctx context.Context, client *kafka.Client, partition int) int64 {
	s.t.Helper()
	offs, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{
		s.topic: {kafka.LastOffsetOf(partition)}}})
	if err != nil {
		s.t.Fatal(err)
	}
	po := offs.Topics[s.topic]
	if len(po) != 1 || po[0].Error != nil {
		s.t.Fatalf("end offset of partition %d: %+v", partition, po)
	}
	return po[0].LastOffset
}

// parseID parses "<device>/<seq>/<part>".
func parseID(v []byte) (string, uint64, uint32, bool) {
	s := string(v)
	j := strings.LastIndexByte(s, '/')
	if j < 0 {
		return "", 0, 0, false
	}
	i := strings.LastIndexByte(s[:j], '/')
	if i < 0 {
		return "", 0, 0, false
	}
	seq, err1 := strconv.ParseUint(s[i+1:j], 10, 64)
	part, err2 := strconv.ParseUint(s[j+1:], 10, 32)
	if err1 != nil || err2 != nil {
		return "", 0, 0, false
	}
	return s[:i], seq, uint32(part), true
}

// chContents is the table as a user reads it (FINAL), and its raw size.
type chContents struct {
	rows      uint64 // without FINAL: replays included until merged away
	finalRows uint64
	ids       map[ident]parts
	dupFinal  uint64 // rows under FINAL beyond one per identity
	badSite   uint64 // rows the enrich transform did not touch
}

// waitClickHouse waits until ClickHouse holds, under FINAL, as many
// identities as Kafka (the store pipeline caught up), then reads it. It
// returns how long the catch-up took.
func (s *scenario) waitClickHouse(want int, limit time.Duration) (chContents, time.Duration) {
	s.t.Helper()
	start := time.Now()
	ctx := context.Background()
	deadline := start.Add(limit)
	var n uint64
	for {
		err := s.ch.QueryRow(ctx, "SELECT count() FROM (SELECT DISTINCT device_id, seq, part FROM "+s.table+")").Scan(&n)
		if err != nil {
			s.t.Fatal(err)
		}
		if n >= uint64(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	waited := time.Since(start)
	if n < uint64(want) {
		s.logf("clickhouse has %d of %d identities after %v", n, want, limit)
	}
	var c chContents
	c.ids = map[ident]parts{}
	var distinct uint64
	if err := s.ch.QueryRow(ctx, "SELECT count(), (SELECT count() FROM (SELECT DISTINCT device_id, seq, part FROM "+s.table+")) FROM "+s.table).Scan(&c.rows, &distinct); err != nil {
		s.t.Fatal(err)
	}
	if c.rows < distinct || distinct < n {
		s.note("ANOMALY: clickhouse count() %d, distinct identities %d, earlier %d", c.rows, distinct, n)
	}
	// As a user reads it: SELECT … FINAL.
	rows, err := s.ch.Query(ctx, "SELECT device_id, seq, part, site FROM "+s.table+" FINAL")
	if err != nil {
		s.t.Fatal(err)
	}
	seen := map[string]bool{}
	for rows.Next() {
		var dev, site string
		var seq uint64
		var part uint32
		if err := rows.Scan(&dev, &seq, &part, &site); err != nil {
			s.t.Fatal(err)
		}
		c.finalRows++
		key := dev + "/" + strconv.FormatUint(seq, 10) + "/" + strconv.FormatUint(uint64(part), 10)
		if seen[key] {
			c.dupFinal++
		}
		seen[key] = true
		c.ids[ident{dev, seq}] |= partBit(part)
		if site != "lab-1" {
			c.badSite++
		}
	}
	if err := rows.Err(); err != nil {
		s.t.Fatal(err)
	}
	rows.Close()
	return c, waited
}

// figures is the outcome of a scenario.
type figures struct {
	devices                     int
	sent, acked, nacked         uint64
	kafkaDistinct, kafkaMsgs    int
	chFinal                     int
	chRows                      uint64
	lostKafka, lostCH, lost     int
	dupFinal                    uint64
	oddKafka, oddCH, phantoms   int
	noID, badSite               int
	catchUp                     time.Duration
	kafkaIdents, chFinalIdents  int
	deadIngest, deadStore       int
	recoveryWhat                string
	recoveryMax, recoveryMean   time.Duration
	recoveries, faults, restart int
}

// verify reads Kafka and ClickHouse and compares them with what the
// devices sent and had acknowledged, prints the FIGURES line and fails the
// test on any loss or visible duplicate.
func (s *scenario) verify(devs []sent, recoveryWhat string) figures {
	s.t.Helper()
	var f figures
	f.devices = len(devs)
	f.recoveryWhat = recoveryWhat
	for _, d := range devs {
		f.sent += d.last
		f.acked += d.ackedUpTo - uint64(len(d.nacked))
		f.nacked += uint64(len(d.nacked))
	}
	k := s.readKafka()
	f.kafkaMsgs = k.msgs
	f.kafkaIdents = k.idents
	f.noID = k.noID
	chLimit := 90*time.Second + time.Duration(records()/1000)*time.Second
	c, _ := s.waitClickHouse(k.idents, chLimit)
	s.mu.Lock()
	if !s.lastFaultEnd.IsZero() {
		f.catchUp = time.Since(s.lastFaultEnd)
		s.notes = append(s.notes, fmt.Sprintf("clickhouse complete %.1fs after the last fault ended", f.catchUp.Seconds()))
	}
	s.mu.Unlock()
	f.chRows = c.rows
	f.dupFinal = c.dupFinal
	f.badSite = int(c.badSite)
	f.chFinalIdents = int(c.finalRows - c.dupFinal)

	bySeq := map[string]sent{}
	for _, d := range devs {
		bySeq[d.device] = d
	}
	var missingK, missingC []string
	for _, d := range devs {
		for seq := uint64(1); seq <= d.ackedUpTo; seq++ {
			if d.nacked[seq] {
				continue
			}
			id := ident{d.device, seq}
			kp, cp := k.ids[id], c.ids[id]
			inK, inC := kp.complete(), cp.complete()
			if !inK {
				f.lostKafka++
				if len(missingK) < 10 {
					missingK = append(missingK, fmt.Sprintf("%s/%d(parts %03b)", d.device, seq, kp))
				}
			}
			if !inC {
				f.lostCH++
				if len(missingC) < 10 {
					missingC = append(missingC, fmt.Sprintf("%s/%d(parts %03b)", d.device, seq, cp))
				}
			}
			if !inK || !inC {
				f.lost++
			}
		}
	}
	for id, p := range k.ids {
		d, ok := bySeq[id.device]
		if !ok || id.seq < 1 || id.seq > d.last {
			f.phantoms++
		}
		if p.complete() {
			f.kafkaDistinct++
		}
		if p.odd() {
			f.oddKafka++
		}
	}
	for _, p := range c.ids {
		if p.complete() {
			f.chFinal++
		}
		if p.odd() {
			f.oddCH++
		}
	}
	f.deadIngest = countLines(filepath.Join(s.dir, "dead-ingest.jsonl"))
	f.deadStore = countLines(filepath.Join(s.dir, "dead-store.jsonl"))

	s.mu.Lock()
	f.faults, f.restart = s.faults, s.starts
	f.recoveries = len(s.recoveries)
	var sum time.Duration
	for _, r := range s.recoveries {
		sum += r
		f.recoveryMax = max(f.recoveryMax, r)
	}
	if len(s.recoveries) > 0 {
		f.recoveryMean = sum / time.Duration(len(s.recoveries))
	}
	notes := strings.Join(s.notes, "; ")
	s.mu.Unlock()

	line := fmt.Sprintf("FIGURES scenario=%s devices=%d sent=%d acked=%d nacked=%d kafka_distinct=%d kafka_msgs=%d ch_final=%d ch_rows=%d lost=%d dup_final=%d recovery=%s faults=%d elapsed=%s",
		s.name, f.devices, f.sent, f.acked, f.nacked, f.kafkaDistinct, f.kafkaMsgs, f.chFinal, f.chRows,
		f.lost, f.dupFinal, f.recovery(), f.faults, time.Since(s.start).Round(time.Second))
	if notes != "" {
		line += " | " + notes
	}
	fmt.Println(line)
	s.t.Log(line)
	if *flagFigures != "" {
		if fh, err := os.OpenFile(*flagFigures, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); err == nil {
			fmt.Fprintf(fh, "%s %s\n", time.Now().UTC().Format(time.RFC3339), line)
			fh.Close()
		}
	}

	if f.lost > 0 {
		s.t.Errorf("LOST %d acknowledged records: %d missing from Kafka (e.g. %v), %d from ClickHouse under FINAL (e.g. %v)",
			f.lost, f.lostKafka, missingK, f.lostCH, missingC)
	}
	if f.dupFinal > 0 {
		s.t.Errorf("%d duplicates visible in ClickHouse under FINAL", f.dupFinal)
	}
	if f.nacked > 0 || f.deadIngest > 0 || f.deadStore > 0 {
		s.t.Errorf("%d records nacked, %d ingest and %d store dead letters; none expected (see the dead-letter files)", f.nacked, f.deadIngest, f.deadStore)
	}
	if f.acked != f.sent {
		s.t.Errorf("%d of %d records acknowledged at the end", f.acked, f.sent)
	}
	if f.phantoms > 0 || f.noID > 0 || f.oddKafka > 0 || f.oddCH > 0 || f.badSite > 0 {
		s.t.Errorf("unexpected contents: %d identities no device sent, %d messages without sluice-id, %d/%d records with odd parts in Kafka/ClickHouse, %d rows not enriched",
			f.phantoms, f.noID, f.oddKafka, f.oddCH, f.badSite)
	}
	if f.chFinalIdents != f.kafkaIdents {
		s.t.Errorf("ClickHouse holds %d identities under FINAL, Kafka %d", f.chFinalIdents, f.kafkaIdents)
	}
	return f
}

func (f figures) recovery() string {
	if f.recoveries == 0 {
		return "n/a"
	}
	return fmt.Sprintf("max_%.1fs_mean_%.1fs_(%s)", f.recoveryMax.Seconds(), f.recoveryMean.Seconds(), f.recoveryWhat)
}

func countLines(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return bytes.Count(b, []byte("\n"))
}

// committedOffsets returns the consumer group's committed offset of each
// partition (-1 when none).
func (s *scenario) committedOffsets() map[int]int64 {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(s.brokers...), Timeout: 10 * time.Second}
	res, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: s.group,
		Topics: map[string][]int{s.topic: {0, 1, 2, 3}}})
	if err != nil {
		s.t.Fatalf("offset fetch: %v", err)
	}
	out := map[int]int64{}
	for _, p := range res.Topics[s.topic] {
		out[p.Partition] = p.CommittedOffset
	}
	return out
}

// belowCommitted reads the messages below each committed offset and
// returns how many there are and how many of their identities ClickHouse
// does not hold (now, without FINAL).
func (s *scenario) belowCommitted(committed map[int]int64) (total, missing int, lag int64) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	inCH := map[string]bool{}
	rows, err := s.ch.Query(ctx, "SELECT DISTINCT device_id, seq, part FROM "+s.table)
	if err != nil {
		s.t.Fatal(err)
	}
	for rows.Next() {
		var dev string
		var seq uint64
		var part uint32
		if err := rows.Scan(&dev, &seq, &part); err != nil {
			s.t.Fatal(err)
		}
		inCH[dev+"/"+strconv.FormatUint(seq, 10)+"/"+strconv.FormatUint(uint64(part), 10)] = true
	}
	rows.Close()
	client := &kafka.Client{Addr: kafka.TCP(s.brokers...), Timeout: 20 * time.Second}
	parts := make([]int, 0, len(committed))
	for p := range committed {
		parts = append(parts, p)
	}
	sort.Ints(parts)
	for _, p := range parts {
		end := s.endOffset(ctx, client, p)
		upTo := committed[p]
		if upTo < 0 {
			upTo = 0
		}
		lag += end - upTo
		if upTo == 0 {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: s.brokers, Topic: s.topic, Partition: p,
			MinBytes: 1, MaxBytes: 8 << 20, MaxWait: 200 * time.Millisecond})
		for {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				r.Close()
				s.t.Fatalf("read partition %d: %v", p, err)
			}
			if m.Offset >= upTo {
				break
			}
			total++
			for _, h := range m.Headers {
				if h.Key == "sluice-id" && !inCH[string(h.Value)] {
					missing++
				}
			}
			if m.Offset == upTo-1 {
				break
			}
		}
		r.Close()
	}
	return total, missing, lag
}

// lineReader calls fn for each line of r until EOF.
func lineReader(r io.Reader, fn func(string)) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fn(sc.Text())
	}
}

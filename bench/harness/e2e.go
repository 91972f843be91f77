package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/device"
)

// Session is one Sluice process under load: device clients pushing to its
// WebSocket source, a subscriber on its subscriptions endpoint, and the
// ClickHouse table its store pipeline fills.
type Session struct {
	Name     string
	svc      *Services
	meter    *Meter
	progress io.Writer
	table    string

	bulk   []*device.Client
	probes []*device.Client
	gens   []*Gen
	pgens  []*Gen
	sub    *Subscriber
	cancel context.CancelFunc

	sent   atomic.Int64 // records sent in this session
	chBase uint64       // rows in the table before the session

	metricsAddr string // Sluice's http.listen, for /metrics
	outDir      string
}

// SessionOptions configure the load side of a session.
type SessionOptions struct {
	IngestURL    string // ws://…/ingest
	SubscribeURL string // ws://…/subscribe
	Topic, Table string
	Devices      int // bulk devices
	Probes       int // latency probe devices
	DeviceLog    io.Writer
	Progress     io.Writer
	// MetricsAddr is Sluice's http listen address (for /metrics); OutDir
	// receives a scrape at the end of each phase.
	MetricsAddr string
	OutDir      string
}

// NewSession connects the devices and the subscriber to a running Sluice.
func NewSession(ctx context.Context, name string, svc *Services, meter *Meter, o SessionOptions) (*Session, error) {
	s := &Session{Name: name, svc: svc, meter: meter, progress: o.Progress, table: o.Table, metricsAddr: o.MetricsAddr, outDir: o.OutDir}
	log := slog.New(slog.NewTextHandler(o.DeviceLog, &slog.HandlerOptions{Level: slog.LevelWarn}))
	mk := func(id string) (*device.Client, error) {
		return device.New(o.IngestURL, device.Options{DeviceID: id, Window: 1024, OutboxLimit: 4096, Logger: log.With("device", id)})
	}
	for i := range o.Devices {
		c, err := mk(DeviceID("bench-", i))
		if err != nil {
			s.Close()
			return nil, err
		}
		s.bulk = append(s.bulk, c)
		s.gens = append(s.gens, NewGen(i))
	}
	for i := range o.Probes {
		c, err := mk(DeviceID("probe-", i))
		if err != nil {
			s.Close()
			return nil, err
		}
		s.probes = append(s.probes, c)
		s.pgens = append(s.pgens, NewGen(1000+i))
	}
	n, err := svc.Count(ctx, o.Table)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("clickhouse: count %s: %w", o.Table, err)
	}
	s.chBase = n
	sctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.sub = NewSubscriber(o.SubscribeURL, o.Topic)
	go s.sub.Run(sctx)
	if err := s.sub.Ready(ctx, 30*time.Second); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close disconnects everything.
func (s *Session) Close() {
	if s.cancel != nil {
		s.cancel()
	}
	for _, c := range append(s.bulk, s.probes...) {
		c.Close()
	}
}

func (s *Session) clients() []*device.Client {
	return append(append([]*device.Client(nil), s.bulk...), s.probes...)
}

func (s *Session) stats() device.Stats {
	var t device.Stats
	for _, c := range s.clients() {
		st := c.Stats()
		t.Sent += st.Sent
		t.Acked += st.Acked
		t.Nacked += st.Nacked
		t.Resent += st.Resent
		t.Connects += st.Connects
	}
	return t
}

// Phase is the result of one load phase.
type Phase struct {
	Name    string  `json:"name"`
	Target  float64 `json:"target_records_per_s,omitempty"` // 0: as fast as acks allow
	Records int64   `json:"records"`
	// LoadSeconds is how long devices sent; Seconds runs until every
	// record was acknowledged, in ClickHouse and at the subscriber.
	LoadSeconds float64 `json:"load_seconds"`
	Seconds     float64 `json:"seconds"`
	// Rates over the middle 80% of the phase's records.
	AckRate   float64 `json:"acked_per_s"`
	CHRate    float64 `json:"clickhouse_rows_per_s"`
	SubRate   float64 `json:"subscriber_per_s"`
	Sustained float64 `json:"sustained_per_s"`
	Offered   float64 `json:"offered_per_s"` // records sent ÷ load seconds

	Acked      int64  `json:"acked"`
	Nacked     int64  `json:"nacked"`
	Resent     int64  `json:"resent"`
	CHRows     int64  `json:"clickhouse_rows"`
	SubRecv    int64  `json:"subscriber_records"`
	Complete   bool   `json:"complete"`
	Incomplete string `json:"incomplete,omitempty"`

	// CPU seconds per million records, over the whole phase.
	SluicePerM  float64 `json:"sluice_cpu_s_per_m"`
	KafkaPerM   float64 `json:"kafka_cpu_s_per_m"`
	CHPerM      float64 `json:"clickhouse_cpu_s_per_m"`
	LoadgenPerM float64 `json:"loadgen_cpu_s_per_m"`
	// Average cores busy during the phase.
	SluiceCores float64 `json:"sluice_cores"`
	KafkaCores  float64 `json:"kafka_cores"`
	CHCores     float64 `json:"clickhouse_cores"`
	LoadgenCore float64 `json:"loadgen_cores"`
	OthersCores float64 `json:"other_load_cores"`
	Load        float64 `json:"loadavg"`

	// Ack is device→Kafka-ack latency of every bulk record (each device's
	// acked count is polled every millisecond; acks come in order);
	// ProbeAck that of lone records (probe devices: Send, then Flush).
	Ack        Summary `json:"ack_latency"`
	ProbeAck   Summary `json:"probe_ack_latency"`
	CH         Summary `json:"clickhouse_latency"`
	Sub        Summary `json:"subscriber_latency"`
	Reconnects int64   `json:"subscriber_reconnects"`
	// Lagged counts the subscriber's disconnections for lagging (4000).
	Lagged int64 `json:"subscriber_lagged"`
	// Overloaded marks a paced phase whose target is above the sustained
	// rate measured before it: its latencies are queueing delay.
	Overloaded bool `json:"overloaded,omitempty"`
	// Stages are Sluice's sinks and transform during the load, from its
	// /metrics: calls, mean call time, records per call, busy fraction.
	Stages []Stage `json:"stages"`
}

type sample struct {
	t              time.Time
	sent, acked    int64
	chRows, subRec int64
}

// rate10to90 is the rate of a counter between the times it passed
// base+10% and base+90% of n, interpolated between samples.
func rate10to90(ss []sample, get func(sample) int64, base, n int64) float64 {
	if n <= 0 || len(ss) < 2 {
		return 0
	}
	at := func(v float64) (time.Time, bool) {
		for i := 1; i < len(ss); i++ {
			a, b := float64(get(ss[i-1])-base), float64(get(ss[i])-base)
			if b >= v {
				if b == a {
					return ss[i].t, true
				}
				f := (v - a) / (b - a)
				f = max(0, min(1, f))
				return ss[i-1].t.Add(time.Duration(f * float64(ss[i].t.Sub(ss[i-1].t)))), true
			}
		}
		return time.Time{}, false
	}
	t1, ok1 := at(0.1 * float64(n))
	t9, ok9 := at(0.9 * float64(n))
	if !ok1 || !ok9 || !t9.After(t1) {
		return 0
	}
	return 0.8 * float64(n) / t9.Sub(t1).Seconds()
}

// load is what devices do in a phase.
type load func(ctx context.Context, s *Session, stop time.Time) error

// run runs one phase: the load until stop (or the load's own end), then
// waits (up to drain) for every record to be acknowledged, in ClickHouse
// and at the subscriber; it samples progress and CPU throughout.
func (s *Session) run(ctx context.Context, name string, dur, drain time.Duration, l load) (*Phase, error) {
	p := &Phase{Name: name}
	base := s.stats()
	sent0 := s.sent.Load()
	sub0 := s.sub.Count()
	ch0, err := s.svc.Count(ctx, s.table)
	if err != nil {
		return nil, err
	}
	var m0 map[string]float64
	if s.metricsAddr != "" {
		m0, _ = Scrape(ctx, s.metricsAddr, "")
	}
	lag0, rec0 := s.sub.Lagged.Load(), s.sub.Reconnects.Load()
	c0 := s.meter.Snap()
	start := c0.At
	stop := start.Add(dur)

	var samples []sample
	var smu sync.Mutex
	sampCtx, stopSampling := context.WithCancel(ctx)
	var chRows atomic.Int64
	chRows.Store(int64(ch0))
	var swg sync.WaitGroup
	swg.Add(2)
	go func() { // ClickHouse count, twice a second
		defer swg.Done()
		for sampCtx.Err() == nil {
			if n, err := s.svc.Count(sampCtx, s.table); err == nil {
				chRows.Store(int64(n))
			}
			sleepCtx(sampCtx, 500*time.Millisecond)
		}
	}()
	go func() { // samples every 250ms, a progress line every second
		defer swg.Done()
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		last := c0
		var lastS sample
		lastS.t = start
		lastS.chRows = int64(ch0)
		lastS.subRec = sub0
		lastS.acked = int64(base.Acked)
		lastS.sent = sent0
		k := 0
		for {
			select {
			case <-sampCtx.Done():
				return
			case now := <-tick.C:
				st := s.stats()
				sm := sample{t: now, sent: s.sent.Load(), acked: int64(st.Acked), chRows: chRows.Load(), subRec: s.sub.Count()}
				smu.Lock()
				samples = append(samples, sm)
				smu.Unlock()
				k++
				if k%4 != 0 {
					continue
				}
				cs := s.meter.Snap()
				d := cs.Sub(last)
				w := d.Wall.Seconds()
				rate := func(a, b int64) float64 { return float64(b-a) / now.Sub(lastS.t).Seconds() }
				fmt.Fprintf(s.progress, "[%s %s] %5.1fs sent %d acked %d (%.0f/s) clickhouse %d (%.0f/s) subscriber %d (%.0f/s) | cores: sluice %.2f kafka %.2f clickhouse %.2f bench %.2f others %.2f | load %.1f\n",
					s.Name, name, now.Sub(start).Seconds(), sm.sent-sent0, sm.acked-int64(base.Acked), rate(lastS.acked, sm.acked),
					sm.chRows-int64(ch0), rate(lastS.chRows, sm.chRows), sm.subRec-sub0, rate(lastS.subRec, sm.subRec),
					d.Procs["sluice"].Seconds()/w, d.Procs["kafka"].Seconds()/w, d.Procs["clickhouse"].Seconds()/w, d.Self.Seconds()/w, d.Others.Seconds()/w, d.Load)
				last, lastS = cs, sm
			}
		}
	}()

	lctx, cancelLoad := context.WithDeadline(ctx, stop.Add(time.Second))
	lerr := l(lctx, s, stop)
	cancelLoad()
	loadEnd := time.Now()
	p.LoadSeconds = loadEnd.Sub(start).Seconds()
	if m0 != nil {
		if m1, err := Scrape(ctx, s.metricsAddr, ""); err == nil {
			p.Stages = Stages(m0, m1, loadEnd.Sub(start))
		}
	}
	n := s.sent.Load() - sent0
	p.Records = n
	if p.LoadSeconds > 0 {
		p.Offered = float64(n) / p.LoadSeconds
	}

	// Drain: every record acknowledged, in ClickHouse, at the subscriber.
	deadline := time.Now().Add(drain)
	var why []string
	for {
		st := s.stats()
		acked := int64(st.Acked+st.Nacked) - int64(base.Acked+base.Nacked)
		// Nacked records go to the dead-letter topic, not to ClickHouse
		// or the subscriber.
		want := n - int64(st.Nacked-base.Nacked)
		chN := chRows.Load() - int64(ch0)
		subN := s.sub.Count() - sub0
		if acked >= n && chN >= want && subN >= want {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			why = append(why, fmt.Sprintf("after %v of draining: acked %d, clickhouse %d, subscriber %d of %d", drain, acked, chN, subN, n))
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A last exact count.
	if nrows, err := s.svc.Count(ctx, s.table); err == nil {
		chRows.Store(int64(nrows))
	}
	c1 := s.meter.Snap()
	stopSampling()
	swg.Wait()
	end := c1.At
	st := s.stats()
	p.Seconds = end.Sub(start).Seconds()
	p.Acked = int64(st.Acked - base.Acked)
	p.Nacked = int64(st.Nacked - base.Nacked)
	p.Resent = int64(st.Resent - base.Resent)
	p.CHRows = chRows.Load() - int64(ch0)
	p.SubRecv = s.sub.Count() - sub0
	if lerr != nil && !errors.Is(lerr, context.DeadlineExceeded) {
		why = append(why, "load: "+lerr.Error())
	}
	if p.Nacked > 0 {
		why = append(why, fmt.Sprintf("%d records nacked", p.Nacked))
	}
	p.Complete = len(why) == 0 && p.Acked == n
	p.Incomplete = strings.Join(why, "; ")
	smu.Lock()
	ss := append([]sample{{t: start, sent: sent0, acked: int64(base.Acked), chRows: int64(ch0), subRec: sub0}}, samples...)
	smu.Unlock()
	ss = append(ss, sample{t: end, sent: s.sent.Load(), acked: int64(st.Acked), chRows: chRows.Load(), subRec: s.sub.Count()})
	p.AckRate = rate10to90(ss, func(x sample) int64 { return x.acked }, int64(base.Acked), n)
	p.CHRate = rate10to90(ss, func(x sample) int64 { return x.chRows }, int64(ch0), n)
	p.SubRate = rate10to90(ss, func(x sample) int64 { return x.subRec }, sub0, n)
	p.Sustained = math.Min(p.AckRate, math.Min(p.CHRate, p.SubRate))

	d := c1.Sub(c0)
	p.SluicePerM = PerMillion(d.Procs["sluice"], n)
	p.KafkaPerM = PerMillion(d.Procs["kafka"], n)
	p.CHPerM = PerMillion(d.Procs["clickhouse"], n)
	p.LoadgenPerM = PerMillion(d.Self, n)
	if w := d.Wall.Seconds(); w > 0 {
		p.SluiceCores = d.Procs["sluice"].Seconds() / w
		p.KafkaCores = d.Procs["kafka"].Seconds() / w
		p.CHCores = d.Procs["clickhouse"].Seconds() / w
		p.LoadgenCore = d.Self.Seconds() / w
		p.OthersCores = d.Others.Seconds() / w
	}
	p.Load = d.Load
	p.Reconnects = s.sub.Reconnects.Load() - rec0
	p.Lagged = s.sub.Lagged.Load() - lag0
	if s.metricsAddr != "" && s.outDir != "" {
		_, _ = Scrape(ctx, s.metricsAddr, filepath.Join(s.outDir, fmt.Sprintf("metrics-%s-%s.txt", s.Name, fileName(name))))
	}
	return p, nil
}

func fileName(s string) string {
	return strings.Trim(regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(s, "-"), "-")
}

// Saturate sends as fast as the devices' windows allow, for dur or until
// max records (whichever first), and measures the sustained rate.
func (s *Session) Saturate(ctx context.Context, name string, dur time.Duration, max int64, drain time.Duration) (*Phase, error) {
	quota := max / int64(len(s.bulk))
	return s.run(ctx, name, dur, drain, func(ctx context.Context, s *Session, stop time.Time) error {
		var wg sync.WaitGroup
		errs := make(chan error, len(s.bulk))
		for i, c := range s.bulk {
			wg.Add(1)
			go func() {
				defer wg.Done()
				g := s.gens[i]
				var buf []byte
				for k := int64(0); k < quota; k++ {
					now := time.Now()
					if now.After(stop) {
						return
					}
					buf = g.Body(buf[:0], now)
					if _, err := c.Send(ctx, buf); err != nil {
						if ctx.Err() == nil {
							errs <- err
						}
						return
					}
					s.sent.Add(1)
				}
			}()
		}
		wg.Wait()
		close(errs)
		return <-errs
	})
}

// Paced sends rate records/s for dur: bulk devices on a fixed schedule,
// probe devices one record at a time (Send, then Flush until acked) at
// probeRate each, Poisson-spaced. It measures device→Kafka-ack latency on
// the probes, device→ClickHouse-visible on the probes (polling the table
// every 10ms), and device→subscriber on every record; records sent in the
// first warm seconds are not measured.
func (s *Session) Paced(ctx context.Context, name string, rate, probeRate float64, dur, warm, drain time.Duration) (*Phase, error) {
	var ackLat, probeAck, chLat Latencies
	var from, to time.Time
	// Send times of the bulk devices' records, in order, for the ack
	// poller.
	type sendLog struct {
		mu    sync.Mutex
		times []int64
		acked uint64 // the device's acked+nacked count at the phase start
		done  int    // records of times whose ack was seen
	}
	logs := make([]*sendLog, len(s.bulk))
	for i, c := range s.bulk {
		st := c.Stats()
		logs[i] = &sendLog{acked: st.Acked + st.Nacked}
	}
	ackPoll := func(ctx context.Context, done chan<- struct{}) {
		defer close(done)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		lo, hi := int64(0), int64(0)
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-tick.C:
				if lo == 0 {
					lo, hi = from.UnixNano(), to.UnixNano()
				}
				for i, c := range s.bulk {
					st := c.Stats()
					l := logs[i]
					n := int(st.Acked + st.Nacked - l.acked)
					l.mu.Lock()
					for ; l.done < n && l.done < len(l.times); l.done++ {
						if t := l.times[l.done]; t >= lo && t <= hi {
							ackLat.Add(time.Duration(now.UnixNano() - t))
						}
					}
					l.mu.Unlock()
				}
			}
		}
	}
	probeTotal := probeRate * float64(len(s.probes))
	if probeTotal > rate/2 {
		probeTotal = rate / 2
		probeRate = probeTotal / float64(len(s.probes))
	}
	bulkRate := (rate - probeTotal) / float64(len(s.bulk))
	type pending struct {
		seq uint64
		at  time.Time
	}
	var pmu sync.Mutex
	pend := make([][]pending, len(s.probes))
	probeIDs := make([]string, len(s.probes))
	for i := range s.probes {
		probeIDs[i] = "'" + DeviceID("probe-", i) + "'"
	}
	q := "SELECT device_id, max(seq) FROM " + s.table + " WHERE device_id IN (" + strings.Join(probeIDs, ",") + ") GROUP BY device_id"
	pollCtx, stopPoll := context.WithCancel(ctx)
	pollDone := make(chan struct{})
	poll := func() {
		defer close(pollDone)
		for pollCtx.Err() == nil {
			qs := time.Now()
			rows, err := s.svc.CH().Query(pollCtx, q)
			if err == nil {
				maxSeq := map[string]uint64{}
				for rows.Next() {
					var d string
					var m uint64
					if rows.Scan(&d, &m) == nil {
						maxSeq[d] = m
					}
				}
				rows.Close()
				pmu.Lock()
				for i := range pend {
					m := maxSeq[DeviceID("probe-", i)]
					k := 0
					for k < len(pend[i]) && pend[i][k].seq <= m {
						if at := pend[i][k].at; !at.Before(from) && !at.After(to) {
							chLat.Add(qs.Sub(at))
						}
						k++
					}
					pend[i] = pend[i][k:]
				}
				pmu.Unlock()
			}
			sleepCtx(pollCtx, 10*time.Millisecond)
		}
	}
	started := false
	ackDone := make(chan struct{})
	ph, err := s.run(ctx, name, dur, drain, func(ctx context.Context, s *Session, stop time.Time) error {
		start := time.Now()
		from, to = start.Add(warm), stop
		s.sub.Measure(from, to)
		started = true
		go poll()
		go ackPoll(pollCtx, ackDone)
		var wg sync.WaitGroup
		errs := make(chan error, len(s.bulk)+len(s.probes))
		for i, c := range s.bulk {
			wg.Add(1)
			go func() {
				defer wg.Done()
				g := s.gens[i]
				var buf []byte
				// Devices start at random offsets within one interval.
				offset := time.Duration(rand.Float64() * float64(time.Second) / bulkRate)
				for k := 0; ; k++ {
					due := start.Add(offset + time.Duration(float64(k)/bulkRate*float64(time.Second)))
					if due.After(stop) {
						return
					}
					if d := time.Until(due); d > 200*time.Microsecond {
						time.Sleep(d)
					}
					now := time.Now()
					buf = g.Body(buf[:0], now)
					l := logs[i]
					l.mu.Lock()
					l.times = append(l.times, now.UnixNano())
					l.mu.Unlock()
					if _, err := c.Send(ctx, buf); err != nil {
						if ctx.Err() == nil {
							errs <- err
						}
						return
					}
					s.sent.Add(1)
				}
			}()
		}
		for i, c := range s.probes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				g := s.pgens[i]
				rng := rand.New(rand.NewPCG(uint64(i), 7))
				var buf []byte
				next := start.Add(time.Duration(rng.ExpFloat64() / probeRate * float64(time.Second)))
				for {
					if next.After(stop) {
						return
					}
					if d := time.Until(next); d > 0 {
						time.Sleep(d)
					}
					t0 := time.Now()
					buf = g.Body(buf[:0], t0)
					seq, err := c.Send(ctx, buf)
					if err != nil {
						if ctx.Err() == nil {
							errs <- err
						}
						return
					}
					s.sent.Add(1)
					pmu.Lock()
					pend[i] = append(pend[i], pending{seq, t0})
					pmu.Unlock()
					if err := c.Flush(ctx); err != nil {
						if ctx.Err() == nil {
							errs <- err
						}
						return
					}
					if !t0.Before(from) {
						probeAck.Add(time.Since(t0))
					}
					next = next.Add(time.Duration(rng.ExpFloat64() / probeRate * float64(time.Second)))
					if now := time.Now(); next.Before(now) {
						next = now
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		return <-errs
	})
	s.sub.StopMeasuring()
	if started {
		// The drain has waited for every row; give the poller one more look.
		time.Sleep(30 * time.Millisecond)
		stopPoll()
		<-pollDone
		<-ackDone
	} else {
		stopPoll()
	}
	if err != nil {
		return nil, err
	}
	ph.Target = rate
	ph.Ack = ackLat.Summary()
	ph.ProbeAck = probeAck.Summary()
	ph.CH = chLat.Summary()
	ph.Sub = s.sub.Lat.Summary()
	s.sub.Lat.Reset()
	return ph, nil
}

// Acked is how many records the session's devices have had acknowledged.
func (s *Session) Acked() int64 { return int64(s.stats().Acked) }

package subscribe

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/tidwall/gjson"

	"github.com/sluicehq/sluice/internal/testenv"
	"github.com/sluicehq/sluice/pipeline"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// harness is a running endpoint on a free port.
type harness struct {
	e       *Endpoint
	url     string // ws://…/subscribe
	base    string // http://host:port
	metrics *prometheus.Registry
	topic   string
	brokers []string
}

// newTopic creates a fresh topic with the given partitions.
func newTopic(t testing.TB, partitions int) ([]string, string) {
	t.Helper()
	brokers := testenv.KafkaBrokers(t)
	topic := testenv.Name("subscribe")
	testenv.CreateTopic(t, brokers, topic, partitions)
	return brokers, topic
}

// start runs an endpoint serving topic with cfg (listen, brokers and topics
// are filled in) until the test ends.
func start(t testing.TB, brokers []string, topic string, cfg Config) *harness {
	t.Helper()
	return startWith(t, brokers, topic, cfg, nil)
}

// startWith is start with a hook that may change the endpoint before it
// runs.
func startWith(t testing.TB, brokers []string, topic string, cfg Config, hook func(*Endpoint)) *harness {
	t.Helper()
	return startEnv(t, brokers, topic, cfg, pipeline.Env{Logger: quietLog()}, hook)
}

// startEnv is startWith with env's logger and directory; cfg.Topics, when
// set, are served besides topic.
func startEnv(t testing.TB, brokers []string, topic string, cfg Config, env pipeline.Env, hook func(*Endpoint)) *harness {
	t.Helper()
	log := env.Logger
	servers := pipeline.NewServers(log)
	cfg.Listen = "127.0.0.1:0"
	cfg.Brokers = brokers
	cfg.Topics = append([]string{topic}, cfg.Topics...)
	reg := prometheus.NewRegistry()
	env.HTTP, env.Metrics = servers, reg
	e, err := New(context.Background(), cfg, env)
	if err != nil {
		t.Fatal(err)
	}
	if hook != nil {
		hook(e)
	}
	if err := servers.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		cctx, ccancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer ccancel()
		if err := e.Close(cctx); err != nil {
			t.Errorf("close: %v", err)
		}
		_ = servers.Shutdown(cctx)
	})
	addr := servers.Addr("127.0.0.1:0").String()
	ws, web := "ws://", "http://"
	if servers.TLS(cfg.Listen) != nil {
		ws, web = "wss://", "https://"
	}
	h := &harness{e: e, url: ws + addr + e.cfg.Path, base: web + addr, metrics: reg, topic: topic, brokers: brokers}
	// Wait until the hubs read their topics, so that "latest" means now.
	rctx, rcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer rcancel()
	for _, tp := range cfg.Topics {
		if err := e.hubs[tp].waitReady(rctx, 20*time.Second); err != nil {
			t.Fatalf("hub of %s not ready: %v", tp, err)
		}
	}
	return h
}

// rec is a test record as produced.
type rec struct {
	Device string `json:"device_id"`
	Seq    uint64 `json:"seq"`
	Kind   string `json:"kind"`
	Sent   int64  `json:"sent_ns,omitempty"`
	Pad    string `json:"pad,omitempty"`
}

// message makes the Kafka message of r, keyed by device, with the sink's
// identity header.
func (r rec) message() kafka.Message {
	v, _ := json.Marshal(r)
	return kafka.Message{
		Key:     []byte(r.Device),
		Value:   v,
		Headers: []kafka.Header{{Key: IDHeader, Value: fmt.Appendf(nil, "%s/%d/0", r.Device, r.Seq)}},
	}
}

// records makes n records for each of devices d0…, seq 1…n, interleaved by
// device; every fifth record of a device is an alert.
func records(devices, n int, pad int) []rec {
	var out []rec
	for i := 1; i <= n; i++ {
		for d := range devices {
			kind := "reading"
			if i%5 == 0 {
				kind = "alert"
			}
			out = append(out, rec{Device: fmt.Sprintf("d%d", d), Seq: uint64(i), Kind: kind, Pad: strings.Repeat("x", pad)})
		}
	}
	return out
}

func newWriter(brokers []string, topic string) *kafka.Writer {
	return &kafka.Writer{
		Addr:         kafka.TCP(brokers...),
		Topic:        topic,
		Balancer:     &kafka.Hash{},
		BatchTimeout: time.Millisecond,
		BatchSize:    1000,
		RequiredAcks: kafka.RequireOne,
	}
}

// produce writes recs to topic and waits until Kafka has them.
func produce(t testing.TB, brokers []string, topic string, recs []rec) {
	t.Helper()
	w := newWriter(brokers, topic)
	defer w.Close()
	msgs := make([]kafka.Message, len(recs))
	for i, r := range recs {
		msgs[i] = r.message()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// msg is a frame from the endpoint.
type msg struct {
	Type      string          `json:"type"`
	Pos       string          `json:"pos"`
	Topic     string          `json:"topic"`
	Expired   string          `json:"expired"`
	Partition int             `json:"partition"`
	Offset    int64           `json:"offset"`
	Key       string          `json:"key"`
	Device    string          `json:"device_id"`
	Seq       uint64          `json:"seq"`
	Value     json.RawMessage `json:"value"`
	TS        int64           `json:"ts"`
	Sent      int64           // value.sent_ns
	at        time.Time       // when it was read
}

// sub is a test subscriber.
type sub struct {
	t    testing.TB
	c    *websocket.Conn
	pos  string // pos of the last message read
	last msg
}

// subscribe connects with the query and reads the subscribed message.
func subscribe(t testing.TB, h *harness, query string) *sub {
	t.Helper()
	s, err := trySubscribe(h, query, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.c.CloseNow() })
	s.t = t
	return s
}

// trySubscribe is subscribe that returns its error; client, if not nil,
// dials the connection.
func trySubscribe(h *harness, query string, client *http.Client) (*sub, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, h.url+"?topic="+url.QueryEscape(h.topic)+"&"+query, &websocket.DialOptions{HTTPClient: client})
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	c.SetReadLimit(16 << 20)
	s := &sub{c: c}
	m, err := s.read(ctx)
	if err != nil {
		c.CloseNow()
		return nil, fmt.Errorf("first message: %w", err)
	}
	if m.Type != "subscribed" {
		c.CloseNow()
		return nil, fmt.Errorf("first message: got %+v, want subscribed", m)
	}
	return s, nil
}

func (s *sub) read(ctx context.Context) (msg, error) {
	_, data, err := s.c.Read(ctx)
	if err != nil {
		return msg{}, err
	}
	m, err := parseMsg(data)
	if err != nil {
		return m, err
	}
	if m.Pos != "" {
		s.pos = m.Pos
	}
	s.last = m
	return m, nil
}

// parseMsg decodes a frame with gjson, which is much cheaper than
// encoding/json under the race detector.
func parseMsg(data []byte) (msg, error) {
	if !gjson.ValidBytes(data) {
		return msg{}, fmt.Errorf("frame is not JSON: %s", data)
	}
	r := gjson.GetManyBytes(data, "type", "pos", "topic", "expired", "partition", "offset", "key", "device_id", "seq", "value", "ts", "value.sent_ns")
	return msg{
		Type: r[0].Str, Pos: r[1].Str, Topic: r[2].Str, Expired: r[3].Str,
		Partition: int(r[4].Int()), Offset: r[5].Int(), Key: r[6].Str, Device: r[7].Str, Seq: r[8].Uint(),
		Value: json.RawMessage(r[9].Raw), TS: r[10].Int(), Sent: r[11].Int(), at: time.Now(),
	}, nil
}

// records reads until it has n records, skipping control messages.
func (s *sub) records(ctx context.Context, n int) ([]msg, error) {
	var out []msg
	for len(out) < n {
		m, err := s.read(ctx)
		if err != nil {
			return out, err
		}
		if m.Type == "" {
			out = append(out, m)
		}
	}
	return out, nil
}

// quiet fails if a record arrives within d.
func (s *sub) quiet(d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for {
		m, err := s.read(ctx)
		if err != nil {
			return nil
		}
		if m.Type == "" {
			return fmt.Errorf("unexpected record %s/%d at %d:%d", m.Device, m.Seq, m.Partition, m.Offset)
		}
	}
}

// expect returns the seqs of recs that pass keep, by device, in order.
func expect(recs []rec, keep func(rec) bool) map[string][]uint64 {
	want := map[string][]uint64{}
	for _, r := range recs {
		if keep(r) {
			want[r.Device] = append(want[r.Device], r.Seq)
		}
	}
	return want
}

func count(m map[string][]uint64) int {
	n := 0
	for _, s := range m {
		n += len(s)
	}
	return n
}

// byDevice groups received records' seqs by device, in arrival order.
func byDevice(got []msg) map[string][]uint64 {
	out := map[string][]uint64{}
	for _, m := range got {
		out[m.Device] = append(out[m.Device], m.Seq)
	}
	return out
}

// sameRecords reports how got differs from want: per device, the exact
// sequence of seqs.
func sameRecords(got, want map[string][]uint64) error {
	var diffs []string
	for d, w := range want {
		if g := got[d]; !slices.Equal(g, w) {
			diffs = append(diffs, fmt.Sprintf("device %s: got %d records %s, want %d %s", d, len(g), short(g), len(w), short(w)))
		}
	}
	for d, g := range got {
		if _, ok := want[d]; !ok {
			diffs = append(diffs, fmt.Sprintf("device %s: got %d records, want none", d, len(g)))
		}
	}
	if len(diffs) > 0 {
		slices.Sort(diffs)
		return fmt.Errorf("%s", strings.Join(diffs, "; "))
	}
	return nil
}

func short(s []uint64) string {
	if len(s) <= 12 {
		return fmt.Sprint(s)
	}
	return fmt.Sprintf("%v…%v", s[:6], s[len(s)-6:])
}

// slowClient dials with a tiny receive buffer, so that a subscriber that
// reads slowly pushes back on the server at once instead of after megabytes
// of kernel buffers.
func slowClient() *http.Client {
	d := &net.Dialer{}
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetReadBuffer(4096)
			}
			return c, nil
		},
	}}
}

// metric returns the value of a counter or gauge by name and labels.
func metric(t testing.TB, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return m.Gauge.GetValue()
		}
	}
	return 0
}

// collect reads records concurrently for many subscribers.
type collector struct {
	mu  sync.Mutex
	got []msg
}

func (c *collector) add(m msg) {
	c.mu.Lock()
	c.got = append(c.got, m)
	c.mu.Unlock()
}

func (c *collector) all() []msg {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.got)
}

// subscribeMany connects n subscribers, 20 at a time, with query(i).
func subscribeMany(t testing.TB, h *harness, n int, query func(int) string) []*sub {
	t.Helper()
	subs := make([]*sub, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for w := range min(n, 20) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 20 {
				subs[i], errs[i] = trySubscribe(h, query(i), nil)
			}
		}()
	}
	wg.Wait()
	for _, s := range subs {
		if s != nil {
			t.Cleanup(func() { s.c.CloseNow() })
		}
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("subscriber %d: %v", i, err)
		}
	}
	return subs
}

// subscribers returns the endpoint's subscribers.
func (h *harness) subscribers() []*subscriber {
	h.e.mu.Lock()
	defer h.e.mu.Unlock()
	var out []*subscriber
	for s := range h.e.subs {
		out = append(out, s)
	}
	return out
}

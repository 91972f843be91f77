package subscribe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/internal/auth"
	"github.com/sluicehq/sluice/internal/lograte"
	"github.com/sluicehq/sluice/pipeline"
)

var _ pipeline.Endpoint = (*Endpoint)(nil)

// Close codes sent to subscribers besides the standard ones (1001 when
// Sluice shuts down, 1011 on an internal error).
const (
	// StatusLagging closes a subscriber whose buffer overflowed under the
	// disconnect policy. Reconnect at once with from=<last pos received>.
	StatusLagging websocket.StatusCode = 4000
	// StatusBadRequest closes a subscription whose parameters are invalid;
	// the reason says which. Retrying the same request is pointless.
	StatusBadRequest websocket.StatusCode = 4400
	// StatusForbidden closes a subscription that the client's token does
	// not grant (a topic or device outside its claims). Retrying with the
	// same token is pointless.
	StatusForbidden websocket.StatusCode = 4403
	// StatusUnknownTopic closes a subscription to a topic the endpoint does
	// not serve. Retrying the same request is pointless.
	StatusUnknownTopic websocket.StatusCode = 4404
	// StatusUnavailable closes a subscription that cannot be served now
	// (Kafka unreachable, topic not ready). Retry with backoff.
	StatusUnavailable websocket.StatusCode = 4503
)

// kafkaTimeout bounds one request to Kafka made on behalf of a subscriber
// or at start.
const kafkaTimeout = 10 * time.Second

// Endpoint serves subscriptions to Kafka topics over WebSocket.
type Endpoint struct {
	cfg    Config
	log    *slog.Logger
	lines  *lograte.Limiter // lines a client can cause
	m      *metrics
	client *kafka.Client
	hubs   map[string]*hub
	guard  *auth.Guard // nil without auth
	// refresh is how often hubs look for new partitions (partitionRefresh;
	// tests shorten it).
	refresh time.Duration

	// ctx ends when the endpoint stops; every subscriber and hub runs under it.
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	running bool
	subs    map[*subscriber]struct{}
	wg      sync.WaitGroup // subscriber connections
	hubWG   sync.WaitGroup
}

// New checks that Kafka answers and mounts the subscription path (and the
// browser view, if configured) on env.HTTP. Nothing is read before Run.
func New(ctx context.Context, cfg Config, env pipeline.Env) (*Endpoint, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if env.HTTP == nil {
		return nil, errors.New("subscriptions: no HTTP server set in the environment")
	}
	log := env.Logger
	if log == nil {
		log = slog.Default()
	}
	// Files first: a missing certificate or key is reported before Kafka
	// is asked anything.
	var guard *auth.Guard
	if cfg.Auth != nil {
		g, err := auth.NewGuard(env.Dir, *cfg.Auth, log, auth.NewMetrics(env.Metrics, "sluice_subscribe_auth_failures_total"))
		if err != nil {
			return nil, err
		}
		guard = g
	}
	if err := auth.Listen(env.HTTP, env.Dir, cfg.Listen, "the subscriptions endpoint ("+cfg.Path+")", cfg.TLS, log); err != nil {
		return nil, err
	}
	client := &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Timeout: kafkaTimeout}
	cctx, cancel := context.WithTimeout(ctx, kafkaTimeout)
	md, err := client.Metadata(cctx, &kafka.MetadataRequest{Topics: cfg.Topics})
	cancel()
	if err != nil {
		return nil, fmt.Errorf("subscriptions: kafka at %s: %w", strings.Join(cfg.Brokers, ","), err)
	}
	for _, t := range md.Topics {
		if t.Error != nil {
			log.Warn("subscriptions: topic not available yet; subscribers wait for it", "topic", t.Name, "err", t.Error)
		}
	}
	ectx, ecancel := context.WithCancel(context.WithoutCancel(ctx))
	e := &Endpoint{
		cfg:     cfg,
		log:     log,
		lines:   lograte.Default(log),
		m:       newMetrics(env.Metrics),
		client:  client,
		hubs:    map[string]*hub{},
		guard:   guard,
		refresh: partitionRefresh,
		ctx:     ectx,
		cancel:  ecancel,
		subs:    map[*subscriber]struct{}{},
	}
	for _, t := range cfg.Topics {
		e.hubs[t] = newHub(e, t)
		// Export every series from the start, at zero.
		e.m.subscribers.WithLabelValues(t)
		e.m.sent.WithLabelValues(t)
		e.m.lagging.WithLabelValues(t, cfg.Slow)
		e.m.catchup.WithLabelValues(t)
	}
	if err := env.HTTP.Handle(cfg.Listen, cfg.Path, e); err != nil {
		ecancel()
		return nil, fmt.Errorf("subscriptions: %w", err)
	}
	if cfg.UI != "" {
		if err := e.mountUI(env.HTTP); err != nil {
			ecancel()
			return nil, fmt.Errorf("subscriptions: %w", err)
		}
	}
	return e, nil
}

// Run reads the topics and serves subscribers until ctx is done, then
// closes every subscriber with status 1001 (going away).
func (e *Endpoint) Run(ctx context.Context) error {
	e.mu.Lock()
	if e.ctx.Err() != nil {
		e.mu.Unlock()
		return errors.New("subscriptions: endpoint is closed")
	}
	e.running = true
	for _, h := range e.hubs {
		e.hubWG.Add(1)
		go func() {
			defer e.hubWG.Done()
			h.run(e.ctx)
		}()
	}
	e.mu.Unlock()
	select {
	case <-ctx.Done():
	case <-e.ctx.Done():
	}
	e.stop()
	return nil
}

// stop ends every subscriber (which then closes its connection as going
// away) and every hub.
func (e *Endpoint) stop() {
	e.mu.Lock()
	e.running = false
	e.mu.Unlock()
	e.cancel()
}

// Close stops the endpoint if Run has not, and waits until every
// subscriber connection and reader is gone, or ctx is done.
func (e *Endpoint) Close(ctx context.Context) error {
	e.stop()
	done := make(chan struct{})
	go func() {
		e.wg.Wait()
		e.hubWG.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("subscriptions: subscribers still open after shutdown: %w", ctx.Err())
	}
}

// ServeHTTP upgrades a subscriber's request and streams its topic until the
// connection ends. Invalid parameters are reported in the close frame
// (status 4400 or 4404 with the reason), which browsers can read.
func (e *Endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		http.Error(w, "this is a WebSocket endpoint: connect with "+wsScheme(r)+"://"+r.Host+e.cfg.Path+"?topic=<topic>&from=latest (see docs/subscribe.md)", http.StatusBadRequest)
		return
	}
	e.mu.Lock()
	if !e.running || e.ctx.Err() != nil {
		e.mu.Unlock()
		http.Error(w, "sluice subscriptions are not running", http.StatusServiceUnavailable)
		return
	}
	e.wg.Add(1)
	e.mu.Unlock()
	defer e.wg.Done()

	// Authenticated before the upgrade: a refused client gets HTTP 401 and
	// never a WebSocket. What the token grants is checked after it, so
	// that a browser can read the reason in the close frame (4403).
	var id *auth.Identity
	if e.guard != nil {
		if id = e.guard.Check(w, r); id == nil {
			return
		}
	}
	hj := &hijacker{ResponseWriter: w, sendBuffer: e.cfg.SendBuffer, timeout: e.cfg.WriteTimeout}
	ws, err := websocket.Accept(hj, r, &websocket.AcceptOptions{
		OriginPatterns: e.cfg.OriginPatterns,
		// Selected when offered, so that a browser may carry its token in
		// a second subprotocol (docs/security.md).
		Subprotocols: []string{auth.Subprotocol},
	})
	if err != nil {
		e.lines.Info("subscriptions: websocket handshake failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	defer ws.CloseNow()
	q := r.URL.Query()
	topic := q.Get("topic")
	h, ok := e.hubs[topic]
	if !ok {
		_ = ws.Close(StatusUnknownTopic, reason(fmt.Sprintf("unknown topic %q; served: %s", topic, strings.Join(e.cfg.Topics, ","))))
		return
	}
	from, err := parseFrom(q.Get("from"))
	if err != nil {
		_ = ws.Close(StatusBadRequest, reason(err.Error()))
		return
	}
	f, err := parseFilter(q)
	if err != nil {
		_ = ws.Close(StatusBadRequest, reason(err.Error()))
		return
	}
	if id != nil {
		if msg := e.authorize(id, topic, &f); msg != "" {
			e.guard.Refused(r, id, msg)
			_ = ws.Close(StatusForbidden, reason(msg))
			return
		}
	}
	if err := h.waitReady(e.ctx, kafkaTimeout); err != nil {
		_ = ws.Close(StatusUnavailable, reason("topic "+topic+" is not available yet; retry later"))
		return
	}
	s := newSubscriber(e, h, ws, f, r.RemoteAddr)
	s.cork = hj.conn
	e.mu.Lock()
	e.subs[s] = struct{}{}
	e.mu.Unlock()
	gauge := e.m.subscribers.WithLabelValues(topic)
	gauge.Inc()
	defer func() {
		gauge.Dec()
		e.mu.Lock()
		delete(e.subs, s)
		e.mu.Unlock()
	}()
	s.serve(from)
}

// authorize checks that id's token grants topic and the devices the
// filter asks for, and limits a filter that asks for no device to the
// devices granted. It returns why not, or "".
func (e *Endpoint) authorize(id *auth.Identity, topic string, f *filter) string {
	if g := e.guard.Topics(id); !g.Allows(topic) {
		return fmt.Sprintf("topic %q is not granted by the token (claim %s)", topic, e.cfg.Auth.TopicClaim)
	}
	g := e.guard.Devices(id)
	if g.All {
		return ""
	}
	if len(g.Names) == 0 {
		return fmt.Sprintf("the token grants no device (claim %s)", e.cfg.Auth.DeviceClaim)
	}
	if f.devices == nil {
		f.devices = map[string]struct{}{}
		for _, d := range g.Names {
			f.devices[d] = struct{}{}
		}
		return ""
	}
	for d := range f.devices {
		if !g.Allows(d) {
			return fmt.Sprintf("device_id %q is not granted by the token (claim %s)", d, e.cfg.Auth.DeviceClaim)
		}
	}
	return ""
}

// reason trims a close reason to the 123 bytes a close frame can carry.
func reason(s string) string {
	if len(s) <= 123 {
		return s
	}
	s = s[:120]
	for len(s) > 0 && s[len(s)-1]&0xC0 == 0x80 { // do not cut a UTF-8 sequence
		s = s[:len(s)-1]
	}
	if len(s) > 0 && s[len(s)-1] >= 0xC0 {
		s = s[:len(s)-1]
	}
	return s + "..."
}

// partitionIDs returns the partition ids of topic.
func (e *Endpoint) partitionIDs(ctx context.Context, topic string) ([]int, error) {
	ctx, cancel := context.WithTimeout(ctx, kafkaTimeout)
	defer cancel()
	md, err := e.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, fmt.Errorf("kafka: metadata of %s: %w", topic, err)
	}
	if len(md.Topics) != 1 {
		return nil, fmt.Errorf("kafka: metadata of %s: no such topic", topic)
	}
	if md.Topics[0].Error != nil {
		return nil, fmt.Errorf("kafka: metadata of %s: %w", topic, md.Topics[0].Error)
	}
	var ids []int
	for _, p := range md.Topics[0].Partitions {
		if p.Error != nil || p.Leader.ID < 0 {
			return nil, fmt.Errorf("kafka: partition %d of %s has no leader", p.ID, topic)
		}
		ids = append(ids, p.ID)
	}
	slices.Sort(ids)
	return ids, nil
}

// offsets are a partition's oldest offset and high watermark (the offset
// the next record will get), and for a time query the offset of the first
// record at or after the time (or last when there is none).
type offsets struct{ first, last, at int64 }

// listOffsets returns the offsets of the given partitions of topic; with a
// non-zero at, also the first offset at or after it.
func (e *Endpoint) listOffsets(ctx context.Context, topic string, parts []int, at ...time.Time) (map[int]offsets, error) {
	ctx, cancel := context.WithTimeout(ctx, kafkaTimeout)
	defer cancel()
	var reqs []kafka.OffsetRequest
	for _, p := range parts {
		reqs = append(reqs, kafka.FirstOffsetOf(p), kafka.LastOffsetOf(p))
	}
	res, err := e.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, fmt.Errorf("kafka: offsets of %s: %w", topic, err)
	}
	out := map[int]offsets{}
	for _, po := range res.Topics[topic] {
		if po.Error != nil {
			return nil, fmt.Errorf("kafka: offsets of %s partition %d: %w", topic, po.Partition, po.Error)
		}
		out[po.Partition] = offsets{first: po.FirstOffset, last: po.LastOffset, at: po.LastOffset}
	}
	for _, p := range parts {
		if _, ok := out[p]; !ok {
			return nil, fmt.Errorf("kafka: offsets of %s: partition %d missing from the answer", topic, p)
		}
	}
	if len(at) == 0 || at[0].IsZero() {
		return out, nil
	}
	// A time query is answered in a request of its own: Kafka takes one
	// timestamp per partition and request.
	reqs = reqs[:0]
	for _, p := range parts {
		reqs = append(reqs, kafka.TimeOffsetOf(p, at[0]))
	}
	res, err = e.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, fmt.Errorf("kafka: offsets of %s at %s: %w", topic, at[0].Format(time.RFC3339), err)
	}
	for _, po := range res.Topics[topic] {
		if po.Error != nil {
			return nil, fmt.Errorf("kafka: offsets of %s partition %d at %s: %w", topic, po.Partition, at[0].Format(time.RFC3339), po.Error)
		}
		o := out[po.Partition]
		for off := range po.Offsets {
			if off >= 0 {
				o.at = off
			}
		}
		out[po.Partition] = o
	}
	return out, nil
}

// newReader returns a reader of one partition from offset, buffering at
// most queue messages ahead of its caller.
func (e *Endpoint) newReader(topic string, partition int, offset int64, queue int) *kafka.Reader {
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:         e.cfg.Brokers,
		Topic:           topic,
		Partition:       partition,
		QueueCapacity:   queue,
		MinBytes:        1,
		MaxBytes:        1 << 20,
		MaxWait:         500 * time.Millisecond,
		ReadLagInterval: -1,
		ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) {
			e.log.Debug("kafka reader: "+fmt.Sprintf(msg, args...), "topic", topic, "partition", partition)
		}),
	})
	_ = r.SetOffset(offset)
	return r
}

// wsScheme is the WebSocket scheme of the connection r came on.
func wsScheme(r *http.Request) string {
	if r.TLS != nil {
		return "wss"
	}
	return "ws"
}

// Package kafka is the Kafka sink: it writes records as messages to a topic
// (or to the topic a transform named in the record's Dest), acknowledged by
// all in-sync replicas before a batch counts as durable.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/internal/kafkaname"
	"github.com/sluicehq/sluice/pipeline"
)

// IDHeader is the message header that carries a record's identity,
// "<device>/<seq>/<part>"; see package kafkaname.
const IDHeader = kafkaname.IDHeader

// Errors that callers can test with errors.Is.
var (
	// ErrUnreachable: no broker answered.
	ErrUnreachable = errors.New("kafka: brokers unreachable")
	// ErrUnknownTopic: the topic does not exist.
	ErrUnknownTopic = errors.New("kafka: unknown topic")
	// ErrInvalidTopic: the name is not a legal topic name.
	ErrInvalidTopic = errors.New("kafka: invalid topic name")
	// ErrTooLarge: a record is larger than max_message_bytes or the
	// broker's limit.
	ErrTooLarge = errors.New("kafka: message too large")
)

const (
	// checkTimeout bounds the broker and topic checks of New.
	checkTimeout = 5 * time.Second
	dialTimeout  = 5 * time.Second
	// metadataTTL is how often the writer refreshes its cached cluster
	// metadata (kafka-go refreshes at a random point within it).
	metadataTTL = 5 * time.Second
	// missingTTL is how long a Dest topic found missing is remembered before
	// it is looked up again.
	missingTTL = time.Second
	// flushTimeout is kafka-go's per-partition batch timeout. Write hands
	// kafka-go a whole batch at once and waits for it, so kafka-go must not
	// linger again: the runner already did (BatchLimits). See Write.
	flushTimeout = time.Microsecond
)

var compressions = map[string]kafkago.Compression{
	"":       0,
	"none":   0,
	"gzip":   kafkago.Gzip,
	"snappy": kafkago.Snappy,
	"lz4":    kafkago.Lz4,
	"zstd":   kafkago.Zstd,
}

// Sink writes batches to Kafka.
type Sink struct {
	cfg     Config
	addr    string // the brokers, for messages
	log     *slog.Logger
	headers bool
	m       *metrics

	transport *kafkago.Transport
	client    *kafkago.Client
	w         *kafkago.Writer // Write, and the rare paths of Start
	aw        *kafkago.Writer // Start: asynchronous, reports through completed

	// Write runs on one goroutine at a time; these are reused between calls.
	msgs []kafkago.Message
	idx  []int // msgs[i] is record idx[i] of the batch

	mu      sync.Mutex
	missing map[string]time.Time // Dest topics found missing, and when
}

var (
	_ pipeline.Sink      = (*Sink)(nil)
	_ pipeline.Limiter   = (*Sink)(nil)
	_ pipeline.Pipeliner = (*Sink)(nil)
)

// New checks that the brokers answer and that the topic exists (creating it
// when create_topic is set), and returns a sink ready to write.
func New(ctx context.Context, cfg Config, env pipeline.Env) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Sink{
		cfg:     cfg,
		addr:    strings.Join(cfg.Brokers, ","),
		log:     log,
		headers: *cfg.Headers,
		missing: map[string]time.Time{},
	}
	s.transport = &kafkago.Transport{
		DialTimeout: dialTimeout,
		MetadataTTL: metadataTTL,
		ClientID:    "sluice",
	}
	s.client = &kafkago.Client{Addr: kafkago.TCP(cfg.Brokers...), Transport: s.transport, Timeout: cfg.WriteTimeout}
	if err := s.checkTopic(ctx); err != nil {
		s.transport.CloseIdleConnections()
		return nil, err
	}
	s.w = s.newWriter(false)
	if cfg.MaxInFlight > 1 {
		s.aw = s.newWriter(true)
	}
	if env.Metrics != nil {
		m, err := newMetrics(env.Metrics)
		if err != nil {
			s.transport.CloseIdleConnections()
			return nil, err
		}
		s.m = m
	}
	log.Info("kafka sink ready", "brokers", s.addr, "topic", cfg.Topic, "compression", cfg.Compression)
	return s, nil
}

// newWriter returns a kafka-go writer with the sink's settings; an async
// one reports every message's outcome through completed (see Start).
func (s *Sink) newWriter(async bool) *kafkago.Writer {
	cfg, log := s.cfg, s.log
	w := &kafkago.Writer{
		Addr:     kafkago.TCP(cfg.Brokers...),
		Balancer: &balancer{},
		// kafka-go retries temporary errors (e.g. a partition whose new
		// leader is not ready yet) inside WriteMessages: about 1.5s of
		// backoff before the error reaches the runner, which retries too.
		MaxAttempts:  5,
		BatchSize:    cfg.BatchSize,
		BatchBytes:   int64(cfg.MaxMessageBytes),
		BatchTimeout: flushTimeout,
		ReadTimeout:  cfg.WriteTimeout,
		WriteTimeout: cfg.WriteTimeout,
		RequiredAcks: kafkago.RequireAll,
		Compression:  compressions[cfg.Compression],
		Transport:    s.transport,
		// Writer.Topic stays empty: every message names its topic, so that
		// records with a Dest and records without can share a batch.
		AllowAutoTopicCreation: false,
		WriteBackoffMin:        50 * time.Millisecond,
		WriteBackoffMax:        time.Second,
		ErrorLogger: kafkago.LoggerFunc(func(msg string, args ...any) {
			if log.Enabled(context.Background(), slog.LevelDebug) {
				log.Debug("kafka-go: " + fmt.Sprintf(msg, args...))
			}
		}),
	}
	if async {
		w.Async = true
		w.Completion = completed
	}
	return w
}

// BatchLimits tells the runner how to batch records for Write.
func (s *Sink) BatchLimits() (int, time.Duration) { return s.cfg.BatchSize, s.cfg.Linger }

// checkTopic asks the brokers for the topic's metadata, creating the topic
// when it is missing and create_topic is set.
func (s *Sink) checkTopic(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	topic := s.cfg.Topic
	md, err := s.client.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return &wrapError{sentinel: ErrUnreachable, cause: err,
			msg: fmt.Sprintf("kafka: brokers %s unreachable: %v", s.addr, describe(unwrapClient(err)))}
	}
	terr := topicError(md, topic)
	switch {
	case terr == nil:
		return nil
	case !errors.Is(terr, kafkago.UnknownTopicOrPartition):
		return fmt.Errorf("kafka: topic %q on %s: %w", topic, s.addr, terr)
	case !s.cfg.CreateTopic:
		return &wrapError{sentinel: ErrUnknownTopic, cause: terr,
			msg: fmt.Sprintf("kafka: topic %q does not exist on %s (create it with scripts/services.sh topics %s, or set create_topic: true)", topic, s.addr, topic)}
	}
	res, err := s.client.CreateTopics(ctx, &kafkago.CreateTopicsRequest{Topics: []kafkago.TopicConfig{{
		Topic: topic, NumPartitions: s.cfg.Partitions, ReplicationFactor: s.cfg.ReplicationFactor,
	}}})
	if err == nil {
		err = res.Errors[topic]
	}
	if err != nil && !errors.Is(err, kafkago.TopicAlreadyExists) {
		return fmt.Errorf("kafka: create topic %q on %s: %w", topic, s.addr, err)
	}
	if err == nil {
		s.log.Info("created topic", "topic", topic, "partitions", s.cfg.Partitions, "replication_factor", s.cfg.ReplicationFactor)
	}
	// Wait until the topic is in the writer's metadata with a leader for
	// every partition.
	for {
		md, err := s.client.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{topic}})
		if err == nil && topicError(md, topic) == nil && hasLeaders(md, topic) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kafka: topic %q on %s: created, but its partitions have no leader yet: %w", topic, s.addr, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Write sends every record of b and waits until all in-sync replicas have
// them. Records that can never be written (too large, invalid or missing
// Dest topic) are returned as a pipeline.RecordErrors; any other failure is
// returned as a plain error and the runner retries the batch.
//
// kafka-go's Writer groups the messages of one WriteMessages call by
// partition and sends one produce request per partition, all at once. Its
// per-partition BatchTimeout is set to a microsecond: the runner has already
// waited for the batch to fill (linger), and a second linger inside kafka-go
// would only delay the acknowledgement of every batch.
func (s *Sink) Write(ctx context.Context, b pipeline.Batch) error {
	if len(b) == 0 {
		return nil
	}
	start := time.Now()
	rejected := pipeline.RecordErrors{}
	if err := s.checkDests(ctx, b, rejected); err != nil {
		s.m.failed()
		return err
	}
	msgs, idx, bytes := s.build(b, rejected, s.msgs[:0], s.idx[:0])
	s.msgs, s.idx = msgs, idx
	defer s.release()
	var err error
	if len(msgs) > 0 {
		err = s.sortOut(ctx, msgs, idx, s.w.WriteMessages(ctx, msgs...), rejected)
	}
	return s.finish(b, start, bytes, rejected, err)
}

// MaxInFlight is how many batches the runner may have Start write at once.
func (s *Sink) MaxInFlight() int { return s.cfg.MaxInFlight }

// Start hands b to the asynchronous writer and returns a function that
// waits for its outcome; see pipeline.Pipeliner. kafka-go's writer keeps
// one queue per partition, written one batch at a time, so batches started
// in order reach each partition in order.
func (s *Sink) Start(ctx context.Context, b pipeline.Batch) (wait func() error) {
	if s.aw == nil || len(b) == 0 {
		return func() error { return s.Write(ctx, b) }
	}
	start := time.Now()
	rejected := pipeline.RecordErrors{}
	if err := s.checkDests(ctx, b, rejected); err != nil {
		s.m.failed()
		return func() error { return err }
	}
	msgs, idx, bytes := s.build(b, rejected, make([]kafkago.Message, 0, len(b)), make([]int, 0, len(b)))
	if len(msgs) == 0 {
		return func() error { return s.finish(b, start, bytes, rejected, nil) }
	}
	p := &pending{errs: make([]error, len(msgs)), tags: make([]tag, len(msgs)), done: make(chan struct{})}
	p.left.Store(int64(len(msgs)))
	for j := range msgs {
		p.tags[j] = tag{p: p, j: j}
		msgs[j].WriterData = &p.tags[j]
	}
	if err := s.aw.WriteMessages(ctx, msgs...); err != nil {
		// Refused before anything was queued (a closed writer, a message
		// too large, no metadata for a topic).
		return func() error { return s.finish(b, start, bytes, rejected, s.sortOut(ctx, msgs, idx, err, rejected)) }
	}
	return func() error {
		select {
		case <-p.done:
		case <-ctx.Done():
			return s.finish(b, start, bytes, rejected, s.writeError(msgs, ctx.Err()))
		}
		var werr error
		if slices.ContainsFunc(p.errs, func(e error) bool { return e != nil }) {
			werr = kafkago.WriteErrors(p.errs)
		}
		return s.finish(b, start, bytes, rejected, s.sortOut(ctx, msgs, idx, werr, rejected))
	}
}

// pending is a batch handed to the asynchronous writer: the outcome of
// each of its messages, and how many are still unknown.
type pending struct {
	errs []error
	tags []tag
	left atomic.Int64
	done chan struct{} // closed when left reaches 0
}

// tag is a message's WriterData: its batch and its index there.
type tag struct {
	p *pending
	j int
}

// completed is the asynchronous writer's Completion: kafka-go calls it
// with each partition batch it has written or given up on.
func completed(msgs []kafkago.Message, err error) {
	for i := range msgs {
		t, ok := msgs[i].WriterData.(*tag)
		if !ok {
			continue
		}
		t.p.errs[t.j] = err
		if t.p.left.Add(-1) == 0 {
			close(t.p.done)
		}
	}
}

// build appends to msgs the message of every record of b not in rejected,
// and its index in b to idx; a record too large is added to rejected. It
// returns the bytes of the values too.
func (s *Sink) build(b pipeline.Batch, rejected pipeline.RecordErrors, msgs []kafkago.Message, idx []int) ([]kafkago.Message, []int, int) {
	var bytes int
	for i := range b {
		if _, ok := rejected[i]; ok {
			continue
		}
		m := s.message(&b[i])
		if n := messageSize(&m); n > s.cfg.MaxMessageBytes {
			rejected[i] = fmt.Errorf("%w: %d bytes, max_message_bytes is %d", ErrTooLarge, n, s.cfg.MaxMessageBytes)
			continue
		}
		bytes += len(m.Value)
		msgs = append(msgs, m)
		idx = append(idx, i)
	}
	return msgs, idx, bytes
}

// sortOut sorts out werr, the outcome of writing msgs (records idx of the
// batch): permanent failures go to rejected, messages the broker refused
// as too large are isolated and written again, and any other failure is
// returned.
func (s *Sink) sortOut(ctx context.Context, msgs []kafkago.Message, idx []int, werr error, rejected pipeline.RecordErrors) error {
	retry, err := s.outcome(ctx, msgs, idx, werr, rejected)
	if err != nil || len(retry) == 0 {
		return err
	}
	// Batches that the broker refused as too large: find the offending
	// messages by halves.
	return s.isolate(ctx, msgs, idx, retry, rejected)
}

// finish counts a write that ended with err and returns what Write returns.
func (s *Sink) finish(b pipeline.Batch, start time.Time, bytes int, rejected pipeline.RecordErrors, err error) error {
	if err != nil {
		s.m.failed()
		return err
	}
	s.m.written(len(b)-len(rejected), len(rejected), bytes, time.Since(start))
	if len(rejected) > 0 {
		for i, err := range rejected {
			// One example per batch is enough for the log.
			s.log.Warn("records rejected", "count", len(rejected), "example_index", i, "topic", s.topicOf(&b[i]), "err", err)
			break
		}
		return rejected
	}
	return nil
}

// release drops the references to the batch kept in the reused slices.
func (s *Sink) release() {
	clear(s.msgs)
	s.msgs = s.msgs[:0]
}

func (s *Sink) topicOf(r *pipeline.Record) string {
	if r.Dest != "" {
		return r.Dest
	}
	return s.cfg.Topic
}

// message builds the Kafka message for r.
func (s *Sink) message(r *pipeline.Record) kafkago.Message {
	m := kafkago.Message{Topic: s.topicOf(r), Value: r.Value}
	if len(r.Key) > 0 {
		m.Key = r.Key
	} else {
		m.Key = s.cfg.key.render(r.Value)
	}
	n := 0
	if s.headers {
		n = len(r.Headers)
	}
	if !r.ID.IsZero() {
		n++
	}
	if n == 0 {
		return m
	}
	m.Headers = make([]kafkago.Header, 0, n)
	if s.headers {
		for _, h := range r.Headers {
			if h.Key == IDHeader && !r.ID.IsZero() {
				continue // replaced by the record's own identity below
			}
			m.Headers = append(m.Headers, kafkago.Header{Key: h.Key, Value: h.Value})
		}
	}
	if !r.ID.IsZero() {
		m.Headers = append(m.Headers, kafkago.Header{Key: IDHeader, Value: FormatID(r.ID)})
	}
	return m
}

// FormatID renders id as the value of the sluice-id header:
// "<device>/<seq>/<part>".
func FormatID(id pipeline.ID) []byte {
	v := make([]byte, 0, len(id.Device)+24)
	v = append(v, id.Device...)
	v = append(v, '/')
	v = strconv.AppendUint(v, id.Seq, 10)
	v = append(v, '/')
	v = strconv.AppendUint(v, uint64(id.Part), 10)
	return v
}

// messageSize is an upper bound of the size kafka-go counts for m against
// Writer.BatchBytes (a record's key, value, headers and framing).
func messageSize(m *kafkago.Message) int {
	n := 32 + len(m.Key) + len(m.Value)
	for _, h := range m.Headers {
		n += 10 + len(h.Key) + len(h.Value)
	}
	return n
}

// write sends msgs (records idx of the batch) and sorts out the result:
// permanent failures go to rejected, batches refused as too large are
// returned for isolate, and any other failure is the returned error.
func (s *Sink) write(ctx context.Context, msgs []kafkago.Message, idx []int, rejected pipeline.RecordErrors) (tooLarge []int, err error) {
	return s.outcome(ctx, msgs, idx, s.w.WriteMessages(ctx, msgs...), rejected)
}

// outcome sorts out err, what writing msgs returned; see write.
func (s *Sink) outcome(ctx context.Context, msgs []kafkago.Message, idx []int, err error, rejected pipeline.RecordErrors) (tooLarge []int, _ error) {
	if err == nil {
		return nil, nil
	}
	var werrs kafkago.WriteErrors
	if !errors.As(err, &werrs) || len(werrs) != len(msgs) {
		var big kafkago.MessageTooLargeError
		if errors.As(err, &big) {
			// Not expected (Write checks sizes first), but it would fail
			// every retry: reject the message it names.
			for j := range msgs {
				if sameMessage(&msgs[j], &big.Message) {
					rejected[idx[j]] = fmt.Errorf("%w: %v", ErrTooLarge, err)
					rest := append(slices.Clone(msgs[:j]), msgs[j+1:]...)
					restIdx := append(slices.Clone(idx[:j]), idx[j+1:]...)
					if len(rest) == 0 {
						return nil, nil
					}
					return s.write(ctx, rest, restIdx, rejected)
				}
			}
		}
		return nil, s.writeError(msgs, err)
	}
	var temporary error
	failed := 0
	var unknown []int // messages whose Dest topic was reported unknown
	for j, e := range werrs {
		if e == nil {
			continue
		}
		failed++
		switch {
		case errors.Is(e, kafkago.MessageSizeTooLarge), errors.Is(e, kafkago.RecordListTooLarge):
			tooLarge = append(tooLarge, j)
		case errors.Is(e, kafkago.InvalidTopic):
			rejected[idx[j]] = fmt.Errorf("%w %q: %v", ErrInvalidTopic, msgs[j].Topic, e)
		case errors.Is(e, kafkago.InvalidRecord):
			rejected[idx[j]] = fmt.Errorf("kafka: broker rejected the record: %w", e)
		case errors.Is(e, kafkago.UnknownTopicOrPartition) && msgs[j].Topic != s.cfg.Topic:
			unknown = append(unknown, j)
		default:
			if temporary == nil {
				temporary = fmt.Errorf("kafka: write to %s on %s: %d of %d messages failed: %w", msgs[j].Topic, s.addr, failed, len(msgs), e)
			}
		}
	}
	if len(unknown) > 0 {
		// The topic was deleted after the writer's metadata was cached, or
		// the cache is stale: ask the brokers.
		topics := map[string]bool{}
		for _, j := range unknown {
			topics[msgs[j].Topic] = true
		}
		missing, err := s.lookup(ctx, keys(topics))
		if err != nil {
			return nil, err
		}
		for _, j := range unknown {
			if e := missing[msgs[j].Topic]; e != nil {
				rejected[idx[j]] = e
			} else if temporary == nil {
				temporary = fmt.Errorf("kafka: write to %s on %s: %w", msgs[j].Topic, s.addr, kafkago.UnknownTopicOrPartition)
			}
		}
	}
	if temporary != nil {
		return nil, temporary
	}
	// Translate tooLarge to batch indexes for isolate.
	for k, j := range tooLarge {
		tooLarge[k] = idx[j]
	}
	return tooLarge, nil
}

func sameMessage(a, b *kafkago.Message) bool {
	return a.Topic == b.Topic && len(a.Value) == len(b.Value) && len(a.Key) == len(b.Key) &&
		(len(a.Value) == 0 || &a.Value[0] == &b.Value[0])
}

// isolate rewrites the records of a batch that the broker refused as too
// large (the refusal covers a whole per-partition batch, not one message),
// halving the groups until each refused record is alone.
func (s *Sink) isolate(ctx context.Context, all []kafkago.Message, allIdx []int, recs []int, rejected pipeline.RecordErrors) error {
	// This path is rare (a topic whose max.message.bytes is below
	// max_message_bytes), so it favours simplicity over speed.
	msgByRec := make(map[int]kafkago.Message, len(recs))
	for j, i := range allIdx {
		msgByRec[i] = all[j]
	}
	var try func(group []int) error
	try = func(group []int) error {
		msgs := make([]kafkago.Message, len(group))
		for k, i := range group {
			msgs[k] = msgByRec[i]
		}
		sub := pipeline.RecordErrors{}
		tooLarge, err := s.write(ctx, msgs, group, sub)
		if err != nil {
			return err
		}
		for i, e := range sub {
			rejected[i] = e
		}
		if len(tooLarge) == 0 {
			return nil
		}
		if len(tooLarge) == 1 && len(group) == 1 {
			rejected[group[0]] = fmt.Errorf("%w: the broker refused %d bytes (see the topic's max.message.bytes)",
				ErrTooLarge, messageSize(&msgs[0]))
			return nil
		}
		if len(tooLarge) == 1 {
			return try(tooLarge)
		}
		half := len(tooLarge) / 2
		if err := try(tooLarge[:half]); err != nil {
			return err
		}
		return try(tooLarge[half:])
	}
	return try(recs)
}

// writeError wraps a failure of a whole WriteMessages call.
func (s *Sink) writeError(msgs []kafkago.Message, err error) error {
	return fmt.Errorf("kafka: write to %s on %s: %w", topicsOf(msgs), s.addr, err)
}

// topicsOf names the topics of msgs for an error message.
func topicsOf(msgs []kafkago.Message) string {
	seen := map[string]bool{}
	var names []string
	for i := range msgs {
		if t := msgs[i].Topic; !seen[t] {
			seen[t] = true
			names = append(names, t)
		}
		if len(names) > 3 {
			break
		}
	}
	sort.Strings(names)
	return strings.Join(names, ",")
}

// checkDests finds the records of b whose Dest topic cannot be written to
// (an invalid name, or a topic that does not exist) and adds them to
// rejected. An error means the brokers could not be asked.
func (s *Sink) checkDests(ctx context.Context, b pipeline.Batch, rejected pipeline.RecordErrors) error {
	var dests map[string]error
	for i := range b {
		d := b[i].Dest
		if d == "" || d == s.cfg.Topic {
			continue
		}
		if dests == nil {
			dests = map[string]error{}
		}
		if _, ok := dests[d]; !ok {
			if err := kafkaname.CheckTopic(d); err != nil {
				dests[d] = fmt.Errorf("%w: %v", ErrInvalidTopic, err)
			} else {
				dests[d] = nil
			}
		}
	}
	if len(dests) == 0 {
		return nil
	}
	// Topics in the writer's metadata cache are fine; the rest need a look.
	var unknown []string
	now := time.Now()
	s.mu.Lock()
	for d, err := range dests {
		if err != nil {
			continue
		}
		if at, ok := s.missing[d]; ok && now.Sub(at) < missingTTL {
			dests[d] = s.missingError(d)
			continue
		}
		unknown = append(unknown, d)
	}
	s.mu.Unlock()
	if len(unknown) > 0 {
		cached, err := s.cached(ctx, unknown)
		if err != nil {
			return fmt.Errorf("kafka: metadata from %s: %w", s.addr, err)
		}
		var look []string
		for _, d := range unknown {
			if !cached[d] {
				look = append(look, d)
			}
		}
		if len(look) > 0 {
			missing, err := s.lookup(ctx, look)
			if err != nil {
				return err
			}
			var wait []string
			for _, d := range look {
				if e := missing[d]; e != nil {
					dests[d] = e
				} else {
					wait = append(wait, d)
				}
			}
			if len(wait) > 0 {
				if err := s.awaitCache(ctx, wait); err != nil {
					return err
				}
			}
		}
	}
	for i := range b {
		if d := b[i].Dest; d != "" {
			if err := dests[d]; err != nil {
				rejected[i] = err
			}
		}
	}
	return nil
}

func (s *Sink) missingError(topic string) error {
	return fmt.Errorf("%w: topic %q does not exist on %s", ErrUnknownTopic, topic, s.addr)
}

// cached reports which topics the writer's metadata cache knows.
func (s *Sink) cached(ctx context.Context, topics []string) (map[string]bool, error) {
	md, err := s.client.Metadata(ctx, &kafkago.MetadataRequest{Topics: topics})
	if err != nil {
		return nil, err
	}
	known := make(map[string]bool, len(topics))
	for _, t := range md.Topics {
		known[t.Name] = t.Error == nil
	}
	return known, nil
}

// lookup asks the brokers (not the cache) about topics and returns an
// error for each that is missing or invalid; it remembers missing ones for
// missingTTL.
func (s *Sink) lookup(ctx context.Context, topics []string) (map[string]error, error) {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	// kafka-go's Transport answers metadata requests from a cache refreshed
	// every MetadataTTL; a new Transport that asks only for these topics
	// makes exactly one fresh request.
	tr := &kafkago.Transport{DialTimeout: dialTimeout, MetadataTopics: topics, ClientID: "sluice"}
	defer tr.CloseIdleConnections()
	c := &kafkago.Client{Addr: kafkago.TCP(s.cfg.Brokers...), Transport: tr, Timeout: checkTimeout}
	md, err := c.Metadata(ctx, &kafkago.MetadataRequest{Topics: topics})
	if err != nil {
		return nil, fmt.Errorf("kafka: metadata from %s: %w", s.addr, unwrapClient(err))
	}
	out := map[string]error{}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range md.Topics {
		switch {
		case t.Error == nil:
			delete(s.missing, t.Name)
		case errors.Is(t.Error, kafkago.UnknownTopicOrPartition):
			s.missing[t.Name] = now
			out[t.Name] = s.missingError(t.Name)
		case errors.Is(t.Error, kafkago.InvalidTopic):
			out[t.Name] = fmt.Errorf("%w %q: %v", ErrInvalidTopic, t.Name, t.Error)
		case errors.Is(t.Error, kafkago.TopicAuthorizationFailed):
			out[t.Name] = fmt.Errorf("kafka: topic %q on %s: %w", t.Name, s.addr, t.Error)
		}
	}
	if len(s.missing) > 1000 { // forget old entries
		for k, at := range s.missing {
			if now.Sub(at) >= missingTTL {
				delete(s.missing, k)
			}
		}
	}
	return out, nil
}

// awaitCache waits until the writer's metadata cache has caught up with
// topics that exist (made after its last refresh).
func (s *Sink) awaitCache(ctx context.Context, topics []string) error {
	ctx, cancel := context.WithTimeout(ctx, metadataTTL+time.Second)
	defer cancel()
	for {
		known, err := s.cached(ctx, topics)
		if err == nil {
			all := true
			for _, t := range topics {
				all = all && known[t]
			}
			if all {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kafka: write to %s on %s: topic exists but is not in the writer's metadata yet: %w",
				strings.Join(topics, ","), s.addr, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Close waits (bounded by ctx) for writes in flight and releases the
// connections.
func (s *Sink) Close(ctx context.Context) error {
	done := make(chan error, 1)
	go func() {
		var err error
		if s.aw != nil {
			err = s.aw.Close()
		}
		done <- errors.Join(err, s.w.Close())
	}()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		err = fmt.Errorf("kafka: close writer for %s: %w", s.addr, ctx.Err())
	}
	s.transport.CloseIdleConnections()
	return err
}

// balancer hashes keys with murmur2 like the Java client's default
// partitioner (partition = toPositive(murmur2(key)) % partitions), so that
// Java, librdkafka and Sluice producers agree on where a key goes; messages
// without a key go round robin.
type balancer struct {
	hash kafkago.Murmur2Balancer
	rr   kafkago.RoundRobin
}

func (b *balancer) Balance(m kafkago.Message, partitions ...int) int {
	if len(m.Key) == 0 {
		return b.rr.Balance(m, partitions...)
	}
	return b.hash.Balance(m, partitions...)
}

func topicError(md *kafkago.MetadataResponse, topic string) error {
	for _, t := range md.Topics {
		if t.Name == topic {
			return t.Error
		}
	}
	return kafkago.UnknownTopicOrPartition
}

func hasLeaders(md *kafkago.MetadataResponse, topic string) bool {
	for _, t := range md.Topics {
		if t.Name != topic {
			continue
		}
		if len(t.Partitions) == 0 {
			return false
		}
		for _, p := range t.Partitions {
			if p.Leader.ID < 0 || p.Error != nil {
				return false
			}
		}
		return true
	}
	return false
}

// unwrapClient drops kafka-go's "kafka.(*Client).Metadata: " prefix.
func unwrapClient(err error) error {
	if u := errors.Unwrap(err); u != nil && strings.HasPrefix(err.Error(), "kafka.(*Client)") {
		return u
	}
	return err
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// wrapError has an exact message and matches both a sentinel and its cause
// with errors.Is.
type wrapError struct {
	msg      string
	sentinel error
	cause    error
}

func (e *wrapError) Error() string   { return e.msg }
func (e *wrapError) Unwrap() []error { return []error{e.sentinel, e.cause} }

// describe words a timeout of the broker check for people.
func describe(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Sprintf("no answer within %v", checkTimeout)
	}
	return err.Error()
}

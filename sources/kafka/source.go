// Package kafka is the Kafka source: it consumes topics as a member of a
// consumer group and commits a partition's offset only when every record
// up to it has been settled by the pipeline (at-least-once).
package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
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
	// ErrUnknownTopic: a topic does not exist.
	ErrUnknownTopic = errors.New("kafka: unknown topic")
)

const (
	checkTimeout = 5 * time.Second
	dialTimeout  = 5 * time.Second
	// finalCommitGrace is how long Close may still spend committing what is
	// settled when its context has already ended.
	finalCommitGrace = 2 * time.Second
	// commitRetry is how soon a failed commit is tried again when no new
	// ack triggers it earlier.
	commitRetry = time.Second
	// fetchBackoff is the pause after a failed fetch (e.g. the group could
	// not be joined).
	fetchBackoff = time.Second
)

// Source consumes Kafka topics as a member of a consumer group.
type Source struct {
	cfg  Config
	addr string
	log  *slog.Logger
	m    *metrics

	r    *kafkago.Reader
	offs *offsets

	commitNow     chan struct{} // a commit is due; capacity 1 coalesces
	stop          chan struct{} // stops the committer
	stopped       chan struct{} // closed when the committer has returned
	commitCtx     context.Context
	cancelCommits context.CancelFunc

	closeOnce sync.Once
	closeErr  error
}

var _ pipeline.Source = (*Source)(nil)

// New checks that the brokers answer and that the topics exist, and joins
// the consumer group.
func New(ctx context.Context, cfg Config, env pipeline.Env) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Source{
		cfg:       cfg,
		addr:      strings.Join(cfg.Brokers, ","),
		log:       log,
		commitNow: make(chan struct{}, 1),
		stop:      make(chan struct{}),
		stopped:   make(chan struct{}),
	}
	if err := s.checkTopics(ctx); err != nil {
		return nil, err
	}
	if env.Metrics != nil {
		m, err := newMetrics(env.Metrics)
		if err != nil {
			return nil, err
		}
		s.m = m
	}
	s.offs = newOffsets(func() {
		select {
		case s.commitNow <- struct{}{}:
		default: // a commit is already due; it will take this offset too
		}
	})
	start := kafkago.FirstOffset
	if cfg.Start == "latest" {
		start = kafkago.LastOffset
	}
	s.r = kafkago.NewReader(kafkago.ReaderConfig{
		Brokers:     cfg.Brokers,
		GroupID:     cfg.Group,
		GroupTopics: cfg.topics,
		Dialer:      &kafkago.Dialer{Timeout: dialTimeout, DualStack: true, ClientID: "sluice"},
		// The queue between kafka-go's partition fetchers and FetchMessage.
		QueueCapacity: cfg.BatchSize,
		MinBytes:      cfg.MinBytes,
		MaxBytes:      cfg.MaxBytes,
		MaxWait:       cfg.MaxWait,
		StartOffset:   start,
		// A crashed member's partitions move after SessionTimeout, so the
		// default decides how long a pipeline stalls after a kill -9.
		SessionTimeout:    cfg.SessionTimeout,
		HeartbeatInterval: cfg.HeartbeatInterval,
		RebalanceTimeout:  cfg.RebalanceTimeout,
		// 0: CommitMessages commits synchronously; nothing is committed
		// that the committer did not ask for.
		CommitInterval:        0,
		WatchPartitionChanges: true,
		Logger: kafkago.LoggerFunc(func(msg string, args ...any) {
			if log.Enabled(context.Background(), slog.LevelDebug) {
				log.Debug("kafka-go: " + fmt.Sprintf(msg, args...))
			}
		}),
		ErrorLogger: kafkago.LoggerFunc(func(msg string, args ...any) {
			text := "kafka-go: " + strings.TrimSpace(fmt.Sprintf(msg, args...))
			if strings.Contains(text, context.Canceled.Error()) {
				log.Debug(text) // the reader stopping (Close, rebalance)
				return
			}
			log.Warn(text)
		}),
	})
	s.commitCtx, s.cancelCommits = context.WithCancel(context.WithoutCancel(ctx))
	go s.committer()
	log.Info("kafka source ready", "brokers", s.addr, "topics", strings.Join(cfg.topics, ","), "group", cfg.Group)
	return s, nil
}

// checkTopics asks the brokers for the topics' metadata.
func (s *Source) checkTopics(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	tr := &kafkago.Transport{DialTimeout: dialTimeout, MetadataTopics: s.cfg.topics, ClientID: "sluice"}
	defer tr.CloseIdleConnections()
	client := &kafkago.Client{Addr: kafkago.TCP(s.cfg.Brokers...), Transport: tr, Timeout: checkTimeout}
	md, err := client.Metadata(ctx, &kafkago.MetadataRequest{Topics: s.cfg.topics})
	if err != nil {
		if u := errors.Unwrap(err); u != nil && strings.HasPrefix(err.Error(), "kafka.(*Client)") {
			err = u
		}
		return &wrapError{sentinel: ErrUnreachable, cause: err,
			msg: fmt.Sprintf("kafka: brokers %s unreachable: %v", s.addr, describe(err))}
	}
	for _, topic := range s.cfg.topics {
		terr := error(kafkago.UnknownTopicOrPartition)
		for _, t := range md.Topics {
			if t.Name == topic {
				terr = t.Error
			}
		}
		switch {
		case terr == nil:
		case errors.Is(terr, kafkago.UnknownTopicOrPartition):
			return &wrapError{sentinel: ErrUnknownTopic, cause: terr,
				msg: fmt.Sprintf("kafka: topic %q does not exist on %s (create it with scripts/services.sh topics %s)", topic, s.addr, topic)}
		default:
			return fmt.Errorf("kafka: topic %q on %s: %w", topic, s.addr, terr)
		}
	}
	return nil
}

// Run fetches records and sends them to out in batches of up to
// batch_size, each sent when full or linger after its first record, until
// ctx is done.
func (s *Source) Run(ctx context.Context, out chan<- pipeline.Batch) error {
	for {
		m, err := s.r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe) {
				return fmt.Errorf("kafka: fetch from %s: reader closed: %w", s.addr, err)
			}
			s.log.Warn("fetch failed; retrying", "brokers", s.addr, "group", s.cfg.Group, "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(fetchBackoff):
			}
			continue
		}
		now := time.Now()
		batch := make(pipeline.Batch, 0, s.cfg.BatchSize)
		refs := make([]ref, 0, s.cfg.BatchSize)
		batch, refs = s.add(batch, refs, &m, now)
		if len(batch) < s.cfg.BatchSize {
			lctx, cancel := context.WithTimeout(ctx, s.cfg.Linger)
			for len(batch) < s.cfg.BatchSize {
				m, err := s.r.FetchMessage(lctx)
				if err != nil {
					if lctx.Err() == nil {
						s.log.Warn("fetch failed", "brokers", s.addr, "group", s.cfg.Group, "err", err)
					}
					break
				}
				batch, refs = s.add(batch, refs, &m, now)
			}
			cancel()
		}
		select {
		case out <- batch:
			s.m.fetched(len(batch))
		case <-ctx.Done():
			// Never handed over: forget them, so that they neither hold
			// up Close nor get committed. They are fetched again later.
			s.offs.untrack(refs)
			return nil
		}
	}
}

// add appends the record for m to batch, tracking its offset.
func (s *Source) add(batch pipeline.Batch, refs []ref, m *kafkago.Message, now time.Time) (pipeline.Batch, []ref) {
	rec := pipeline.Record{Value: m.Value, Key: m.Key, Received: now}
	if len(m.Headers) > 0 {
		rec.Headers = make([]pipeline.Header, len(m.Headers))
		for i, h := range m.Headers {
			rec.Headers[i] = pipeline.Header{Key: h.Key, Value: h.Value}
			if h.Key == IDHeader {
				if id, ok := ParseID(h.Value); ok {
					rec.ID = id
				}
			}
		}
	}
	r := s.offs.track(m.Topic, m.Partition, m.Offset)
	rec.Ack = pipeline.NewAck(func(err error) { s.settled(r, err) })
	return append(batch, rec), append(refs, r)
}

// settled is the ack callback of every record: a record that failed has
// been dead-lettered by the runner, so it counts as settled too.
func (s *Source) settled(r ref, err error) {
	if err != nil {
		s.m.failed()
	}
	s.offs.settle(r)
	s.m.settled()
}

// ParseID parses a sluice-id header value, "<device>/<seq>/<part>" (the
// device may itself contain '/').
func ParseID(v []byte) (pipeline.ID, bool) {
	s := string(v)
	j := strings.LastIndexByte(s, '/')
	if j < 0 {
		return pipeline.ID{}, false
	}
	i := strings.LastIndexByte(s[:j], '/')
	if i < 0 {
		return pipeline.ID{}, false
	}
	seq, err := strconv.ParseUint(s[i+1:j], 10, 64)
	if err != nil {
		return pipeline.ID{}, false
	}
	part, err := strconv.ParseUint(s[j+1:], 10, 32)
	if err != nil {
		return pipeline.ID{}, false
	}
	return pipeline.ID{Device: s[:i], Seq: seq, Part: uint32(part)}, true
}

// committer commits the settled offsets whenever they advance. While one
// commit is in flight, later advances wait in commitNow (capacity 1) and
// go out together in the next commit.
func (s *Source) committer() {
	defer close(s.stopped)
	var retry <-chan time.Time
	for {
		select {
		case <-s.commitNow:
		case <-retry:
		case <-s.stop:
			return
		}
		retry = nil
		if err := s.commit(s.commitCtx); err != nil {
			if s.commitCtx.Err() != nil {
				return
			}
			// After a rebalance, commits for partitions this member lost
			// fail (or land after the new owner's); their records are
			// delivered again to the new owner: at-least-once.
			s.log.Warn("offset commit failed; will retry", "brokers", s.addr, "group", s.cfg.Group, "err", err)
			retry = time.After(commitRetry)
		}
	}
}

// commit commits the pending offsets, if any.
func (s *Source) commit(ctx context.Context) error {
	offs := s.offs.take()
	if len(offs) == 0 {
		return nil
	}
	msgs := make([]kafkago.Message, 0, len(offs))
	for tp, off := range offs {
		// kafka-go commits a message's offset + 1: the next to consume.
		msgs = append(msgs, kafkago.Message{Topic: tp.topic, Partition: tp.partition, Offset: off - 1})
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.CommitTimeout)
	err := s.r.CommitMessages(ctx, msgs...)
	cancel()
	s.offs.done(offs, err)
	s.m.committed(err)
	if err != nil {
		return fmt.Errorf("kafka: commit offsets of group %s on %s: %w", s.cfg.Group, s.addr, err)
	}
	return nil
}

// Close waits, bounded by ctx, until every record handed out is settled,
// commits the settled offsets and leaves the group. Records still unsettled
// when ctx ends are not committed and will be consumed again.
func (s *Source) Close(ctx context.Context) error {
	s.closeOnce.Do(func() { s.closeErr = s.close(ctx) })
	return s.closeErr
}

func (s *Source) close(ctx context.Context) error {
	var errs []error
	if err := s.offs.waitIdle(ctx); err != nil {
		n := s.offs.unsettled()
		s.log.Warn("closing with unsettled records; they will be consumed again", "unsettled", n, "group", s.cfg.Group)
		errs = append(errs, fmt.Errorf("kafka: close: %d records still unsettled: %w", n, err))
	}
	close(s.stop)
	select {
	case <-s.stopped:
	case <-ctx.Done():
		s.cancelCommits()
		<-s.stopped
	}
	fctx := ctx
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		fctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), finalCommitGrace)
		defer cancel()
	}
	if err := s.commit(fctx); err != nil {
		errs = append(errs, err)
	}
	s.cancelCommits()

	done := make(chan struct{})
	go func() {
		_ = s.r.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-fctx.Done():
		errs = append(errs, fmt.Errorf("kafka: close reader for %s: %w", s.addr, fctx.Err()))
	}
	return errors.Join(errs...)
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

package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Source produces the records of a pipeline.
//
// Run reads until ctx is done (or a fatal error), sending batches to out, and
// returns once it has stopped reading; it never closes out. Every record it
// sends carries an Ack whose callback tells the source the record's outcome.
// After Run has returned and the rest of the pipeline has drained, the runner
// calls Close, which flushes what the acks produced (acks to devices, offset
// commits) and releases connections. ctx bounds how long Close may take.
type Source interface {
	Run(ctx context.Context, out chan<- Batch) error
	Close(ctx context.Context) error
}

// Transform maps batches of records to batches of records.
//
// Process returns the records derived from in and the inputs that failed.
// It owns the acks of in: each output derived from in[i] carries in[i].Ack,
// with Add called once per output beyond the first; an input with neither an
// output nor a failure has been filtered, and Process settles its Ack with
// Done(nil). Failed inputs are returned as they came in, unsettled: the runner
// dead-letters them and settles their acks. A non-nil error means the batch
// was not processed at all (ctx ended) and nothing in it was settled.
//
// The output may share memory with in (a transform that changed nothing
// may return in itself): the caller treats both as read-only, as it does
// every Batch it hands on.
//
// Process may be called from several goroutines at once.
type Transform interface {
	Process(ctx context.Context, in Batch) (out Batch, failed []Failed, err error)
	Close(ctx context.Context) error
}

// Endpoint is a long-running service that is not a pipeline, such as the
// endpoint that streams Kafka topics to subscribed devices. Run serves until
// ctx is done; Close releases what is left, bounded by its ctx.
type Endpoint interface {
	Run(ctx context.Context) error
	Close(ctx context.Context) error
}

// Failed is a record that failed for good, with the reason.
type Failed struct {
	Record Record
	Err    error
}

// Sink writes records to a destination.
//
// Write returns nil when every record of b is durable. It returns a
// *RecordErrors when some records can never be written (the rest are
// durable); the runner dead-letters those. Any other error means nothing is
// known to be durable: the runner retries the whole batch with backoff, so a
// sink must tolerate seeing a record twice (at-least-once). Write never
// settles acks itself. Write is called from one goroutine at a time.
type Sink interface {
	Write(ctx context.Context, b Batch) error
	Close(ctx context.Context) error
}

// RecordErrors reports the records of a batch that a sink rejected for good,
// by their index in the batch.
type RecordErrors map[int]error

// Error lists the rejected records in index order.
func (e RecordErrors) Error() string {
	idx := make([]int, 0, len(e))
	for i := range e {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	var b strings.Builder
	fmt.Fprintf(&b, "%d record(s) rejected", len(e))
	for n, i := range idx {
		if n == 3 {
			fmt.Fprintf(&b, "; …")
			break
		}
		fmt.Fprintf(&b, "; record %d: %v", i, e[i])
	}
	return b.String()
}

// AsRecordErrors returns the per-record errors inside err, if it carries any.
func AsRecordErrors(err error) (RecordErrors, bool) {
	var re RecordErrors
	if errors.As(err, &re) {
		return re, true
	}
	return nil, false
}

// Env is what a component receives from the process around it.
type Env struct {
	// Logger is already tagged with the pipeline and the component.
	Logger *slog.Logger
	// Metrics registers the component's metrics; it may be nil in tests.
	Metrics prometheus.Registerer
	// Dir resolves relative file paths in the component's config: the
	// directory of pipeline.yaml.
	Dir string
	// HTTP serves the handlers of components that listen for HTTP or
	// WebSocket clients; components that share an address share a server.
	HTTP *Servers
}

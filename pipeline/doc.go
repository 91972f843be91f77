// Package pipeline defines what moves through Sluice and how it is
// acknowledged: the Record, the Batch, the Ack that follows every record from
// its source to its sinks, the Source, Transform and Sink interfaces that
// components implement, the pipeline.yaml model, and the run loop that wires
// one source through an ordered list of transforms into its sinks.
//
// # The graph
//
// Each pipeline is a straight line that fans out at the end:
//
//	source ──batches──▶ transform 1 ▶ … ▶ transform N ──▶ sink 1
//	                                                  ├─▶ sink 2
//	                                                  └─▶ …
//
// Channels between the nodes are bounded, so a slow sink stops the source
// from reading (backpressure) instead of growing memory.
//
// # Acknowledgement
//
// A source attaches an [Ack] to every record it emits. The Ack counts the
// deliveries that are still outstanding for that record:
//
//   - a transform that derives k records from one input passes the input's
//     Ack on to each of them (k-1 more deliveries); one that derives none has
//     filtered the record, and a filtered record counts as delivered;
//   - the fan-out to S sinks adds S-1 deliveries;
//   - a sink settles one delivery when it has made the record durable
//     (Kafka: acknowledged by all in-sync replicas; ClickHouse: the insert
//     returned), or when the record failed for good.
//
// When the count reaches zero the source's callback runs once, with nil when
// every delivery succeeded, or with the first permanent error. Permanent
// failures (a transform error, a value ClickHouse rejects) are written to the
// pipeline's dead-letter output before they are settled. Transient failures
// (a service that is down) are never settled: the sink retries with backoff,
// the record stays unacknowledged, and the bounded channels stop the source.
//
// The WebSocket source turns the callback into an ack or a nack to the
// device; the Kafka source commits an offset once every record up to it is
// settled.
package pipeline

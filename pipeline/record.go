package pipeline

import "time"

// Record is one JSON document moving through a pipeline.
//
// Value is owned by nobody once the record leaves its source: stages must
// treat it as read-only and build a new slice to change it, because the fan-out
// hands the same bytes to every sink.
type Record struct {
	// Value is the record's JSON document.
	Value []byte
	// Key, when set, is the Kafka message key; a sink with a key template
	// uses it instead when Key is empty.
	Key []byte
	// Dest, when set by a transform, overrides the sink's destination: the
	// Kafka topic or the ClickHouse table.
	Dest string
	// Headers are carried to Kafka message headers and back.
	Headers []Header
	// ID identifies the record across retries; see [ID].
	ID ID
	// Received is when Sluice first received the record (batch granularity).
	Received time.Time
	// Ack is settled by the sinks; see the package documentation.
	Ack *Ack
}

// Header is one Kafka-style record header.
type Header struct {
	Key   string
	Value []byte
}

// ID is a record's identity. A device names each record by its id and a
// per-device sequence number; a transform that splits a record numbers the
// parts. Two deliveries with the same ID are the same record, which is how
// duplicates from retries are removed downstream.
type ID struct {
	Device string
	Seq    uint64
	Part   uint32
}

// IsZero reports whether the record carries no identity.
func (id ID) IsZero() bool { return id.Device == "" && id.Seq == 0 && id.Part == 0 }

// Batch is an ordered group of records that moves through a stage together.
type Batch []Record

// Settle settles one delivery of every record in b with err.
func (b Batch) Settle(err error) {
	for i := range b {
		b[i].Ack.Done(err)
	}
}

// Package device is the Go client for devices that push JSON records to
// Sluice over WebSocket. It implements the device protocol of
// docs/protocol.md so that a device need only call Send.
//
// # What the client does
//
//   - Numbering. Send gives each record the next seq of the device and
//     writes the device id and the seq into the JSON object:
//     {"device_id":"dev-1","seq":17,…the record's fields…}. The client
//     assigns every seq; a record that already has a seq field is refused
//     (ErrHasSeq), and one that has a device_id must carry the client's own.
//     (device_id, seq) is the record's identity downstream, where resent
//     copies are dropped, so seqs never repeat: with OutboxDir the counter
//     lives in the outbox file; without it the first seq is the current
//     time in microseconds (see Options.FirstSeq).
//   - Window and batching. One goroutine writes records from the outbox
//     while fewer than Options.Window are unacknowledged, several per frame
//     (newline-separated, up to Options.MaxFrameBytes) when many are
//     queued, so that one device sends thousands of records per second
//     without waiting for acks.
//   - Acks. The server numbers the records of a connection 1, 2, 3… and
//     answers {"ack":N} once records 1..N are settled; the client maps those
//     ordinals back to its outbox. A record is acked when every sink of its
//     pipeline made it durable. {"nack":n,…} rejects record n for good: it
//     is reported to Options.OnNack, counted in Stats, and never resent.
//   - Reconnects. When the connection ends (the server restarting closes it
//     with 1001 going away), every unacknowledged record goes back to the
//     front of the outbox and is resent, in order and with the same seq,
//     on the next connection, made after a jittered exponential backoff.
//   - Outbox. Queued records are bounded by Options.OutboxLimit: Send
//     blocks when it is full, TrySend returns ErrOutboxFull. With
//     Options.OutboxDir the outbox is an append-only file: Send writes the
//     record to it before returning, the client fsyncs a batch before
//     sending it, and a Client started on the same directory resends what a
//     killed or crashed one left unacknowledged. The file is compacted once
//     everything is acknowledged (or settled lines dominate it).
//
// Delivery is at least once; with the (device_id, seq) identity it is
// exactly once downstream. Flush waits until everything sent so far is
// settled.
package device

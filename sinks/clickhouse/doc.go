// Package clickhouse is the ClickHouse sink: it inserts records into a
// table over the native protocol (clickhouse-go v2), one INSERT per batch,
// filling the columns from each record's JSON.
//
// # Mapping
//
// At start the sink reads the table's columns with DESCRIBE TABLE. Each
// column is filled from a source:
//
//   - by default, the record's top-level field with the column's name,
//     matched literally (a column "a.b" reads the field "a.b", not a.b
//     nested); all top-level fields are found in one pass over the record;
//   - or the source given for the column in columns:
//   - a gjson path, e.g. "sensors.temp", "tags.0", "items.#.id" (the last
//     fits a Nested or Array column);
//   - "$", the whole record JSON (for a String column: the raw text);
//   - "@device", "@seq", "@part": the record's ID (pipeline.ID), for keys
//     such as ReplacingMergeTree ORDER BY (device_id, seq, part);
//   - "@received": when Sluice received the record;
//   - "@key": the record's key; "@dest": the record's Dest.
//
// Fields the table has no column for are ignored. Columns with a DEFAULT
// (or EPHEMERAL) expression are left to the server unless they are listed
// in columns: a native INSERT gives every row a value for every column it
// names, so the sink cannot let the server fill only the rows that lack the
// field. MATERIALIZED and ALIAS columns are never inserted. The record must
// be a JSON object when a column reads a field or a path.
//
// A missing field, or JSON null, gets the column's default: NULL for
// Nullable, 0, "", false, an empty array, 1970-01-01 for dates and times,
// the smallest value of an Enum. Empty metadata (no device, key, dest, or a
// zero receive time) counts as missing.
//
// # Conversion
//
//   - String: a JSON string is its content; any other value its JSON text
//     (12.50 → "12.50", {"a":1} → `{"a":1}`).
//   - FixedString(N): as String, at most N bytes (padded with zero bytes).
//   - Int8…Int64, UInt8…UInt64: a JSON number that is an integer (1e3 and
//     5.0 are), or a string holding one (64-bit ids often travel as
//     strings); true/false are 1/0. Out of range and fractions are errors.
//   - Float32, Float64: a number, or a string holding one ("NaN", "inf"
//     included). Float32 rejects values beyond its range.
//   - Bool (servers that have it): true/false, 0/1.
//   - Date, Date32, DateTime, DateTime64: an RFC 3339 string
//     ("2024-05-01T12:00:00.123+02:00"; a space may replace the T; without
//     a zone it is UTC; "2024-05-01" is midnight UTC), or a unix timestamp, a
//     number or a string holding one, whose unit follows from its magnitude:
//     below 1e10 seconds, below 1e13 milliseconds, below 1e16 microseconds,
//     else nanoseconds; fractions are kept. Any instant from 1970-04-26 to
//     2286-11-20 therefore reads right in any unit. A Date is the UTC day.
//     Values outside the type's range are errors (DateTime: 1970-01-01
//     00:00:00 to 2106-02-07 06:28:15 UTC).
//   - UUID: a string in any form uuid.Parse accepts.
//   - Decimal(P, S) and Decimal32/64/128/256(S): a number or a string,
//     rounded to S decimals (half away from zero); more than P-S integer
//     digits is an error.
//   - Enum8, Enum16: a name (string) or a value (number). Nullable(Enum) needs
//     the Enum to have the value 0 (see newNullableKind).
//   - Nullable(T), LowCardinality(T), Array(T), Array(Nullable(T)),
//     Array(LowCardinality(T)) of the above. Array elements convert as T; a
//     null element is NULL or T's default.
//
// Other types (Map, Tuple, nested Array, IPv4/6, Int128…) fail New with an
// error naming the column and the type.
//
// A value that does not fit fails its record alone: Write returns a
// pipeline.RecordErrors with, for each such record,
//
//	clickhouse: table db.t column c (UInt8): value 300: out of range for UInt8
//
// and inserts the others. A failed INSERT (server down, timeout, rejected by
// the server) fails the whole Write with a plain error, and the runner
// retries the batch; after an error that says the table changed (unknown
// column or table, type mismatch) the sink reads the schema again.
//
// # Destinations
//
// A record whose Dest is set goes to the table it names ("table" in the
// configured database, or "database.table"), with the same columns mapping
// (mappings of columns that table lacks are ignored). Records for a table
// that does not exist, or that the sink cannot fill, are rejected for good.
//
// # ClickHouse 18.16
//
// The sink runs against 18.16 (native protocol revision 54412) and current
// releases: the INSERT names its columns, DESCRIBE TABLE is read by
// position (18.16 returns 5 columns, current releases 7), the CREATE TABLE
// of create uses ENGINE = X() [PARTITION BY] ORDER BY (...), and
// LowCardinality, experimental before 19.x, is allowed for that statement.
// 18.16 has no DateTime64, Date32 or Bool type; a table cannot use them
// there.
package clickhouse

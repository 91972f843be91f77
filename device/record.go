package device

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/tidwall/gjson"
)

// Errors returned by Send for a record the client will not take.
var (
	// ErrNotObject: a record must be one JSON object.
	ErrNotObject = errors.New("device: a record must be a JSON object")
	// ErrHasSeq: the client numbers records itself; a record must not carry
	// the seq field.
	ErrHasSeq = errors.New("device: record already has a seq field; the client assigns seq")
	// ErrDeviceID: a record that carries the device field must carry the
	// client's own device id.
	ErrDeviceID = errors.New("device: record's device_id differs from the client's DeviceID")
	// ErrTooLarge: the stamped record is larger than Options.MaxRecordBytes.
	ErrTooLarge = errors.New("device: record larger than MaxRecordBytes")
)

// body is a record checked and compacted by prepare, waiting for its seq.
type body struct {
	// rest is the compacted object without its opening brace: `}` for an
	// empty object, otherwise `"k":v,…}`.
	rest []byte
	// hasDevice tells whether the record already names the device.
	hasDevice bool
}

// prepare validates record and compacts it onto one line (a record must not
// contain a newline: newlines separate records in a frame).
func (c *Client) prepare(record []byte) (body, error) {
	var buf bytes.Buffer
	buf.Grow(len(record) + 48)
	if err := json.Compact(&buf, record); err != nil {
		return body{}, fmt.Errorf("device: record is not valid JSON: %w", err)
	}
	obj := buf.Bytes()
	if len(obj) == 0 || obj[0] != '{' {
		return body{}, ErrNotObject
	}
	var b body
	var err error
	gjson.ParseBytes(obj).ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case c.opts.SeqField:
			err = ErrHasSeq
		case c.opts.DeviceField:
			if v.Type != gjson.String || v.Str != c.opts.DeviceID {
				err = fmt.Errorf("%w: got %s, want %q", ErrDeviceID, v.Raw, c.opts.DeviceID)
			}
			b.hasDevice = true
		}
		return err == nil
	})
	if err != nil {
		return body{}, err
	}
	b.rest = obj[1:]
	return b, nil
}

// stamp renders the record line for seq: the device field (unless the
// record has it) and the seq field first, then the record's own fields.
func (c *Client) stamp(b body, seq uint64) []byte {
	out := make([]byte, 0, len(c.prefix)+len(b.rest)+24)
	if b.hasDevice {
		out = append(out, '{')
	} else {
		out = append(out, c.prefix...) // {"device_id":"…",
	}
	out = append(out, c.seqKey...) // "seq":
	out = strconv.AppendUint(out, seq, 10)
	if len(b.rest) > 0 && b.rest[0] != '}' {
		out = append(out, ',')
	}
	return append(out, b.rest...)
}

// quoteKey renders the JSON key for name followed by a colon.
func quoteKey(name string) []byte {
	k, _ := json.Marshal(name)
	return append(k, ':')
}

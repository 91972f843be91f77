package subscribe

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// unset marks a partition without a position in a vector.
const unset = -1

// maxPartitions bounds the partition numbers accepted in a position, so that
// a hostile position cannot make the server allocate a huge vector.
const maxPartitions = 1 << 16

// appendPosition appends the text form of the position vector n,
// "0:1524,1:1490,…": for every partition with a position, the offset of the
// next record to deliver. Unset partitions are left out.
func appendPosition(dst []byte, n []int64) []byte {
	first := true
	for p, off := range n {
		if off < 0 {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = strconv.AppendInt(dst, int64(p), 10)
		dst = append(dst, ':')
		dst = strconv.AppendInt(dst, off, 10)
	}
	return dst
}

// formatPosition is appendPosition as a string.
func formatPosition(n []int64) string { return string(appendPosition(nil, n)) }

// parsePosition parses "0:1524,1:1490,…" into a vector indexed by partition,
// unset where the text names no offset.
func parsePosition(s string) ([]int64, error) {
	if s == "" {
		return nil, errors.New("empty position")
	}
	var n []int64
	for part := range strings.SplitSeq(s, ",") {
		ps, os, ok := strings.Cut(part, ":")
		if !ok {
			return nil, fmt.Errorf("%q: want <partition>:<offset>", part)
		}
		p, err := strconv.Atoi(ps)
		if err != nil || p < 0 || p >= maxPartitions {
			return nil, fmt.Errorf("%q: bad partition %q", part, ps)
		}
		off, err := strconv.ParseInt(os, 10, 64)
		if err != nil || off < 0 {
			return nil, fmt.Errorf("%q: bad offset %q", part, os)
		}
		for len(n) <= p {
			n = append(n, unset)
		}
		if n[p] != unset {
			return nil, fmt.Errorf("partition %d is given twice", p)
		}
		n[p] = off
	}
	return n, nil
}

// origin is where a subscription begins, as given by from=.
type origin struct {
	kind string    // "latest", "earliest", "pos" or "time"
	pos  []int64   // for "pos"
	at   time.Time // for "time"
}

// parseFrom parses the from= parameter: latest (also the empty string),
// earliest, a position, or time:<RFC3339>.
func parseFrom(s string) (origin, error) {
	switch {
	case s == "" || s == "latest":
		return origin{kind: "latest"}, nil
	case s == "earliest":
		return origin{kind: "earliest"}, nil
	case strings.HasPrefix(s, "time:"):
		t, err := time.Parse(time.RFC3339Nano, strings.TrimPrefix(s, "time:"))
		if err != nil {
			return origin{}, fmt.Errorf("from=%s: want time:<RFC3339>, e.g. time:2026-01-02T15:04:05Z", s)
		}
		return origin{kind: "time", at: t}, nil
	}
	pos, err := parsePosition(s)
	if err != nil {
		return origin{}, fmt.Errorf("from=%s: want latest, earliest, time:<RFC3339> or a position like 0:1523,1:1490: %v", s, err)
	}
	return origin{kind: "pos", pos: pos}, nil
}

package subscribe

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"
)

// filter selects the records a subscriber receives. The zero filter takes
// every record.
type filter struct {
	// devices, when not nil, is the set of device ids accepted.
	devices map[string]struct{}
	// keys, when not nil, is the set of Kafka message keys accepted.
	keys map[string]struct{}
	// where are field predicates that must all hold.
	where []cond
}

// cond is one where=<gjson path>=<value> predicate.
type cond struct {
	path  string
	value string
	num   float64
	isNum bool
}

// parseFilter reads device_id=a,b, key=k and where=<path>=<value> from the
// query. Each may be repeated: device_id and key values add to their set,
// where predicates are all required.
func parseFilter(q url.Values) (filter, error) {
	var f filter
	for _, v := range q["device_id"] {
		for d := range strings.SplitSeq(v, ",") {
			if d == "" {
				continue
			}
			if f.devices == nil {
				f.devices = map[string]struct{}{}
			}
			f.devices[d] = struct{}{}
		}
	}
	if _, ok := q["device_id"]; ok && f.devices == nil {
		return f, fmt.Errorf("device_id: empty; give one or more device ids separated by commas")
	}
	for _, k := range q["key"] {
		if f.keys == nil {
			f.keys = map[string]struct{}{}
		}
		f.keys[k] = struct{}{}
	}
	for _, w := range q["where"] {
		path, value, ok := strings.Cut(w, "=")
		if !ok || path == "" {
			return f, fmt.Errorf("where=%s: want <field>=<value>, e.g. where=kind=alert", w)
		}
		c := cond{path: path, value: value}
		if n, err := strconv.ParseFloat(value, 64); err == nil {
			c.num, c.isNum = n, true
		}
		f.where = append(f.where, c)
	}
	return f, nil
}

// match reports whether r passes the filter.
func (f *filter) match(r *record) bool {
	if f.devices != nil {
		if _, ok := f.devices[r.device]; !ok {
			return false
		}
	}
	if f.keys != nil {
		if _, ok := f.keys[string(r.key)]; !ok {
			return false
		}
	}
	for _, c := range f.where {
		if !r.json {
			return false
		}
		v := gjson.GetBytes(r.value, c.path)
		switch v.Type {
		case gjson.String:
			if v.Str != c.value {
				return false
			}
		case gjson.Number:
			if !(c.isNum && v.Num == c.num) && v.Raw != c.value {
				return false
			}
		case gjson.Null:
			if !v.Exists() || c.value != "null" {
				return false
			}
		default: // true, false, objects and arrays compare as written
			if v.Raw != c.value {
				return false
			}
		}
	}
	return true
}

// empty reports whether the filter takes every record.
func (f *filter) empty() bool { return f.devices == nil && f.keys == nil && len(f.where) == 0 }

// Command headers is a Sluice transform that moves data between a record's
// fields and its Kafka headers, with the SDK's header helpers; the same
// example exists in C, Rust and AssemblyScript, and the conformance test
// holds them to this one. Config
// (every member optional):
//
//	{"lift": {"trace-id": "trace_id"},  header -> field (the first header)
//	 "tag":  {"event-type": "kind"},    string field -> header (the first, or a new one)
//	 "drop": ["x-debug"]}               headers removed, every one of a name
//
// applied in that order, each in the config's order.
package main

import (
	"errors"

	sluice "github.com/sluicehq/sluice/plugins/sdk/go"
)

type pair struct{ header, field string }

var (
	lift, tag []pair
	drop      []string
)

// pairs reads the config member name, an object of strings.
func pairs(config *sluice.Object, name string) ([]pair, error) {
	raw, ok := config.GetRaw(name)
	if !ok || sluice.KindOf(raw) == sluice.KindNull {
		return nil, nil
	}
	bad := errors.New(`headers: config "` + name + `" must be an object of strings`)
	if sluice.KindOf(raw) != sluice.KindObject {
		return nil, bad
	}
	var ps []pair
	for header, v := range sluice.NewObject(raw).All() {
		field, ok := sluice.AppendUnquote(nil, v)
		if !ok || sluice.KindOf(v) != sluice.KindString {
			return nil, bad
		}
		ps = append(ps, pair{header, string(field)})
	}
	return ps, nil
}

func init() {
	sluice.OnInit(func(config []byte) error {
		c := sluice.NewObject(config)
		var err error
		if lift, err = pairs(c, "lift"); err != nil {
			return err
		}
		if tag, err = pairs(c, "tag"); err != nil {
			return err
		}
		raw, ok := c.GetRaw("drop")
		if !ok || sluice.KindOf(raw) == sluice.KindNull {
			return nil
		}
		bad := errors.New(`headers: config "drop" must be an array of strings`)
		if sluice.KindOf(raw) != sluice.KindArray {
			return bad
		}
		for el := range sluice.Elements(raw) {
			name, ok := sluice.AppendUnquote(nil, el)
			if !ok || sluice.KindOf(el) != sluice.KindString {
				return bad
			}
			drop = append(drop, string(name))
		}
		return nil
	})
	sluice.Map(func(r *sluice.Record) error {
		for _, p := range lift {
			if v, ok := r.Header(p.header); ok {
				r.Set(p.field, sluice.String(string(v)))
			}
		}
		for _, p := range tag {
			if v, ok := r.GetStringBytes(p.field); ok {
				r.SetHeader(p.header, v)
			}
		}
		for _, name := range drop {
			r.DeleteHeader(name)
		}
		return nil
	})
}

func main() {}

// Command enrich is a Sluice transform that adds fields to every record:
// each key of its config is set on the record, and a record with a numeric
// "temp" (°C) gets "temp_f" (°F).
package main

import sluice "github.com/sluicehq/sluice/plugins/sdk/go"

type field struct {
	name string
	raw  []byte
}

var fields []field

func init() {
	sluice.OnInit(func(config []byte) error {
		for name, raw := range sluice.NewObject(config).All() {
			fields = append(fields, field{name, append([]byte(nil), raw...)})
		}
		return nil
	})
	sluice.Map(func(r *sluice.Record) error {
		for _, f := range fields {
			r.SetRaw(f.name, f.raw)
		}
		if t, ok := r.GetFloat("temp"); ok {
			r.Set("temp_f", sluice.Float(t*9/5+32))
		}
		return nil
	})
}

func main() {}

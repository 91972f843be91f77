// Command filter is a Sluice transform that drops the records whose
// configured numeric field is below a minimum. Records where the field is
// missing or not a number pass.
package main

import (
	"encoding/json"
	"errors"

	sluice "github.com/sluicehq/sluice/plugins/sdk/go"
)

var cfg struct {
	Field string   `json:"field"`
	Min   *float64 `json:"min"`
}

func init() {
	sluice.OnInit(func(config []byte) error {
		if err := json.Unmarshal(config, &cfg); err != nil {
			return err
		}
		if cfg.Field == "" || cfg.Min == nil {
			return errors.New(`filter: config needs "field" and "min", e.g. {field: temp, min: 0}`)
		}
		return nil
	})
	sluice.Handle(func(r *sluice.Record, out *sluice.Output) error {
		if v, ok := r.GetFloat(cfg.Field); ok && v < *cfg.Min {
			return nil // dropped: counts as delivered
		}
		out.Emit(r)
		return nil
	})
}

func main() {}

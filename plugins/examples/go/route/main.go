// Command route is a Sluice transform that routes records: it sets the
// destination (Kafka topic or ClickHouse table) from a field's value through
// a table, and the Kafka key from another field.
package main

import (
	"encoding/json"
	"errors"

	sluice "github.com/sluicehq/sluice/plugins/sdk/go"
)

var cfg = struct {
	Field   string            `json:"field"`   // field whose value picks the route
	Routes  map[string]string `json:"routes"`  // value → destination
	Default string            `json:"default"` // destination of other values ("" = the sink's)
	Key     string            `json:"key"`     // field that becomes the Kafka key ("" = none)
}{Field: "kind", Key: "device_id"}

func init() {
	sluice.OnInit(func(config []byte) error {
		if err := json.Unmarshal(config, &cfg); err != nil {
			return err
		}
		if len(cfg.Routes) == 0 {
			return errors.New(`route: config needs "routes", e.g. {field: kind, routes: {alarm: alarms}}`)
		}
		return nil
	})
	sluice.Map(func(r *sluice.Record) error {
		if v, ok := r.GetStringBytes(cfg.Field); ok {
			if dest, ok := cfg.Routes[string(v)]; ok { // no allocation
				r.SetDest(dest)
			} else if cfg.Default != "" {
				r.SetDest(cfg.Default)
			}
		} else if cfg.Default != "" {
			r.SetDest(cfg.Default)
		}
		if cfg.Key != "" {
			if k, ok := r.GetStringBytes(cfg.Key); ok {
				r.SetKey(k)
			}
		}
		return nil
	})
}

func main() {}

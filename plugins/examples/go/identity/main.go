// Command identity is a Sluice transform that returns every record
// unchanged. It measures the cost of the ABI itself.
package main

import sluice "github.com/sluicehq/sluice/plugins/sdk/go"

func init() {
	sluice.Handle(func(r *sluice.Record, out *sluice.Output) error {
		out.Emit(r)
		return nil
	})
}

func main() {}

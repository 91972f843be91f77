// Command split is a Sluice transform that splits a record with an array
// field into one record per element: {"d":1,"readings":[a,b]} becomes
// {"d":1,"reading":a} and {"d":1,"reading":b}. An empty array drops the
// record; a record without the array passes unchanged.
package main

import sluice "github.com/sluicehq/sluice/plugins/sdk/go"

var (
	from = "readings" // config "field"
	to   = "reading"  // config "as"
)

func init() {
	sluice.OnInit(func(config []byte) error {
		c := sluice.NewObject(config)
		if s, ok := c.GetString("field"); ok {
			from = s
		}
		if s, ok := c.GetString("as"); ok {
			to = s
		}
		return nil
	})
	sluice.Handle(func(r *sluice.Record, out *sluice.Output) error {
		// Taken before the first edit, arr aliases the input batch and stays
		// valid while r is edited below.
		arr, ok := r.GetRaw(from)
		if !ok || sluice.KindOf(arr) != sluice.KindArray {
			out.Emit(r)
			return nil
		}
		r.Delete(from)
		for elem := range sluice.Elements(arr) {
			r.SetRaw(to, elem)
			out.Emit(r)
		}
		return nil
	})
}

func main() {}

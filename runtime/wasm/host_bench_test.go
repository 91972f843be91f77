package wasm

import (
	"fmt"
	"testing"

	"github.com/sluicehq/sluice/internal/cputime"
	"github.com/sluicehq/sluice/pipeline"
)

// identityOutput is the output of an identity module for recs, or with
// changed, of one that changes a letter of every value.
func identityOutput(recs []pipeline.Record, changed bool) []byte {
	size, _ := encodedSize(recs)
	enc := make([]byte, size)
	encodeBatch(enc, recs)
	out := le.AppendUint32(nil, uint32(len(recs)))
	p := 4
	for i := range recs {
		start := p
		for range 3 {
			p += 4 + int(le.Uint32(enc[p:]))
		}
		hc := int(le.Uint32(enc[p:]))
		p += 4
		for range 2 * hc {
			p += 4 + int(le.Uint32(enc[p:]))
		}
		out = le.AppendUint32(out, uint32(i))
		out = le.AppendUint32(out, 0)
		out = append(out, enc[start:p]...)
		if changed {
			out[len(out)-(p-start)+8] ^= 0x20 // a letter of "device_id"
		}
	}
	return out
}

// BenchmarkHost measures the host's own work on a call, without the
// module: encode the batch, check the output, build the records, for the
// output of an identity module and of one that changes every value.
// BenchmarkHostFloor is what building the output batch alone costs: a
// copy of each record into a new batch.
func BenchmarkHost(b *testing.B) {
	for _, c := range []string{"identity", "changed", "changed-novalidate"} {
		for _, n := range []int{64, 256, 1024} {
			b.Run(fmt.Sprintf("%s/batch=%d", c, n), func(b *testing.B) { benchHost(b, c, n) })
		}
	}
}

func benchHost(b *testing.B, c string, n int) {
	recs := benchBatch(n)
	out := identityOutput(recs, c != "identity")
	size, _ := encodedSize(recs)
	mem := make([]byte, size)
	var d decoder
	cpu0 := cputime.Self()
	for b.Loop() {
		size, _ := encodedSize(recs)
		encodeBatch(mem[:size], recs)
		if m := d.check(out, recs, c != "changed-novalidate"); m != nil {
			b.Fatal(m)
		}
		st := &procState{in: recs, counts: make([]int32, n), alias: true}
		d.emit(out, 0, st, "m")
		if res := st.result(); len(res) != n || len(st.failed) != 0 {
			b.Fatalf("%d outputs, %v", len(res), st.failed)
		}
	}
	report(b, n, cpu0)
}

func BenchmarkHostFloor(b *testing.B) {
	for _, n := range []int{64, 256, 1024} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			recs := benchBatch(n)
			cpu0 := cputime.Self()
			for b.Loop() {
				out := make(pipeline.Batch, 0, n)
				for i := range recs {
					out = append(out, recs[i])
				}
				if len(out) != n {
					b.Fatal()
				}
			}
			report(b, n, cpu0)
		})
	}
}

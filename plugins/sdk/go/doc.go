// Package sluice is the Go SDK for Sluice transforms: it implements the
// guest side of the ABI (docs/abi.md) so that a transform is a handler:
//
//	package main
//
//	import sluice "github.com/sluicehq/sluice/plugins/sdk/go"
//
//	func init() {
//		sluice.Map(func(r *sluice.Record) error {
//			if t, ok := r.GetFloat("temp"); ok {
//				r.Set("temp_f", sluice.Float(t*9/5+32))
//			}
//			return nil
//		})
//	}
//
//	func main() {}
//
// built with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o enrich.wasm .
//
// Register the handler (Handle or Map) and the config hook (OnInit) from an
// init function: a reactor module never runs main, which must still exist.
//
// Read and edit records with the Record's methods (GetString, GetFloat,
// Set, SetRaw, Delete, ...): they scan and splice the JSON bytes without
// decoding them and allocate nothing per record. encoding/json costs about
// a hundred times more in wasm; keep it for the config in OnInit. Names
// passed to Set and SetRaw are best constants or strings made once (the
// SDK caches their quoted form), and Map costs less per record than
// Handle. copy.go notes what costs what in wasm; the README has the rules.
//
// The //go:wasmexport functions of the ABI live in this package: importing
// it from package main is enough to export them. Off wasm the package
// builds too, so that the pure Go parts, and a guest's own code, can be
// unit-tested natively.
package sluice

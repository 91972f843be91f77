// Package conformance checks that the example transforms written with each
// SDK (Go, Rust, C, AssemblyScript) behave identically, byte for byte,
// through the real host (runtime/wasm), and benchmarks them. It has only
// tests; see README.md.
package conformance

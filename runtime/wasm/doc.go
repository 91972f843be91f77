// Package wasm is the Sluice transform that runs a WebAssembly module
// implementing the guest ABI of docs/abi.md, on wazero.
//
//	transforms:
//	  - wasm: { module: enrich.wasm, config: { site: lab-1 }, timeout: 100ms }
//
// # Life of a module
//
// New reads the module, rewrites it (see below), compiles it once, checks
// its exports and imports, and makes a first instance to run the
// handshake: the start function and _initialize if present,
// sluice_abi_version (must be 1), then sluice_init with the config as JSON.
// A bad module or config fails New with an *Error naming the module, the
// function and the reason. More instances, up to Config.Instances, are made
// when concurrent Process calls need them; each serves one call at a time.
//
// Process hands the batch to an instance in calls of at most
// Config.BatchSize records and turns each call's output into records,
// failures and filtered inputs (see Process for the ack accounting). A call
// that traps, runs past Config.Timeout, hits Config.MemoryLimit or returns
// a malformed output discards its instance; its records are then run one
// at a time on fresh instances so that only the records that cause the
// failure fail.
//
// Reload (and Watch, which calls it when the file changes) swaps in a new
// version of the module without stopping: batches in flight finish on the
// old one, whose instances are closed when they are done.
//
// # The sandbox
//
// A module gets WASI preview 1 with no filesystem and no network: no
// directory is preopened and no socket is ever passed in, so file and
// socket calls fail (EBADF/ENOTSUP). In ABI v1 no config can grant them.
// Grants can give the real clocks, the real random source and environment
// variables; without them the clocks and random source are deterministic
// fakes. Its stdout and stderr, and its calls of the sluice.log import, go
// to the log tagged with the module and the instance.
//
// # Stopping a module
//
// wazero's WithCloseOnContextDone makes every loop iteration call out to
// Go, which made Go guests about 20x slower. Instead New rewrites the
// module (interrupt.go): every function entry and loop head checks a global
// that a timer sets when a call runs out of time, and now and then yields
// to Go so that a garbage collection is never blocked by a spinning module.
// The check costs a few instructions.
//
// # Performance
//
// The encoded batch is written straight into the module's memory, and the
// output is read from a view of it: an output value is copied once, into
// one allocation per call shared by all the records of the call, and not
// at all when it equals its input's (the same holds for key and headers).
// Output values the module changed are checked with a JSON validator
// several times faster than encoding/json's.
package wasm

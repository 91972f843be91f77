#!/usr/bin/env bash
# The benchmark harness (`make bench`): Sluice's throughput, latency and
# cost per record against the raw ceilings of its own legs, in one run, on
# the real local Kafka and ClickHouse. Bounded (about 6 minutes; --quick
# about 2), loopback only. Prints progress on stderr, the tables and ratios
# on stdout, and leaves results.json, results.md, logs and profiles in
# .local/bench/<time>/. See BENCHMARKS.md.
#
# Usage: scripts/bench.sh [sluice-bench flags]   e.g. --quick, --json, --wait-load 2
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

"$ROOT/scripts/services.sh" start >&2
mkdir -p .local/bin
go build -o .local/bin/sluice-bench ./bench/cmd/sluice-bench
exec .local/bin/sluice-bench --repo "$ROOT" "$@"

#!/usr/bin/env bash
# Builds the Go example transforms under plugins/examples/go to .wasm files
# next to their sources (GOOS=wasip1, -buildmode=c-shared). With --all it
# also builds the Rust, C, AssemblyScript and WAT guests.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT/plugins/examples/go"
for dir in */; do
	name="${dir%/}"
	[[ -f "$name/main.go" ]] || continue
	echo "[guests] go: $name"
	(cd "$name" && GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o "$name.wasm" .)
done
if [[ "${1:-}" == "--all" && -x "$ROOT/plugins/build-guests.sh" ]]; then
	"$ROOT/plugins/build-guests.sh"
fi

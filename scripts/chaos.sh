#!/usr/bin/env bash
# The long fault-test suite behind docs/guarantees.md (`make chaos`): every
# scenario of e2e/chaos at the issue's sizes, including the ones that kill
# the shared Kafka broker and stop ClickHouse, so do not run it beside other
# test runs that use them. Loopback only; bounded (each scenario has its own
# deadline, the whole run CHAOS_TIMEOUT); stops by itself.
#
# Usage: scripts/chaos.sh [-run REGEXP] [extra go test args...]
#
# Environment (defaults are the issue's sizes):
#   CHAOS_RECORDS  records per scenario      (200000)
#   CHAOS_DEVICES  devices per scenario      (100)
#   CHAOS_INGEST   paced sending lasts ≥     (60s)
#   CHAOS_TIMEOUT  go test -timeout          (90m)
#   CHAOS_SEED     fault timing seed         (from the clock)
#
# Figures: one FIGURES line per scenario on the output, also appended to
# .local/chaos/figures.txt; each scenario's directory (sluice.log, device
# logs, dead letters) is kept under .local/chaos/<scenario>/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

RECORDS="${CHAOS_RECORDS:-200000}"
DEVICES="${CHAOS_DEVICES:-100}"
INGEST="${CHAOS_INGEST:-60s}"
TIMEOUT="${CHAOS_TIMEOUT:-90m}"
OUT="$ROOT/.local/chaos"

RUN='.'
if [[ ${1:-} == -run ]]; then
  RUN=$2
  shift 2
fi

scripts/services.sh install
scripts/services.sh start
mkdir -p "$OUT"
FIGURES="$OUT/figures.txt"
echo "# $(date -u +%FT%TZ) scripts/chaos.sh: ${RECORDS} records, ${DEVICES} devices, ingest ${INGEST}, run '${RUN}'" >>"$FIGURES"

args=(-chaos.long "-chaos.records=$RECORDS" "-chaos.devices=$DEVICES" "-chaos.ingest=$INGEST"
  "-chaos.figures=$FIGURES" "-chaos.keep=$OUT")
[[ -n ${CHAOS_SEED:-} ]] && args+=("-chaos.seed=$CHAOS_SEED")

set +e
go test -count=1 -v -timeout "$TIMEOUT" -run "$RUN" "$@" ./e2e/chaos -args "${args[@]}" 2>&1 |
  tee "$OUT/chaos.log" | grep --line-buffered -E '^(=== RUN|--- |FIGURES|PASS|FAIL|ok|panic)|scenarios_test.go|rig_test.go'
status=${PIPESTATUS[0]}
set -e

# The suite restarts the services; leave them up for whoever comes next.
scripts/services.sh status >/dev/null || scripts/services.sh start

echo
echo "figures (also in $FIGURES):"
grep -h '^FIGURES' "$OUT/chaos.log" || true
exit "$status"

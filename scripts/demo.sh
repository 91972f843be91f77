#!/usr/bin/env bash
# The main job, end to end: installs and starts Kafka and ClickHouse, builds
# Sluice and the example transform, runs the default pipeline.yaml, pushes
# sample data from simulated devices, and shows where to look. Sluice keeps
# running until Ctrl-C (DEMO_EXIT=1 stops it after the sample data instead).
#
# Environment: DEMO_DEVICES (10), DEMO_RECORDS (20000), DEMO_EXIT (0).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DEVICES="${DEMO_DEVICES:-10}"
RECORDS="${DEMO_RECORDS:-20000}"
BIN="$ROOT/.local/bin"
LOG="$ROOT/.local/sluice.log"
say() { printf '\n\033[1m[demo] %s\033[0m\n' "$*"; }

say "installing and starting Kafka and ClickHouse (first run takes a few minutes)"
scripts/services.sh install
scripts/services.sh start
scripts/services.sh topics telemetry:4 telemetry-dead:1

say "building sluice, the device simulator and the WASM transforms"
mkdir -p "$BIN"
go build -o "$BIN/sluice" ./cmd/sluice
go build -o "$BIN/sluice-devices" ./cmd/sluice-devices
scripts/guests.sh

say "checking pipeline.yaml"
"$BIN/sluice" validate -c pipeline.yaml

say "starting sluice (log: $LOG)"
"$BIN/sluice" run -c pipeline.yaml >"$LOG" 2>&1 &
SLUICE_PID=$!
stop() { kill -TERM "$SLUICE_PID" 2>/dev/null && wait "$SLUICE_PID" 2>/dev/null || true; }
trap stop EXIT
for _ in $(seq 1 100); do
	curl -fsS http://127.0.0.1:9100/healthz >/dev/null 2>&1 && break
	kill -0 "$SLUICE_PID" 2>/dev/null || { cat "$LOG"; echo "sluice exited"; exit 1; }
	sleep 0.2
done

say "$DEVICES devices push $RECORDS records to ws://127.0.0.1:8080/ingest"
"$BIN/sluice-devices" --url ws://127.0.0.1:8080/ingest --devices "$DEVICES" --records "$RECORDS"

say "waiting for ClickHouse to hold them"
for _ in $(seq 1 150); do
	n=$(clickhouse-client --port "${CLICKHOUSE_PORT:-9000}" -q "SELECT count() FROM telemetry FINAL" 2>/dev/null || echo 0)
	[[ "$n" -ge "$RECORDS" ]] && break
	sleep 0.2
done

say "Kafka: the last 3 records of topic telemetry"
echo "\$ kcat -b 127.0.0.1:9092 -C -t telemetry -o -1 -c 3 -e -f '%k %s\n'"
kcat -b 127.0.0.1:9092 -C -t telemetry -o -1 -c 3 -e -f '%k %s\n' 2>/dev/null || true

say "ClickHouse: what the devices sent, per device"
Q="SELECT device_id, count() AS records, round(avg(temp), 2) AS avg_temp, max(ts) AS last FROM telemetry FINAL GROUP BY device_id ORDER BY device_id LIMIT 5"
echo "\$ clickhouse-client -q \"$Q\""
clickhouse-client --port "${CLICKHOUSE_PORT:-9000}" -q "$Q" --format PrettyCompact

say "live view: http://127.0.0.1:8080/ui   metrics: http://127.0.0.1:9100/metrics"
if [[ "${DEMO_EXIT:-0}" == "1" ]]; then
	exit 0
fi
say "sluice is running; push more with .local/bin/sluice-devices, Ctrl-C to stop"
wait "$SLUICE_PID"

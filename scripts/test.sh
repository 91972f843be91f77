#!/usr/bin/env bash
# Runs every test against the real local services: installs what the tests
# need (idempotent), starts Kafka and ClickHouse, then runs the Go tests with
# the race detector, the Go guest SDK's own tests, and the JavaScript client
# tests. Long fault and benchmark runs are separate: make chaos, make bench.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/deps.sh
scripts/services.sh install
scripts/services.sh start
status=0
go test -race -timeout 30m ./... || status=$?
(cd plugins/sdk/go && go test ./...) || status=$?
(cd clients/js && node --test test/) || status=$?
exit $status

#!/usr/bin/env bash
# Runs every test against the real local services: installs what the tests
# need (idempotent), starts Kafka and ClickHouse, then runs the Go tests with
# the race detector and the JavaScript client tests.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/deps.sh
scripts/services.sh install
scripts/services.sh start
status=0
go test -race -timeout 25m ./... || status=$?
if [[ -d clients/js/test ]]; then
	(cd clients/js && node --test test/) || status=$?
fi
exit $status

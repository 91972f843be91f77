# Sluice: the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
GO    ?= go

.PHONY: demo test services guests build chaos bench clean

demo:            ## services up, the default pipeline.yaml running, sample devices pushing data
	scripts/demo.sh

test:            ## every test, against the real local Kafka and ClickHouse
	scripts/test.sh

services:        ## install (idempotent) and start Kafka and ClickHouse
	scripts/services.sh install
	scripts/services.sh start

guests:          ## build the example WASM transforms from source
	scripts/guests.sh

build:           ## build the sluice binaries into .local/bin
	$(GO) build -o .local/bin/sluice ./cmd/sluice
	$(GO) build -o .local/bin/sluice-devices ./cmd/sluice-devices

chaos:           ## the long fault-test suite (bounded; loopback only)
	scripts/chaos.sh

bench:           ## the benchmark harness (bounded; loopback only)
	scripts/bench.sh

clean:
	scripts/services.sh stop || true
	rm -rf .local/bin

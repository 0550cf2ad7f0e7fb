# omnisync — the two commands a newcomer needs are `make run` and `make test`.
SHELL := bash
GO ?= go
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
FUZZTIME ?= 2m

.PHONY: build run test test-shared bench fuzz lint kafka-up kafka-down deps chaos

build:
	$(GO) build -o bin/omnisync ./cmd/omnisync

# Everything on one machine with demo traffic: embedded broker, schema
# registry, producers, materializer into SQLite, API and console on :8080.
run: build
	./bin/omnisync dev --demo

# The whole suite against a real Apache Kafka and PostgreSQL that it starts
# (and stops, whatever happens), plus a short run of every fuzz target.
test:
	scripts/test.sh

# make test while the ports a Kafka, registry or three-broker test would use
# by habit (9092, 19092, 18081, 8081, 29092, 39092) are held by another process.
test-shared:
	scripts/test-shared.sh

# Benchmarks, each printed beside its baseline with the ratio.
bench:
	scripts/bench.sh

# Fault injection on the production shape (three brokers, PostgreSQL, producers,
# two materializer members) under load; writes docs/chaos-report.md (OUT=DIR).
chaos:
	scripts/chaos.sh

# Every fuzz target for FUZZTIME each.
fuzz:
	scripts/fuzz.sh $(FUZZTIME)

lint:
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

# A real single-node Apache Kafka (KRaft) on 127.0.0.1:19092; NODES=3 for three.
kafka-up:
	scripts/kafka.sh install
	scripts/kafka.sh up --nodes $(or $(NODES),1)

kafka-down:
	scripts/kafka.sh down

deps:
	scripts/test-deps.sh
	$(GO) mod download
	scripts/kafka.sh install

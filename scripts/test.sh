#!/usr/bin/env bash
# make test: installs what the suite needs (Debian test clients, Go modules,
# the Kafka jars), starts a real Apache Kafka and PostgreSQL, runs every test
# with the race detector, then every fuzz target briefly; stops the services
# whatever happens.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/services.sh
start_services
go vet ./...
OMNISYNC_TEST_KAFKA_FAULTS=1 go test -race -count 1 -timeout 45m ./...
scripts/fuzz.sh "${OMNISYNC_TEST_FUZZTIME:-10s}"

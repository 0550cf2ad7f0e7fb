#!/usr/bin/env bash
# make test: installs what the suite needs (Debian test clients, Go modules,
# the Kafka jars), starts a real Apache Kafka and PostgreSQL, runs every test
# with the race detector, then every fuzz target briefly; stops the services
# whatever happens. The go test JSON log and the console's screenshots go to
# $OMNISYNC_TEST_ARTIFACTS (default ./artifacts); gotestsum lists every
# skipped test with its reason at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export OMNISYNC_TEST_ARTIFACTS=${OMNISYNC_TEST_ARTIFACTS:-$PWD/artifacts}
mkdir -p "$OMNISYNC_TEST_ARTIFACTS"
source scripts/services.sh
start_services
go vet ./...
OMNISYNC_TEST_KAFKA_FAULTS=1 go tool gotestsum --format pkgname --jsonfile "$OMNISYNC_TEST_ARTIFACTS/go-test.json" \
  -- -race -count 1 -timeout 45m ./...
scripts/fuzz.sh "${OMNISYNC_TEST_FUZZTIME:-10s}"

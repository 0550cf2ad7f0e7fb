#!/usr/bin/env bash
# Runs the benchmarks and prints each beside its baseline with the ratio.
# Benchmarks that need Kafka use OMNISYNC_TEST_KAFKA when set, else start
# the real broker with scripts/kafka.sh, like make test. The table is also
# written as JSON to $OMNISYNC_BENCH_JSON (default artifacts/bench.json).
#   scripts/bench.sh [go test -bench regexp]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/services.sh
start_services
mkdir -p artifacts
go test -run '^$' -bench "${1:-.}" -benchmem -count 1 -timeout 120m ./... |
  go run ./internal/tools/benchratio -json "${OMNISYNC_BENCH_JSON:-artifacts/bench.json}"

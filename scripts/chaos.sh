#!/usr/bin/env bash
# Fault injection on the production shape, with a report (make chaos).
#
#   scripts/chaos.sh [--quick] [--faults a,b] [--web-rate N] [--phone-rate N] [--keep]
#
# Builds bin/omnisync, installs the Kafka jars, then runs internal/tools/chaos: a three-node
# Apache Kafka, PostgreSQL, the web and phone producers and two materializer members, each its
# own process on free ports in a temporary directory, under an open-loop load, one fault at a
# time; everything is stopped on exit. Writes $OUT/chaos-report.md and chaos-report.json
# (OUT defaults to docs). Exit status 1 when an acknowledged message was lost or doubled, the
# store differs from a clean replay, or a check could not be made. CHAOS_QUICK=1 = --quick.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
GO=${GO:-go}
"$GO" build -o bin/omnisync ./cmd/omnisync
scripts/kafka.sh install >/dev/null
exec "$GO" run ./internal/tools/chaos --root . --out "${OUT:-docs}" "$@"

#!/usr/bin/env bash
# make test on a machine where other software already uses the ports a
# Kafka, a schema registry or a three-broker test would pick by habit:
# holds 9092, 19092, 18081, 8081, 29092 and 39092 (those not already taken)
# for the whole run, then runs scripts/test.sh. The suite must pass anyway.
#
#   scripts/test-shared.sh            (make test-shared)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python3 - "$$" <<'PY' &
import os, socket, sys, time
parent = int(sys.argv[1])
held = []
for port in (9092, 19092, 18081, 8081, 29092, 39092):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        s.listen()
        held.append(s)
        print(f"test-shared: holding 127.0.0.1:{port}", file=sys.stderr)
    except OSError as e:
        print(f"test-shared: 127.0.0.1:{port} already in use ({e.strerror})", file=sys.stderr)
while True:  # until the run ends
    try:
        os.kill(parent, 0)
    except OSError:
        break
    time.sleep(1)
PY
holder=$!
trap 'kill $holder 2>/dev/null || true' EXIT
sleep 1
scripts/test.sh

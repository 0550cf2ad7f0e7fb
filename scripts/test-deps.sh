#!/usr/bin/env bash
# Installs the Debian packages the tests use, only when some are missing:
#   kcat                     Kafka CLI client (metadata probe in scripts/kafka.sh, produce/consume in tests)
#   python3-avro             Avro encode/decode from Python
#   python3-confluent-kafka  librdkafka-based Python client
# The Python modules land in Debian's /usr/bin/python3, not in a pyenv/venv python3 earlier on PATH.
# Idempotent; does nothing (and no network) when everything is present.
set -euo pipefail

PACKAGES=(kcat python3-avro python3-confluent-kafka)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
command -v kcat >/dev/null 2>&1 || [[ " ${missing[*]} " == *" kcat "* ]] || missing+=(kcat)

if ((${#missing[@]} == 0)); then
  echo "test-deps.sh: all present (${PACKAGES[*]})" >&2
  exit 0
fi

command -v apt-get >/dev/null 2>&1 || { echo "test-deps.sh: error: apt-get not found; install ${missing[*]} by hand" >&2; exit 1; }
SUDO=()
if ((EUID != 0)); then
  command -v sudo >/dev/null 2>&1 || { echo "test-deps.sh: error: need root (or sudo) to install ${missing[*]}" >&2; exit 1; }
  SUDO=(sudo)
fi

echo "test-deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
out=$(mktemp); trap 'rm -f "$out"' EXIT
# apt's output is shown only when a step fails.
"${SUDO[@]}" apt-get update -qq >"$out" 2>&1 \
  || { cat "$out" >&2; echo "test-deps.sh: error: apt-get update failed" >&2; exit 1; }
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$out" 2>&1 \
  || { cat "$out" >&2; echo "test-deps.sh: error: apt-get install ${missing[*]} failed" >&2; exit 1; }

for p in "${missing[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || { echo "test-deps.sh: error: $p still not installed" >&2; exit 1; }
done
command -v kcat >/dev/null 2>&1 || { echo "test-deps.sh: error: kcat not on PATH after install" >&2; exit 1; }
echo "test-deps.sh: installed ${missing[*]}" >&2

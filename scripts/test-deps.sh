#!/usr/bin/env bash
# Installs the Debian packages the tests use, only when some are missing:
#   kcat                     Kafka CLI client (metadata probe in scripts/kafka.sh, produce/consume in tests)
#   python3-avro             Avro encode/decode from Python
#   python3-confluent-kafka  librdkafka-based Python client and schema-registry client
#   python3-requests         needed by confluent_kafka.schema_registry (Debian lists it only as Suggests)
#   python3-pip              to add fastavro, which confluent_kafka's Avro serdes need and Debian does not package
#   chromium                 headless browser for the agent console's browser test (console/browser_test.go)
#   fonts-noto-cjk           CJK glyphs, without which headless Chromium draws Chinese text as boxes (console screenshots)
# The Python modules land in Debian's /usr/bin/python3, not in a pyenv/venv python3 earlier on PATH.
# Idempotent; does nothing (and no network) when everything is present.
set -euo pipefail

PACKAGES=(kcat python3-avro python3-confluent-kafka python3-requests python3-pip chromium fonts-noto-cjk)
FASTAVRO=fastavro==1.13.1

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
command -v kcat >/dev/null 2>&1 || [[ " ${missing[*]} " == *" kcat "* ]] || missing+=(kcat)

SUDO=()
if ((EUID != 0)) && command -v sudo >/dev/null 2>&1; then SUDO=(sudo); fi

# fastavro from PyPI into Debian's python3, beside the Debian modules.
install_fastavro() {
  /usr/bin/python3 -c 'import fastavro' 2>/dev/null && return 0
  echo "test-deps.sh: installing $FASTAVRO into /usr/bin/python3" >&2
  "${SUDO[@]}" /usr/bin/python3 -m pip install -q --break-system-packages "$FASTAVRO" >&2 \
    || { echo "test-deps.sh: error: pip install $FASTAVRO failed" >&2; exit 1; }
}

if ((${#missing[@]} == 0)); then
  install_fastavro
  echo "test-deps.sh: all present (${PACKAGES[*]} $FASTAVRO)" >&2
  exit 0
fi

((EUID == 0)) || command -v sudo >/dev/null 2>&1 || { echo "test-deps.sh: error: need root (or sudo) to install ${missing[*]}" >&2; exit 1; }
command -v apt-get >/dev/null 2>&1 || { echo "test-deps.sh: error: apt-get not found; install ${missing[*]} by hand" >&2; exit 1; }

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
install_fastavro
echo "test-deps.sh: installed ${missing[*]}" >&2

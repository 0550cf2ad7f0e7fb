# Sourced by test.sh and bench.sh: starts a real Apache Kafka and PostgreSQL
# for the run unless OMNISYNC_TEST_KAFKA / OMNISYNC_TEST_POSTGRES already name
# ones, exports their addresses, and stops what it started on exit.

services_dir=""
registry_pid=""
stop_services() {
  [[ -n "$services_dir" ]] || return 0
  [[ -z "$registry_pid" ]] || kill "$registry_pid" 2>/dev/null || true
  scripts/kafka.sh down --dir "$services_dir/kafka" --clean >/dev/null 2>&1 || true
  scripts/postgres.sh down --dir "$services_dir/pg" >/dev/null 2>&1 || true
  rm -rf "$services_dir"
}

start_services() {
  scripts/test-deps.sh
  go mod download
  services_dir=$(mktemp -d /tmp/omnisync-services.XXXXXX)
  trap stop_services EXIT
  if [[ -z "${OMNISYNC_TEST_KAFKA:-}" ]]; then
    scripts/kafka.sh install
    local line
    line=$(KAFKA_PORT=${KAFKA_PORT:-free} scripts/kafka.sh up --dir "$services_dir/kafka")
    export "${line?}"
    echo "services: real Apache Kafka at $OMNISYNC_TEST_KAFKA" >&2
  else
    echo "services: using OMNISYNC_TEST_KAFKA=$OMNISYNC_TEST_KAFKA" >&2
  fi
  if [[ -z "${OMNISYNC_TEST_REGISTRY:-}" ]]; then
    # One schema registry for the run, so every test package shares schema
    # IDs on the shared topics: omnisync's embedded registry on the real Kafka.
    go build -o "$services_dir/omnisync" ./cmd/omnisync
    # Port 0: the registry takes a free port and logs it.
    "$services_dir/omnisync" registry --brokers "$OMNISYNC_TEST_KAFKA" --listen 127.0.0.1:0 --log-level info --rate-limit -1 --max-in-flight -1 \
      >"$services_dir/registry.log" 2>&1 &
    registry_pid=$!
    local url=""
    for _ in $(seq 150); do
      url=$(grep -o '"addr": *"http://127.0.0.1:[0-9]*"' "$services_dir/registry.log" | head -1 | cut -d'"' -f4) || true
      [[ -n "$url" ]] && curl -sf "$url/subjects" >/dev/null 2>&1 && break
      kill -0 "$registry_pid" 2>/dev/null || { cat "$services_dir/registry.log" >&2; echo "services: schema registry did not start" >&2; return 1; }
      sleep 0.2
    done
    [[ -n "$url" ]] || { cat "$services_dir/registry.log" >&2; echo "services: schema registry did not say where it listens" >&2; return 1; }
    export OMNISYNC_TEST_REGISTRY=$url
    echo "services: schema registry at $OMNISYNC_TEST_REGISTRY" >&2
  fi
  if [[ -z "${OMNISYNC_TEST_POSTGRES:-}" ]]; then
    local line
    line=$(scripts/postgres.sh up --dir "$services_dir/pg" | grep '^OMNISYNC_TEST_POSTGRES=')
    export "${line?}"
    echo "services: real PostgreSQL at $OMNISYNC_TEST_POSTGRES" >&2
  else
    echo "services: using OMNISYNC_TEST_POSTGRES" >&2
  fi
}

# Sourced by test.sh and bench.sh: starts a real Apache Kafka and PostgreSQL
# for the run unless OMNISYNC_TEST_KAFKA / OMNISYNC_TEST_POSTGRES already name
# ones, exports their addresses, and stops what it started on exit.

services_dir=""
stop_services() {
  [[ -n "$services_dir" ]] || return 0
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
    line=$(scripts/kafka.sh up --dir "$services_dir/kafka")
    export "${line?}"
    echo "services: real Apache Kafka at $OMNISYNC_TEST_KAFKA" >&2
  else
    echo "services: using OMNISYNC_TEST_KAFKA=$OMNISYNC_TEST_KAFKA" >&2
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

#!/usr/bin/env bash
# Runs a throwaway PostgreSQL on 127.0.0.1 for tests and CI.
#
#   scripts/postgres.sh up [--dir DIR] [--port P]   initdb (trust auth) + start + create database omnisync
#   scripts/postgres.sh down [--dir DIR]            stop (fast) and delete DIR
#   scripts/postgres.sh stop [--dir DIR]            stop (fast), keeping the data; `up --dir DIR` starts it again
#
# stdout carries only OMNISYNC_TEST_POSTGRES=postgres://omnisync@127.0.0.1:PORT/omnisync?sslmode=disable;
# progress goes to stderr. DIR defaults to ${OMNISYNC_PG_DIR:-/tmp/omnisync-pg}; without --port a free
# port is picked. As root, the server runs as user `postgres` if it exists, else a system user
# `omnisync-pg` (created on first use): PostgreSQL refuses to run as root.
# Durability is switched off (fsync, synchronous_commit, full_page_writes): this is test data.
# wal_level = logical (with 20 replication slots and WAL senders), for omnisync source postgres (CDC).
set -euo pipefail

DIR="${OMNISYNC_PG_DIR:-/tmp/omnisync-pg}"
PORT=""
DB=omnisync
SUPERUSER=omnisync

log() { echo "postgres.sh: $*" >&2; }
die() { echo "postgres.sh: error: $*" >&2; exit 1; }

# PostgreSQL server binaries: PATH first, then the newest /usr/lib/postgresql/*/bin.
find_bin() {
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    BIN=$(dirname "$(readlink -f "$(command -v pg_ctl)")")
  else
    BIN=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1) || true
    [[ -n "$BIN" && -x "$BIN/pg_ctl" && -x "$BIN/initdb" ]] \
      || die "PostgreSQL server binaries not found (PATH, /usr/lib/postgresql/*/bin); apt-get install postgresql"
  fi
  PSQL=$BIN/psql CREATEDB=$BIN/createdb
  [[ -x $PSQL ]] || PSQL=$(command -v psql) || die "psql not found"
  [[ -x $CREATEDB ]] || CREATEDB=$(command -v createdb) || die "createdb not found"
}

# Runs a command as the unprivileged server user when we are root.
as_pg() {
  if ((EUID == 0)); then runuser -u "$PGUSER_OS" -- "$@"; else "$@"; fi
}

pick_user() {
  ((EUID == 0)) || return 0
  if id postgres >/dev/null 2>&1; then
    PGUSER_OS=postgres
  else
    PGUSER_OS=omnisync-pg
    id "$PGUSER_OS" >/dev/null 2>&1 \
      || useradd --system --no-create-home --shell /usr/sbin/nologin "$PGUSER_OS" \
      || die "could not create system user $PGUSER_OS"
  fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
  local p i
  for ((i = 0; i < 50; i++)); do
    p=$((20000 + RANDOM % 20000))
    port_open "$p" || { echo "$p"; return; }
  done
  die "no free port found"
}

running() { [[ -f "$DIR/data/postmaster.pid" ]] && as_pg "$BIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; }

dsn() { echo "OMNISYNC_TEST_POSTGRES=postgres://$SUPERUSER@127.0.0.1:$(cat "$DIR/port")/$DB?sslmode=disable"; }

parse() {
  while (($#)); do
    case $1 in
      --dir) DIR=${2:?--dir needs a value}; shift 2 ;;
      --port) [[ $cmd == up ]] || die "--port is for up"; PORT=${2:?--port needs a value}; shift 2 ;;
      *) die "$cmd: unknown argument $1" ;;
    esac
  done
  DIR=$(realpath -m "$DIR")
  cd /   # the server user may not be able to enter the caller's directory
}

up() {
  find_bin
  pick_user
  if [[ -f "$DIR/data/PG_VERSION" ]]; then
    [[ -f "$DIR/.omnisync-postgres" ]] || die "$DIR holds a database not made by postgres.sh"
    [[ -z "$PORT" || "$PORT" == "$(cat "$DIR/port")" ]] || die "$DIR is set up for port $(cat "$DIR/port"), not $PORT (run: scripts/postgres.sh down --dir $DIR)"
    if running; then
      log "already running from $DIR"
      dsn
      return
    fi
    log "restarting the existing database in $DIR"
  else
    [[ ! -e "$DIR" || -z "$(ls -A "$DIR")" ]] || die "$DIR exists, is not empty and holds no database"
    PORT=${PORT:-$(free_port)}
    ! port_open "$PORT" || die "port $PORT is already in use"
    mkdir -p "$DIR"
    touch "$DIR/.omnisync-postgres"
    echo "$PORT" >"$DIR/port"
    if ((EUID == 0)); then
      chown -R "$PGUSER_OS:" "$DIR"
      # The server user must be able to reach DIR: give it search (not read) permission on
      # parents that lack it, e.g. a 0700 `mktemp -d` directory of root's.
      local p=$DIR
      while p=$(dirname "$p"); [[ $p != / ]]; do
        as_pg test -x "$p" || { chmod o+x "$p"; log "chmod o+x $p (so $PGUSER_OS can reach $DIR)"; }
      done
    fi
    as_pg test -w "$DIR" || die "user $(as_pg id -un) cannot write to $DIR (are all its parent directories searchable?)"
    log "initdb in $DIR/data ($("$BIN/postgres" --version))"
    as_pg "$BIN/initdb" -D "$DIR/data" -U "$SUPERUSER" --auth=trust -E UTF8 --no-locale >"$DIR/initdb.log" 2>&1 \
      || { cat "$DIR/initdb.log" >&2; die "initdb failed"; }
    # Only the unix socket and 127.0.0.1, both without password.
    as_pg tee "$DIR/data/pg_hba.conf" >/dev/null <<'EOF'
local all all              trust
host  all all 127.0.0.1/32 trust
EOF
    as_pg tee -a "$DIR/data/postgresql.conf" >/dev/null <<EOF

# --- scripts/postgres.sh ---
listen_addresses = '127.0.0.1'
port = $(cat "$DIR/port")
unix_socket_directories = '$DIR'
fsync = off
synchronous_commit = off
full_page_writes = off
# Logical replication, for omnisync source postgres (CDC) and its tests.
wal_level = logical
max_replication_slots = 20
max_wal_senders = 20
EOF
  fi

  local port; port=$(cat "$DIR/port")
  ! port_open "$port" || die "port $port is already in use"
  if ! as_pg "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/postgres.log" -w -t 60 start >/dev/null; then
    tail -n 30 "$DIR/postgres.log" >&2 || true
    die "PostgreSQL did not start (log: $DIR/postgres.log)"
  fi
  # Create the database unless it exists (restart case).
  if [[ -z "$(as_pg "$PSQL" -h "$DIR" -p "$port" -U "$SUPERUSER" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'")" ]]; then
    as_pg "$CREATEDB" -h "$DIR" -p "$port" -U "$SUPERUSER" "$DB" || die "createdb $DB failed"
  fi
  log "PostgreSQL running on 127.0.0.1:$port (data and socket in $DIR)"
  dsn
}

down() {
  find_bin
  pick_user
  if [[ ! -e "$DIR" ]]; then
    log "nothing in $DIR"
    return
  fi
  [[ -f "$DIR/.omnisync-postgres" ]] || die "refusing to touch $DIR: not made by postgres.sh"
  if running; then
    as_pg "$BIN/pg_ctl" -D "$DIR/data" -m fast -w -t 60 stop >/dev/null || die "pg_ctl stop failed (log: $DIR/postgres.log)"
    log "stopped PostgreSQL in $DIR"
  fi
  rm -rf "$DIR"
  log "removed $DIR"
}

stop() {
  find_bin
  pick_user
  [[ -f "$DIR/.omnisync-postgres" ]] || die "no database made by postgres.sh in $DIR"
  if running; then
    as_pg "$BIN/pg_ctl" -D "$DIR/data" -m fast -w -t 60 stop >/dev/null || die "pg_ctl stop failed (log: $DIR/postgres.log)"
    log "stopped PostgreSQL in $DIR (data kept)"
  else
    log "PostgreSQL in $DIR is not running"
  fi
}

cmd=${1:-}
case $cmd in
  up | down | stop) shift; parse "$@"; "$cmd" ;;
  *) sed -n '2,13s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
esac

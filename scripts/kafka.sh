#!/usr/bin/env bash
# Runs a real Apache Kafka (KRaft, no ZooKeeper) on 127.0.0.1 for tests and CI.
#
#   scripts/kafka.sh install                      fetch the broker jars (Maven Central) into the cache
#   scripts/kafka.sh up [--nodes 1|3] [--dir DIR] format + start broker/controller node(s), wait, print bootstrap
#   scripts/kafka.sh up --secure [--dir DIR]      one node with SASL_SSL (SCRAM) and mutual-TLS client listeners
#   scripts/kafka.sh down [--dir DIR] [--clean]   stop every node started from DIR (--clean: also delete DIR)
#   scripts/kafka.sh stop-node N [--kill] [--dir DIR]   stop one node (SIGTERM; --kill: SIGKILL at once)
#   scripts/kafka.sh start-node N [--dir DIR]     restart a stopped node with its data, wait until it serves
#   scripts/kafka.sh stop-all [--kill] [--dir DIR]   stop every node at once, keeping the data
#   scripts/kafka.sh start-all [--dir DIR]        start every stopped node together (a quorum needs them), wait until all serve
#   scripts/kafka.sh tool CLASS [ARGS...]         run a Kafka CLI class, e.g. org.apache.kafka.tools.TopicCommand
#
# stdout carries only the result (OMNISYNC_TEST_KAFKA=host:port,... for `up`); progress goes to stderr.
# Environment: OMNISYNC_CACHE (jar cache root), OMNISYNC_KAFKA_DIR (default DIR), KAFKA_PORT (first client
# port, default 19092, or `free` for free ports in 21000-28999; node i listens on KAFKA_PORT+i-1 and its
# controller on KAFKA_PORT+100+i-1; free ports stay reserved for DIR in ${TMPDIR:-/tmp}/omnisync-kafka-ports
# until `down --clean`, so that no other kafka.sh takes them while the cluster is stopped),
# KAFKA_HEAP_OPTS (default -Xms128m -Xmx512m), KAFKA_JVM_OPTS (GC/JIT flags), KAFKA_UP_TIMEOUT (s, default 90).
# `up --secure` listens on free ports it picks in 21000-28999 (KAFKA_PORT, when set, instead) and prints
# OMNISYNC_TEST_KAFKA_SECURE=host:port, OMNISYNC_TEST_KAFKA_SECURE_CA=PEM file, ..._USER=, ..._PASSWORD=,
# and for mutual TLS ..._MTLS=host:port, ..._CLIENT_CERT= and ..._CLIENT_KEY= (PEM files).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
POM="$ROOT/deploy/kafka/pom.xml"
KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM")
CACHE="${OMNISYNC_CACHE:-$HOME/.cache/omnisync}/kafka-$KAFKA_VERSION"
LIBS="$CACHE/libs"
LOG4J="$CACHE/log4j2.properties"
DIR="${OMNISYNC_KAFKA_DIR:-/tmp/omnisync-kafka}"
BASE_PORT="${KAFKA_PORT:-19092}"
read -ra HEAP <<<"${KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}"
# C1-only JIT (TieredStopAtLevel=1): ~40% faster startup on 2 cores; plenty for test loads.
read -ra JVM_OPTS <<<"${KAFKA_JVM_OPTS:--XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:TieredStopAtLevel=1}"
UP_TIMEOUT="${KAFKA_UP_TIMEOUT:-90}"
STOP_TIMEOUT=30
PORTS_DIR="${TMPDIR:-/tmp}/omnisync-kafka-ports"  # one file per reserved base port, holding its DIR
STARTED=()   # nodes started by this run (stopped again if startup fails)
SECURE=0     # 1: the cluster in DIR was made by `up --secure` (set from cluster.env)

log() { echo "kafka.sh: $*" >&2; }
die() { echo "kafka.sh: error: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "'$1' not found on PATH ($2)"; }

# ---------------------------------------------------------------- install

pom_stamp() { sha256sum "$POM" | cut -d' ' -f1; }

# True when the jars for the current pom are complete in the cache.
installed() { [[ -f "$LOG4J" && -f "$LIBS/.complete" && "$(cat "$LIBS/.complete")" == "$(pom_stamp)" ]]; }

install() {
  if installed; then
    log "Kafka $KAFKA_VERSION already installed in $LIBS"
    return
  fi
  need java "Kafka $KAFKA_VERSION needs Java 17+"
  need mvn "Maven fetches the Kafka jars from Maven Central"
  log "fetching Kafka $KAFKA_VERSION jars from Maven Central ..."
  mkdir -p "$CACHE"
  local tmp; tmp=$(mktemp -d "$CACHE/libs.tmp.XXXXXX")
  if ! mvn -B -q -f "$POM" dependency:copy-dependencies -DoutputDirectory="$tmp" >"$CACHE/mvn.log" 2>&1; then
    cat "$CACHE/mvn.log" >&2; rm -rf "$tmp"; die "mvn could not fetch the Kafka jars (see above)"
  fi
  ls "$tmp"/kafka_2.13-"$KAFKA_VERSION".jar >/dev/null 2>&1 || { rm -rf "$tmp"; die "kafka_2.13-$KAFKA_VERSION.jar missing after mvn"; }
  pom_stamp >"$tmp/.complete"
  # One Log4j 2 config for brokers (INFO) and tools (-Domnisync.loglevel=WARN), all to the console.
  cat >"$LOG4J" <<'EOF'
status = warn
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = ${sys:omnisync.loglevel:-INFO}
rootLogger.appenderRef.console.ref = console
logger.request.name = kafka.request.logger
logger.request.level = WARN
EOF
  rm -rf "$LIBS"; mv "$tmp" "$LIBS"
  local jars=("$LIBS"/*.jar)
  log "installed Kafka $KAFKA_VERSION (${#jars[@]} jars) in $LIBS"
}

ensure_installed() { installed || install; }

BROKER_JAVA=(java "${HEAP[@]}" "${JVM_OPTS[@]}" -Djava.awt.headless=true
  "-Dlog4j2.configurationFile=$LOG4J" -cp "$LIBS/*")
TOOL_JAVA=(java -Xmx256m -XX:TieredStopAtLevel=1 -Djava.awt.headless=true -Domnisync.loglevel=WARN
  "-Dlog4j2.configurationFile=$LOG4J" -cp "$LIBS/*")

# Runs a Kafka CLI class (logging at WARN).
tool() { ensure_installed; "${TOOL_JAVA[@]}" "$@"; }

# ---------------------------------------------------------------- helpers

client_port() { echo $((BASE_PORT + $1 - 1)); }
controller_port() { echo $((BASE_PORT + 100 + $1 - 1)); }
node_dir() { echo "$DIR/node-$1"; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# True while PID exists and is not a zombie (an unreaped zombie still passes `kill -0`).
alive() {
  local stat; stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat%% *} != Z ]]
}

# Pid of node N if its broker process is alive (checks the command line, not just the pid).
node_pid() {
  local f; f="$(node_dir "$1")/kafka.pid"
  [[ -f "$f" ]] || return 1
  local pid cmdline; pid=$(cat "$f")
  cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
  [[ $cmdline == *"kafka.Kafka $(node_dir "$1")/server.properties"* ]] && echo "$pid"
}

# Makes DIR absolute and serialises commands on it (e.g. test packages calling `up` in parallel).
use_dir() {
  DIR=$(realpath -m "$DIR")
  mkdir -p "$(dirname "$DIR")"
  exec 9>"$DIR.lock"
  flock -w 300 9 || die "timed out waiting for the lock on $DIR"
}

load_cluster() {
  [[ -f "$DIR/cluster.env" ]] || die "no cluster in $DIR (run: scripts/kafka.sh up --dir $DIR)"
  # shellcheck disable=SC1091
  source "$DIR/cluster.env"   # NODES, BASE_PORT, CLUSTER_ID
}

bootstrap() {
  local i out=()
  for ((i = 1; i <= NODES; i++)); do out+=("127.0.0.1:$(client_port "$i")"); done
  (IFS=,; echo "${out[*]}")
}

# Ids of the live (unfenced) brokers in the metadata served by 127.0.0.1:PORT; none if it does not answer.
# A SASL_SSL broker (up --secure) is asked as its admin user, with the Java tool: kcat's librdkafka before 2.6.1
# (Debian 12 has 2.0.2) fails SCRAM against Kafka 4 brokers.
broker_ids() {
  local addr="127.0.0.1:$1" login=()
  ((SECURE)) && login=(--command-config "$DIR/secure/client.properties")
  if ((!SECURE)) && command -v kcat >/dev/null 2>&1; then
    timeout 10 kcat -L -b "$addr" -m 5 2>/dev/null | awk '$1 == "broker" {print $2}' || true
  else
    timeout 30 "${TOOL_JAVA[@]}" org.apache.kafka.tools.BrokerApiVersionsCommand --bootstrap-server "$addr" \
      "${login[@]}" 2>/dev/null | grep -v 'isFenced: true' | sed -n 's/.* (id: \([0-9]*\) .*/\1/p' || true
  fi
}

# Waits until node N answers metadata requests that list every running node (itself included).
wait_ready() {
  local n=$1 port; port=$(client_port "$n")
  local deadline=$((SECONDS + UP_TIMEOUT)) seen r ok
  while ((SECONDS < deadline)); do
    node_pid "$n" >/dev/null || fail_node "$n" "node $n exited during startup"
    if port_open "$port"; then
      seen=" $(broker_ids "$port" | tr '\n' ' ')" ok=1
      for r in $(running_nodes); do [[ $seen == *" $r "* ]] || ok=0; done
      if ((ok)); then
        log "node $n ready on 127.0.0.1:$port (brokers in metadata:$seen)"
        return
      fi
    fi
    sleep 1
  done
  fail_node "$n" "node $n did not come up within ${UP_TIMEOUT}s"
}

# Reports a node that failed to come up, stops the nodes this run started, exits 1.
fail_node() {
  local log; log="$(node_dir "$1")/kafka.log"
  echo "kafka.sh: error: $2; last lines of $log:" >&2
  tail -n 40 "$log" >&2 || true
  ((${#STARTED[@]} == 0)) || stop_nodes "${STARTED[@]}"
  exit 1
}

write_config() {
  local n=$1 d; d=$(node_dir "$n")
  local voters=() i
  for ((i = 1; i <= NODES; i++)); do voters+=("$i@127.0.0.1:$(controller_port "$i")"); done
  local rf=1 isr=1
  ((NODES >= 3)) && rf=3 isr=2
  mkdir -p "$d/data"
  cat >"$d/server.properties" <<EOF
# Generated by scripts/kafka.sh: node $n of $NODES, combined broker + controller, static quorum.
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$(IFS=,; echo "${voters[*]}")
listeners=PLAINTEXT://127.0.0.1:$(client_port "$n"),CONTROLLER://127.0.0.1:$(controller_port "$n")
advertised.listeners=PLAINTEXT://127.0.0.1:$(client_port "$n")
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$d/data
num.partitions=1
default.replication.factor=$rf
min.insync.replicas=$isr
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.segment.bytes=16777216
num.network.threads=2
num.io.threads=4
$(failover_settings)
EOF
}

# Broker settings for a broker that dies without a word (kill -9, host lost), the same in
# docker-compose.yml's brokers (deploy/deploy_test.go checks). Failover time is mostly the broker
# session: until the controller fences the dead broker, its partitions have no leader and every
# acks=all produce whose ISR holds it waits. The KRaft quorum timeouts stay at Kafka's defaults
# (fetch 2 s, election 1 s): shorter ones made restarted nodes miss elections on a loaded 2-core host.
failover_settings() {
  cat <<'EOF'
# failover settings: begin
# fence a dead broker after 3 s without a heartbeat (default 9 s): its leaders move and ISRs shrink
broker.session.timeout.ms=3000
# heartbeat six times per session (default 2 s), so one slow heartbeat does not fence a live broker
broker.heartbeat.interval.ms=500
# a follower that stopped fetching leaves the ISR after 10 s (default 30 s), should fencing not come
replica.lag.time.max.ms=10000
# failover settings: end
EOF
}

check_ports() {
  local p
  for p in "$(client_port "$1")" "$(controller_port "$1")"; do
    ! port_open "$p" || die "port $p (node $1) is already in use; another Kafka? (KAFKA_PORT moves the ports)"
  done
}

start_node() {
  local n=$1 d; d=$(node_dir "$n")
  node_pid "$n" >/dev/null && { log "node $n already running"; return; }
  check_ports "$n"
  # setsid: the broker must outlive this script and its terminal; 9>&-: it must not hold the lock.
  setsid "${BROKER_JAVA[@]}" kafka.Kafka "$d/server.properties" >>"$d/kafka.log" 2>&1 </dev/null 8>&- 9>&- &
  local pid=$!
  echo "$pid" >"$d/kafka.pid"
  STARTED+=("$n")
  # Until the child has exec'd the JVM its command line is this script's, which node_pid does not
  # take for the broker: on a loaded host, wait for the exec (or the child's end) before anyone asks.
  local i
  for i in $(seq 200); do
    node_pid "$n" >/dev/null || ! kill -0 "$pid" 2>/dev/null && break
    sleep 0.05
  done
  log "started node $n (pid $pid, log $d/kafka.log)"
}

# SIGTERM the given nodes together, wait up to STOP_TIMEOUT s, then SIGKILL what is left.
stop_nodes() {
  local n pids=()
  for n in "$@"; do
    local pid; pid=$(node_pid "$n") || continue
    kill -TERM "$pid" 2>/dev/null || true
    pids+=("$n:$pid")
  done
  local deadline=$((SECONDS + STOP_TIMEOUT)) alive
  while :; do
    alive=0
    for p in "${pids[@]}"; do alive "${p#*:}" && alive=1; done
    ((alive == 0 || SECONDS >= deadline)) && break
    sleep 0.5
  done
  for p in "${pids[@]}"; do
    if alive "${p#*:}"; then
      log "node ${p%%:*} did not stop within ${STOP_TIMEOUT}s, killing it"
      kill -KILL "${p#*:}" 2>/dev/null || true
    fi
    rm -f "$(node_dir "${p%%:*}")/kafka.pid"
    log "stopped node ${p%%:*}"
  done
}

running_nodes() {
  local d n
  for d in "$DIR"/node-*; do
    [[ -d "$d" ]] || continue
    n=${d##*/node-}
    node_pid "$n" >/dev/null && echo "$n"
  done
  return 0
}

# Empties DIR of a previous, stopped cluster (refusing a DIR kafka.sh did not make) and picks a new CLUSTER_ID.
fresh_dir() {
  mkdir -p "$DIR"
  [[ -z "$(ls -A "$DIR")" || -f "$DIR/.omnisync-kafka" ]] || die "$DIR is not empty and was not made by kafka.sh"
  rm -rf "$DIR"/node-* "$DIR/cluster.env" "$DIR/secure"
  touch "$DIR/.omnisync-kafka"
  # A KRaft cluster ID is 16 random bytes, base64url without padding; avoid a leading '-' (looks like a flag).
  local id
  until id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '='); [[ $id != -* ]]; do :; done
  CLUSTER_ID=$id
}

# ---------------------------------------------------------------- secure broker (up --secure)
#
# One node (broker + controller) with two client listeners, both TLS with a certificate for 127.0.0.1 and
# localhost signed by a throwaway CA made in DIR/secure:
#   SASL_SSL (port P): SCRAM-SHA-512 and SCRAM-SHA-256 for one user, admin, whose credentials are written into
#     the cluster metadata when the storage is formatted;
#   SSL (port P+200): mutual TLS, clients must present a certificate from the same CA (client.crt/client.key).
# The broker talks to itself over SASL_SSL (as admin, SCRAM-SHA-512); only the controller listener (P+100) is
# PLAINTEXT, on 127.0.0.1. There is no authorizer: an authenticated client may do anything.
SCRAM_USER="admin"

mtls_port() { echo $((BASE_PORT + 200)); }

# Port P for clients, with P+100 for the controller and P+200 for mutual TLS, all free now (for NODES
# nodes: P..P+NODES-1 and P+100..P+100+NODES-1) and reserved by no other DIR; reserves them for DIR
# (which must exist) and sets BASE_PORT. The reservation is what keeps a stopped cluster's ports from
# another kafka.sh run; a clash with a program that picks its ports otherwise is still possible, so
# callers retry `up` when a port turns out taken.
reserve_free_ports() {
  mkdir -p "$PORTS_DIR"
  exec 8>"$PORTS_DIR.lock"
  flock -w 60 8 || die "timed out waiting for the lock on $PORTS_DIR"
  release_ports  # a previous cluster's in DIR
  local p i n taken
  for ((i = 0; i < 200; i++)); do
    p=$((21000 + RANDOM % 7800)) taken=0
    reserved_near "$p" && continue
    for ((n = 0; n < ${NODES:-1}; n++)); do
      port_open $((p + n)) || port_open $((p + 100 + n)) || continue
      taken=1
    done
    ((taken)) || port_open $((p + 200)) && continue
    echo "$DIR" >"$PORTS_DIR/$p"
    exec 8>&-
    BASE_PORT=$p
    return
  done
  exec 8>&-
  die "found no free ports P, P+100, P+200 in 21000-28999"
}

# True when a live reservation (another DIR's) lies within 300 ports of P. A reservation is stale when
# its DIR is gone, or when none of its nodes has run for 30 minutes.
reserved_near() {
  local p=$1 f r owner
  for f in "$PORTS_DIR"/*; do
    [[ -f $f ]] || continue
    r=${f##*/} owner=$(cat "$f" 2>/dev/null) || continue
    if [[ ! -d $owner ]] || { ! dir_has_live_node "$owner" && [[ -n $(find "$f" -mmin +30) ]]; }; then
      rm -f "$f"
      continue
    fi
    ((p - r < 300 && r - p < 300)) && return 0
  done
  return 1
}

dir_has_live_node() {
  local f
  for f in "$1"/node-*/kafka.pid; do
    [[ -f $f ]] && alive "$(cat "$f")" && return 0
  done
  return 1
}

# Drops DIR's port reservation (down --clean); touch_ports keeps it fresh while the cluster is used.
release_ports() {
  local f
  for f in "$PORTS_DIR"/*; do
    [[ -f $f && $(cat "$f" 2>/dev/null) == "$DIR" ]] && rm -f "$f"
  done
  return 0
}
touch_ports() { [[ ! -f "$PORTS_DIR/$BASE_PORT" ]] || touch "$PORTS_DIR/$BASE_PORT"; }

# Writes the CA (ca.pem: what clients trust), the broker's PEM keystore, a client certificate for mutual TLS
# (client.crt, client.key), and the admin user's client settings for the Kafka CLI tools (client.properties).
secure_files() {
  local d="$DIR/secure" mask; mask=$(umask)
  local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30)
  mkdir -p "$d"
  umask 077
  {
    openssl req -x509 -new "${ec[@]}" -subj "/CN=omnisync throwaway test CA" -keyout "$d/ca.key" -out "$d/ca.pem" &&
      openssl req -x509 -new "${ec[@]}" -subj "/CN=localhost" -CA "$d/ca.pem" -CAkey "$d/ca.key" \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -addext "extendedKeyUsage=serverAuth" \
        -addext "basicConstraints=critical,CA:FALSE" -keyout "$d/broker.key" -out "$d/broker.crt" &&
      openssl req -x509 -new "${ec[@]}" -subj "/CN=omnisync-test-client" -CA "$d/ca.pem" -CAkey "$d/ca.key" \
        -addext "extendedKeyUsage=clientAuth" -addext "basicConstraints=critical,CA:FALSE" \
        -keyout "$d/client.key" -out "$d/client.crt"
  } 2>"$d/openssl.log" || { cat "$d/openssl.log" >&2; die "openssl could not make the certificates in $d"; }
  # Kafka's PEM keystore: unencrypted PKCS#8 key, then the certificate chain.
  cat "$d/broker.key" "$d/broker.crt" "$d/ca.pem" >"$d/broker-keystore.pem"
  cat >"$d/client.properties" <<EOF
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$SCRAM_USER" password="$SCRAM_PASSWORD";
ssl.truststore.type=PEM
ssl.truststore.location=$d/ca.pem
EOF
  umask "$mask"
  chmod 644 "$d/ca.pem" "$d/client.crt"
}

# Appends the SASL_SSL settings to node 1's config; in a properties file the last value of a key wins.
write_secure_config() {
  local d="$DIR/secure" port; port=$(client_port 1)
  cat >>"$(node_dir 1)/server.properties" <<EOF

# Generated by scripts/kafka.sh up --secure: clients (and the broker itself) on SASL_SSL, clients with a
# certificate on SSL (mutual TLS), controller on PLAINTEXT.
listeners=SASL_SSL://127.0.0.1:$port,SSL://127.0.0.1:$(mtls_port),CONTROLLER://127.0.0.1:$(controller_port 1)
advertised.listeners=SASL_SSL://127.0.0.1:$port,SSL://127.0.0.1:$(mtls_port)
listener.security.protocol.map=SASL_SSL:SASL_SSL,SSL:SSL,CONTROLLER:PLAINTEXT
inter.broker.listener.name=SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$SCRAM_USER" password="$SCRAM_PASSWORD";
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PEM
ssl.keystore.location=$d/broker-keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=$d/ca.pem
ssl.client.auth=none
listener.name.ssl.ssl.client.auth=required
EOF
}

print_secure() {
  echo "OMNISYNC_TEST_KAFKA_SECURE=$(bootstrap)"
  echo "OMNISYNC_TEST_KAFKA_SECURE_CA=$DIR/secure/ca.pem"
  echo "OMNISYNC_TEST_KAFKA_SECURE_USER=$SCRAM_USER"
  echo "OMNISYNC_TEST_KAFKA_SECURE_PASSWORD=$SCRAM_PASSWORD"
  echo "OMNISYNC_TEST_KAFKA_SECURE_MTLS=127.0.0.1:$(mtls_port)"
  echo "OMNISYNC_TEST_KAFKA_SECURE_CLIENT_CERT=$DIR/secure/client.crt"
  echo "OMNISYNC_TEST_KAFKA_SECURE_CLIENT_KEY=$DIR/secure/client.key"
}

up_secure() {
  need openssl "up --secure makes its certificates with openssl"
  ensure_installed
  use_dir
  if [[ -n "$(running_nodes)" ]]; then
    load_cluster
    ((SECURE)) || die "a PLAINTEXT cluster is already running from $DIR (run: scripts/kafka.sh down --dir $DIR)"
    log "SASL_SSL broker already running from $DIR"
    wait_ready 1
    print_secure
    return
  fi
  NODES=1 SECURE=1
  fresh_dir
  if [[ -z ${KAFKA_PORT:-} || $KAFKA_PORT == free ]]; then reserve_free_ports; fi
  check_ports 1
  ! port_open "$(mtls_port)" || die "port $(mtls_port) (mutual TLS) is already in use (KAFKA_PORT moves the ports)"
  # Alphanumeric: the password sits inside --add-scram's [name=...,password=...] and JAAS quotes.
  SCRAM_PASSWORD=$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
  secure_files
  printf 'NODES=1\nBASE_PORT=%s\nCLUSTER_ID=%s\nSECURE=1\nSCRAM_PASSWORD=%s\n' \
    "$BASE_PORT" "$CLUSTER_ID" "$SCRAM_PASSWORD" >"$DIR/cluster.env"
  chmod 600 "$DIR/cluster.env"
  write_config 1
  write_secure_config
  if ! tool kafka.tools.StorageTool format --config "$(node_dir 1)/server.properties" --cluster-id "$CLUSTER_ID" \
    --add-scram "SCRAM-SHA-512=[name=$SCRAM_USER,password=$SCRAM_PASSWORD]" \
    --add-scram "SCRAM-SHA-256=[name=$SCRAM_USER,password=$SCRAM_PASSWORD]" >"$(node_dir 1)/format.log" 2>&1; then
    cat "$(node_dir 1)/format.log" >&2
    die "formatting storage of the SASL_SSL node failed"
  fi
  log "formatted the SASL_SSL node with SCRAM credentials for $SCRAM_USER, cluster id $CLUSTER_ID"
  start_node 1
  wait_ready 1
  print_secure
}

# ---------------------------------------------------------------- commands

up() {
  local nodes=1 secure=0 i
  while (($#)); do
    case $1 in
      --nodes) nodes=${2:?--nodes needs a value}; shift 2 ;;
      --dir) DIR=${2:?--dir needs a value}; shift 2 ;;
      --secure) secure=1; shift ;;
      *) die "up: unknown argument $1" ;;
    esac
  done
  [[ $nodes == 1 || $nodes == 3 ]] || die "--nodes must be 1 or 3"
  if ((secure)); then
    ((nodes == 1)) || die "--secure runs one node"
    up_secure
    return
  fi
  ensure_installed
  use_dir

  # Already running from this DIR: check it matches, wait for it, print it again.
  if [[ -n "$(running_nodes)" ]]; then
    load_cluster
    ((NODES == nodes)) || die "a $NODES-node cluster is already running from $DIR (run: scripts/kafka.sh down --dir $DIR)"
    ((!SECURE)) || die "a SASL_SSL broker (up --secure) is already running from $DIR (run: scripts/kafka.sh down --dir $DIR)"
    log "cluster already running from $DIR"
    for ((i = 1; i <= NODES; i++)); do node_pid "$i" >/dev/null || start_node "$i"; done
    for ((i = 1; i <= NODES; i++)); do wait_ready "$i"; done
    echo "OMNISYNC_TEST_KAFKA=$(bootstrap)"
    return
  fi

  # Fresh cluster: data of a previous, stopped cluster in DIR is discarded.
  NODES=$nodes
  fresh_dir
  if [[ ${KAFKA_PORT:-} == free ]]; then reserve_free_ports; fi
  for ((i = 1; i <= NODES; i++)); do check_ports "$i"; done
  printf 'NODES=%s\nBASE_PORT=%s\nCLUSTER_ID=%s\n' "$NODES" "$BASE_PORT" "$CLUSTER_ID" >"$DIR/cluster.env"

  # Format every node's storage, in parallel. Static quorum (controller.quorum.voters),
  # so none of the dynamic-quorum flags (--standalone, --initial-controllers).
  local pids=()
  for ((i = 1; i <= NODES; i++)); do
    write_config "$i"
    tool kafka.tools.StorageTool format --config "$(node_dir "$i")/server.properties" \
      --cluster-id "$CLUSTER_ID" >"$(node_dir "$i")/format.log" 2>&1 &
    pids+=($!)
  done
  for ((i = 1; i <= NODES; i++)); do
    wait "${pids[i - 1]}" || { cat "$(node_dir "$i")/format.log" >&2; die "formatting storage of node $i failed"; }
  done
  log "formatted $NODES node(s), cluster id $CLUSTER_ID"
  for ((i = 1; i <= NODES; i++)); do start_node "$i"; done
  for ((i = 1; i <= NODES; i++)); do wait_ready "$i"; done
  echo "OMNISYNC_TEST_KAFKA=$(bootstrap)"
}

down() {
  local clean=0
  while (($#)); do
    case $1 in
      --dir) DIR=${2:?--dir needs a value}; shift 2 ;;
      --clean) clean=1; shift ;;
      *) die "down: unknown argument $1" ;;
    esac
  done
  use_dir
  local nodes; mapfile -t nodes < <(running_nodes)
  if ((${#nodes[@]})); then stop_nodes "${nodes[@]}"; else log "no Kafka running from $DIR"; fi
  if ((clean)) && [[ -d "$DIR" ]]; then
    [[ -f "$DIR/.omnisync-kafka" ]] || die "refusing to delete $DIR: not made by kafka.sh"
    rm -rf "$DIR"
    release_ports
    log "removed $DIR"
  fi
}

node_cmd() {
  local cmd=$1 n=${2:-} kill=0
  [[ $n =~ ^[0-9]+$ ]] || die "usage: $cmd N [--dir DIR]"
  shift 2
  while (($#)); do
    case $1 in
      --dir) DIR=${2:?--dir needs a value}; shift 2 ;;
      --kill) [[ $cmd == stop-node ]] || die "--kill is for stop-node"; kill=1; shift ;;
      *) die "$cmd: unknown argument $1" ;;
    esac
  done
  use_dir
  load_cluster
  touch_ports
  ((n >= 1 && n <= NODES)) || die "node $n does not exist (cluster has $NODES)"
  if [[ $cmd == stop-node ]]; then
    local pid
    if ! pid=$(node_pid "$n"); then log "node $n is not running"; return; fi
    if ((kill)); then
      kill -KILL "$pid"
      while alive "$pid"; do sleep 0.2; done
      rm -f "$(node_dir "$n")/kafka.pid"
      log "killed node $n"
    else
      stop_nodes "$n"
    fi
  else
    ensure_installed
    start_node "$n"
    wait_ready "$n"
  fi
}

# stop-all / start-all: the whole cluster down and up again with its data. A
# lone restarted node never reaches a controller quorum, so start-all starts
# every node before waiting for any.
all_cmd() {
  local cmd=$1 kill=0 n
  shift
  while (($#)); do
    case $1 in
      --dir) DIR=${2:?--dir needs a value}; shift 2 ;;
      --kill) [[ $cmd == stop-all ]] || die "--kill is for stop-all"; kill=1; shift ;;
      *) die "$cmd: unknown argument $1" ;;
    esac
  done
  use_dir
  load_cluster
  touch_ports
  if [[ $cmd == stop-all ]]; then
    local nodes; mapfile -t nodes < <(running_nodes)
    ((${#nodes[@]})) || { log "no node is running"; return; }
    if ((kill)); then
      local pid
      for n in "${nodes[@]}"; do
        pid=$(node_pid "$n") || continue
        kill -KILL "$pid" 2>/dev/null || true
        while alive "$pid"; do sleep 0.2; done
        rm -f "$(node_dir "$n")/kafka.pid"
        log "killed node $n"
      done
    else
      stop_nodes "${nodes[@]}"
    fi
  else
    ensure_installed
    for ((n = 1; n <= NODES; n++)); do start_node "$n"; done
    for ((n = 1; n <= NODES; n++)); do wait_ready "$n"; done
    echo "OMNISYNC_TEST_KAFKA=$(bootstrap)"
  fi
}

case ${1:-} in
  install) install; echo "$LIBS" ;;
  stop-all | start-all) all_cmd "$@" ;;
  up) shift; up "$@" ;;
  down) shift; down "$@" ;;
  stop-node | start-node) node_cmd "$@" ;;
  tool) shift; [[ $# -ge 1 ]] || die "usage: tool CLASS [ARGS...]"; tool "$@" ;;
  *) sed -n '/^set -euo/q; 2,$s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Starts or stops a single-node Apache Kafka 4.1 broker (KRaft) on 127.0.0.1 for the tests.
#   scripts/broker.sh start DIR   fetches the broker with Maven, formats DIR, starts it and
#                                 prints the bootstrap address; DIR/pid holds its process id
#   scripts/broker.sh stop DIR
#   scripts/broker.sh resume DIR  starts a stopped broker again with its data and ports
#   scripts/broker.sh cluster DIR starts a three-node cluster, each node broker and controller,
#                                 in DIR/node1..3 (node.id 1..3), with replication factor 3 and
#                                 min.insync.replicas=2 everywhere, and prints the bootstrap
#                                 addresses; `resume DIR/nodeN` restarts a killed node, and
#                                 `stop DIR` stops them all
# With BROKER_LANES=N, `cluster` also starts Toxiproxy (Shopify's TCP fault proxy, built with
# `go install` when missing) and gives every node N more client listeners ("lanes"), each
# advertised as the address of its own proxy, so that a client bootstrapped through a lane
# makes every connection through that lane's proxies: DIR/laneL/bootstrap holds lane L's
# proxy addresses, DIR/toxiproxy the proxy's HTTP API address, and the proxy of lane L to
# node N is named laneL-nodeN. The plain listener (DIR/bootstrap) and the brokers' own
# replication stay direct. `toxiproxy-restart DIR` restarts Toxiproxy with its proxies and no
# toxic, on the same ports.
# With BROKER_SASL_SSL=1, `start` makes the client listener SASL_SSL (the broker's own and the
# controller's listeners stay PLAINTEXT on loopback): it generates a CA and a certificate for
# 127.0.0.1 and localhost into DIR/tls (clients trust DIR/tls/ca.pem), enables SCRAM-SHA-512
# and PLAIN, and creates the users in BROKER_SASL_USERS ("name:password name:password",
# letters, digits, '-' and '_' only) for both mechanisms. The address printed is that listener's.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cmd="${1:?start|stop}"
dir="${2:?broker directory}"
TOXIPROXY_VERSION=v2.5.0
# Built by `go install` into the project's target directory, once.
TOXIPROXY_BIN="$here/../target/toxiproxy"

# Prints $1 distinct ports that are free now, all below the kernel's ephemeral range: neither
# an outgoing connection nor a bind to port 0 can take one before its broker binds it, or while
# a killed broker is down. (A broker of the test cluster once exited at start on a port so taken.)
free_ports() {
  python3 - "$1" <<'PY'
import random, socket, sys
ephemeral = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
if ephemeral < 12000:
    sys.exit(f"the ephemeral ports start at {ephemeral}: no room below them for the brokers' ports")
held = []
for _ in range(10000):
    if len(held) == int(sys.argv[1]):
        break
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", random.randrange(10000, ephemeral)))
        held.append(s)
    except OSError:
        s.close()
else:
    sys.exit("no free ports below the ephemeral range")
print(" ".join(str(s.getsockname()[1]) for s in held))
PY
}

# A CA and, signed by it, the broker's certificate for 127.0.0.1 and localhost, in a PKCS12
# keystore whose password is in DIR/tls/keystore-password.
tls() {
  local t="$dir/tls"
  mkdir -p "$t"
  openssl rand -hex 16 > "$t/keystore-password"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=hotline test CA" \
    -keyout "$t/ca.key" -out "$t/ca.pem" 2> "$t/openssl.log"
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$t/broker.key" -out "$t/broker.csr" \
    2>> "$t/openssl.log"
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > "$t/san.ext"
  openssl x509 -req -in "$t/broker.csr" -CA "$t/ca.pem" -CAkey "$t/ca.key" -CAcreateserial -days 2 \
    -extfile "$t/san.ext" -out "$t/broker.pem" 2>> "$t/openssl.log"
  openssl pkcs12 -export -in "$t/broker.pem" -inkey "$t/broker.key" -certfile "$t/ca.pem" -name broker \
    -passout "file:$t/keystore-password" -out "$t/broker.p12"
}

# Runs the broker formatted in $1 (default $dir) without waiting for it.
spawn() {
  local d="${1:-$dir}"
  local heap=768m
  [ -f "$d/heap" ] && heap=$(cat "$d/heap")
  : > "$d/broker.log"
  nohup java -Xms256m -Xmx$heap -cp "$here/kafka/target/libs/*" kafka.Kafka "$d/server.properties" \
    >> "$d/broker.log" 2>&1 &
  echo $! > "$d/pid"
}

# Waits until the broker in $1 (default $dir) serves.
wait_started() {
  local d="${1:-$dir}"
  for _ in $(seq 1 180); do
    if grep -q "Kafka Server started" "$d/broker.log" 2>/dev/null; then
      return 0
    fi
    if ! kill -0 "$(cat "$d/pid")" 2>/dev/null; then
      echo "the Kafka broker in $d exited; its errors, then the end of its log:" >&2
      grep -E -i -m 20 "ERROR|FATAL|Exception" "$d/broker.log" >&2 || true; tail -20 "$d/broker.log" >&2; exit 1
    fi
    sleep 0.5
  done
  echo "the Kafka broker in $d did not start within 90 s; its log:" >&2; tail -50 "$d/broker.log" >&2
  exit 1
}

# Runs the broker formatted in $dir, waits until it serves and prints its address.
launch() {
  spawn
  wait_started
  cat "$dir/bootstrap"
}

# The properties every node shares, for node directory $1 with replication factor $2 and
# min.insync.replicas $3 on every topic, internal ones included.
settings() {
  cat <<PROPS
controller.listener.names=CONTROLLER
log.dirs=$1/data
num.partitions=1
default.replication.factor=$2
min.insync.replicas=$3
auto.create.topics.enable=false
offsets.topic.replication.factor=$2
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=$2
transaction.state.log.min.isr=$3
transaction.state.log.num.partitions=3
group.initial.rebalance.delay.ms=0
log.cleaner.backoff.ms=1000
# Room for the bad-input test's 10 MB message.
message.max.bytes=17825792
PROPS
}

# Starts Toxiproxy for cluster directory $1, lanes $2, nodes $3...: one proxy per lane and
# node, from proxy_ports to lane_ports; writes $1/toxiproxy and $1/laneL/bootstrap.
toxiproxy() {
  local d="$1" ls="$2"
  shift 2
  if ! go version -m "$TOXIPROXY_BIN/server" 2>/dev/null | grep -q "toxiproxy/v2[[:space:]]*$TOXIPROXY_VERSION"; then
    GOBIN="$TOXIPROXY_BIN" go install "github.com/Shopify/toxiproxy/v2/cmd/server@$TOXIPROXY_VERSION" >&2
  fi
  local api=${pool[k++]} proxies="" n l
  for l in $ls; do
    mkdir -p "$d/lane$l"
    local lane=""
    for n in "$@"; do
      proxies+="${proxies:+,}{\"name\":\"lane$l-node$n\",\"listen\":\"127.0.0.1:${proxy_ports[$n,$l]}\",\"upstream\":\"127.0.0.1:${lane_ports[$n,$l]}\",\"enabled\":true}"
      lane+="${lane:+,}127.0.0.1:${proxy_ports[$n,$l]}"
    done
    echo "$lane" > "$d/lane$l/bootstrap"
  done
  echo "[$proxies]" > "$d/toxiproxy.json"
  : > "$d/toxiproxy.log"
  serve_toxiproxy "$d" "$api"
}

# Runs Toxiproxy for cluster directory $1 with its API on port $2, the proxies of
# $1/toxiproxy.json and no toxic; waits until the API answers and every proxy listens.
serve_toxiproxy() {
  local d="$1" api="$2"
  nohup "$TOXIPROXY_BIN/server" -host 127.0.0.1 -port "$api" -config "$d/toxiproxy.json" \
    >> "$d/toxiproxy.log" 2>&1 &
  echo $! > "$d/toxiproxy.pid"
  # Up once its API answers and every proxy listens (a port taken meanwhile fails here).
  for _ in $(seq 1 100); do
    if python3 - "$api" "$d/toxiproxy.json" 2>/dev/null <<'PY'
import json, socket, sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/version", timeout=1)
for proxy in json.load(open(sys.argv[2])):
    host, port = proxy["listen"].rsplit(":", 1)
    socket.create_connection((host, int(port)), timeout=1).close()
PY
    then
      echo "127.0.0.1:$api" > "$d/toxiproxy"
      return 0
    fi
    sleep 0.1
  done
  echo "Toxiproxy did not start with every proxy listening; its log:" >&2; cat "$d/toxiproxy.log" >&2; exit 1
}

fetch() {
  # Maven's local repository (~/.m2) is reused between runs.
  (cd "$here/kafka" && mvn -q -B dependency:copy-dependencies -DoutputDirectory=target/libs) >&2
}

format() {
  local cp="$here/kafka/target/libs/*"
  java -cp "$cp" kafka.tools.StorageTool format -t "$1" -c "$2/server.properties" "${@:3}" > "$2/format.log" 2>&1
}

cluster_id() {
  java -cp "$here/kafka/target/libs/*" kafka.tools.StorageTool random-uuid
}

case "$cmd" in
start)
  fetch
  rm -rf "$dir" && mkdir -p "$dir/data"
  picked=$(free_ports 3)
  read -r port controller internal <<< "$picked"
  scram=()
  if [ -n "${BROKER_SASL_SSL:-}" ]; then
    tls
    plain_users=""
    for user in ${BROKER_SASL_USERS:?name:password pairs}; do
      name="${user%%:*}" password="${user#*:}"
      if ! [[ "$name" =~ ^[A-Za-z0-9_-]+$ && "$password" =~ ^[A-Za-z0-9_-]+$ ]]; then
        echo "BROKER_SASL_USERS: names and passwords of letters, digits, '-' and '_' only" >&2; exit 2
      fi
      scram+=(--add-scram "SCRAM-SHA-512=[name=$name,password=$password]")
      plain_users+=" user_$name=\"$password\""
    done
    listeners="listeners=CLIENT://127.0.0.1:$port,INTERNAL://127.0.0.1:$internal,CONTROLLER://127.0.0.1:$controller
advertised.listeners=CLIENT://127.0.0.1:$port,INTERNAL://127.0.0.1:$internal
listener.security.protocol.map=CLIENT:SASL_SSL,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=INTERNAL
listener.name.client.sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN
listener.name.client.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.client.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required$plain_users;
listener.name.client.ssl.keystore.type=PKCS12
listener.name.client.ssl.keystore.location=$dir/tls/broker.p12
listener.name.client.ssl.keystore.password=$(cat "$dir/tls/keystore-password")
listener.name.client.ssl.client.auth=none"
  else
    listeners="listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller
advertised.listeners=PLAINTEXT://127.0.0.1:$port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT"
  fi
  cat > "$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller
$listeners
$(settings "$dir" 1 1)
PROPS
  format "$(cluster_id)" "$dir" "${scram[@]}"
  echo "127.0.0.1:$port" > "$dir/bootstrap"
  launch
  ;;
cluster)
  fetch
  rm -rf "$dir" && mkdir -p "$dir"
  nodes=(1 2 3)
  lanes=$(seq 1 "${BROKER_LANES:-0}")
  declare -A ports internals controllers lane_ports proxy_ports
  picked=$(free_ports $((${#nodes[@]} * (3 + 2 * ${BROKER_LANES:-0}) + 1)))
  read -r -a pool <<< "$picked"
  k=0
  voters=""
  for n in "${nodes[@]}"; do
    ports[$n]=${pool[k++]}
    internals[$n]=${pool[k++]}
    controllers[$n]=${pool[k++]}
    voters+="${voters:+,}$n@127.0.0.1:${controllers[$n]}"
    for l in $lanes; do
      lane_ports[$n,$l]=${pool[k++]}
      proxy_ports[$n,$l]=${pool[k++]}
    done
  done
  if [ -n "$lanes" ]; then
    toxiproxy "$dir" "$lanes" "${nodes[@]}"
  fi
  id=$(cluster_id)
  bootstrap=""
  for n in "${nodes[@]}"; do
    d="$dir/node$n"
    mkdir -p "$d/data"
    listeners="PLAINTEXT://127.0.0.1:${ports[$n]},INTERNAL://127.0.0.1:${internals[$n]},CONTROLLER://127.0.0.1:${controllers[$n]}"
    advertised="PLAINTEXT://127.0.0.1:${ports[$n]},INTERNAL://127.0.0.1:${internals[$n]}"
    protocols="PLAINTEXT:PLAINTEXT,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT"
    for l in $lanes; do
      listeners+=",LANE$l://127.0.0.1:${lane_ports[$n,$l]}"
      advertised+=",LANE$l://127.0.0.1:${proxy_ports[$n,$l]}"
      protocols+=",LANE$l:PLAINTEXT"
    done
    cat > "$d/server.properties" <<PROPS
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$voters
listeners=$listeners
advertised.listeners=$advertised
listener.security.protocol.map=$protocols
inter.broker.listener.name=INTERNAL
$(settings "$d" 3 2)
PROPS
    format "$id" "$d"
    # Three brokers share the machine with the tests: a smaller heap each, kept on restarts.
    echo 512m > "$d/heap"
    echo "127.0.0.1:${ports[$n]}" > "$d/bootstrap"
    bootstrap+="${bootstrap:+,}127.0.0.1:${ports[$n]}"
  done
  echo "$bootstrap" > "$dir/bootstrap"
  # A controller quorum needs two of the three nodes: start them together.
  for n in "${nodes[@]}"; do spawn "$dir/node$n"; done
  for n in "${nodes[@]}"; do wait_started "$dir/node$n"; done
  cat "$dir/bootstrap"
  ;;
resume)
  launch
  ;;
toxiproxy-restart)
  # Toxiproxy can hang changing the toxics of a blocked link, answering 503 from then on
  # (Shopify/toxiproxy#500, #558): the tests restart it, with its proxies and no toxic.
  pid=$(cat "$dir/toxiproxy.pid")
  kill -9 "$pid" 2>/dev/null || true
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  api=$(cat "$dir/toxiproxy")
  serve_toxiproxy "$dir" "${api##*:}"
  ;;
stop)
  for d in "$dir" "$dir"/node*; do
    if [ -f "$d/pid" ]; then
      pid=$(cat "$d/pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$d/pid"
    fi
  done
  if [ -f "$dir/toxiproxy.pid" ]; then
    kill "$(cat "$dir/toxiproxy.pid")" 2>/dev/null || true
    rm -f "$dir/toxiproxy.pid"
  fi
  ;;
*) echo "usage: $0 start|cluster|stop|resume|toxiproxy-restart DIR" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Starts or stops a single-node Apache Kafka 4.1 broker (KRaft) on 127.0.0.1 for the tests.
#   scripts/broker.sh start DIR   fetches the broker with Maven, formats DIR, starts it and
#                                 prints the bootstrap address; DIR/pid holds its process id
#   scripts/broker.sh stop DIR
#   scripts/broker.sh resume DIR  starts a stopped broker again with its data and ports
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cmd="${1:?start|stop}"
dir="${2:?broker directory}"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Runs the broker formatted in $dir and waits until it serves.
launch() {
  : > "$dir/broker.log"
  nohup java -Xms256m -Xmx768m -cp "$here/kafka/target/libs/*" kafka.Kafka "$dir/server.properties" \
    >> "$dir/broker.log" 2>&1 &
  echo $! > "$dir/pid"
  for _ in $(seq 1 120); do
    if grep -q "Kafka Server started" "$dir/broker.log" 2>/dev/null; then
      cat "$dir/bootstrap"
      exit 0
    fi
    if ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
      echo "the Kafka broker exited; its log:" >&2; tail -50 "$dir/broker.log" >&2; exit 1
    fi
    sleep 0.5
  done
  echo "the Kafka broker did not start within 60 s; its log:" >&2; tail -50 "$dir/broker.log" >&2
  exit 1
}

case "$cmd" in
start)
  # Maven's local repository (~/.m2) is reused between runs.
  (cd "$here/kafka" && mvn -q -B dependency:copy-dependencies -DoutputDirectory=target/libs) >&2
  rm -rf "$dir" && mkdir -p "$dir/data"
  port=$(free_port)
  controller=$(free_port)
  cat > "$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=3
group.initial.rebalance.delay.ms=0
log.cleaner.backoff.ms=1000
# Room for the bad-input test's 10 MB message.
message.max.bytes=17825792
PROPS
  cp="$here/kafka/target/libs/*"
  java -cp "$cp" kafka.tools.StorageTool format -t "$(java -cp "$cp" kafka.tools.StorageTool random-uuid)" \
    -c "$dir/server.properties" > "$dir/format.log" 2>&1
  echo "127.0.0.1:$port" > "$dir/bootstrap"
  launch
  ;;
resume)
  launch
  ;;
stop)
  if [ -f "$dir/pid" ]; then
    pid=$(cat "$dir/pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/pid"
  fi
  ;;
*) echo "usage: $0 start|stop|resume DIR" >&2; exit 2 ;;
esac

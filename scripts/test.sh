#!/usr/bin/env bash
# Runs every test on a fresh machine: installs what the tests need (fastavro, the third-party
# Avro decoder, and confluent-kafka for examples/subscribe.py; Debian's prometheus and promtool, and chromium, poppler-utils and a CJK font
# for the printed report; the Kafka broker via Maven; Toxiproxy via `go install`), starts one
# real Apache Kafka 4.1 broker on 127.0.0.1 for the whole suite and a three-node cluster behind
# Toxiproxy for the failover and network-fault tests (tests/failover.rs,
# tests/network_faults.rs), runs the unit and integration tests with the soak
# (scripts/soak.sh, 10 minutes) beside them, and stops them.
# Cargo's and Maven's caches (~/.cargo, ~/.m2) are reused when present.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore fastavro confluent-kafka

# The monthly report's HTML is printed by headless Chromium to PDF and PNG, and the PDF read
# back by pdftotext, in a font with Chinese glyphs (tests/report_render.rs).
if ! command -v chromium >/dev/null || ! command -v pdftotext >/dev/null || ! dpkg -s fonts-wqy-zenhei >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium poppler-utils fonts-wqy-zenhei >/dev/null
fi

# deploy/: alert rules and their unit tests, the dashboard against a real Prometheus, compose
# and Kubernetes manifests (needs no broker and no build). It installs prometheus, which
# tests/prometheus.rs runs against the pipeline too.
scripts/check-deploy.sh

broker_dir="$PWD/target/test-broker"
cluster_dir="$PWD/target/test-cluster"
# Stops whatever was started, whatever failed (errexit is off in here: one failed stop must
# not keep the others from running or change the script's exit status).
stop_all() {
  local status=$?
  set +e
  [ -n "${soak:-}" ] && kill -- -"$soak" 2>/dev/null
  scripts/broker.sh stop "$broker_dir"
  scripts/broker.sh stop "$cluster_dir"
  scripts/broker.sh stop "$PWD/target/soak-cluster"
  exit "$status"
}
trap stop_all EXIT
HOTLINE_TEST_BROKERS=$(scripts/broker.sh start "$broker_dir")
export HOTLINE_TEST_BROKERS
echo "Kafka broker on $HOTLINE_TEST_BROKERS"
cluster=$(BROKER_LANES=3 scripts/broker.sh cluster "$cluster_dir")
echo "Three-node Kafka cluster on $cluster, behind Toxiproxy on lanes $(cat "$cluster_dir"/lane*/bootstrap | tr '\n' ' ')"
export HOTLINE_TEST_CLUSTER="$cluster_dir"

# The benchmark only has to build here; scripts/bench.sh runs it.
cargo build --benches
cargo test --lib --bins --tests --no-run "$@"

# Ten minutes of the soak (tests/soak.rs) on a cluster of its own, beside the tests (it takes
# about two thirds of a core; the tests mostly wait on brokers and processes).
soak_log="$PWD/target/soak.log"
setsid scripts/soak.sh --minutes "${HOTLINE_SOAK_MINUTES:-10}" > "$soak_log" 2>&1 &
soak=$!

cargo test --lib --bins --tests "$@"

if wait "$soak"; then
  soak=
  sed -n '/^Soak of/,$p' "$soak_log"
else
  echo "the soak failed; the end of its log ($soak_log):" >&2
  tail -80 "$soak_log" >&2
  exit 1
fi

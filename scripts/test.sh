#!/usr/bin/env bash
# Runs every test on a fresh machine: installs what the tests need (fastavro, the third-party
# Avro decoder, and confluent-kafka for examples/subscribe.py; Debian's prometheus and promtool, and chromium, poppler-utils and a CJK font
# for the printed report; the Kafka broker via Maven), starts one real
# Apache Kafka 4.1 broker on 127.0.0.1 for the whole suite and a three-node cluster for the
# failover tests (tests/failover.rs), runs the unit and integration tests, and stops them.
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
trap 'scripts/broker.sh stop "$broker_dir"; scripts/broker.sh stop "$cluster_dir"' EXIT
HOTLINE_TEST_BROKERS=$(scripts/broker.sh start "$broker_dir")
export HOTLINE_TEST_BROKERS
echo "Kafka broker on $HOTLINE_TEST_BROKERS"
cluster=$(scripts/broker.sh cluster "$cluster_dir")
echo "Three-node Kafka cluster on $cluster"
export HOTLINE_TEST_CLUSTER="$cluster_dir"

# The benchmark only has to build here; scripts/bench.sh runs it.
cargo build --benches
cargo test --lib --bins --tests "$@"

#!/usr/bin/env bash
# Runs the benchmarks (release build) against a real Kafka broker started for the run:
# - throughput: the counting core's speed, the resident memory of its state, and a restore
#   of ~1 million cases (HOTLINE_BENCH_CASES, default 1,000,000);
# - end_to_end: raw read and raw copy by kcat, then `hotline run` with the shipped defaults
#   on the same ~1 million input messages (HOTLINE_BENCH_E2E_CASES, default 475,000 cases),
#   its CPU share, peak RSS, restart time, and the p99 append-to-count latency at a sustained
#   rate (HOTLINE_BENCH_RATE events/s, default 50,000); writes target/bench/report.json.
set -euo pipefail
cd "$(dirname "$0")/.."
# kcat (librdkafka's CLI) measures the baselines.
if ! command -v kcat >/dev/null; then
  apt-get update -qq && apt-get install -y -qq kcat >/dev/null
fi
broker_dir="$PWD/target/bench-broker"
trap 'scripts/broker.sh stop "$broker_dir"' EXIT
HOTLINE_TEST_BROKERS=$(scripts/broker.sh start "$broker_dir")
export HOTLINE_TEST_BROKERS
cargo bench --bench throughput
cargo bench --bench end_to_end

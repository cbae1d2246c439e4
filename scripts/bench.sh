#!/usr/bin/env bash
# Runs the benchmarks (release build) against a real Kafka broker started for the run.
# HOTLINE_BENCH_CASES sets the number of cases (default 1,000,000).
set -euo pipefail
cd "$(dirname "$0")/.."
broker_dir="$PWD/target/bench-broker"
trap 'scripts/broker.sh stop "$broker_dir"' EXIT
HOTLINE_TEST_BROKERS=$(scripts/broker.sh start "$broker_dir")
export HOTLINE_TEST_BROKERS
cargo bench --bench throughput

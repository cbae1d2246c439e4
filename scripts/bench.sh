#!/usr/bin/env bash
# Runs the benchmarks (release build) against a real Kafka broker started for the run:
# - throughput: the counting core's speed, the resident memory of its state per case, and
#   three restores of it from a changelog on the broker, at 5 million cases (a province's
#   month; HOTLINE_BENCH_CASES);
# - end_to_end: raw read and raw copy by kcat, `hotline run` with the shipped defaults on the
#   same ~1 million input messages (HOTLINE_BENCH_E2E_CASES, default 475,000 cases), and the
#   same in province mode with as many cases over nine cities, three rounds, each ratio's
#   median, min and max; its CPU share, peak RSS, restart time, and the p99 append-to-count
#   latency at a sustained rate (HOTLINE_BENCH_RATE events/s, default 50,000); writes
#   target/bench/report.json, with the throughput bench's state.json under "state" and the
#   recount bench's recount.json under "recount";
# - recount: `hotline recount` over a year of ~10 million messages against kcat's raw read of
#   the same topics, three rounds (HOTLINE_BENCH_RECOUNT_MONTHS, HOTLINE_BENCH_RECOUNT_CASES).
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
HOTLINE_BENCH_CASES=${HOTLINE_BENCH_CASES:-5000000} cargo bench --bench throughput
cargo bench --bench recount
cargo bench --bench end_to_end

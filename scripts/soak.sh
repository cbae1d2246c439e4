#!/usr/bin/env bash
# The soak: scripts/soak.sh --minutes N
# Starts a three-node Kafka cluster of its own behind Toxiproxy (scripts/broker.sh cluster with
# BROKER_LANES=3, in target/soak-cluster), builds and runs tests/soak.rs: three `hotline run`
# instances count the seed-shaped month again and again while faults strike at random (cut,
# latency, hung node, slow link, resets, SIGSTOP, kill -9 of instances and brokers), then every
# month's figures are checked. Prints the table of faults and measures; exits non-zero when a
# figure, a revision or a dead letter is wrong, or an instance exited on its own.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=10
while [ $# -gt 0 ]; do
  case "$1" in
  --minutes) minutes="${2:?--minutes N}"; shift 2 ;;
  *) echo "usage: $0 [--minutes N]" >&2; exit 2 ;;
  esac
done

cluster="$PWD/target/soak-cluster"
trap 'scripts/broker.sh stop "$cluster"' EXIT
BROKER_LANES=3 scripts/broker.sh cluster "$cluster" > /dev/null
echo "soak: three-node cluster behind Toxiproxy in $cluster"
# The test binary itself, so that a `cargo test` running beside it holds no lock it waits on.
binary=$(cargo test --test soak --no-run --message-format=json |
  python3 -c 'import json,sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable")][-1])')
HOTLINE_SOAK_MINUTES="$minutes" HOTLINE_SOAK_CLUSTER="$cluster" HOTLINE_SOAK_LOGS="$cluster/instances" \
  "$binary" --ignored --exact soak --nocapture

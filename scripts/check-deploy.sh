#!/usr/bin/env bash
# Checks everything in deploy/ with the real tools, offline: promtool on the Prometheus
# config, the alert rules and their unit tests; the Grafana dashboard (structure, and every
# expression through Prometheus's parser, then through a real Prometheus that scrapes
# tests/fixtures/sample-metrics.txt); `docker compose config` and the Kubernetes schemas.
# Installs what it needs (Debian's prometheus and docker-compose, three PyPI packages).
# Runs every check, prints each one's output only when it fails, exits 1 if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

passed=0 failed=0
# step NAME COMMAND...: runs COMMAND, shows its output only if it fails.
step() {
    local name=$1
    shift
    if "$@" >"$work/out" 2>&1; then
        echo "ok      $name"
        passed=$((passed + 1))
    else
        echo "FAILED  $name"
        sed 's/^/        /' "$work/out"
        failed=$((failed + 1))
    fi
}

# --- tools ---------------------------------------------------------------------------
scripts/prometheus.sh || { echo "check-deploy: cannot install prometheus" >&2; exit 1; }
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    pyyaml kubernetes-validate==1.37.0 dockerfile==3.4.0 ||
    { echo "check-deploy: cannot install the Python packages" >&2; exit 1; }
# Compose v2 (docker compose) where the machine has it, else Debian's docker-compose (v1).
if docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
else
    if ! command -v docker-compose >/dev/null; then
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends docker-compose; } >"$work/apt" 2>&1 ||
            { cat "$work/apt" >&2; echo "check-deploy: cannot install docker-compose" >&2; exit 1; }
    fi
    compose=(docker-compose)
fi

# --- Prometheus ----------------------------------------------------------------------
step "promtool check config deploy/prometheus/prometheus.yml" promtool check config deploy/prometheus/prometheus.yml
step "promtool check rules deploy/prometheus/alerts.yml" promtool check rules deploy/prometheus/alerts.yml
step "promtool test rules deploy/prometheus/alerts.test.yml" promtool test rules deploy/prometheus/alerts.test.yml
step "promtool check metrics tests/fixtures/sample-metrics.txt" \
    sh -c 'promtool check metrics < tests/fixtures/sample-metrics.txt'

# --- Grafana -------------------------------------------------------------------------
dashboard=deploy/grafana/dashboards/hotline.json
lint_dashboard() {
    python3 scripts/lint_dashboard.py "$dashboard" --datasources deploy/grafana/provisioning/datasources \
        --rules-out "$work/dashboard-rules.yml" &&
        promtool check rules "$work/dashboard-rules.yml"
}
step "dashboard: panels, datasources, PromQL parses" lint_dashboard

# Every panel expression against a real Prometheus scraping sample metrics every second.
dashboard_queries() {
    read -r metrics_port prom_port < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(2)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in ss))')
    python3 tests/fixtures/serve_metrics.py "$metrics_port" tests/fixtures/sample-metrics.txt \
        >"$work/serve.log" 2>&1 &
    pids+=($!)
    cat >"$work/prometheus.yml" <<EOF
global: {scrape_interval: 1s}
scrape_configs:
  - job_name: hotline
    static_configs: [{targets: ["127.0.0.1:$metrics_port"]}]
EOF
    prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
        --web.listen-address="127.0.0.1:$prom_port" --log.level=warn >"$work/prometheus.log" 2>&1 &
    pids+=($!)
    local url="http://127.0.0.1:$prom_port"
    # rate() needs two samples in its window: wait for three scrapes.
    for _ in $(seq 60); do
        if curl -fsS "$url/api/v1/query" --data-urlencode 'query=count_over_time(up{job="hotline"}[1m]) >= 3' 2>/dev/null |
            grep -q '"value"'; then
            python3 tests/dashboard_queries.py --prometheus "$url" --dashboard "$dashboard"
            return
        fi
        sleep 0.5
    done
    echo "Prometheus on $url did not scrape the sample metrics within 30 s"
    cat "$work/prometheus.log" "$work/serve.log"
    return 1
}
step "dashboard: every expression returns data from a real Prometheus" dashboard_queries

# --- compose, Dockerfile, Kubernetes -------------------------------------------------
step "${compose[*]} config (deploy/docker-compose.yml)" \
    sh -c "cd deploy && ${compose[*]} -f docker-compose.yml config > '$work/compose.yml'"
step "Kubernetes schemas and wiring, compose targets, Dockerfile, hotline.toml" \
    python3 scripts/check_manifests.py --compose-config "$work/compose.yml"

echo "check-deploy: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

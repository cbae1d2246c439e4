#!/usr/bin/env bash
# Installs Debian's prometheus package (prometheus and promtool) for the deploy checks and the
# dashboard test. Idempotent: does nothing when both are already on PATH. Silent on success.
#
# The package's maintainer scripts would start a system Prometheus on :9090. Our tests run
# their own server on a port they choose, so a system one would only get in the way: a
# policy-rc.d that answers 101 ("action forbidden") keeps invoke-rc.d and deb-systemd-invoke
# from starting it. An existing policy-rc.d (Docker images ship one) is left as it is.
set -euo pipefail

if command -v promtool >/dev/null && command -v prometheus >/dev/null; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/prometheus.sh: installing the prometheus package needs root" >&2
    exit 1
fi

policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
fi

log=$(mktemp)
export DEBIAN_FRONTEND=noninteractive
# Recommends would pull in prometheus-node-exporter, another service we do not want.
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "scripts/prometheus.sh: apt-get could not install prometheus" >&2
    rm -f "$log"
    exit 1
fi
rm -f "$log"

# Belt and braces for hosts where a service manager ignored policy-rc.d.
if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
command -v promtool >/dev/null && command -v prometheus >/dev/null || {
    echo "scripts/prometheus.sh: prometheus installed but promtool/prometheus not on PATH" >&2
    exit 1
}

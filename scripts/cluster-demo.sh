#!/usr/bin/env bash
# `make cluster-demo`: the deploy/ example on loopback (HAProxy -> 2 imapd proxies -> 3 backends on one
# shared mail root -> Redis), seeded with the demo users; prints where to connect; Ctrl-C stops it all.
#
#   scripts/cluster-demo.sh [--dir DIR] [--imap-port N] [--imaps-port N] [--base-port N] [--workers N]
#
# Installs haproxy and redis-server when missing (scripts/install-sysdeps.sh, as root), then runs
# scripts/cluster_demo.py with the project's venv (PYTHON, default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
if [ ! -x "$PY" ]; then
    echo "cluster-demo: $PY not found; run \`make venv\` (or make cluster-demo, which makes it)" >&2
    exit 69
fi
if ! command -v haproxy >/dev/null 2>&1 && [ ! -x /usr/sbin/haproxy ] || ! command -v redis-server >/dev/null 2>&1; then
    scripts/install-sysdeps.sh
fi
for cmd in haproxy redis-server; do
    if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$cmd" ]; then
        echo "cluster-demo: $cmd not found; install Debian's package ($cmd) or run scripts/install-sysdeps.sh as root" >&2
        exit 69
    fi
done
exec "$PY" scripts/cluster_demo.py "$@"

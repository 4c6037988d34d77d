#!/usr/bin/env bash
# `make conformance`: our server and Dovecot (bench/peers.sh, with tests/conformance/dovecot-extra.conf) on
# loopback with user bench/bench, then tests/conformance/imapdiff.py between them; both stopped afterwards.
#
#   CONFORMANCE_DIR   work dir (default /tmp/imapd-conformance): ours/ (data), dovecot/ (peers.sh's dir)
#   CONFORMANCE_PORT  our port (default 11241); CONFORMANCE_DOVECOT_PORT Dovecot's (default 11242)
#   extra arguments go to imapdiff.py (-k NAME, -v)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
DIR=${CONFORMANCE_DIR:-/tmp/imapd-conformance}
PORT=${CONFORMANCE_PORT:-11241}
DPORT=${CONFORMANCE_DOVECOT_PORT:-11242}
mkdir -p "$DIR"
rm -rf "$DIR/ours"
export BENCH_DOVECOT_DIR=$DIR/dovecot BENCH_DOVECOT_EXTRA_CONF=$ROOT/tests/conformance/dovecot-extra.conf
"$ROOT/bench/peers.sh" dovecot restart "$DPORT" >/dev/null
echo bench | "$PY" -m imapd user add bench --password-stdin --data-dir "$DIR/ours" >/dev/null
"$PY" -m imapd serve --data-dir "$DIR/ours" --listen "127.0.0.1:$PORT" >"$DIR/ours.log" 2>&1 &
OURS=$!
cleanup() {
  kill "$OURS" 2>/dev/null || true
  wait "$OURS" 2>/dev/null || true
  "$ROOT/bench/peers.sh" dovecot stop >/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 1 100); do
  grep -q "ready on" "$DIR/ours.log" 2>/dev/null && break
  sleep 0.1
done
rc=0
"$PY" "$ROOT/tests/conformance/imapdiff.py" --a "127.0.0.1:$PORT" --b "127.0.0.1:$DPORT" "$@" || rc=$?
exit $rc

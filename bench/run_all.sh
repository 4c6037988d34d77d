#!/usr/bin/env bash
# Every benchmark of docs/benchmarks.md, ours against Dovecot, one after the other (what `make bench` runs).
#
#   bench/run_all.sh [--quick]        results: $BENCH_OUT (default /tmp/imapd-bench/results), JSON lines + tables
#
# Environment: BENCH_PYTHON (default .venv/bin/python), BENCH_WORK (default /tmp/imapd-bench: data dirs,
# kept between runs; delete it to re-seed), BENCH_OUT. About 6 minutes in full, 2 with --quick.
#
# Starts Dovecot (bench/peers.sh, installs it when run as root) and our server on loopback ports 11143 and
# 11144, seeds both with the same 5,000 messages, runs T1 (cold and warm, LOGIN and X-STATE), T2 (ours at
# 1,000 and 10,000 sessions, Dovecot at 200 and 1,000) and T3 (store_scale.py), then stops both servers.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${BENCH_PYTHON:-.venv/bin/python}
QUICK=${1:-}
WORK=${BENCH_WORK:-/tmp/imapd-bench}
OUT=${BENCH_OUT:-$WORK/results}
OURS=$WORK/ours
DPORT=11143
OPORT=11144
mkdir -p "$OUT"
RUNS=(--runs 200 --warmup 20)
COLD=20
ROUNDS=3
IDLE_OURS=(1000 10000)
IDLE_DOVECOT=(200 1000)
if [ "$QUICK" = --quick ]; then
  RUNS=(--quick); COLD=5; ROUNDS=1; IDLE_OURS=(200 1000); IDLE_DOVECOT=(200)
fi

cleanup() {
  $PY bench/ours.py stop --data-dir "$OURS" || true
  bench/peers.sh stop || true
}
trap cleanup EXIT

{
  echo "# $(date -u +%FT%TZ) $(nproc) cores, $($PY -V), uvloop $($PY -c 'import uvloop; print(uvloop.__version__)' 2>/dev/null || echo no)"
  echo "# dovecot $(dovecot --version 2>/dev/null || echo '(installed by peers.sh)')"
} | tee "$OUT/machine.txt"

# --- seed (once: the data dirs are kept between runs; delete $WORK to start over)
bench/peers.sh start "$DPORT"
if [ ! -f "$WORK/dovecot/.seeded" ]; then
  $PY bench/seed.py --port "$DPORT" --count 5000 && touch "$WORK/dovecot/.seeded"
fi
if [ ! -f "$OURS/.seeded" ]; then
  rm -rf "$OURS"
  $PY bench/seed.py --data-dir "$OURS" --count 5000 && touch "$OURS/.seeded"
fi
$PY bench/ours.py start --data-dir "$OURS" --port "$OPORT"

# --- T1: cold (a fresh server process before each sample, index on disk), then warm rounds interleaved
# (Dovecot, ours LOGIN, ours X-STATE, again) so a busy machine hurts both sides alike
$PY bench/webmail_request.py --port "$DPORT" --label dovecot --mode login --runs 20 --warmup 5 \
  --cold-runs "$COLD" --restart-cmd "bench/peers.sh restart $DPORT" | tee "$OUT/t1_cold_dovecot.txt"
$PY bench/webmail_request.py --port "$OPORT" --label ours --mode login --runs 20 --warmup 5 \
  --cold-runs "$COLD" --restart-cmd "$PY bench/ours.py restart --data-dir $OURS --port $OPORT" \
  | tee "$OUT/t1_cold_ours.txt"
for r in $(seq 1 "$ROUNDS"); do
  $PY bench/webmail_request.py --port "$DPORT" --label dovecot --mode login "${RUNS[@]}" | tee "$OUT/t1_dovecot_$r.txt"
  $PY bench/webmail_request.py --port "$OPORT" --label ours --mode login "${RUNS[@]}" | tee "$OUT/t1_ours_$r.txt"
  # X-STATE RESTORE instead of LOGIN + SELECT (reports "unavailable" if the server lacks it)
  $PY bench/webmail_request.py --port "$OPORT" --label ours --mode xstate "${RUNS[@]}" | tee "$OUT/t1_xstate_$r.txt"
done
$PY bench/ours.py stop --data-dir "$OURS"

# --- T2: idle sessions
: > "$OUT/t2.txt"
for n in "${IDLE_DOVECOT[@]}"; do
  $PY bench/idle_sessions.py --port "$DPORT" --pid "$(bench/peers.sh status)" --tree --label dovecot \
    --sessions "$n" | tee -a "$OUT/t2.txt"
done
bench/peers.sh stop
for n in "${IDLE_OURS[@]}"; do
  $PY bench/idle_sessions.py --ours --sessions "$n" | tee -a "$OUT/t2.txt"
done

# --- T3: mailbox size (store level)
if [ "$QUICK" = --quick ]; then
  $PY bench/store_scale.py --quick | tee "$OUT/t3.txt"
else
  $PY bench/store_scale.py | tee "$OUT/t3.txt"
fi
echo "results in $OUT"

#!/usr/bin/env bash
# Every benchmark of docs/benchmarks.md (T1-T5), ours against Dovecot and pymap, then the report (what
# `make bench` runs).
#
#   bench/run_all.sh [--quick] [options]   results: --out (default WORK/results), JSON lines + tables
#
# Options (or the environment variables named): --work DIR (BENCH_WORK, default /tmp/imapd-bench: data
# dirs, kept between runs; delete it to re-seed), --out DIR (BENCH_OUT, default WORK/results),
# --dovecot-port N (BENCH_DOVECOT_PORT, 11143), --ours-port N (BENCH_OURS_PORT, 11144), --pymap-port N
# (BENCH_PYMAP_PORT, 11145), --python PATH (BENCH_PYTHON, .venv/bin/python), --no-pymap (BENCH_PYMAP=0),
# --no-report (BENCH_REPORT=0: leave docs/ alone). The peers' dirs follow WORK (BENCH_DOVECOT_DIR,
# BENCH_PYMAP_DIR, BENCH_PYMAP_VENV are set from it unless given), so two runs with different WORK and ports
# do not touch each other. Full: ~25 minutes once seeded (the first run seeds 100,000 messages into Dovecot,
# ~15 minutes more); --quick: ~6 minutes.
#
# Servers on loopback: Dovecot (bench/peers.sh, installs it when run as root), ours, pymap
# (bench/peers.sh pymap, pip-installed into its own venv). Seeds (once, marker files in the data dirs):
# INBOX of 5,000 messages in each (T1, T2), and n1000 / n10000 / n100000 mailboxes (T3, T4) with the same
# messages (bench/seed.py: ours through the store API, the peers over IMAP APPEND, except Dovecot's n100000
# and pymap's big mailboxes, written straight into their Maildir folders: see below).
# Then T1 (cold, then warm rounds interleaved: Dovecot, ours LOGIN, ours X-STATE, pymap), T2 (idle
# sessions), T3 (bench/mailbox_size.py over IMAP, bench/store_scale.py), T4 (bench/throughput.py), T5
# (bench/xstate.py), and bench/report.py writes docs/benchmarks.md's generated part and docs/bench-t*.png.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${BENCH_PYTHON:-.venv/bin/python}
QUICK=
WORK=${BENCH_WORK:-/tmp/imapd-bench}
OUT=${BENCH_OUT:-}
DPORT=${BENCH_DOVECOT_PORT:-11143}
OPORT=${BENCH_OURS_PORT:-11144}
PPORT=${BENCH_PYMAP_PORT:-11145}
PYMAP=${BENCH_PYMAP:-1}
REPORT=${BENCH_REPORT:-1}
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=--quick ;;
    --work) WORK=$2; shift ;;
    --out) OUT=$2; shift ;;
    --dovecot-port) DPORT=$2; shift ;;
    --ours-port) OPORT=$2; shift ;;
    --pymap-port) PPORT=$2; shift ;;
    --python) PY=$2; shift ;;
    --no-pymap) PYMAP=0 ;;
    --no-report) REPORT=0 ;;
    *) echo "run_all.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
OUT=${OUT:-$WORK/results}
OURS=$WORK/ours
SCALE=$WORK/ours-scale
export BENCH_DOVECOT_DIR=${BENCH_DOVECOT_DIR:-$WORK/dovecot}
export BENCH_PYMAP_DIR=${BENCH_PYMAP_DIR:-$WORK/pymap}
export BENCH_PYMAP_VENV=${BENCH_PYMAP_VENV:-$WORK/pymap-venv}
mkdir -p "$OUT"
rm -f "$OUT"/*.txt
RUNS=(--runs 200 --warmup 20)
PRUNS=(--runs 10 --warmup 2)   # pymap takes ~1-3 s per request
COLD=20
PCOLD=5
ROUNDS=3
IDLE_OURS=(1000 10000)
IDLE_DOVECOT=(200 1000)
IDLE_PYMAP=(100)                # pymap: each SELECT of the 5,000 takes ~0.5-1 s
SIZES=(1000 10000 100000)
T4=()
PAPPEND=1000
T5=()
if [ "$QUICK" = --quick ]; then
  RUNS=(--quick); PRUNS=(--runs 5 --warmup 1); COLD=5; PCOLD=3; ROUNDS=1; IDLE_OURS=(200 1000); IDLE_DOVECOT=(200)
  IDLE_PYMAP=(50); SIZES=(1000 10000); T4=(--quick); PAPPEND=500; T5=(--quick)
fi

cleanup() {
  $PY bench/ours.py stop --data-dir "$OURS" || true
  $PY bench/ours.py stop --data-dir "$SCALE" || true
  bench/peers.sh stop || true
  [ "$PYMAP" = 0 ] || bench/peers.sh pymap stop || true
}
trap cleanup EXIT

{
  echo "# $(date -u +%FT%TZ) $(nproc) cores, $($PY -V), uvloop $($PY -c 'import uvloop; print(uvloop.__version__)' 2>/dev/null || echo no)"
  echo "# dovecot $(dovecot --version 2>/dev/null || echo '(installed by peers.sh)')"
  echo "# pymap $([ -x "$BENCH_PYMAP_VENV/bin/pymap" ] && "$BENCH_PYMAP_VENV/bin/pymap" --version | cut -d' ' -f2 || echo '(installed by peers.sh)')"
  echo "# command: bench/run_all.sh $QUICK"
  echo "# tree: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo ' + uncommitted changes')"
  echo "# load: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# ports: dovecot $DPORT, ours $OPORT, pymap $PPORT; work $WORK"
  echo "# mem: $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
} | tee "$OUT/machine.txt"

# --- seed (once: the data dirs are kept between runs; delete $WORK to start over)
seed_imap() {  # PORT DIR-with-markers MAILBOX COUNT
  local marker=$2/.seeded-$3
  [ "$3" = INBOX ] && marker=$2/.seeded
  if [ ! -f "$marker" ]; then
    $PY bench/seed.py --port "$1" --mailbox "$3" --count "$4" && touch "$marker"
  fi
}
# Dovecot seeds with mail_fsync=never (faster; restarted with its default before any measurement)
BENCH_DOVECOT_FSYNC=never bench/peers.sh start "$DPORT"
seed_imap "$DPORT" "$BENCH_DOVECOT_DIR" INBOX 5000
for n in "${SIZES[@]}"; do
  if [ "$n" -ge 100000 ] && [ ! -f "$BENCH_DOVECOT_DIR/.seeded-n$n" ]; then
    # 100,000 APPENDs into Dovecot run at 50-120 msg/s here (15-30 min): the same messages are written
    # straight into its Maildir folder instead (as a delivery agent would), indexed at the next SELECT
    $PY bench/seed.py --port "$DPORT" --mailbox "n$n" --count 0
    $PY bench/seed.py --maildir "$BENCH_DOVECOT_DIR/mail/bench/.n$n" --count "$n"
    chown -R --reference="$BENCH_DOVECOT_DIR/mail/bench" "$BENCH_DOVECOT_DIR/mail/bench/.n$n"
    touch "$BENCH_DOVECOT_DIR/.seeded-n$n"
  fi
  seed_imap "$DPORT" "$BENCH_DOVECOT_DIR" "n$n" "$n"
done
bench/peers.sh restart "$DPORT"
if [ ! -f "$OURS/.seeded" ]; then
  rm -rf "$OURS"
  $PY bench/seed.py --data-dir "$OURS" --count 5000 && touch "$OURS/.seeded"
fi
for n in "${SIZES[@]}"; do
  if [ ! -f "$SCALE/.seeded-n$n" ]; then
    $PY bench/seed.py --data-dir "$SCALE" --mailbox "n$n" --count "$n" --bulk && touch "$SCALE/.seeded-n$n"
  fi
done
if [ "$PYMAP" != 0 ]; then
  if bench/peers.sh pymap start "$PPORT"; then
    # pymap's APPEND slows down as the maildir grows (~110 msg/s at first, ~8 msg/s past 3,000 messages: it
    # looks at every message of the mailbox after each one), so its mailboxes are written straight into
    # its Maildir (it gives the new files UIDs at the next SELECT)
    if [ ! -f "$BENCH_PYMAP_DIR/.seeded" ]; then
      $PY bench/seed.py --maildir "$BENCH_PYMAP_DIR/bench" --count 5000 && touch "$BENCH_PYMAP_DIR/.seeded"
    fi
    for n in "${SIZES[@]}"; do
      if [ ! -f "$BENCH_PYMAP_DIR/.seeded-n$n" ]; then
        $PY bench/seed.py --port "$PPORT" --mailbox "n$n" --count 0
        $PY bench/seed.py --maildir "$BENCH_PYMAP_DIR/bench/.n$n" --count "$n" && touch "$BENCH_PYMAP_DIR/.seeded-n$n"
      fi
    done
  else
    echo "pymap did not start: left out" | tee "$OUT/pymap_unavailable.txt"; PYMAP=0
  fi
fi
$PY bench/ours.py start --data-dir "$OURS" --port "$OPORT"

# --- T1: cold (a fresh server process before each sample, index on disk), then warm rounds interleaved
# (Dovecot, ours LOGIN, ours X-STATE, pymap, again) so a busy machine hurts every side alike
$PY bench/webmail_request.py --port "$DPORT" --label dovecot --mode login --runs 20 --warmup 5 \
  --cold-runs "$COLD" --restart-cmd "bench/peers.sh restart $DPORT" | tee "$OUT/t1_cold_dovecot.txt"
$PY bench/webmail_request.py --port "$OPORT" --label ours --mode login --runs 20 --warmup 5 \
  --cold-runs "$COLD" --restart-cmd "$PY bench/ours.py restart --data-dir $OURS --port $OPORT" \
  | tee "$OUT/t1_cold_ours.txt"
$PY bench/webmail_request.py --port "$OPORT" --label ours --mode xstate --runs 20 --warmup 5 \
  --cold-runs "$COLD" --restart-cmd "$PY bench/ours.py restart --data-dir $OURS --port $OPORT" \
  | tee "$OUT/t1_cold_xstate.txt"
if [ "$PYMAP" != 0 ]; then
  $PY bench/webmail_request.py --port "$PPORT" --label pymap --mode login --runs 5 --warmup 1 \
    --cold-runs "$PCOLD" --restart-cmd "bench/peers.sh pymap restart $PPORT" | tee "$OUT/t1_cold_pymap.txt"
fi
for r in $(seq 1 "$ROUNDS"); do
  $PY bench/webmail_request.py --port "$DPORT" --label dovecot --mode login "${RUNS[@]}" | tee "$OUT/t1_dovecot_$r.txt"
  $PY bench/webmail_request.py --port "$OPORT" --label ours --mode login "${RUNS[@]}" | tee "$OUT/t1_ours_$r.txt"
  # X-STATE RESTORE instead of LOGIN + SELECT (reports "unavailable" if the server lacks it)
  $PY bench/webmail_request.py --port "$OPORT" --label ours --mode xstate "${RUNS[@]}" | tee "$OUT/t1_xstate_$r.txt"
  if [ "$PYMAP" != 0 ]; then
    $PY bench/webmail_request.py --port "$PPORT" --label pymap --mode login "${PRUNS[@]}" | tee "$OUT/t1_pymap_$r.txt"
  fi
done
$PY bench/ours.py stop --data-dir "$OURS"

# --- T2: idle sessions (the peers' figures sum PSS over the server's process tree)
: > "$OUT/t2.txt"
for n in "${IDLE_DOVECOT[@]}"; do
  $PY bench/idle_sessions.py --port "$DPORT" --pid "$(bench/peers.sh status)" --tree --label dovecot \
    --sessions "$n" | tee -a "$OUT/t2.txt"
done
if [ "$PYMAP" != 0 ]; then
  for n in "${IDLE_PYMAP[@]}"; do
    $PY bench/idle_sessions.py --port "$PPORT" --pid "$(bench/peers.sh pymap status)" --tree --label pymap \
      --sessions "$n" | tee -a "$OUT/t2.txt"
  done
fi
for n in "${IDLE_OURS[@]}"; do
  $PY bench/idle_sessions.py --ours --sessions "$n" | tee -a "$OUT/t2.txt"
done

# --- T3: mailbox size over IMAP (a fresh server process per size), then at the store level
# (--tree for every server: ours runs a supervisor and its workers, Dovecot a process per service)
$PY bench/mailbox_size.py --port "$OPORT" --label ours --sizes "${SIZES[@]}" --tree \
  --restart-cmd "$PY bench/ours.py restart --data-dir $SCALE --port $OPORT" \
  --pid-cmd "cat $SCALE-server.pid" | tee "$OUT/t3_imap_ours.txt"
$PY bench/mailbox_size.py --port "$DPORT" --label dovecot --sizes "${SIZES[@]}" --tree \
  --restart-cmd "bench/peers.sh restart $DPORT" --pid-cmd "bench/peers.sh status" | tee "$OUT/t3_imap_dovecot.txt"
if [ "$PYMAP" != 0 ]; then
  # 1k and 10k only: pymap's SELECT of 100,000 takes 10-12 s (and FETCH 1:* more), too long for the run
  $PY bench/mailbox_size.py --port "$PPORT" --label pymap --sizes 1000 10000 --runs 2 \
    --restart-cmd "bench/peers.sh pymap restart $PPORT" --pid-cmd "bench/peers.sh pymap status" \
    | tee "$OUT/t3_imap_pymap.txt"
fi
if [ "$QUICK" = --quick ]; then
  $PY bench/store_scale.py --quick | tee "$OUT/t3_store.txt"
else
  $PY bench/store_scale.py | tee "$OUT/t3_store.txt"
fi

# --- T4: throughput over one connection (ours still runs on the n1000..n100000 data dir from T3)
$PY bench/throughput.py --port "$OPORT" --label ours "${T4[@]}" | tee "$OUT/t4_ours.txt"
# whole-message FETCH MB/s (small and 1-6 MB messages) and FETCH 1:* (FLAGS), the same commands for both
FLAGSBOX=n100000; [ "$QUICK" = --quick ] && FLAGSBOX=n10000
$PY bench/fetch_body.py --port "$OPORT" --label ours --flags-mailbox "$FLAGSBOX" | tee "$OUT/fetch_body_ours.txt"
$PY bench/ours.py stop --data-dir "$SCALE"
$PY bench/throughput.py --port "$DPORT" --label dovecot "${T4[@]}" | tee "$OUT/t4_dovecot.txt"
$PY bench/fetch_body.py --port "$DPORT" --label dovecot --flags-mailbox "$FLAGSBOX" | tee "$OUT/fetch_body_dovecot.txt"
bench/peers.sh stop
BENCH_DOVECOT_IMAP=tuned bench/peers.sh start "$DPORT"
$PY bench/fetch_body.py --port "$DPORT" --label dovecot-tuned --flags-mailbox "$FLAGSBOX" \
  | tee "$OUT/fetch_body_dovecot_tuned.txt"
bench/peers.sh stop
if [ "$PYMAP" != 0 ]; then
  # a smaller APPEND count: pymap's APPEND slows down with the mailbox's size (see the seeding above)
  $PY bench/throughput.py --port "$PPORT" --label pymap --append-count "$PAPPEND" "${T4[@]}" \
    --skip-search "pymap 0.36.7: UID SEARCH HEADER SUBJECT over 10,000 messages had not answered after 10 minutes" \
    | tee "$OUT/t4_pymap.txt"
  bench/peers.sh pymap stop
fi

# --- T5: the state string (ours only: X-STATE is ours)
$PY bench/xstate.py "${T5[@]}" | tee "$OUT/t5.txt"

echo "results in $OUT"
echo "# load at the end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/machine.txt"
if [ "$REPORT" != 0 ]; then
  $PY bench/report.py "$OUT"
fi

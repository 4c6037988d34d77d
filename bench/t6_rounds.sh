#!/bin/bash
# T6 with many users, interleaved: ours workers=1, ours workers=2, Dovecot tuned, ROUNDS times; after each of
# our runs, the lane jobs, hand-offs and in-place commands it caused (from /metrics).
#   bench/t6_rounds.sh            after seeding both (docs/benchmarks.md, "T6 with many users")
# Env: ROUNDS (2), SECS (10), USERS (200), OURS_DIR (/tmp/t6-ours), OURS_PORT (12101), DOVECOT_PORT (12102),
# METRICS_PORT (12109), BENCH_DOVECOT_DIR (/tmp/t6-dovecot), ROOT (a checkout whose bench/ours.py starts
# the server: the code to compare against; default this one).
cd "$(dirname "$0")/.."
ROOT=${ROOT:-.}
export BENCH_DOVECOT_DIR=${BENCH_DOVECOT_DIR:-/tmp/t6-dovecot} BENCH_DOVECOT_USERS=200 BENCH_DOVECOT_IMAP=tuned
ROUNDS=${ROUNDS:-2}; SECS=${SECS:-10}; USERS=${USERS:-200}
OD=${OURS_DIR:-/tmp/t6-ours}; OP=${OURS_PORT:-12101}; DP=${DOVECOT_PORT:-12102}; MP=${METRICS_PORT:-12109}
bench/peers.sh status >/dev/null || bench/peers.sh start "$DP"
m(){ curl -s http://127.0.0.1:$MP/metrics | awk -v n="$1" '$1==n{s+=$2} END{print s+0}'; }
for r in $(seq 1 $ROUNDS); do
  for w in 1 2; do
    .venv/bin/python $ROOT/bench/ours.py restart --data-dir "$OD" --port "$OP" -o server.workers=$w -o metrics.listen=127.0.0.1:$MP >/dev/null
    pid=$(cat "$OD-server.pid")
    .venv/bin/python bench/concurrency.py --port "$OP" --user u --users $USERS --clients 8 --seconds 3 --label warm >/dev/null
    for c in 8 32; do
      echo "# round $r ours w$w $(uptime)"
      j0=$(m imapd_lane_jobs_total); h0=$(m imapd_handoffs_total); i0=$(m imapd_inline_commands_total)
      .venv/bin/python bench/concurrency.py --port "$OP" --user u --users $USERS --label ours-w$w --clients $c --seconds $SECS --server-pid $pid | grep '^{'
      echo "# lane jobs $(( $(m imapd_lane_jobs_total) - j0 )) handoffs $(( $(m imapd_handoffs_total) - h0 )) inline $(( $(m imapd_inline_commands_total) - i0 ))"
    done
  done
  .venv/bin/python bench/ours.py stop --data-dir "$OD"
  pid=$(bench/peers.sh status)
  .venv/bin/python bench/concurrency.py --port "$DP" --user u --users $USERS --clients 8 --seconds 3 --label warm >/dev/null
  echo "# round $r dovecot-tuned $(uptime)"
  .venv/bin/python bench/concurrency.py --port "$DP" --user u --users $USERS --label dovecot-tuned --clients 8 32 --seconds $SECS --server-pid $pid | grep '^{'
done

#!/usr/bin/env bash
# The peers of the benchmarks as unprivileged loopback test instances: Dovecot 2.3 (Debian) and pymap (PyPI).
#
#   bench/peers.sh [dovecot] [start] [PORT]   install dovecot-imapd if missing, write the config, start (port 11143)
#   bench/peers.sh [dovecot] stop             stop it (by the PID in its pid file)
#   bench/peers.sh [dovecot] status           print the master PID if running
#   bench/peers.sh [dovecot] restart [PORT]   stop + start (a "cold" Dovecot: fresh processes, index on disk)
#   bench/peers.sh pymap start|stop|status|restart [PORT]    the same for pymap (default port 11145)
#
# pymap: `pip install pymap` into its own venv ($BENCH_PYMAP_VENV, default /tmp/imapd-bench/pymap-venv, made
# with $BENCH_PYMAP_PYTHON, default python3), run as `pymap --port PORT --host 127.0.0.1 maildir DIR` with its
# maildir backend: DIR ($BENCH_PYMAP_DIR, default /tmp/imapd-bench/pymap) holds pymap-etc-passwd (user bench,
# mailbox path bench/) and pymap-etc-shadow (password bench as a pbkdf2-sha256 hash of 1,000 rounds, so
# LOGIN does not measure the hash), the Maildir is DIR/bench, its log DIR.log. One process, no TLS.
#
# Work dir: $BENCH_DOVECOT_DIR (default /tmp/imapd-bench/dovecot): dovecot.conf, passwd, mail/%u, run/, log.
# One user, bench / bench, plus BENCH_DOVECOT_USERS=N users u0..u(N-1) with the same password ({PLAIN}, the same scheme the benchmarks give our server; BENCH_SCHEME=ARGON2ID
# hashes it with `doveadm pw` instead). It runs as the current user; as root, its
# processes (imap, auth, ...) run as the Debian package's users instead (mail and internal as `dovecot`,
# login as `dovenull`), since Dovecot refuses root for mail access and for its login processes.
# imap-login runs in Dovecot's high-performance mode; BENCH_DOVECOT_LOGIN=security for Debian's default.
# BENCH_DOVECOT_FSYNC=never (mail_fsync) only for seeding big mailboxes faster; the default is Dovecot's.
# Limits are raised so the idle-session benchmark can hold 1,000+ sessions of one user from one address.
# BENCH_DOVECOT_IMAP=tuned runs the imap service as Dovecot's performance docs advise for webmail
# (`service imap { service_count = 0; process_min_avail = <cores> }`: imap processes reused and started
# ahead); the default is Debian's (one imap process per connection).
# BENCH_DOVECOT_FTS=xapian loads the fts + fts_xapian plugins (package dovecot-fts-xapian, installed if
# missing) with substring matching from 3 characters (partial=3), indexed on delivery/APPEND and before
# a SEARCH (fts_autoindex, fts_enforced): `doveadm index -u bench MAILBOX` builds it for seeded mail.
# BENCH_DOVECOT_EXTRA_CONF=FILE appends FILE to the config (tests/conformance/dovecot-extra.conf gives Dovecot
# our namespace: separator "/", the special-use mailboxes, METADATA).
set -euo pipefail

PEER=dovecot
case "${1:-}" in
  dovecot|pymap) PEER=$1; shift ;;
esac

WORK=${BENCH_DOVECOT_DIR:-/tmp/imapd-bench/dovecot}
CONF=$WORK/dovecot.conf
PIDFILE=$WORK/run/master.pid
LOG=$WORK/dovecot.log
cmd=${1:-start}
case "$cmd" in
  start|stop|status|restart) shift || true ;;
  *) cmd=start ;;
esac
PORT=${1:-11143}
if [ "$PEER" = pymap ]; then PORT=${1:-11145}; fi

install() {
  if ! command -v dovecot >/dev/null 2>&1 || [ ! -x /usr/lib/dovecot/imap ]; then
    if [ "$(id -u)" != 0 ]; then
      echo "peers.sh: dovecot-imapd is missing; run as root once to install it" >&2
      exit 1
    fi
    echo "peers.sh: installing dovecot-imapd" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd >/dev/null
  fi
  if [ "${BENCH_DOVECOT_FTS:-}" = xapian ] && [ ! -e /usr/lib/dovecot/modules/lib21_fts_xapian_plugin.so ]; then
    echo "peers.sh: installing dovecot-fts-xapian" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-fts-xapian >/dev/null
  fi
}

pid() {
  if [ -f "$PIDFILE" ]; then
    local p
    p=$(cat "$PIDFILE")
    if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then
      echo "$p"
      return 0
    fi
  fi
  return 1
}

write_config() {
  mkdir -p "$WORK/run" "$WORK/mail"
  local user group uid gid scheme pass
  user=$(id -un); group=$(id -gn); uid=$(id -u); gid=$(id -g)
  # Dovecot's login processes refuse to run as root: as root, they and the internal services use the
  # Debian package's own users (dovenull, dovecot); the mail (imap) processes still run as root.
  local login_user=$user internal_user=$user internal_group=$group
  if [ "$uid" = 0 ]; then
    login_user=dovenull; internal_user=dovecot; internal_group=dovecot
    uid=$(id -u dovecot); gid=$(id -g dovecot)
  fi
  scheme=${BENCH_SCHEME:-PLAIN}
  if [ "$scheme" = PLAIN ]; then
    pass="{PLAIN}bench"
  else
    pass=$(doveadm -c /dev/null pw -s "$scheme" -p bench 2>/dev/null || doveadm pw -s "$scheme" -p bench)
  fi
  # passwd-file rejects UID 0 in its lines: the UID/GID come from mail_uid/mail_gid instead
  echo "bench:$pass:::::" > "$WORK/passwd"
  # BENCH_DOVECOT_USERS=N adds users ${BENCH_DOVECOT_USER_PREFIX:-u}0..N-1 with the same password (the
  # many-user webmail benchmark: bench/seed.py --users N seeds the same names on both servers)
  local i
  for ((i = 0; i < ${BENCH_DOVECOT_USERS:-0}; i++)); do
    echo "${BENCH_DOVECOT_USER_PREFIX:-u}$i:$pass:::::" >> "$WORK/passwd"
  done
  chmod 600 "$WORK/passwd"
  chown "$internal_user" "$WORK/passwd"
  chown "$uid:$gid" "$WORK/mail"
  # Dovecot's "high-performance" login mode by default (login processes serve many connections and are
  # started ahead; the reference figures of targets.md were taken so); BENCH_DOVECOT_LOGIN=security keeps
  # Debian's default "high-security" mode, one login process forked per connection (~9 ms more per request)
  local login_tuning=""
  if [ "${BENCH_DOVECOT_LOGIN:-performance}" = performance ]; then
    login_tuning="  service_count = 0
  process_min_avail = $(nproc)
  vsz_limit = 1G"
  fi
  local imap_tuning=""
  if [ "${BENCH_DOVECOT_IMAP:-default}" = tuned ]; then
    imap_tuning="  service_count = 0
  process_min_avail = $(nproc)"
  fi
  local fts_plugins="" fts_conf=""
  if [ "${BENCH_DOVECOT_FTS:-}" = xapian ]; then
    fts_plugins="mail_plugins = \$mail_plugins fts fts_xapian"
    fts_conf="plugin {
  fts = xapian
  fts_xapian = partial=3 full=20 verbose=0
  fts_autoindex = yes
  fts_enforced = yes
}"
  fi
  cat > "$CONF" <<EOF
# generated by bench/peers.sh: a loopback-only test instance, never for real mail
base_dir = $WORK/run
state_dir = $WORK/run/state
instance_name = imapd-bench-dovecot
listen = 127.0.0.1
protocols = imap
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
log_path = $LOG
info_log_path = $LOG
default_internal_user = $internal_user
default_internal_group = $internal_group
default_login_user = $login_user
mail_uid = $uid
mail_gid = $gid
mail_home = $WORK/mail/%u
first_valid_uid = 0
first_valid_gid = 0
mail_location = maildir:$WORK/mail/%u
$fts_plugins
$fts_conf
mail_fsync = ${BENCH_DOVECOT_FSYNC:-optimized}
mail_max_userip_connections = 5000
default_process_limit = 1500
default_client_limit = 5000
default_vsz_limit = 0
passdb {
  driver = passwd-file
  args = $WORK/passwd
}
userdb {
  driver = passwd-file
  args = $WORK/passwd
}
protocol imap {
  mail_max_userip_connections = 5000
}
service imap-login {
$login_tuning
  inet_listener imap {
    address = 127.0.0.1
    port = $PORT
  }
  inet_listener imaps {
    port = 0
  }
}
service imap {
  process_limit = 1500
  client_limit = 1
$imap_tuning
}
service anvil {
  client_limit = 8000
}
service auth {
  client_limit = 8000
}
service stats {
  client_limit = 8000
}
EOF
  if [ -n "${BENCH_DOVECOT_EXTRA_CONF:-}" ]; then
    cat "$BENCH_DOVECOT_EXTRA_CONF" >> "$CONF"
  fi
}

# the greeting carries CAPABILITY once the auth process answers ("Waiting for authentication" before)
ready() {
  python3 - "$PORT" <<'PY' 2>/dev/null
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
sys.exit(0 if b"CAPABILITY" in s.recv(4096) else 1)
PY
}

start() {
  install
  if p=$(pid); then
    echo "peers.sh: dovecot already running (pid $p)" >&2
    return 0
  fi
  write_config
  mkdir -p "$WORK/run/state"
  : > "$LOG"
  dovecot -c "$CONF"
  # wait for the master's pid file and the listener
  for _ in $(seq 1 100); do
    if pid >/dev/null && ready; then
      echo "peers.sh: dovecot $(dovecot --version | cut -d' ' -f1) on 127.0.0.1:$PORT (pid $(pid), config $CONF, log $LOG)"
      return 0
    fi
    sleep 0.1
  done
  echo "peers.sh: dovecot did not start; log follows" >&2
  cat "$LOG" >&2
  exit 1
}

stop() {
  local p
  if ! p=$(pid); then
    echo "peers.sh: dovecot not running" >&2
    return 0
  fi
  kill "$p"
  for _ in $(seq 1 100); do
    kill -0 "$p" 2>/dev/null || { echo "peers.sh: stopped dovecot (pid $p)"; return 0; }
    sleep 0.1
  done
  kill -9 "$p" 2>/dev/null || true
  echo "peers.sh: killed dovecot (pid $p)"
}

# ------------------------------------------------------------------------------------------ pymap
PVENV=${BENCH_PYMAP_VENV:-/tmp/imapd-bench/pymap-venv}
PDIR=${BENCH_PYMAP_DIR:-/tmp/imapd-bench/pymap}
PPID_FILE=$PDIR.pid
PLOG=$PDIR.log

pymap_install() {
  if [ ! -x "$PVENV/bin/pymap" ]; then
    echo "peers.sh: installing pymap into $PVENV" >&2
    "${BENCH_PYMAP_PYTHON:-python3}" -m venv "$PVENV"
    "$PVENV/bin/pip" install -q pymap
  fi
}

pymap_pid() {
  if [ -f "$PPID_FILE" ]; then
    local p
    p=$(cat "$PPID_FILE")
    if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then
      echo "$p"
      return 0
    fi
  fi
  return 1
}

pymap_start() {
  pymap_install
  if p=$(pymap_pid); then
    echo "peers.sh: pymap already running (pid $p)" >&2
    return 0
  fi
  mkdir -p "$PDIR"
  if [ ! -f "$PDIR/pymap-etc-shadow" ]; then
    echo "bench:::::bench:" > "$PDIR/pymap-etc-passwd"
    "$PVENV/bin/python" - "$PDIR/pymap-etc-shadow" <<'PY'
import sys
from pysasl.hashing import BuiltinHash
with open(sys.argv[1], "w") as f:
    f.write("bench:" + BuiltinHash(rounds=1000).hash("bench") + ":::::::\n")
PY
  fi
  : > "$PLOG"
  setsid "$PVENV/bin/pymap" --host 127.0.0.1 --port "$PORT" --no-tls maildir "$PDIR" \
    >>"$PLOG" 2>&1 </dev/null &
  echo $! > "$PPID_FILE"
  for _ in $(seq 1 200); do
    if python3 -c 'import socket, sys; sys.exit(0 if socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2).recv(4096).startswith(b"* OK") else 1)' "$PORT" 2>/dev/null; then
      echo "peers.sh: pymap $("$PVENV/bin/pymap" --version | cut -d' ' -f2) on 127.0.0.1:$PORT (pid $(pymap_pid), dir $PDIR, log $PLOG)"
      return 0
    fi
    pymap_pid >/dev/null || break
    sleep 0.1
  done
  echo "peers.sh: pymap did not start; log follows" >&2
  cat "$PLOG" >&2
  exit 1
}

pymap_stop() {
  local p
  if ! p=$(pymap_pid); then
    echo "peers.sh: pymap not running" >&2
    return 0
  fi
  kill "$p"
  for _ in $(seq 1 100); do
    kill -0 "$p" 2>/dev/null || { echo "peers.sh: stopped pymap (pid $p)"; rm -f "$PPID_FILE"; return 0; }
    sleep 0.1
  done
  kill -9 "$p" 2>/dev/null || true
  rm -f "$PPID_FILE"
  echo "peers.sh: killed pymap (pid $p)"
}

if [ "$PEER" = pymap ]; then
  case "$cmd" in
    start) pymap_start ;;
    stop) pymap_stop ;;
    status) pymap_pid || { echo "not running" >&2; exit 1; } ;;
    restart) pymap_stop; pymap_start ;;
  esac
  exit 0
fi

case "$cmd" in
  start) start ;;
  stop) stop ;;
  status) pid || { echo "not running" >&2; exit 1; } ;;
  restart) stop; start ;;
esac

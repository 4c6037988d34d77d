"""T6 stalls: another user's NOOP latency while one user's work is slow, on our server.

    stalls.py --port 11147 --data-dir DIR --user stall --other other     # users seeded by seed.py --data-dir

While user ``--user`` (A) (a) has its index write-locked for 5 s by another process, (b) runs
``UID SEARCH BODY`` over its INBOX, (c) expunges every message of a copy of its INBOX, user ``--other``
(B) sends NOOP after NOOP on its own connection; prints B's NOOP p50/p99/max for each case (and for a
quiet baseline) as JSON lines and a table, plus how long A's command took. Case (c) copies INBOX into a
scratch mailbox first (not timed) so the seed survives.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sqlite3
import statistics
import sys
import threading
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


class Conn:
    def __init__(self, host: str, port: int, user: str, password: str) -> None:
        self.sock = socket.create_connection((host, port), timeout=600)
        self.f = self.sock.makefile("rb")
        self.f.readline()
        self.n = 0
        self.cmd(f"LOGIN {user} {password}")

    def cmd(self, text: str) -> bytes:
        self.n += 1
        tag = f"s{self.n}".encode()
        self.sock.sendall(tag + b" " + text.encode() + b"\r\n")
        while True:
            line = self.f.readline()
            if not line:
                raise ConnectionError("closed")
            if line.startswith(tag + b" "):
                if b" OK" not in line[:len(tag) + 4]:
                    raise RuntimeError(f"{text}: {line!r}")
                return line


def _noops(conn: Conn, stop: threading.Event, out: list[float]) -> None:
    while not stop.is_set():
        t = time.perf_counter()
        conn.cmd("NOOP")
        out.append(time.perf_counter() - t)
        time.sleep(0.005)


def _thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (utime+stime) of every thread of ``pid``, by thread id."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def measure(args: argparse.Namespace, label: str, work: Callable[[], None]) -> dict[str, object]:
    other = Conn(args.host, args.port, args.other, args.password)
    other.cmd("SELECT INBOX")
    lat: list[float] = []
    stop = threading.Event()
    t = threading.Thread(target=_noops, args=(other, stop, lat))
    t.start()
    time.sleep(0.3)
    cpu0 = _thread_cpu(args.server_pid) if args.server_pid else {}
    started = time.perf_counter()
    work()
    took = time.perf_counter() - started
    cpu1 = _thread_cpu(args.server_pid) if args.server_pid else {}
    stop.set()
    t.join()
    lat.sort()
    row = {"bench": "T6-stall", "case": label, "noops": len(lat),
           "p50_ms": round(statistics.median(lat) * 1000, 2), "p99_ms": round(lat[int(len(lat) * 0.99)] * 1000, 2),
           "max_ms": round(lat[-1] * 1000, 2), "a_seconds": round(took, 2), "loadavg": os.getloadavg()[0]}
    if cpu1:  # which of the server's threads worked meanwhile (py-spy dump names them)
        busy = sorted(((cpu1[t] - cpu0.get(t, 0.0), t) for t in cpu1), reverse=True)[:4]
        row["thread_cpu_s"] = {str(t): round(v, 2) for v, t in busy if v > 0}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--data-dir", required=True, help="the server's data dir (for the index lock)")
    ap.add_argument("--user", default="stall")
    ap.add_argument("--other", default="other")
    ap.add_argument("--password", default="bench")
    ap.add_argument("--lock-seconds", type=float, default=5.0)
    ap.add_argument("--server-pid", type=int, default=0, help="also report the CPU time of its busiest threads")
    ap.add_argument("--cases", default="quiet,lock,search,expunge",
                    help="comma-separated subset of quiet,lock,search,expunge")
    args = ap.parse_args()
    cases = set(args.cases.split(","))
    rows = [measure(args, "quiet", lambda: time.sleep(2))] if "quiet" in cases else []

    def locked() -> None:
        a = Conn(args.host, args.port, args.user, args.password)
        index = os.path.join(args.data_dir, "mail", args.user, "imapd-index.sqlite")
        holder = sqlite3.connect(index, timeout=5, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        th = threading.Thread(target=a.cmd, args=('CREATE "stall-probe"',))
        th.start()
        time.sleep(args.lock_seconds)
        holder.execute("ROLLBACK")
        holder.close()
        th.join()
        a.cmd('DELETE "stall-probe"')

    if "lock" in cases:
        rows.append(measure(args, f"index locked {args.lock_seconds:g} s", locked))

    a = Conn(args.host, args.port, args.user, args.password)
    a.cmd("SELECT INBOX")
    if "search" in cases:
        rows.append(measure(args, "SEARCH BODY", lambda: a.cmd('UID SEARCH BODY "zebra-not-there"')))
    if "expunge" in cases:
        a.cmd('CREATE "stall-copy"')
        a.cmd('COPY 1:* "stall-copy"')
        a.cmd('SELECT "stall-copy"')
        a.cmd("STORE 1:* +FLAGS.SILENT (\\Deleted)")
        rows.append(measure(args, "EXPUNGE all", lambda: a.cmd("EXPUNGE")))
        a.cmd('SELECT INBOX')
        a.cmd('DELETE "stall-copy"')
    print(f"\n{'case':22} {'noops':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'A s':>6}")
    for r in rows:
        print(f"{r['case']!s:22} {r['noops']:>6} {r['p50_ms']:>8} {r['p99_ms']:>8} {r['max_ms']:>8} {r['a_seconds']:>6}")


if __name__ == "__main__":
    main()

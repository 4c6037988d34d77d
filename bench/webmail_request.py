"""T1: the webmail request on a fresh connection, against any IMAP server by host/port.

    webmail_request.py --port 1143 --label ours --mode login      # greeting, LOGIN, SELECT INBOX,
                                                                  # UID FETCH last 50 (ENVELOPE FLAGS), LOGOUT
    webmail_request.py --port 1143 --label ours --mode xstate     # greeting, X-STATE RESTORE, UID FETCH, LOGOUT
    webmail_request.py ... --cold-runs 20 --restart-cmd 'CMD'     # also: CMD (restarts the server and returns
                                                                  # once it listens) before each cold sample
    webmail_request.py ... --server-pid PID                       # also: the server's CPU per warm request

Each run is one fresh TCP connection. Phases are timed with perf_counter from the client side:
connect (TCP connect + greeting), login, select (or restore), fetch, logout, and total (connect start to
LOGOUT's tagged OK). The 50 UIDs are the mailbox's last 50, found once before timing (UID SEARCH), so the
same UID set is asked of every server. One JSON line per (mode, phase), then a small table.
``--quick``: 20 runs, 5 warm-up. ``--server-pid``: utime+stime of PID and its descendants (Dovecot's
master, our supervisor) from /proc before and after the warm runs, divided by the runs: CPU time does not
grow with the machine's load the way the wall clock does (one extra row, phase ``server_cpu``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from imapclient import Client, IMAPError, add_server_arguments, quote

PHASES_LOGIN = ["connect", "login", "select", "fetch", "logout", "total"]
PHASES_XSTATE = ["connect", "restore", "fetch", "logout", "total"]


def uid_set(uids: list[int]) -> str:
    """Compact sequence-set of sorted UIDs (runs as a:b)."""
    out: list[str] = []
    start = prev = uids[0]
    for u in uids[1:]:
        if u == prev + 1:
            prev = u
            continue
        out.append(f"{start}:{prev}" if prev != start else str(start))
        start = prev = u
    out.append(f"{start}:{prev}" if prev != start else str(start))
    return ",".join(out)


def prepare(args: argparse.Namespace) -> tuple[str, int, str | None]:
    """(UID set of the last 50 messages, EXISTS, X-STATE token or None if unsupported)."""
    c = Client(args.host, args.port)
    c.command(f"LOGIN {quote(args.user)} {quote(args.password)}")
    untagged, _ = c.command(f"SELECT {quote(args.mailbox)}")
    exists = 0
    for line in untagged:
        parts = line.split()
        if len(parts) >= 3 and parts[2].upper() == b"EXISTS":
            exists = int(parts[1])
    if exists == 0:
        raise SystemExit("mailbox is empty: seed it first (bench/seed.py)")
    lo = max(1, exists - args.count + 1)
    untagged, _ = c.command(f"UID SEARCH {lo}:{exists}")
    uids = sorted(int(x) for line in untagged if line.startswith(b"* SEARCH") for x in line.split()[2:])
    token = None
    if args.mode == "xstate":
        untagged, done = c.command("X-STATE SAVE", check=False)
        if b" OK" in done:
            for line in untagged:
                if line.upper().startswith(b"* X-STATE "):
                    token = line.split()[2].decode()
    c.command("LOGOUT", check=False)
    c.close()
    return uid_set(uids), exists, token


def one_request(args: argparse.Namespace, uids: str, token: str | None) -> dict[str, float]:
    t = {}
    pc = time.perf_counter
    t0 = pc()
    c = Client(args.host, args.port)
    t1 = pc()
    t["connect"] = t1 - t0
    if token is None:
        c.command(f"LOGIN {quote(args.user)} {quote(args.password)}")
        t2 = pc()
        t["login"] = t2 - t1
        c.command(f"SELECT {quote(args.mailbox)}")
        t3 = pc()
        t["select"] = t3 - t2
    else:
        c.command(f"X-STATE RESTORE {token}")
        t3 = pc()
        t["restore"] = t3 - t1
    untagged, _ = c.command(f"UID FETCH {uids} (ENVELOPE FLAGS)")
    t4 = pc()
    t["fetch"] = t4 - t3
    if len(untagged) < args.count:
        raise IMAPError(f"FETCH returned {len(untagged)} lines, expected {args.count}")
    c.command("LOGOUT", check=False)
    t5 = pc()
    t["logout"] = t5 - t4
    t["total"] = t5 - t0
    c.close()
    return t


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, round(p / 100 * (len(xs) - 1))))
    return xs[k]


def summarize(label: str, mode: str, cache: str, samples: list[dict[str, float]], phases: list[str]) -> list[dict]:
    rows = []
    for ph in phases:
        xs = [s[ph] * 1e3 for s in samples]
        rows.append({"bench": "webmail_request", "label": label, "mode": mode, "cache": cache, "phase": ph,
                     "median_ms": round(statistics.median(xs), 3), "p99_ms": round(pct(xs, 99), 3),
                     "mean_ms": round(statistics.fmean(xs), 3), "runs": len(xs)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_server_arguments(ap, mailbox="INBOX")
    ap.add_argument("--count", type=int, default=50, help="messages fetched (the last N UIDs)")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--mode", choices=["login", "xstate"], default="login")
    ap.add_argument("--label", default="server")
    ap.add_argument("--quick", action="store_true", help="20 runs, 5 warm-up")
    ap.add_argument("--cold-runs", type=int, default=0,
                    help="also time N requests each right after --restart-cmd (a fresh server process)")
    ap.add_argument("--restart-cmd", help="shell command that restarts the server and returns once it listens")
    ap.add_argument("--server-pid", type=int, help="also report the CPU time of PID and its descendants per warm request")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.warmup = 20, 5
    if args.cold_runs and not args.restart_cmd:
        ap.error("--cold-runs needs --restart-cmd")

    phases = PHASES_LOGIN if args.mode == "login" else PHASES_XSTATE
    rows: list[dict] = []
    if args.cold_runs:
        cold: list[dict[str, float]] = []
        for _ in range(args.cold_runs):
            subprocess.run(args.restart_cmd, shell=True, check=True, stdout=subprocess.DEVNULL)
            # the UID set is taken before restarting again so the sample is this process's first request
            uids, _, token = prepare(args) if args.mode == "xstate" else (None, 0, None)
            if args.mode == "xstate":
                if token is None:
                    break
                subprocess.run(args.restart_cmd, shell=True, check=True, stdout=subprocess.DEVNULL)
            else:
                uids = cached_uids(args)
            cold.append(one_request(args, uids, token))  # type: ignore[arg-type]
        if cold:
            rows += summarize(args.label, args.mode, "cold", cold, phases)

    uids, exists, token = prepare(args)
    if args.mode == "xstate" and token is None:
        row = {"bench": "webmail_request", "label": args.label, "mode": "xstate", "unavailable": True,
               "reason": "server answered X-STATE SAVE with other than OK"}
        print(json.dumps(row), flush=True)
        print(f"{args.label}: X-STATE unavailable")
        return
    for _ in range(args.warmup):
        one_request(args, uids, token)
    cpu0 = server_cpu(args.server_pid) if args.server_pid else 0.0
    warm = [one_request(args, uids, token) for _ in range(args.runs)]
    cpu1 = server_cpu(args.server_pid) if args.server_pid else 0.0
    rows += summarize(args.label, args.mode, "warm", warm, phases)
    if args.server_pid:
        per = (cpu1 - cpu0) / args.runs * 1e3
        rows.append({"bench": "webmail_request", "label": args.label, "mode": args.mode, "cache": "warm",
                     "phase": "server_cpu", "median_ms": round(per, 3), "p99_ms": round(per, 3),
                     "mean_ms": round(per, 3), "runs": args.runs, "load": os.getloadavg()[0]})
    for r in rows:
        r["messages"] = exists
        print(json.dumps(r), flush=True)
    print(f"\n{args.label} ({args.mode}, {exists} msgs, UID FETCH {uids} (ENVELOPE FLAGS))")
    print(f"{'cache':<5} {'phase':<8} {'median ms':>10} {'p99 ms':>9} {'runs':>5}")
    for r in rows:
        print(f"{r['cache']:<5} {r['phase']:<8} {r['median_ms']:>10.2f} {r['p99_ms']:>9.2f} {r['runs']:>5}")


def server_cpu(pid: int) -> float:
    """utime+stime (with reaped children's) of ``pid`` and its live descendants, in seconds."""
    from concurrency import _cpu_seconds

    return _cpu_seconds(pid)


_uid_cache: dict[tuple[str, int], str] = {}


def cached_uids(args: argparse.Namespace) -> str:
    """The UID set, found once from a server that was restarted before it (for cold login samples the
    cost of this lookup would warm the server, so it is found on the first cold run only and that run's
    server is restarted again)."""
    key = (args.host, args.port)
    if key not in _uid_cache:
        _uid_cache[key] = prepare(args)[0]
        subprocess.run(args.restart_cmd, shell=True, check=True, stdout=subprocess.DEVNULL)
    return _uid_cache[key]


if __name__ == "__main__":
    main()

"""T3 over IMAP: SELECT cold and warm, and FETCH 1:* (FLAGS) with the server's memory, by mailbox size.

    mailbox_size.py --port 11144 --label ours --restart-cmd ".venv/bin/python bench/ours.py restart ..." \\
        --pid-cmd "cat /tmp/imapd-bench/ours-scale-server.pid"
    mailbox_size.py --port 11143 --label dovecot --restart-cmd "bench/peers.sh restart 11143" \\
        --pid-cmd "bench/peers.sh status" --tree

Mailboxes ``n1000``, ``n10000``, ``n100000`` (``--sizes``; ``--quick``: 1k and 10k) must hold the same
messages in every server: bench/seed.py --mailbox n100000 --count 100000 (over IMAP, or --data-dir --bulk
for ours). For each size:

- ``select_cold_ms``: the first SELECT after ``--restart-cmd`` (a fresh server process; data and index on
  disk, page cache warm), after LOGIN;
- ``select_warm_ms``: SELECT of the same mailbox again, median of --runs (spread: min, max);
- ``fetch_flags_first_ms`` and ``fetch_flags_ms`` (median of --runs, 2 at 100k): ``FETCH 1:* (FLAGS)``,
  read to the tagged OK by the client (lines counted in C, not kept: a line-by-line Python reader takes
  ~2 us a line, more than the servers, and would time itself);
- during every FETCH, the server's RSS (``/proc/PID/status`` VmRSS, summed over PID and its descendants with
  --tree) is sampled every 2 ms: ``rss_before``, ``rss_peak``; a server that streams the response grows
  by far less than ``response_bytes`` (``growth_ratio`` = (peak - before) / response bytes).

Every server gets the same command sequence. Before the cold round, one settling session (LOGIN, SELECT,
NOOP, LOGOUT) lets a server bring its index up to date (Dovecot indexes new Maildir files at the first
SELECT and rotates dovecot.index.log later): the cold SELECT then measures opening a settled index, not
indexing. A mailbox that is not there is detected by the SELECT's NO (no LIST before the timed SELECT).
Load average (1 min) before and after is in each JSON line.

One JSON line per size, then a table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from fetch_body import Reader  # noqa: E402
from idle_sessions import _children  # noqa: E402  (one /proc walker for both scripts)
from imapclient import Client, quote  # noqa: E402


def tree(pid: int, descend: bool) -> list[int]:
    if not descend:
        return [pid]
    seen, todo = [], [pid]
    while todo:
        p = todo.pop()
        seen.append(p)
        todo += _children(p)
    return seen


def rss(pids: list[int]) -> int:
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


class Sampler(threading.Thread):
    def __init__(self, pids: list[int]) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, rss(self.pids))
            time.sleep(0.002)


def fetch_flags(c: Client, pids: list[int]) -> tuple[float, int, int, int]:
    """FETCH 1:* (FLAGS): (ms, response bytes, rss before, rss peak)."""
    before = rss(pids)
    s = Sampler(pids)
    s.peak = before
    s.start()
    tag = c.next_tag()
    prefix = tag + b" "
    reader = Reader(c.sock)
    reader.take(c.buf)
    c.buf.clear()
    t = time.perf_counter()
    c.sock.sendall(tag + b" FETCH 1:* (FLAGS)\r\n")
    _, line, size = reader.until_plain(tag)
    ms = (time.perf_counter() - t) * 1e3
    s.stop.set()
    s.join()
    c.buf[:0] = reader.rest()
    if not line[len(prefix):].startswith(b"OK"):
        raise SystemExit(f"FETCH failed: {line!r}")
    return ms, size, before, max(s.peak, rss(pids))


def load() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def timed(fn: object) -> float:
    t = time.perf_counter()
    fn()  # type: ignore[operator]
    return (time.perf_counter() - t) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--label", default="server")
    ap.add_argument("--user", default="bench")
    ap.add_argument("--password", default="bench")
    ap.add_argument("--restart-cmd", required=True, help="shell command giving a fresh server process")
    ap.add_argument("--pid-cmd", required=True, help="shell command printing the server's PID")
    ap.add_argument("--tree", action="store_true", help="sum memory over the PID's descendants too")
    ap.add_argument("--sizes", type=int, nargs="*")
    ap.add_argument("--quick", action="store_true", help="1k and 10k")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    sizes = args.sizes or ([1000, 10_000] if args.quick else [1000, 10_000, 100_000])
    rows: list[dict[str, object]] = []
    for n in sizes:
        mailbox = f"n{n}"
        load_before = load()
        settle = Client(args.host, args.port, timeout=1800)
        settle.command(f"LOGIN {quote(args.user)} {quote(args.password)}")
        _, done = settle.command(f"SELECT {quote(mailbox)}", check=False)
        settle.command("NOOP", check=False)
        settle.command("LOGOUT", check=False)
        settle.close()
        if b" OK" not in done[:12]:
            row = {"bench": "mailbox_size", "server": args.label, "messages": n, "unavailable": True,
                   "reason": f"mailbox {mailbox} not seeded ({done.decode(errors='replace')[:80]})"}
            rows.append(row)
            print(json.dumps(row), flush=True)
            continue
        subprocess.run(args.restart_cmd, shell=True, check=True, stdout=subprocess.DEVNULL)
        pid = int(subprocess.run(args.pid_cmd, shell=True, check=True, capture_output=True, text=True).stdout.split()[0])
        c = Client(args.host, args.port, timeout=1800)
        login_ms = timed(lambda: c.command(f"LOGIN {quote(args.user)} {quote(args.password)}"))  # noqa: B023
        lines: list[bytes] = []

        def select(c: Client = c, mailbox: str = mailbox) -> None:
            nonlocal lines
            lines, _ = c.command(f"SELECT {quote(mailbox)}")

        cold = timed(select)
        exists = next((int(x.split()[1]) for x in lines if x.rstrip().upper().endswith(b" EXISTS")), 0)
        warm = [timed(select) for _ in range(args.runs)]
        pids = tree(pid, args.tree)
        first_ms, size, before, peak = fetch_flags(c, pids)
        runs = args.runs if n < 100_000 else 2
        fetches = [fetch_flags(c, tree(pid, args.tree)) for _ in range(runs)]
        c.command("LOGOUT", check=False)
        c.close()
        times = [f[0] for f in fetches]
        growth = max([peak - before] + [f[3] - f[2] for f in fetches])
        row = {"bench": "mailbox_size", "server": args.label, "messages": n, "exists": exists,
               "login_cold_ms": round(login_ms, 2), "select_cold_ms": round(cold, 2),
               "select_warm_ms": round(statistics.median(warm), 3),
               "select_warm_spread": [round(min(warm), 3), round(max(warm), 3)],
               "fetch_flags_first_ms": round(first_ms, 1), "fetch_flags_ms": round(statistics.median(times), 1),
               "fetch_flags_spread": [round(min(times), 1), round(max(times), 1)],
               "response_bytes": size, "rss_before": before, "rss_peak": max([peak] + [f[3] for f in fetches]),
               "rss_growth": growth, "growth_ratio": round(growth / size, 3), "processes": len(pids),
               "fetch_runs": runs, "warm_runs": args.runs, "load": [load_before, load()]}
        rows.append(row)
        print(json.dumps(row), flush=True)

    print(f"\n{args.label}: T3 mailbox size over IMAP (ms; RSS MiB during FETCH 1:* (FLAGS))")
    print(f"{'messages':>9} {'SELECT cold':>12} {'warm':>8} {'FETCH first':>12} {'FETCH':>8} {'resp MB':>8} "
          f"{'RSS before':>11} {'peak':>8} {'growth/resp':>12}")
    for r in rows:
        if r.get("unavailable"):
            print(f"{r['messages']:>9}  {r['reason']}")
            continue
        print(f"{r['messages']:>9} {r['select_cold_ms']:>12} {r['select_warm_ms']:>8} {r['fetch_flags_first_ms']:>12} "
              f"{r['fetch_flags_ms']:>8} {int(r['response_bytes']) / 1e6:>8.2f} {int(r['rss_before']) / 2**20:>11.1f} "
              f"{int(r['rss_peak']) / 2**20:>8.1f} {r['growth_ratio']:>12}")


if __name__ == "__main__":
    main()

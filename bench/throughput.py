"""T4: throughput over one connection, any IMAP server: APPEND, UID FETCH BODY.PEEK[] and SEARCH.

    throughput.py --port 11144 --label ours                      # 10,000 APPENDs, FETCH them, SEARCH n100000
    throughput.py --port 11143 --label dovecot --quick           # 1,000 APPENDs, SEARCH n10000
    throughput.py --port 11145 --label pymap --append-count 2000 --search-mailbox n10000

1. APPEND of --append-count messages (~10 KB each: bench/seed.py's generator with 8-10.5 KB bodies, seed 7)
   into a fresh mailbox ``t4-append`` over one connection: pipelined with LITERAL+ when the server
   advertises it (batches of 200 commands in flight), else one synchronizing literal at a time.
2. ``UID FETCH 1:* BODY.PEEK[]`` of all of them after SELECT (one command; the client reads and counts).
3. ``UID SEARCH HEADER SUBJECT kyoto`` and ``UID SEARCH SUBJECT kyoto`` over --search-mailbox (default
   n100000, n10000 with --quick; seed it first: bench/seed.py --mailbox n100000 --count 100000), each run
   once right after SELECT (first) and then --runs times (median). Hit counts are printed: they must agree
   between servers holding the same messages.

msgs/s and MB/s (10^6 bytes of message data) per phase; one JSON line per figure, then a table.
``t4-append`` is deleted at the end (``--keep`` keeps it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from imapclient import Client, IMAPError, quote
from seed import append_pipelined, messages

MAILBOX = "t4-append"


def emit(rows: list[dict[str, object]], **row: object) -> None:
    row = {"bench": "throughput", **row}
    rows.append(row)
    print(json.dumps(row), flush=True)


def exists_of(untagged: list[bytes]) -> int:
    for line in untagged:
        parts = line.split()
        if len(parts) >= 3 and parts[2].upper() == b"EXISTS":
            return int(parts[1])
    return 0


def listed(c: Client, name: str) -> bool:
    untagged, _ = c.command(f'LIST "" {quote(name)}')
    return bool(untagged)


def append_all(c: Client, count: int, plus: bool, batch: int = 200) -> tuple[int, float]:
    """APPEND ``count`` messages into MAILBOX; (bytes of message data, seconds)."""
    items = list(messages(count, seed=7, body_size=(8000, 10500)))
    t = time.perf_counter()
    total = append_pipelined(c, MAILBOX, items, plus=plus, batch=batch)
    return total, time.perf_counter() - t


def fetch_all(c: Client) -> tuple[int, int, float]:
    """UID FETCH 1:* BODY.PEEK[] of the selected mailbox: (responses, bytes received, seconds)."""
    tag = c.next_tag()
    t = time.perf_counter()
    c.sock.sendall(tag + b" UID FETCH 1:* BODY.PEEK[]\r\n")
    n = size = 0
    prefix = tag + b" "
    while True:
        line = c.read_line()
        if line.startswith(prefix):
            break
        n += 1
        size += len(line)
    dt = time.perf_counter() - t
    if not line[len(prefix):].startswith(b"OK"):
        raise SystemExit(f"FETCH failed: {line!r}")
    return n, size, dt


def timed_search(c: Client, command: str) -> tuple[float, int]:
    t = time.perf_counter()
    untagged, _ = c.command(command)
    dt = time.perf_counter() - t
    hits = sum(len(line.split()) - 2 for line in untagged if line.upper().startswith(b"* SEARCH"))
    return dt, hits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--label", default="server")
    ap.add_argument("--user", default="bench")
    ap.add_argument("--password", default="bench")
    ap.add_argument("--quick", action="store_true", help="1,000 APPENDs, SEARCH over n10000")
    ap.add_argument("--append-count", type=int)
    ap.add_argument("--search-mailbox")
    ap.add_argument("--term", default="kyoto")
    ap.add_argument("--runs", type=int, default=3, help="SEARCH runs for the median")
    ap.add_argument("--skip-append", action="store_true", help="SEARCH only")
    ap.add_argument("--keep", action="store_true", help="keep the t4-append mailbox")
    ap.add_argument("--skip-search", metavar="REASON", help="no SEARCH; REASON goes into the results")
    args = ap.parse_args()
    count = args.append_count or (1000 if args.quick else 10_000)
    search_mb = args.search_mailbox or ("n10000" if args.quick else "n100000")
    rows: list[dict[str, object]] = []
    base = {"server": args.label}

    c = Client(args.host, args.port, timeout=1800)
    untagged, _ = c.command("CAPABILITY")
    caps = b" ".join(untagged).upper()
    plus = b"LITERAL+" in caps
    c.command(f"LOGIN {quote(args.user)} {quote(args.password)}")

    if not args.skip_append:
        if listed(c, MAILBOX):
            c.command(f"DELETE {MAILBOX}")
        c.command(f"CREATE {MAILBOX}")
        size, dt = append_all(c, count, plus)
        emit(rows, **base, phase="append", messages=count, bytes=size, seconds=round(dt, 3),
             msgs_per_s=round(count / dt, 1), mb_per_s=round(size / dt / 1e6, 2), literal_plus=plus,
             avg_kb=round(size / count / 1e3, 2))
        untagged, _ = c.command(f"SELECT {MAILBOX}")
        got = exists_of(untagged)
        n, size, dt = fetch_all(c)
        emit(rows, **base, phase="fetch_body", messages=n, exists=got, bytes=size, seconds=round(dt, 3),
             msgs_per_s=round(n / dt, 1), mb_per_s=round(size / dt / 1e6, 2))
        c.command("UNSELECT" if b"UNSELECT" in caps else "CLOSE", check=False)
        if not args.keep:
            c.command(f"DELETE {MAILBOX}", check=False)

    if args.skip_search:
        for name in ("search_header", "search_subject"):
            emit(rows, **base, phase=name, mailbox=search_mb, unavailable=True, reason=args.skip_search)
    elif not listed(c, search_mb):
        emit(rows, **base, phase="search", mailbox=search_mb, unavailable=True,
             reason=f"mailbox {search_mb} not seeded")
    else:
        untagged, _ = c.command(f"SELECT {search_mb}")
        total = exists_of(untagged)
        for name, cmd in (("search_header", f"UID SEARCH HEADER SUBJECT {args.term}"),
                          ("search_subject", f"UID SEARCH SUBJECT {args.term}")):
            try:
                first, hits = timed_search(c, cmd)
                times = [timed_search(c, cmd)[0] for _ in range(args.runs)]
            except IMAPError as e:
                emit(rows, **base, phase=name, mailbox=search_mb, unavailable=True, reason=str(e)[:200])
                continue
            med = statistics.median(times)
            emit(rows, **base, phase=name, mailbox=search_mb, messages=total, hits=hits,
                 first_ms=round(first * 1e3, 1), median_ms=round(med * 1e3, 1),
                 spread_ms=[round(min(times) * 1e3, 1), round(max(times) * 1e3, 1)],
                 msgs_per_s=round(total / med, 0))
    c.command("LOGOUT", check=False)
    c.close()

    print(f"\n{args.label}: T4 throughput (one connection, LITERAL+ {'yes' if plus else 'no'})")
    print(f"{'phase':<15} {'messages':>9} {'seconds':>8} {'msgs/s':>9} {'MB/s':>7}  notes")
    for r in rows:
        if r.get("unavailable"):
            print(f"{r['phase']:<15} {'-':>9}  {r['reason']}")
        elif r["phase"] in ("append", "fetch_body"):
            print(f"{r['phase']:<15} {r['messages']:>9} {r['seconds']:>8} {r['msgs_per_s']:>9} {r['mb_per_s']:>7}")
        else:
            print(f"{r['phase']:<15} {r['messages']:>9} {float(r['median_ms']) / 1e3:>8.3f} {r['msgs_per_s']:>9} "
                  f"{'':>7}  {r['hits']} hits, first {r['first_ms']} ms, runs {r['spread_ms']} ms")


if __name__ == "__main__":
    main()

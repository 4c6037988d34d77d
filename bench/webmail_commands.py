"""T1 family: a webmail's commands on an open, selected connection, against any IMAP server by host/port.

    webmail_commands.py --port 1143 --label ours [--server-pid PID] [--runs 500] [--rounds 3]

After LOGIN and SELECT of the mailbox (once, untimed), each timed command is sent ``--runs`` times per
round, one at a time, and timed from its send to its tagged OK (perf_counter, client side):

- ``headers``: Roundcube's message list, ``UID FETCH <last 50> (UID RFC822.SIZE FLAGS INTERNALDATE
  BODY.PEEK[HEADER.FIELDS (DATE FROM TO SUBJECT CONTENT-TYPE CC REPLY-TO LIST-POST
  DISPOSITION-NOTIFICATION-TO X-PRIORITY)])``;
- ``envelopes``: ``UID FETCH <last 50> (ENVELOPE FLAGS)`` (the T1 request's FETCH);
- ``store``: ``UID STORE <uid> +FLAGS.SILENT (\\Flagged)`` and ``-FLAGS.SILENT (\\Flagged)`` in turn, on the
  last 50 messages in turn (each a real change: the flag is set, then cleared).

The commands of a round are interleaved (headers, envelopes, store, headers, ...) so load changes hit
each alike. ``--server-pid``: CPU time (utime+stime, descendants included) of the server per command,
from /proc around each round's batch of one kind (taken in a separate pass so the timings of the
interleaved pass stay clean). One JSON line per (command, round), then a table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from imapclient import Client, add_server_arguments, quote
from webmail_request import uid_set

HEADER_FIELDS = ("DATE FROM TO SUBJECT CONTENT-TYPE CC REPLY-TO LIST-POST DISPOSITION-NOTIFICATION-TO "
                 "X-PRIORITY")


def commands(uids: list[int]) -> dict[str, list[str]]:
    """Per kind, the commands to cycle through."""
    page = uid_set(uids)
    store = []
    for u in uids:
        store += [f"UID STORE {u} +FLAGS.SILENT (\\Flagged)", f"UID STORE {u} -FLAGS.SILENT (\\Flagged)"]
    return {
        "headers": [f"UID FETCH {page} (UID RFC822.SIZE FLAGS INTERNALDATE "
                    f"BODY.PEEK[HEADER.FIELDS ({HEADER_FIELDS})])"],
        "envelopes": [f"UID FETCH {page} (ENVELOPE FLAGS)"],
        "store": store,
    }


def server_cpu(pid: int) -> float:
    from concurrency import _cpu_seconds

    return _cpu_seconds(pid)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_server_arguments(ap, mailbox="INBOX")
    ap.add_argument("--count", type=int, default=50, help="messages of the page (the last N UIDs)")
    ap.add_argument("--runs", type=int, default=500, help="commands of each kind per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--label", default="server")
    ap.add_argument("--server-pid", type=int, help="also report the server's CPU time per command")
    ap.add_argument("--only", nargs="+", choices=["headers", "envelopes", "store"], help="just these commands")
    args = ap.parse_args()

    c = Client(args.host, args.port)
    c.command(f"LOGIN {quote(args.user)} {quote(args.password)}")
    untagged, _ = c.command(f"SELECT {quote(args.mailbox)}")
    exists = next(int(line.split()[1]) for line in untagged if line.split()[2:3] == [b"EXISTS"])
    lo = max(1, exists - args.count + 1)
    untagged, _ = c.command(f"UID SEARCH {lo}:{exists}")
    uids = sorted(int(x) for line in untagged if line.startswith(b"* SEARCH") for x in line.split()[2:])
    cmds = commands(uids)
    kinds = args.only or list(cmds)
    at = dict.fromkeys(kinds, 0)

    def send(kind: str) -> float:
        seq = cmds[kind]
        text = seq[at[kind] % len(seq)]
        at[kind] += 1
        t0 = time.perf_counter()
        untagged, _ = c.command(text)
        dt = time.perf_counter() - t0
        if kind != "store" and len(untagged) < len(uids):
            raise SystemExit(f"{kind}: {len(untagged)} responses, expected {len(uids)}")
        return dt

    for _ in range(args.warmup):
        for kind in kinds:
            send(kind)
    rows = []
    for rnd in range(1, args.rounds + 1):
        times: dict[str, list[float]] = {k: [] for k in kinds}
        for _ in range(args.runs):
            for kind in kinds:
                times[kind].append(send(kind))
        cpu: dict[str, float] = {}
        if args.server_pid:
            for kind in kinds:
                c0 = server_cpu(args.server_pid)
                for _ in range(args.runs):
                    send(kind)
                cpu[kind] = (server_cpu(args.server_pid) - c0) / args.runs * 1e3
        for kind in kinds:
            xs = sorted(t * 1e3 for t in times[kind])
            row = {"bench": "webmail_commands", "label": args.label, "command": kind, "round": rnd,
                   "median_ms": round(statistics.median(xs), 3), "p90_ms": round(xs[int(0.9 * (len(xs) - 1))], 3),
                   "spread_ms": [round(xs[0], 3), round(xs[-1], 3)], "runs": len(xs),
                   "load": os.getloadavg()[0], "messages": exists}
            if kind in cpu:
                row["server_cpu_ms"] = round(cpu[kind], 3)
            rows.append(row)
            print(json.dumps(row), flush=True)
    c.command("LOGOUT", check=False)
    c.close()
    print(f"\n{args.label}: {exists} messages, page {uid_set(uids)}")
    print(f"{'command':<10} {'round':>5} {'median ms':>10} {'p90 ms':>8} {'cpu ms':>7} {'load':>5}")
    for r in rows:
        cpu_ms = r.get("server_cpu_ms")
        print(f"{r['command']:<10} {r['round']:>5} {r['median_ms']:>10.3f} {r['p90_ms']:>8.3f} "
              f"{'' if cpu_ms is None else f'{cpu_ms:.3f}':>7} {r['load']:>5.2f}")


if __name__ == "__main__":
    main()

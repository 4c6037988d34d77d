"""SEARCH SUBJECT/FROM/HEADER/TEXT/BODY over one mailbox, against any IMAP server, timed from the client.

    search_index.py --port 11144 --mailbox n100000 --label ours            # our server (index on)
    search_index.py --port 11145 --mailbox n100000 --label ours-scan       # -o search.fts=false
    search_index.py --port 11143 --mailbox n100000 --label dovecot         # a peer

The mailbox should hold bench/seed.py's messages (``seed.py --mailbox n100000 --count 100000``, over IMAP
or with --data-dir for ours), so the needles below hit the same messages in every server. For each key:
``UID SEARCH CHARSET UTF-8 <key>`` is sent ``--rounds`` times after one untimed warm-up round (that one
is reported as ``first_ms``: it pays what a server builds on first use); the figure is the median of the
timed rounds, from sending the command to reading its tagged OK, with min and max. ``hits`` is the
number of UIDs returned: compare it between servers (same messages, same semantics -> same count).
The load average is printed before and after, so figures taken on a busy machine can be told apart.
One JSON line per key (``--json``), then a table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from imapclient import Client, add_server_arguments, quote  # noqa: E402

# Needles from bench/seed.py's vocabulary: common and rare hits, non-ASCII (RFC 2047 / UTF-8 decoded),
# a short one (under three characters: no trigram), a needle that matches nothing.
KEYS = [
    ("SUBJECT planning", 'SUBJECT "planning"'),
    ("SUBJECT Überprüfung", 'SUBJECT "überprüfung"'),
    ("FROM alice", 'FROM "alice"'),
    ("FROM Ødegård", 'FROM "ødegård"'),
    ("HEADER Subject kyoto", 'HEADER Subject "kyoto"'),
    ("HEADER From example.jp", 'HEADER From "example.jp"'),
    ("HEADER Message-ID .5.", 'HEADER Message-ID ".5."'),
    ("TO bench", 'TO "bench"'),
    ("BODY spreadsheet", 'BODY "spreadsheet"'),
    ("BODY move-the-meeting", 'BODY "move the meeting to thursday"'),
    ("TEXT kyoto", 'TEXT "kyoto"'),
    ("TEXT nomatchzz", 'TEXT "nomatchzzq"'),
    ("BODY Q3 (short)", 'BODY "q3"'),
    ("SUBJECT re (short)", 'SUBJECT "re"'),
    ("AND FROM+BODY", 'FROM "grace" BODY "customer"'),
]


def wire(key: str) -> bytes:
    """The key as sent: 8-bit needles as LITERAL+ literals (a quoted string is 7-bit in RFC 3501)."""
    out = []
    for part in re.findall(r'"[^"]*"|\S+', key):
        if part.startswith('"') and not part.isascii():
            data = part.strip('"').encode()
            out.append(b"{%d+}\r\n" % len(data) + data)
        else:
            out.append(part.encode())
    return b" ".join(out)


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def timed(c: Client, command: bytes) -> tuple[float, int]:
    t = time.perf_counter()
    untagged, _ = c.command(command)
    ms = (time.perf_counter() - t) * 1000
    hits = sum(len(line.split()) - 2 for line in untagged if line.startswith(b"* SEARCH"))
    return ms, hits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_server_arguments(ap, mailbox="INBOX")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--label", default="server")
    ap.add_argument("--only", action="append", default=[], help="only keys whose label contains this")
    ap.add_argument("--json", action="store_true", help="one JSON line per key")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for one response")
    args = ap.parse_args()

    c = Client(args.host, args.port, timeout=args.timeout)
    c.command(f"LOGIN {quote(args.user)} {quote(args.password)}")
    t = time.perf_counter()
    untagged, _ = c.command(f"SELECT {quote(args.mailbox)}")
    select_ms = (time.perf_counter() - t) * 1000
    exists = next((int(line.split()[1]) for line in untagged if line.endswith(b"EXISTS\r\n")), 0)
    before = loadavg()
    print(f"# {args.label}: {args.mailbox} {exists} messages, SELECT {select_ms:.0f} ms, "
          f"{args.rounds} rounds, load average {before}", flush=True)
    rows = []
    for label, key in KEYS:
        if args.only and not any(o in label for o in args.only):
            continue
        command = b"UID SEARCH CHARSET UTF-8 " + wire(key)
        first, hits = timed(c, command)
        times = [timed(c, command)[0] for _ in range(args.rounds)]
        row = {"label": args.label, "key": label, "messages": exists, "hits": hits, "first_ms": round(first, 1),
               "median_ms": round(statistics.median(times), 1), "min_ms": round(min(times), 1),
               "max_ms": round(max(times), 1), "rounds": args.rounds}
        rows.append(row)
        if args.json:
            print(json.dumps(row), flush=True)
    c.command("LOGOUT", check=False)
    c.close()
    print(f"# load average after: {loadavg()}")
    print(f"{'key':28} {'hits':>7} {'first ms':>9} {'median ms':>10} {'min':>7} {'max':>7}")
    for r in rows:
        print(f"{r['key']:28} {r['hits']:>7} {r['first_ms']:>9} {r['median_ms']:>10} {r['min_ms']:>7} {r['max_ms']:>7}")


if __name__ == "__main__":
    main()

"""APPEND of a small message from Python's imaplib, against any IMAP server by host/port.

    append_latency.py --port 1143 --label ours [--count 200] [--size 3000] [--server-pid PID]

imaplib writes the command line, waits for the continuation, then writes the literal and the final CRLF
in separate writes: a server that does not ACK the literal at once makes each APPEND wait out the
client's Nagle and its own delayed ACK (~40 ms on Linux). Each APPEND is timed from the call to its
return (perf_counter) into the mailbox ``--mailbox`` (created if missing, emptied at the end with
EXPUNGE). Prints one JSON line (median, p90, spread, load) and a line of text.
"""

from __future__ import annotations

import argparse
import imaplib
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from imapclient import add_server_arguments


def message(size: int, i: int) -> bytes:
    head = (f"From: Bench <bench@example.org>\r\nTo: bench@example.org\r\nSubject: append {i}\r\n"
            f"Message-ID: <append-{i}-{time.time_ns()}@bench>\r\nDate: Thu, 03 Dec 2026 12:00:00 +0000\r\n\r\n")
    body = ("The quick brown fox jumps over the lazy dog. " * (size // 45 + 1))[: max(0, size - len(head) - 2)]
    return (head + body + "\r\n").encode()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_server_arguments(ap, mailbox="appendbench")
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--size", type=int, default=3000)
    ap.add_argument("--label", default="server")
    ap.add_argument("--server-pid", type=int, help="also report the server's CPU time per APPEND")
    args = ap.parse_args()

    imap = imaplib.IMAP4(args.host, args.port)
    imap.login(args.user, args.password)
    imap.create(args.mailbox)  # (NO if it exists)
    for i in range(args.warmup):
        imap.append(args.mailbox, None, None, message(args.size, i))
    msgs = [message(args.size, i) for i in range(args.count)]
    cpu0 = cpu1 = 0.0
    if args.server_pid:
        from concurrency import _cpu_seconds
        cpu0 = _cpu_seconds(args.server_pid)
    times = []
    for m in msgs:
        t0 = time.perf_counter()
        typ, _ = imap.append(args.mailbox, None, None, m)
        times.append(time.perf_counter() - t0)
        if typ != "OK":
            raise SystemExit(f"APPEND failed: {typ}")
    if args.server_pid:
        cpu1 = _cpu_seconds(args.server_pid)
    imap.select(args.mailbox)
    imap.store("1:*", "+FLAGS.SILENT", "(\\Deleted)")
    imap.expunge()
    imap.logout()
    xs = sorted(t * 1e3 for t in times)
    row = {"bench": "append_latency", "label": args.label, "size": len(msgs[0]), "runs": len(xs),
           "median_ms": round(statistics.median(xs), 3), "p90_ms": round(xs[int(0.9 * (len(xs) - 1))], 3),
           "spread_ms": [round(xs[0], 3), round(xs[-1], 3)], "load": os.getloadavg()[0]}
    if args.server_pid:
        row["server_cpu_ms"] = round((cpu1 - cpu0) / len(xs) * 1e3, 3)
    print(json.dumps(row))
    print(f"{args.label}: APPEND of {len(msgs[0])} bytes from imaplib: median {row['median_ms']} ms, "
          f"p90 {row['p90_ms']} ms ({len(xs)} runs, load {row['load']:.2f})"
          + (f", server CPU {row['server_cpu_ms']} ms each" if args.server_pid else ""))


if __name__ == "__main__":
    main()

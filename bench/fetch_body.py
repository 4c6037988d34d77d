"""Whole-message FETCH throughput and FETCH 1:* (FLAGS) time, any IMAP server, the same commands for all.

    fetch_body.py --port 11144 --label ours                  # seeds fb-small / fb-big once (APPEND), measures
    fetch_body.py --port 11143 --label dovecot --rounds 7
    fetch_body.py --port 11144 --label ours --flags-mailbox n100000   # also FETCH 1:* (FLAGS) of it
    fetch_body.py --port 11993 --tls --label ours-tls                 # implicit TLS

Mailboxes (created and filled over IMAP on first use, so every server holds the same bytes):
``fb-small``: --small-count messages of ~2-10 KB (bench/seed.py's generator, seed 11); ``fb-big``:
--big-count messages of 1-6 MB (text lines, deterministic). For each mailbox, every round is: SELECT,
``UID FETCH 1:* BODY.PEEK[]`` read to the tagged OK, and the octets of the literals counted (MB = 10^6
octets of message data). One warm-up round first (page cache, server caches), then --rounds timed rounds;
median and spread (min, max) reported. With --flags-mailbox the same for ``FETCH 1:* (FLAGS)`` of that
mailbox (ms), after one settling round of SELECT + NOOP (a server's index written by its first SELECT).

The client does not copy message data: it reads into one buffer and only parses lines and literal sizes,
so it is not what limits the figure (one Python process at ~1-2 GB/s). The load average (1 min) is printed
before and after: figures taken with a load over the core count are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import ssl
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from imapclient import Client, quote
from seed import messages

_WORDS = ("alpha", "beta", "gamma", "delta", "message", "server", "fetch", "literal", "mailbox", "octets")


def big_message(n: int, size: int) -> bytes:
    rng = random.Random(1000 + n)
    head = (f"From: big{n}@example.org\r\nTo: bench@example.org\r\nSubject: big message {n}\r\n"
            f"Message-ID: <big{n}@bench.example>\r\nDate: Thu, 03 Dec 2026 10:00:00 +0000\r\n\r\n").encode()
    lines = [" ".join(rng.choice(_WORDS) for _ in range(11)).encode() + b"\r\n" for _ in range(256)]
    body = bytearray()
    i = 0
    while len(body) + len(head) < size:
        body += b"%06d " % i + lines[i % 256]
        i += 1
    return head + bytes(body)


class Reader:
    """Reads responses to a tag without copying literal data (only counts it)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray(1 << 20)
        self.view = memoryview(self.buf)
        self.start = self.end = 0

    def _fill(self) -> None:
        if self.start == self.end:
            self.start = self.end = 0
        elif self.end == len(self.buf):
            pending = self.end - self.start
            self.buf[:pending] = self.buf[self.start:self.end]
            self.start, self.end = 0, pending
        n = self.sock.recv_into(self.view[self.end:])
        if not n:
            raise SystemExit("connection closed by server")
        self.end += n

    def until(self, tag: bytes) -> tuple[int, int, bytes]:
        """(untagged responses, literal octets, tagged line) up to the tagged response of ``tag``."""
        responses = literal = 0
        prefix = tag + b" "
        while True:
            i = self.buf.find(b"\r\n", self.start, self.end)
            if i < 0:
                self._fill()
                continue
            line = bytes(self.buf[self.start:i])
            self.start = i + 2
            if line.startswith(prefix):
                return responses, literal, line
            if line.startswith(b"* "):
                responses += 1
            while line.endswith(b"}"):  # one or more literals in this response
                size = int(line[line.rindex(b"{") + 1:-1].lstrip(b"~").rstrip(b"+"))
                literal += size
                while size:
                    if self.start == self.end:
                        self._fill()
                    take = min(size, self.end - self.start)
                    self.start += take
                    size -= take
                while True:
                    i = self.buf.find(b"\r\n", self.start, self.end)
                    if i >= 0:
                        break
                    self._fill()
                line = bytes(self.buf[self.start:i])
                self.start = i + 2


    def take(self, data: bytes | bytearray) -> None:
        """Start with ``data`` (what another reader had buffered)."""
        self.buf[:len(data)] = data
        self.start, self.end = 0, len(data)

    def rest(self) -> bytes:
        """What was read past the last response (to give back to another reader)."""
        return bytes(self.buf[self.start:self.end])

    def until_plain(self, tag: bytes) -> tuple[int, bytes, int]:
        """(untagged lines, tagged line, octets) for responses without literals (FETCH FLAGS), lines
        counted in C. ``self.start`` stays at a line start, so a tagged line split over two reads is
        still found."""
        prefix = tag + b" "
        needle = b"\r\n" + prefix
        lines = octets = 0
        while True:
            if self.buf.startswith(prefix, self.start):
                e = self.buf.find(b"\r\n", self.start, self.end)
                if e >= 0:
                    line = bytes(self.buf[self.start:e])
                    octets += e + 2 - self.start
                    self.start = e + 2
                    return lines, line, octets
            else:
                p = self.buf.find(needle, self.start, self.end)
                if p >= 0:
                    lines += self.buf.count(b"\r\n", self.start, p + 2)
                    octets += p + 2 - self.start
                    self.start = p + 2
                    continue
                last = self.buf.rfind(b"\r\n", self.start, self.end)
                if last >= 0:
                    lines += self.buf.count(b"\r\n", self.start, last + 2)
                    octets += last + 2 - self.start
                    self.start = last + 2
            self._fill()


def seed(c: Client, mailbox: str, items: list[bytes]) -> None:
    untagged, _ = c.command(f"LIST \"\" {quote(mailbox)}")
    if untagged:
        lines, _ = c.command(f"EXAMINE {quote(mailbox)}")
        exists = next((int(x.split()[1]) for x in lines if x.rstrip().upper().endswith(b" EXISTS")), 0)
        if exists == len(items):
            return
        c.command(f"DELETE {quote(mailbox)}")
    c.command(f"CREATE {quote(mailbox)}")
    for data in items:  # synchronizing literals: any server
        tag = c.next_tag()
        c.sock.sendall(tag + b" APPEND " + quote(mailbox).encode() + b" {%d}\r\n" % len(data))
        line = c.read_line()
        if not line.startswith(b"+"):
            raise SystemExit(f"APPEND refused: {line!r}")
        c.sock.sendall(data + b"\r\n")
        while not (line := c.read_line()).startswith(tag + b" "):
            pass
        if b" OK" not in line[:len(tag) + 4]:
            raise SystemExit(f"APPEND failed: {line!r}")


def timed(c: Client, reader: Reader, command: bytes) -> tuple[float, int, int]:
    tag = c.next_tag()
    t = time.perf_counter()
    c.sock.sendall(tag + b" " + command + b"\r\n")
    responses, octets, line = reader.until(tag)
    dt = time.perf_counter() - t
    if not line[len(tag) + 1:].startswith(b"OK"):
        raise SystemExit(f"{command!r} failed: {line!r}")
    return dt, responses, octets


class TLSClient(Client):
    """The benchmark client over implicit TLS (the certificate is not checked: loopback test servers)."""

    def __init__(self, host: str, port: int, timeout: float = 60.0) -> None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        plain = socket.create_connection((host, port), timeout=timeout)
        plain.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = ctx.wrap_socket(plain, server_hostname=host)
        self.buf = bytearray()
        self.n = 0
        self.greeting = self.read_line()


def load() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--label", default="server")
    ap.add_argument("--user", default="bench")
    ap.add_argument("--password", default="bench")
    ap.add_argument("--small-count", type=int, default=2000)
    ap.add_argument("--big-count", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--flags-mailbox", help="also time FETCH 1:* (FLAGS) of this (seeded) mailbox")
    ap.add_argument("--tls", action="store_true", help="implicit TLS to --port (certificate not checked)")
    args = ap.parse_args()
    c = (TLSClient if args.tls else Client)(args.host, args.port, timeout=600)
    c.command(f"LOGIN {quote(args.user)} {quote(args.password)}")
    rng = random.Random(5)
    small = [data for data, _, _ in messages(args.small_count, seed=11)]
    big = [big_message(n, rng.randint(1_000_000, 6_000_000)) for n in range(args.big_count)]
    seed(c, "fb-small", small)
    seed(c, "fb-big", big)
    reader = Reader(c.sock)
    rows = []
    load_before = load()
    for mailbox, items in (("fb-small", small), ("fb-big", big)):
        c.command(f"SELECT {mailbox}")
        runs = []
        for r in range(args.rounds + 1):
            dt, responses, octets = timed(c, reader, b"UID FETCH 1:* BODY.PEEK[]")
            if responses != len(items) or octets != sum(map(len, items)):
                raise SystemExit(f"{mailbox}: {responses} responses, {octets} octets; expected {len(items)}, "
                                 f"{sum(map(len, items))}")
            if r:  # the first is the warm-up
                runs.append(octets / dt / 1e6)
        row = {"bench": "fetch_body", "server": args.label, "mailbox": mailbox, "messages": len(items),
               "mbytes": round(sum(map(len, items)) / 1e6, 1), "mb_s": round(statistics.median(runs), 1),
               "spread": [round(min(runs), 1), round(max(runs), 1)], "rounds": args.rounds}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.flags_mailbox:
        c.command(f"SELECT {quote(args.flags_mailbox)}")
        c.command("NOOP")
        times = []
        for r in range(args.rounds + 1):
            tag = c.next_tag()
            t = time.perf_counter()
            c.sock.sendall(tag + b" FETCH 1:* (FLAGS)\r\n")
            responses, line, _ = reader.until_plain(tag)
            dt = time.perf_counter() - t
            if not line[len(tag) + 1:].startswith(b"OK"):
                raise SystemExit(f"FETCH FLAGS failed: {line!r}")
            if r:
                times.append(dt * 1e3)
        row = {"bench": "fetch_flags", "server": args.label, "mailbox": args.flags_mailbox,
               "messages": responses, "ms": round(statistics.median(times), 1),
               "spread": [round(min(times), 1), round(max(times), 1)], "rounds": args.rounds}
        rows.append(row)
        print(json.dumps(row), flush=True)
    c.command("LOGOUT", check=False)
    load_after = load()
    print(f"\n{args.label}: whole-message FETCH (MB/s) and FETCH 1:* (FLAGS) (ms); load {load_before} -> "
          f"{load_after} on {os.cpu_count()} cores")
    for r in rows:
        if r["bench"] == "fetch_body":
            print(f"  {r['mailbox']:<10} {r['messages']:>6} msgs {r['mbytes']:>7} MB  {r['mb_s']:>8} MB/s "
                  f"(min {r['spread'][0]}, max {r['spread'][1]}, {r['rounds']} rounds)")
        else:
            print(f"  FLAGS {r['mailbox']:<10} {r['messages']:>6} msgs {r['ms']:>8} ms "
                  f"(min {r['spread'][0]}, max {r['spread'][1]}, {r['rounds']} rounds)")


if __name__ == "__main__":
    main()

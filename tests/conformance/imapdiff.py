"""Differential IMAP check: the same command sequences against two servers, answers normalised and diffed.

    python tests/conformance/imapdiff.py --a 127.0.0.1:14601 --b 127.0.0.1:14643 --user bench --password bench
    python tests/conformance/imapdiff.py ... -k fetch -v        # only cases whose name contains "fetch", raw too
    make conformance                                             # ours vs Dovecot on loopback (see Makefile)

Each case runs on a fresh connection, logged in, with a fresh mailbox "work" holding the corpus (copied from
"conf-src", which is re-seeded by APPEND with fixed flags and INTERNALDATEs at start). The answers are
normalised by wire.canonical_response and compared line by line; a difference is not a verdict (the peer is an
oracle, not the spec): read it against the RFC. Exit status 1 if any case differs or times out on A.
"""

from __future__ import annotations

import argparse
import base64
import difflib
import os
import re
import socket
import sys
import time
from dataclasses import dataclass, field

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import contextlib

from cases import CASES, Case
from corpus import MESSAGES
from wire import canonical_response

_SYNC_LITERAL = re.compile(rb"~?\{\d+\}\r\n")
_LITERAL_END = re.compile(rb"~?\{(\d+)\+?\}\r\n$")


class Timeout(Exception):
    pass


class Client:
    """Line-level client: exact bytes out, whole responses (literals inline) in, with a per-read timeout."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.n = 0
        self.greeting = self.response()

    def _fill(self) -> None:
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError as e:
            raise Timeout(self.buf) from e
        if not chunk:
            raise ConnectionError(f"closed; partial {self.buf!r}")
        self.buf += chunk

    def response(self) -> bytes:
        out = b""
        while True:
            while b"\r\n" not in self.buf:
                self._fill()
            line, _, self.buf = self.buf.partition(b"\r\n")
            out += line + b"\r\n"
            m = _LITERAL_END.search(line + b"\r\n")
            if not m:
                return out
            size = int(m.group(1))
            while len(self.buf) < size:
                self._fill()
            out += self.buf[:size]
            self.buf = self.buf[size:]

    def run(self, step: str | bytes) -> tuple[str, list[bytes]]:
        """Send one step; return (tag, responses up to its tagged line or a continuation request).

        A step starting with "!" is sent raw (no tag: DONE, a continuation's answer). Synchronizing
        literals inside a step wait for "+" before the rest is sent, and stop if the server refuses."""
        data = step.encode("utf-8") if isinstance(step, str) else step
        if data.startswith(b"!"):
            tag = self.pending
            data = data[1:]
        else:
            self.n += 1
            tag = f"c{self.n}"
            data = tag.encode() + b" " + data
            self.pending = tag
        parts = _split_sync(data + b"\r\n")
        got: list[bytes] = []
        for i, part in enumerate(parts):
            self.sock.sendall(part)
            last = i == len(parts) - 1
            while True:
                resp = self.response()
                got.append(resp)
                if resp.startswith(tag.encode() + b" "):
                    return tag, got
                if resp.startswith(b"+"):
                    if last:
                        return tag, got
                    break
        return tag, got

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def _split_sync(data: bytes) -> list[bytes]:
    parts, start = [], 0
    for m in _SYNC_LITERAL.finditer(data):
        parts.append(data[start : m.end()])
        start = m.end()
    parts.append(data[start:])
    return [p for p in parts if p]


@dataclass
class Server:
    host: str
    port: int
    user: str
    password: str
    caps: set[str] = field(default_factory=set)


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def login(srv: Server, timeout: float) -> Client:
    c = Client(srv.host, srv.port, timeout)
    _, resps = c.run(f"LOGIN {_quote(srv.user)} {_quote(srv.password)}")
    if b" OK" not in resps[-1][:20]:
        raise SystemExit(f"{srv.host}:{srv.port}: LOGIN failed: {resps[-1]!r}")
    return c


def seed(srv: Server, timeout: float) -> None:
    c = login(srv, timeout)
    _, caps = c.run("CAPABILITY")
    for r in caps:
        if r.startswith(b"* CAPABILITY "):
            srv.caps = set(r[13:].decode().strip().upper().split())
    c.run('DELETE "conf-src"')
    c.run('CREATE "conf-src"')
    for flags, date, msg in MESSAGES:
        _, r = c.run(f'APPEND "conf-src" ({flags}) "{date}" {{{len(msg)}}}\r\n'.encode() + msg)
        if b" OK" not in r[-1][:20]:
            raise SystemExit(f"{srv.host}:{srv.port}: APPEND failed: {r[-1]!r}")
    c.run("LOGOUT")
    c.close()


def run_case(srv: Server, case: Case, timeout: float) -> list[tuple[str, list[bytes]]]:
    """The case's transcript: per step, (step, responses). Setup/teardown answers are not compared."""
    c = login(srv, timeout)
    for name in ("work", *case.cleanup):
        c.run(f"DELETE {_quote(name)}")
    c.run('CREATE "work"')
    c.run('EXAMINE "conf-src"')
    c.run('COPY 1:* "work"')
    c.run("UNSELECT")
    _, status = c.run('STATUS "work" (UIDVALIDITY)')
    m = re.search(rb"UIDVALIDITY (\d+)", b"".join(status))
    uidvalidity = m.group(1).decode() if m else "1"
    if not case.login:  # the case starts in the not-authenticated state
        c.close()
        c = Client(srv.host, srv.port, timeout)
    out: list[tuple[str, list[bytes]]] = []
    other: Client | None = None
    try:
        for step in case.steps:
            if isinstance(step, str) and step.startswith("@sleep"):
                time.sleep(float(step.split()[1]))
                continue
            sent = step.replace("<uidvalidity>", uidvalidity) if isinstance(step, str) else step
            if isinstance(sent, str):
                sent = sent.replace("<user>", srv.user).replace("<password>", srv.password)
                sent = sent.replace("<plain>", base64.b64encode(f"\0{srv.user}\0{srv.password}".encode()).decode())
            conn = c
            if sent[:2] in ("2>", b"2>"):  # a second session of the same user (another client's changes)
                if other is None:
                    other = login(srv, timeout)
                conn, sent = other, sent[2:]
            tag, resps = conn.run(sent)
            out.append((_label(step), [r.replace(tag.encode(), b"TAG", 1) if r.startswith(tag.encode()) else r
                                       for r in resps]))
    except Timeout as e:
        out.append(("<timeout>", [bytes(e.args[0]) if e.args else b""]))
    except (ConnectionError, OSError) as e:
        out.append(("<connection>", [str(e).encode()]))
    c.close()
    if other is not None:
        other.close()
    try:
        c2 = login(srv, timeout)
        for name in ("work", *case.cleanup):
            c2.run(f"DELETE {_quote(name)}")
        c2.run("LOGOUT")
        c2.close()
    except (Timeout, ConnectionError, OSError):
        pass
    return out


def _label(step: str | bytes) -> str:
    text = step if isinstance(step, str) else step.decode("utf-8", "replace")
    return text.split("\r\n", 1)[0][:120]


def canonical(transcript: list[tuple[str, list[bytes]]]) -> list[str]:
    lines: list[str] = []
    for step, resps in transcript:
        lines.append(f">> {step}")
        if step.startswith("<"):
            lines.append(f"   {step}")
            continue
        canon = [canonical_response(r, "TAG") for r in resps]
        body = [x for x in canon if x is not None]
        if not step.upper().startswith(("SELECT", "EXAMINE")):
            # RECENT after EXPUNGE/new mail is optional (RFC 3501 7.3.2 says "if the size changes")
            body = [x for x in body if x != "* <n> RECENT"]
        selecting = step.upper().startswith(("SELECT", "EXAMINE"))
        if selecting or not any(" EXPUNGE" in x or x.startswith("* VANISHED") for x in body):
            untagged = sorted((x for x in body if x.startswith("* ")), key=_order)
            body = untagged + [x for x in body if not x.startswith("* ")]
        lines += ["   " + x for x in body]
    return lines


def _order(line: str) -> tuple[int, str]:
    m = re.match(r"\* (\d+) ", line)
    return (int(m.group(1)) if m else 0, line)


def _server(spec: str, user: str, password: str) -> Server:
    host, _, port = spec.rpartition(":")
    return Server(host or "127.0.0.1", int(port), user, password)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", required=True, help="HOST:PORT of the server under test")
    ap.add_argument("--b", required=True, help="HOST:PORT of the reference server")
    ap.add_argument("--user", default="bench")
    ap.add_argument("--password", default="bench")
    ap.add_argument("--b-user")
    ap.add_argument("--b-password")
    ap.add_argument("-k", dest="only", help="run only cases whose name contains this")
    ap.add_argument("-v", dest="verbose", action="store_true", help="print raw transcripts of differing cases")
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    args = ap.parse_args(argv)
    cases = [c for c in CASES if not args.only or args.only in c.name]
    if args.list:
        for c in cases:
            print(f"{c.name}: {c.why}")
        return 0
    a = _server(args.a, args.user, args.password)
    b = _server(args.b, args.b_user or args.user, args.b_password or args.password)
    seed(a, args.timeout)
    seed(b, args.timeout)
    print(f"capabilities only in A: {' '.join(sorted(a.caps - b.caps))}")
    print(f"capabilities only in B: {' '.join(sorted(b.caps - a.caps))}")
    differ = 0
    for case in cases:
        need = [x for x in case.needs if x not in a.caps or x not in b.caps]
        if need:
            print(f"SKIP {case.name} (needs {' '.join(need)})")
            continue
        ta, tb = run_case(a, case, args.timeout), run_case(b, case, args.timeout)
        ca, cb = canonical(ta), canonical(tb)
        if ca == cb:
            print(f"same {case.name}")
            continue
        differ += 1
        print(f"DIFF {case.name}: {case.why}")
        for line in difflib.unified_diff(cb, ca, "B", "A", n=2, lineterm=""):
            if not line.startswith(("---", "+++")):
                print("    " + line)
        if args.verbose:
            for label, t in (("A", ta), ("B", tb)):
                print(f"    raw {label}:")
                for step, resps in t:
                    print(f"      >> {step}")
                    for r in resps:
                        print("      " + r.decode("utf-8", "backslashreplace").rstrip("\r\n")[:400])
    print(f"{len(cases)} cases, {differ} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main())

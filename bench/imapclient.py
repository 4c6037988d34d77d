"""A tiny synchronous IMAP client for the benchmarks: raw socket, exact, low overhead.

Not a general client: it sends a command and reads until its tagged reply, splicing response literals
(``{n}\\r\\n`` + n bytes) into the line they belong to. Used by seed.py and webmail_request.py so both
servers are measured through the same code path.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import socket

_LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n$")


class IMAPError(Exception):
    pass


class Client:
    def __init__(self, host: str, port: int, timeout: float = 60.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.n = 0
        self.greeting = self.read_line()

    # ------------------------------------------------------------------ reading

    def _fill(self) -> None:
        data = self.sock.recv(262144)
        if not data:
            raise IMAPError("connection closed by server")
        self.buf += data

    def read_line(self) -> bytes:
        """One response line (CRLF included), with any literals spliced in."""
        out = bytearray()
        while True:
            i = self.buf.find(b"\r\n")
            while i < 0:
                self._fill()
                i = self.buf.find(b"\r\n")
            line = bytes(self.buf[: i + 2])
            del self.buf[: i + 2]
            out += line
            m = _LITERAL.search(line)
            if not m:
                return bytes(out)
            size = int(m.group(1))
            while len(self.buf) < size:
                self._fill()
            out += self.buf[:size]
            del self.buf[:size]

    def read_tagged(self, tag: bytes) -> tuple[list[bytes], bytes]:
        untagged: list[bytes] = []
        prefix = tag + b" "
        while True:
            line = self.read_line()
            if line.startswith(prefix):
                return untagged, line
            untagged.append(line)

    # ------------------------------------------------------------------ commands

    def next_tag(self) -> bytes:
        self.n += 1
        return b"a%d" % self.n

    def command(self, text: bytes | str, *, check: bool = True) -> tuple[list[bytes], bytes]:
        if isinstance(text, str):
            text = text.encode()
        tag = self.next_tag()
        self.sock.sendall(tag + b" " + text + b"\r\n")
        untagged, done = self.read_tagged(tag)
        if check and not done[len(tag) + 1 :].startswith(b"OK"):
            raise IMAPError(f"{text[:60]!r} -> {done!r}")
        return untagged, done

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def add_server_arguments(ap: argparse.ArgumentParser, *, mailbox: str | None = None) -> None:
    """The server and account every bench talks to (``--host --port --user --password [--mailbox]``), the
    same names and defaults in each, so one command line can be pointed at ours and at Dovecot alike."""
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", default="bench")
    ap.add_argument("--password", default="bench")
    if mailbox is not None:
        ap.add_argument("--mailbox", default=mailbox)

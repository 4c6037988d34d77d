"""A minimal line-level IMAP client for protocol transcripts in tests: exact bytes in, exact lines out."""

from __future__ import annotations

import re
import socket
import time

_LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n$")


class RawIMAP:
    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.greeting = self.readline()
        self._n = 0

    def readline(self) -> bytes:
        """One response line with any literals it announces appended (so one logical response)."""
        out = b""
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError(f"connection closed; partial {self.buf!r}")
                self.buf += chunk
            line, _, self.buf = self.buf.partition(b"\r\n")
            line += b"\r\n"
            out += line
            m = _LITERAL.search(line)
            if not m:
                return out
            size = int(m.group(1))
            while len(self.buf) < size:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("connection closed inside a literal")
                self.buf += chunk
            out += self.buf[:size]
            self.buf = self.buf[size:]

    def command(self, text: str | bytes, tag: str | None = None) -> tuple[list[bytes], bytes]:
        """Send ``tag text`` and return (untagged lines, tagged line), CRLF stripped."""
        if tag is None:
            self._n += 1
            tag = f"t{self._n}"
        data = text.encode() if isinstance(text, str) else text
        self.sock.sendall(tag.encode() + b" " + data + b"\r\n")
        untagged: list[bytes] = []
        while True:
            line = self.readline().rstrip(b"\r\n")
            if line.startswith(tag.encode() + b" "):
                return untagged, line
            untagged.append(line)

    def ok(self, text: str | bytes) -> list[bytes]:
        untagged, tagged = self.command(text)
        assert b" OK" in tagged[:20], (text, untagged, tagged)
        return untagged

    def read_until(self, pattern: bytes, timeout: float = 10.0) -> list[bytes]:
        lines: list[bytes] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.readline().rstrip(b"\r\n")
            lines.append(line)
            if re.search(pattern, line):
                return lines
        raise AssertionError(f"{pattern!r} not seen in {lines!r}")

    def close(self) -> None:
        self.sock.close()


def open_session(host: str, port: int, timeout: float = 10.0) -> socket.socket:
    """A plain socket past the greeting, for tests that need exact bytes (limits, hostile input)."""
    sock = socket.create_connection((host, port), timeout=timeout)
    greeting = sock.recv(4096)
    assert greeting.startswith(b"* "), greeting
    return sock


def exchange(sock: socket.socket, data: bytes, until: bytes, timeout: float = 10.0) -> bytes:
    """Send ``data``, then read until ``until`` shows up (or the peer closes, or ``timeout``)."""
    sock.sendall(data)
    buf = b""
    deadline = time.monotonic() + timeout
    while until not in buf and time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf


def read_until_closed(s: socket.socket, timeout: float = 10) -> bytes:
    """Everything the server sends until it closes the connection (a reset counts as closed)."""
    s.settimeout(timeout)
    buf = b""
    try:
        while chunk := s.recv(65536):
            buf += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        raise AssertionError(f"connection not closed; got {buf!r}") from None
    return buf

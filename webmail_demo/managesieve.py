"""A small asyncio ManageSieve (RFC 5804) client: one connection per settings request, like IMAP.

Why not sievelib's ``managesieve.Client``: it is blocking (a thread per request, and its socket timeouts
instead of the loop's), and it offers only its fixed SASL list, while a webmail in ``xstate`` mode has no
password to give: it authenticates with SASL ``X-STATE`` and the session's X-STATE token, which imapd's
ManageSieve accepts with the checks of X-STATE RESTORE (revoked at logout, dead when the password changes).
imapd's sans-IO ManageSieve module is the server's side only (a command reader), so the few response forms
a client needs are read here: data lines of strings and atoms, literals, then ``OK``/``NO``/``BYE``
with an optional ``(CODE)`` and text.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

from imapd.protocol.managesieve import string

__all__ = ["SieveClient", "SieveDown", "SieveError", "sieve_connection"]

_TOKEN = re.compile(rb'\s*(?:"(?P<q>(?:[^"\\]|\\.)*)"|\{(?P<n>\d+)\+?\}$|\((?P<code>(?:[^)"]|"(?:[^"\\]|\\.)*")*)\)'
                    rb'|(?P<atom>[^\s"(){}]+))')


class SieveError(Exception):
    """NO/BYE from the server; ``text`` is the server's own message (shown to the user as it is)."""

    def __init__(self, text: str, code: str | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.code = code


class SieveDown(Exception):
    """The ManageSieve server cannot be reached or hung up."""


@dataclass
class Reply:
    status: str
    code: str | None
    text: str
    data: list[list[str]]  # the data lines before it, as tokens


class SieveClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float) -> None:
        self.reader, self.writer, self.timeout = reader, writer, timeout
        self.capabilities: dict[str, str] = {}

    async def _line(self) -> list[str]:
        """One response line as tokens, literals read in."""
        tokens: list[str] = []
        while True:
            raw = await asyncio.wait_for(self.reader.readline(), self.timeout)
            if not raw.endswith(b"\n"):
                raise SieveDown("the ManageSieve server closed the connection")
            line = raw.rstrip(b"\r\n")
            pos, literal = 0, None
            while pos < len(line):
                m = _TOKEN.match(line, pos)
                if m is None or m.end() == pos:
                    raise SieveDown(f"unreadable ManageSieve response: {line[:80]!r}")
                pos = m.end()
                if m.group("q") is not None:
                    tokens.append(re.sub(rb"\\(.)", rb"\1", m.group("q")).decode("utf-8", "replace"))
                elif m.group("n") is not None:
                    literal = int(m.group("n"))
                elif m.group("code") is not None:
                    tokens.append("(" + m.group("code").decode("utf-8", "replace") + ")")
                elif m.group("atom") is not None:
                    tokens.append(m.group("atom").decode("utf-8", "replace"))
            if literal is None:
                return tokens
            data = await asyncio.wait_for(self.reader.readexactly(literal), self.timeout)
            tokens.append(data.decode("utf-8", "replace"))

    async def reply(self) -> Reply:
        data: list[list[str]] = []
        while True:
            tokens = await self._line()
            if tokens and tokens[0].upper() in ("OK", "NO", "BYE"):
                rest = tokens[1:]
                code = rest.pop(0)[1:-1] if rest and rest[0].startswith("(") else None
                return Reply(tokens[0].upper(), code, rest[0] if rest else "", data)
            data.append(tokens)

    async def command(self, *parts: bytes) -> Reply:
        self.writer.write(b" ".join(parts) + b"\r\n")
        await self.writer.drain()
        rep = await self.reply()
        if rep.status != "OK":
            raise SieveError(rep.text or f"{parts[0].decode()} failed", rep.code)
        return rep

    async def greeting(self) -> None:
        rep = await self.reply()
        if rep.status != "OK":
            raise SieveDown(rep.text or "the ManageSieve server refused the connection")
        self.capabilities = {t[0].upper(): (t[1] if len(t) > 1 else "") for t in rep.data if t}

    async def authenticate(self, mechanism: str, response: bytes) -> None:
        if mechanism not in self.capabilities.get("SASL", "").split():
            raise SieveError(f"the ManageSieve server does not offer SASL {mechanism}")
        await self.command(b"AUTHENTICATE", string(mechanism), string(base64.b64encode(response).decode()))

    async def login_xstate(self, token: str) -> None:
        await self.authenticate("X-STATE", token.encode("ascii"))

    async def login_plain(self, user: str, password: str) -> None:
        await self.authenticate("PLAIN", b"\0" + user.encode() + b"\0" + password.encode())

    async def listscripts(self) -> list[tuple[str, bool]]:
        rep = await self.command(b"LISTSCRIPTS")
        return [(t[0], len(t) > 1 and t[1].upper() == "ACTIVE") for t in rep.data if t]

    async def getscript(self, name: str) -> str:
        rep = await self.command(b"GETSCRIPT", string(name))
        return rep.data[0][0] if rep.data and rep.data[0] else ""

    @staticmethod
    def _literal(text: str) -> bytes:
        data = text.encode("utf-8")
        return b"{%d+}\r\n" % len(data) + data

    async def checkscript(self, text: str) -> None:
        await self.command(b"CHECKSCRIPT", self._literal(text))

    async def putscript(self, name: str, text: str) -> None:
        await self.command(b"PUTSCRIPT", string(name), self._literal(text))

    async def setactive(self, name: str) -> None:
        await self.command(b"SETACTIVE", string(name))

    async def logout(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.write(b"LOGOUT\r\n")
            await asyncio.wait_for(self.writer.drain(), 2)
            await asyncio.wait_for(self.reply(), 2)
        self.writer.close()


@contextlib.asynccontextmanager
async def sieve_connection(host: str, port: int, timeout: float = 10) -> AsyncIterator[SieveClient]:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, limit=1 << 20), timeout)
    except (OSError, TimeoutError) as exc:
        raise SieveDown(f"cannot reach the ManageSieve server at {host}:{port}: {exc or type(exc).__name__}") \
            from exc
    client = SieveClient(reader, writer, timeout)
    try:
        try:
            await client.greeting()
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            raise SieveDown(f"the ManageSieve server at {host}:{port} did not greet us: {exc}") from exc
        yield client
    except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
        raise SieveDown(f"the ManageSieve connection failed: {exc or type(exc).__name__}") from exc
    finally:
        await client.logout()

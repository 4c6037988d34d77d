"""One IMAP connection per HTTP request, over aioimaplib, reattached with X-STATE RESTORE (or LOGIN+SELECT).

aioimaplib routes untagged responses by command name and knows only RFC 3501 commands, so every command
here goes out as one "raw" synchronous command: all untagged responses up to the tagged one belong to it.
The lines are put back together (literals spliced in) and parsed with imapd's sans-IO response parser.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aioimaplib
from aioimaplib import aioimaplib as aio

from imapd import mutf7
from imapd.client import aio_xstate_restore, aio_xstate_save
from imapd.protocol import responses as r
from imapd.protocol.response_parser import ResponseParseError, parse_response

__all__ = [
    "Connection",
    "ImapDown",
    "ImapError",
    "LoginFailed",
    "SessionGone",
    "astring",
    "mailbox_arg",
    "open_connection",
]

_RAW = "WEBMAIL-RAW"
_LITERAL_END = re.compile(rb"~?\{(\d+)\}$")
_CONTROL = re.compile(r"[\x00\r\n]")
_ATOM_SAFE = re.compile(r"^[A-Za-z0-9_.\-/]+$")


class ImapError(Exception):
    """The server answered NO/BAD; ``code`` is its response code atom, if any."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class ImapDown(Exception):
    """The IMAP server cannot be reached (refused, timed out, connection dropped)."""


class LoginFailed(ImapError):
    pass


class SessionGone(ImapError):
    """X-STATE-EXPIRED / X-STATE-INVALID: the web session must log in again."""


class _RawCommand(aio.Command):  # type: ignore[misc]
    """A command whose wire text is given verbatim (after the tag)."""

    def __init__(self, wire: str, tag: str, loop: asyncio.AbstractEventLoop, timeout: float | None) -> None:
        super().__init__(_RAW, tag, loop=loop, timeout=timeout)
        self.wire = wire

    def __repr__(self) -> str:
        return f"{self.tag} {self.wire}"


if _RAW not in aio.Commands:
    aio.Commands[_RAW] = aio.Cmd(_RAW, (aio.NONAUTH, aio.AUTH, aio.SELECTED, aio.LOGOUT), aio.Exec.is_sync)


def astring(value: str) -> str:
    """A string argument: an atom when safe, else a quoted string, else a LITERAL+ literal (UTF-8)."""
    if _CONTROL.search(value):
        raise ValueError("control characters are not allowed")
    if value and _ATOM_SAFE.match(value) and value.upper() != "NIL":
        return value
    if value.isascii() and '"' not in value and "\\" not in value:
        return f'"{value}"'
    return f"{{{len(value.encode())}+}}\r\n{value}"


def mailbox_arg(name: str) -> str:
    return astring(mutf7.encode(name))


def join_lines(lines: Sequence[Any]) -> list[bytes]:
    """aioimaplib's response lines (``* `` stripped, literals as bytearray items) -> full responses."""
    out: list[bytes] = []
    cur: bytes | None = None
    pending_literal = False
    continues = False
    for item in lines:
        if isinstance(item, bytearray) and pending_literal and cur is not None:
            cur += b"\r\n" + bytes(item)
            pending_literal, continues = False, True
            continue
        line = bytes(item) if isinstance(item, bytes | bytearray) else str(item).encode()
        if continues and cur is not None:
            cur += line
        else:
            if cur is not None:
                out.append(cur)
            cur = line
        continues = False
        pending_literal = _LITERAL_END.search(line) is not None
    if cur is not None:
        out.append(cur)
    return out


@dataclass
class Result:
    status: str
    code: str | None
    text: str
    responses: list[r.Response] = field(default_factory=list)

    def of(self, kind: type[Any]) -> list[Any]:
        return [x for x in self.responses if isinstance(x, kind)]


_CODE = re.compile(r"^\[([A-Z0-9-]+)[^\]]*\]\s*")


class Connection:
    """A connected aioimaplib client plus timing of all the IMAP work done for one request."""

    def __init__(self, client: aioimaplib.IMAP4, started: float) -> None:
        self.client = client
        self.started = started
        self.path = ""
        self.selected: str | None = None
        self.notes: list[str] = []

    @property
    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000

    async def command(self, wire: str, *, check: bool = True, timeout: float = 30) -> Result:
        proto = self.client.protocol
        cmd = _RawCommand(wire, proto.new_tag(), proto.loop, timeout)
        try:
            resp = await proto.execute(cmd)
        except (aio.CommandTimeout, aio.Abort, OSError, ConnectionError) as exc:
            raise ImapDown(f"IMAP connection failed during {wire.split()[0]}: {exc}") from exc
        joined = join_lines(resp.lines)
        tagged = joined.pop().decode("utf-8", "replace") if joined else ""
        code_m = _CODE.match(tagged)
        code = code_m.group(1) if code_m else None
        parsed: list[r.Response] = []
        for raw in joined:
            with contextlib.suppress(ResponseParseError, ValueError, IndexError):
                parsed.append(parse_response(b"* " + raw + b"\r\n"))
        result = Result(resp.result, code, tagged[code_m.end():] if code_m else tagged, parsed)
        if check and result.status != "OK":
            raise ImapError(f"{wire.split(' ', 2)[:2]} failed: {result.status} {tagged}", code)
        return result

    async def select(self, mailbox: str) -> Result:
        res = await self.command(f"SELECT {mailbox_arg(mailbox)}", check=False)
        if res.status != "OK":
            self.selected = None
            raise ImapError(f"cannot open folder {mailbox!r}: {res.text}", res.code)
        self.selected = mailbox
        self.client.protocol.state = aio.SELECTED
        return res

    async def login(self, user: str, password: str) -> None:
        res = await self.command(f"LOGIN {astring(user)} {astring(password)}", check=False)
        if res.status != "OK":
            raise LoginFailed(res.text or "login failed", res.code)
        self.client.protocol.state = aio.AUTH

    async def restore(self, token: str) -> str | None:
        """X-STATE RESTORE; returns the mailbox that is selected now (None when STALE or none)."""
        try:
            result = await aio_xstate_restore(self.client, token)
        except (aio.CommandTimeout, aio.Abort, OSError, ConnectionError) as exc:
            raise ImapDown(f"IMAP connection failed during X-STATE RESTORE: {exc}") from exc
        if not result.ok:
            raise SessionGone(result.text or "session state refused", result.code)
        if result.stale:
            self.notes.append("X-STATE-STALE")
        return "restored" if result.selected else None

    async def save(self) -> str:
        try:
            return await aio_xstate_save(self.client)
        except (aio.CommandTimeout, aio.Abort, OSError, ConnectionError) as exc:
            raise ImapDown(f"IMAP connection failed during X-STATE SAVE: {exc}") from exc

    async def revoke(self, token: str) -> None:
        """X-STATE REVOKE: end the token's lineage on the server, so no token of this web session (a
        copy in a stolen cookie, an older one) can be restored again, on any IMAP node."""
        res = await self.command(f"X-STATE REVOKE {token}", check=False)
        if res.status != "OK" and res.code not in ("X-STATE-EXPIRED", "X-STATE-INVALID"):
            raise ImapError(f"X-STATE REVOKE failed: {res.status} {res.text}", res.code)

    async def logout(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.logout(), 2)
        self.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            transport = self.client.protocol.transport
            if transport is not None:
                transport.close()


async def open_connection(host: str, port: int, timeout: float = 10) -> Connection:
    started = time.perf_counter()
    client = aioimaplib.IMAP4(host=host, port=port, timeout=timeout)
    try:
        await asyncio.wait_for(client.wait_hello_from_server(), timeout)
    except (OSError, ConnectionError, TimeoutError, aio.Abort) as exc:
        with contextlib.suppress(Exception):
            client.protocol.transport.close()
        raise ImapDown(f"cannot reach the IMAP server at {host}:{port}: {exc or type(exc).__name__}") from exc
    if client.protocol.state not in (aio.NONAUTH, aio.AUTH):
        raise ImapDown(f"the IMAP server at {host}:{port} did not greet us")
    return Connection(client, started)

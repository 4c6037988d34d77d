"""Calling X-STATE from Python IMAP clients: imaplib (standard library) and aioimaplib (asyncio).

Neither library knows the command, so each helper registers it, sends it, and fixes the library's idea
of the session state after a RESTORE (which may authenticate and select in one step). The token is
opaque to clients: keep it as a string and send it back as it is.

    import imaplib
    from imapd.client import xstate_save, xstate_restore

    imap = imaplib.IMAP4("127.0.0.1", 1143)
    imap.login("demo", "demo"); imap.select("INBOX")
    token = xstate_save(imap)                  # keep it, e.g. in the web session
    ...
    imap = imaplib.IMAP4("127.0.0.1", 1143)   # a later request, a fresh connection
    result = xstate_restore(imap, token)
    if result.code == "X-STATE-STALE": imap.select("INBOX")
    elif not result.ok: ...                    # X-STATE-INVALID / X-STATE-EXPIRED: log in again

The aioimaplib versions (``await aio_xstate_save(client)``, ``await aio_xstate_restore(client, token)``)
work the same way on an ``aioimaplib.IMAP4`` / ``IMAP4_SSL`` client.
"""

from __future__ import annotations

import imaplib
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["XStateError", "XStateResult", "aio_xstate_restore", "aio_xstate_save", "xstate_restore", "xstate_save"]

_CODE = re.compile(r"^\[([A-Z0-9-]+)[^\]]*\]\s*")


class XStateError(Exception):
    """The server refused X-STATE SAVE (BAD/NO); the message is the server's text."""


@dataclass
class XStateResult:
    """The outcome of X-STATE RESTORE: ``status`` OK/NO/BAD, ``code`` the response code atom or None."""

    status: str
    code: str | None
    text: str
    untagged: list[bytes] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """The session is back (possibly without its mailbox: check ``stale``)."""
        return self.status == "OK"

    @property
    def stale(self) -> bool:
        return self.code == "X-STATE-STALE"

    @property
    def selected(self) -> bool:
        return self.status == "OK" and self.code in ("READ-WRITE", "READ-ONLY")


def _split_code(text: str) -> tuple[str | None, str]:
    m = _CODE.match(text)
    if not m:
        return None, text
    return m.group(1), text[m.end():]


# -- imaplib --------------------------------------------------------------------------------------------------
def _register_imaplib() -> None:
    imaplib.Commands.setdefault("X-STATE", ("NONAUTH", "AUTH", "SELECTED"))


def xstate_save(imap: imaplib.IMAP4) -> str:
    """Ask for the session's state string (AUTHENTICATED or SELECTED)."""
    _register_imaplib()
    typ, data = imap._simple_command("X-STATE", "SAVE")
    if typ != "OK":
        raise XStateError(b" ".join(d for d in data if isinstance(d, bytes)).decode(errors="replace"))
    _, tokens = imap._untagged_response(typ, data, "X-STATE")
    token = tokens[-1]
    if not isinstance(token, bytes):
        raise XStateError("server sent no X-STATE token")
    return token.decode("ascii")


def xstate_restore(imap: imaplib.IMAP4, token: str) -> XStateResult:
    """Restore a saved session on this connection; updates imaplib's state to match the server's."""
    _register_imaplib()
    try:
        typ, data = imap._simple_command("X-STATE", "RESTORE", token)
    except imaplib.IMAP4.error as exc:  # imaplib raises on BAD
        return XStateResult("BAD", None, str(exc))
    text = b" ".join(d for d in data if isinstance(d, bytes)).decode(errors="replace")
    code, rest = _split_code(text)
    result = XStateResult(typ, code, rest)
    if result.ok:
        imap.state = "SELECTED" if result.selected else "AUTH"
        for name in ("EXISTS", "EXPUNGE", "FETCH", "VANISHED"):
            result.untagged.extend(d for d in imap.untagged_responses.get(name, []) if isinstance(d, bytes))
    return result


# -- aioimaplib -----------------------------------------------------------------------------------------------
def _register_aioimaplib() -> Any:
    from aioimaplib import aioimaplib as aio

    if "X-STATE" not in aio.Commands:
        aio.Commands["X-STATE"] = aio.Cmd("X-STATE", (aio.NONAUTH, aio.AUTH, aio.SELECTED), aio.Exec.is_sync)
    return aio


async def _aio_execute(client: Any, *args: str) -> Any:
    aio = _register_aioimaplib()
    protocol = client.protocol
    command = aio.Command("X-STATE", protocol.new_tag(), *args, loop=protocol.loop)
    return await protocol.execute(command)


async def aio_xstate_save(client: Any) -> str:
    """``X-STATE SAVE`` on an aioimaplib client; returns the token."""
    response = await _aio_execute(client, "SAVE")
    if response.result != "OK":
        raise XStateError(_aio_text(response.lines))
    for line in response.lines:
        text = line.decode("ascii", "replace") if isinstance(line, bytes | bytearray) else str(line)
        if text.startswith("X-STATE "):
            return text.split(" ", 1)[1].strip()
    raise XStateError("server sent no X-STATE token")


async def aio_xstate_restore(client: Any, token: str) -> XStateResult:
    """``X-STATE RESTORE`` on an aioimaplib client; sets the client's state to AUTH or SELECTED."""
    aio = _register_aioimaplib()
    response = await _aio_execute(client, "RESTORE", token)
    lines = [bytes(x) if isinstance(x, bytes | bytearray) else str(x).encode() for x in response.lines]
    code, rest = _split_code(lines[-1].decode(errors="replace") if lines else "")
    result = XStateResult(response.result, code, rest, lines[:-1])
    if result.ok:
        client.protocol.state = aio.SELECTED if result.selected else aio.AUTH
    return result


def _aio_text(lines: list[Any]) -> str:
    return " ".join(x.decode(errors="replace") if isinstance(x, bytes | bytearray) else str(x) for x in lines)

"""A delivery for a user another cluster node serves goes to that node's LMTP listener, so that the user's
Sieve script runs where the user's index and Sieve state are written (the owner).

Why route rather than run the script here: Sieve reads and writes more than the message. ``fileinto``
resolves the mailbox (and ``:create`` makes one) in the user's index; ``vacation`` and ``duplicate``
remember what they did in the user's ``sieve/state.sqlite``. Both are SQLite files on the shared storage
that only the lease holder may write; a non-owner running the script would have to skip those (a vacation
reply sent twice, a ``:create`` lost) or write them beside the owner. Forwarding costs one LMTP hop on
the backends' network, only for the copies that arrive at the wrong node.

The owner's LMTP address is in its registry hash (``lmtp``). A forwarded transaction says so in its LHLO
name (``cluster-forward.<node id>``); a node never forwards such a copy again (ownership moving between
the hops would otherwise bounce it back and forth): it stores the file alone, as when the owner cannot be
reached (connection refused, time-out): the file in INBOX ``new/`` and a ``delivery`` notice, Sieve
skipped, logged as a warning.
"""

from __future__ import annotations

import asyncio
import re

from imapd.delivery.agent import Envelope, Outcome
from imapd.store.names import INBOX

__all__ = ["FORWARD_HELO", "forward_copy", "forwarded"]

FORWARD_HELO = "cluster-forward."
_DOT = re.compile(rb"^\.", re.MULTILINE)


def forwarded(envelope: Envelope) -> bool:
    """This copy came from another node's forward: do not forward it again."""
    return envelope.helo.startswith(FORWARD_HELO)


class _Unreachable(Exception):
    pass


async def _reply(reader: asyncio.StreamReader) -> tuple[int, str]:
    """One (possibly multi-line) reply: its code and last line's text."""
    while True:
        line = await reader.readline()
        if len(line) < 4 or not line[:3].isdigit():
            raise _Unreachable(f"bad reply {line[:40]!r}")
        if line[3:4] != b"-":
            return int(line[:3]), line[4:].decode(errors="replace").strip()


async def _send(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: bytes) -> tuple[int, str]:
    writer.write(line + b"\r\n")
    return await _reply(reader)


async def forward_copy(address: str, node_id: str, envelope: Envelope, message: bytes,
                       timeout: float) -> Outcome | None:
    """One recipient's copy over LMTP to ``address`` (HOST:PORT or a socket path); its outcome by the owner's
    reply, or None when the owner could not be reached before the message was sent (the caller stores the
    file alone); a temporary failure when the message went out and its answer did not come back. Asynchronous, so that the copies of a delivery to many users are forwarded together."""
    body_sent = False
    try:
        async with asyncio.timeout(timeout):
            if "/" in address:
                reader, writer = await asyncio.open_unix_connection(address)
            else:
                host, _, port = address.rpartition(":")
                reader, writer = await asyncio.open_connection(host.strip("[]"), int(port))
            try:
                code, text = await _reply(reader)
                steps = [b"LHLO " + (FORWARD_HELO + node_id).encode(),
                         b"MAIL FROM:<" + envelope.mail_from.encode() + b">",
                         b"RCPT TO:<" + envelope.recipient.address.encode() + b">", b"DATA"]
                for step in steps:
                    if code >= 400:
                        break
                    code, text = await _send(reader, writer, step)
                if code == 354:
                    body = _DOT.sub(b"..", message)
                    if not body.endswith(b"\r\n"):
                        body += b"\r\n"
                    writer.write(body + b".\r\n")
                    body_sent = True
                    code, text = await _reply(reader)
                elif code < 400:
                    raise _Unreachable(f"DATA answered {code}")
                writer.write(b"QUIT\r\n")
            finally:
                writer.close()
    except (OSError, ValueError, TimeoutError, _Unreachable, asyncio.IncompleteReadError) as exc:
        if body_sent:
            # The owner may have stored it (and run its Sieve script): a copy of our own now would be a
            # certain duplicate. A temporary failure lets the sender retry, as SMTP does when a reply is lost.
            return Outcome(kind="failed", failure="tempfail",
                           reason=f"no answer from the owner's LMTP to the forwarded copy: {type(exc).__name__}")
        return None
    if 200 <= code < 300:
        return Outcome(kind="stored", stored=((INBOX, 0),), reason=text)
    if 500 <= code < 600:
        return Outcome(kind="rejected", reason=text)
    return Outcome(kind="failed", failure="tempfail", reason=text)

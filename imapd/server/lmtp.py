"""The LMTP listener (RFC 2033): MTAs hand mail to the worker processes here instead of forking a program.

The wire protocol is aiosmtpd's (its ``LMTP`` class: command loop, MAIL/RCPT parsing, LHLO, timeouts),
with what LMTP delivery needs on top: PIPELINING, ENHANCEDSTATUSCODES (RFC 2034) on every reply,
8BITMIME, SMTPUTF8, CHUNKING (BDAT, RFC 3030), and after the message one reply per accepted recipient.
DATA is read here rather than by aiosmtpd, which answers an oversized message with a single reply where
LMTP owes one per recipient.

Where a message is stored: every worker accepts LMTP connections (the supervisor binds the socket once).
A recipient's copy is written on that user's lane (never on the network loop). When this worker owns
the user (``imapd/rendezvous.py``), it is written through the process's own store, so the user's IDLE
sessions hear of it at once from the change feed; otherwise it is written through a delivery-only store
of this process (what ``imapd deliver`` does in a process of its own) and the owner is sent a change
notice on its ``run/`` socket, as ``imapd deliver`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import re
import secrets
import socket
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import Envelope as SMTPEnvelope
from aiosmtpd.smtp import Session as SMTPSession

from imapd.delivery.agent import Envelope, Outcome, deliver, to_crlf, trace_headers
from imapd.delivery.recipients import Recipient, RecipientResolver
from imapd.rendezvous import ChangeNotice, notify_owner
from imapd.server.listener import bind_tcp
from imapd.server.proxy_gate import GatedListener, TrustedPeers
from imapd.sieve.delivery import keep_unsent, send_outgoing
from imapd.store.names import INBOX

if TYPE_CHECKING:
    from imapd.cache import WarmCache
    from imapd.protocol.proxyproto import ProxyHeader
    from imapd.session.context import ServerContext
    from imapd.store.store import Store

log = logging.getLogger("imapd.lmtp")
# aiosmtpd logs every command line at INFO: our log says what was delivered, once per recipient.
logging.getLogger("mail.log").setLevel(logging.WARNING)

__all__ = ["LMTPConnection", "LMTPService", "bind_lmtp", "lmtp_address_text", "reply_for"]

# RFC 3463 codes for the replies aiosmtpd writes without one (by basic code).
_ENHANCED = {
    "211": "2.0.0", "214": "2.0.0", "221": "2.0.0", "250": "2.0.0", "252": "2.0.0",
    "421": "4.3.0", "451": "4.3.0", "452": "4.3.1",
    "500": "5.5.2", "501": "5.5.4", "502": "5.5.1", "503": "5.5.1", "504": "5.5.4",
    "530": "5.7.0", "550": "5.0.0", "552": "5.3.4", "553": "5.1.3", "554": "5.3.0", "555": "5.5.4",
}
_HAS_ENHANCED = re.compile(r"\d{3}[ -][245]\.\d{1,3}\.\d{1,3}(\s|$)")
# ``<local@domain>`` of dot-atoms, what MTAs send: taken without the RFC 5322 parser aiosmtpd runs on
# every MAIL and RCPT (a tenth of the network loop's time per transaction); anything else goes to it.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_ADDRESS = re.compile(rf"\s*<({_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>")
_CHUNK = 1 << 20
_START, _MID, _CR, _DOT = range(4)  # where DATA reading stands (see LMTPConnection._read_dot_data)


def _buffered(reader: asyncio.StreamReader) -> bytes | bytearray:
    """What the stream holds unread (asyncio's private buffer, which aiosmtpd itself relies on); empty
    if that ever goes away, and the caller then reads byte by byte."""
    ahead = getattr(reader, "_buffer", b"")
    return ahead if isinstance(ahead, bytes | bytearray) else b""


def with_enhanced_code(reply: str) -> str:
    """``501 Syntax: ...`` -> ``501 5.5.4 Syntax: ...``; replies that have a code (or need none) unchanged."""
    out = []
    for line in reply.split("\r\n"):
        code = line[:3]
        if code in ("220", "354") or _HAS_ENHANCED.match(line) or len(line) < 4:
            out.append(line)
        else:
            out.append(f"{line[:4]}{_ENHANCED.get(code, code[0] + '.0.0')} {line[4:]}")
    return "\r\n".join(out)


def _clean(text: str) -> str:
    return " ".join(text.split())


def reply_for(outcome: Outcome, address: str, *, quota_tempfail: bool = False) -> str:
    """The one place an outcome becomes an LMTP reply (one line per recipient after the message)."""
    who = f"<{address}>"
    if outcome.kind == "stored":
        saved = ", ".join(f"{name} UID {uid}" for name, uid in outcome.stored)
        return f"250 2.0.0 {who} Saved ({saved})"
    if outcome.kind == "discarded":
        return f"250 2.0.0 {who} Discarded by the user's filter"
    if outcome.kind == "rejected":
        return f"550 5.7.1 {who} {_clean(outcome.reason) or 'Rejected by the recipient'}"
    if outcome.failure == "quota":
        code = "452 4.2.2" if quota_tempfail else "552 5.2.2"
        return f"{code} {who} Quota exceeded (mailbox for user is full)"
    if outcome.failure == "disk_full":
        return f"452 4.3.1 {who} Insufficient system storage"
    if outcome.failure == "nouser":
        return f"550 5.1.1 {who} User doesn't exist"
    return f"451 4.3.0 {who} Temporary internal error"


# -- listening sockets ---------------------------------------------------------------------------------
def bind_lmtp(address: str) -> socket.socket:
    """A listening socket for ``lmtp.listen``: a UNIX socket path (anything with a ``/``) or HOST:PORT."""
    if "/" in address:
        path = Path(address)
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(path.lstat().st_mode):
                path.unlink()  # a stale socket of an earlier run; anything else is left alone
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(path))
            os.chmod(path, 0o666)  # the MTA runs as another user (Postfix: "postfix")
        except OSError as exc:
            sock.close()
            raise OSError(exc.errno, f"cannot listen for LMTP on {address}: {exc.strerror}") from exc
        sock.listen(1024)
        sock.set_inheritable(True)
        return sock
    return bind_tcp(address, backlog=1024, what="LMTP")


def lmtp_address_text(sock: socket.socket) -> str:
    """What ``imapd deliver`` connects to (written to ``run/lmtp``): the path, or HOST:PORT bound."""
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return str(name)
    host = str(name[0])
    return f"[{host}]:{name[1]}" if ":" in host else f"{host}:{name[1]}"


# -- the service ---------------------------------------------------------------------------------------
class LMTPService:
    """The LMTP side of one server process: its listener, recipient lookup and where copies are stored."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.settings = ctx.settings.lmtp
        self.hostname = self.settings.hostname or socket.gethostname()  # no DNS lookup, unlike getfqdn()
        self.resolver = RecipientResolver(ctx.users, self.settings.domains, self.settings.recipient_delimiter)
        self.server: asyncio.Server | GatedListener | None = None
        self.connections: set[LMTPConnection] = set()
        self._foreign: tuple[Store, WarmCache] | None = None

    async def start(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        factory: Callable[[], LMTPConnection] = lambda: LMTPConnection(self, loop)  # noqa: E731
        trusted = TrustedPeers(self.settings.proxy_protocol_from)
        if trusted and sock.family != socket.AF_UNIX:
            # Behind HAProxy (Postfix itself sends no header): the header's source goes into Received:.
            self.server = GatedListener(sock, trusted, lambda header: LMTPConnection(self, loop, proxied=header),
                                        timeout=self.settings.proxy_header_timeout)
        elif sock.family == socket.AF_UNIX:
            self.server = await loop.create_unix_server(factory, sock=sock)
        else:
            self.server = await loop.create_server(factory, sock=sock)
        log.info("LMTP listening on %s", lmtp_address_text(sock))

    def close(self) -> None:
        """Stop accepting; connections in progress finish their transactions."""
        if self.server is not None:
            self.server.close()
            self.server = None

    async def drain(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.connections and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()

    def sweep(self) -> None:
        """Periodic: let the delivery-only store give back warm mailboxes and idle indexes."""
        if self._foreign is None:
            return
        store, cache = self._foreign
        cache.sweep()
        for user in store.idle_users(()):
            self.ctx.lanes.submit(user, "close idle delivery index",
                                  functools.partial(store.close_user_if_idle, user, ()))

    def stop(self) -> None:
        if self._foreign is not None:
            store, cache = self._foreign
            cache.clear()
            store.close()
            self._foreign = None

    # -- recipients and copies -------------------------------------------------------------------------
    async def resolve(self, address: str) -> Recipient | None:
        """A user known from a recent look at the users file needs no thread (see RecipientResolver)."""
        known = self.resolver.resolve_recent(address)
        return known if known is not None else await asyncio.to_thread(self.resolver.resolve, address)

    def owns(self, user: str) -> bool:
        ownership = self.ctx.ownership
        return ownership is None or ownership.owns(user)

    def _store_for_others(self) -> Store:
        """Users another worker owns: a store of our own that only appends (no watcher, small warm cache)."""
        if self._foreign is None:
            from imapd.cache import WarmCache
            from imapd.metrics import Metrics
            from imapd.store.store import Store

            settings = self.ctx.settings
            store = Store(settings.data_path, history_limit=settings.store.expunge_history,
                          durability="full" if settings.store.fsync else "normal")
            store.quota_limits = self.ctx.store.quota_limits  # the same users file and [quota] defaults
            store.fts = self.ctx.store.fts
            store.on_text_queued = self.ctx.text_backfill.queued
            cache = WarmCache(store, ttl=min(settings.cache.ttl, 60.0), max_bytes=32 * 1024 * 1024,
                              metrics=Metrics())
            self._foreign = (store, cache)
        return self._foreign[0]

    def _stored_for_owner(self, user: str, work: asyncio.Future[Outcome]) -> None:
        """The owner's IDLE sessions hear of a copy this worker stored, before the 250: over the worker's
        standing connection to the owner (no socket set up per delivery on either side), else as
        ``imapd deliver`` does, on the user's lane."""
        if work.cancelled() or work.exception() is not None or work.result().kind != "stored":
            return
        ownership = self.ctx.ownership
        if ownership is not None and ownership.channel.send_notice(ownership.owner_path(user), ChangeNotice(user)):
            return
        self.ctx.lanes.submit(user, "LMTP delivery: tell the owner",
                              functools.partial(notify_owner, self.ctx.settings.data_path, user))

    async def deliver(self, envelope: Envelope, body: bytes) -> Outcome:
        """One recipient's copy, on the user's lane; it runs to its end even if the client goes away."""
        user = envelope.recipient.user
        cluster = self.ctx.cluster
        if cluster is not None and not await cluster.try_claim(user):
            return await self._deliver_elsewhere(envelope, body)
        own = self.owns(user)
        store = self.ctx.store if own else self._store_for_others()
        sieve = self.ctx.settings.sieve

        async def job() -> Outcome:
            # message file and cur/ fsynced, like every append; the user's Sieve script decides where;
            # the full-text index is written after the 250, in batches (imapd/textbackfill.py)
            return deliver(store, envelope, body, sieve=sieve, text_later=True)

        work = asyncio.ensure_future(self.ctx.lanes.run(user, "LMTP delivery", job()))
        if not own:  # (a callback, so that the owner hears of it even if this client went away meanwhile)
            work.add_done_callback(functools.partial(self._stored_for_owner, user))
        try:
            outcome = await asyncio.shield(work)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug or an index SQLite cannot open: this recipient is retried later
            log.exception("delivery to %s failed", user)
            return Outcome(kind="failed", failure="tempfail", reason=f"{type(exc).__name__}: {exc}")
        report = outcome.report
        if report is not None and not await asyncio.to_thread(send_outgoing, report, sieve):
            # a redirect that could not go out, and no copy stored: keep the message rather than lose it
            async def keep() -> None:
                keep_unsent(store.user(user), report, trace_headers(envelope) + body,
                            envelope.detail_mailbox or INBOX)

            await self.ctx.lanes.run(user, "LMTP delivery: keep an unsent redirect", keep())
            outcome = Outcome(kind="stored", stored=tuple(report.stored))
        if outcome.kind == "stored":
            log.info("delivered to %s: %s (%d bytes)", user,
                     ", ".join(f"{n} UID {u}" for n, u in outcome.stored), len(body))
        elif outcome.kind == "failed":
            log.warning("delivery to %s failed: %s", user, outcome.reason)
        return outcome


    async def _deliver_elsewhere(self, envelope: Envelope, body: bytes) -> Outcome:
        """Another cluster node owns the user: hand the copy to its LMTP listener, where the user's Sieve
        script runs (imapd/cluster/forward.py); if it cannot be reached, store the file in new/ and tell
        that node over Redis."""
        from imapd.cluster.forward import forward_copy, forwarded
        from imapd.delivery.agent import deliver_file_only

        user = envelope.recipient.user
        cluster = self.ctx.cluster
        assert cluster is not None
        owner = None if forwarded(envelope) else await cluster.owner_lmtp(user)
        if owner is not None:
            node, address = owner
            got = await forward_copy(address, cluster.node_id, envelope, trace_headers(envelope) + body,
                                     self.ctx.settings.cluster.forward_timeout)
            if got is not None:
                if got.kind == "failed":
                    log.warning("delivery to %s: node %s (LMTP %s) took the message but gave no answer; deferred "
                                "(%s)", user, node, address, got.reason[:80])
                else:
                    log.info("delivery to %s handed to node %s over LMTP (%s): %s", user, node, address,
                             got.reason[:80])
                return got
            log.warning("delivery to %s: node %s does not answer on LMTP %s; storing the file alone (its Sieve "
                        "script is skipped)", user, node, address)
        outcome = await asyncio.to_thread(deliver_file_only, self.ctx.store, envelope, body,
                                          fsync=self.ctx.settings.store.fsync)
        if outcome.kind == "stored":
            cluster.publish(user, INBOX, 0, 0, "delivery")
            log.info("delivered to %s: INBOX new/ for the node that serves the user (%d bytes)", user, len(body))
        else:
            log.warning("delivery to %s failed: %s", user, outcome.reason)
        return outcome


class _Envelope(SMTPEnvelope):
    def __init__(self) -> None:
        super().__init__()
        self.recipients: list[Recipient] = []
        self.chunks: list[bytes] = []
        self.chunk_bytes = 0
        self.chunk_overflow = False


class _Hooks:
    """aiosmtpd's handler: the MAIL/RCPT/LHLO decisions (kept apart: aiosmtpd inspects its members)."""

    def __init__(self, service: LMTPService) -> None:
        self.service = service

    async def handle_EHLO(self, server: LMTPConnection, session: SMTPSession, envelope: _Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname
        return [f"250-{server.hostname}", "250-PIPELINING", "250-ENHANCEDSTATUSCODES",
                f"250-SIZE {self.service.settings.max_message_size}", "250-8BITMIME", "250-SMTPUTF8",
                "250 CHUNKING"]

    async def handle_MAIL(self, server: LMTPConnection, session: SMTPSession, envelope: _Envelope,
                          address: str, mail_options: list[str]) -> str:
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(self, server: LMTPConnection, session: SMTPSession, envelope: _Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if len(envelope.recipients) >= self.service.settings.max_recipients:
            return "452 4.5.3 Too many recipients"
        rcpt = await self.service.resolve(address)
        if rcpt is None:
            return f"550 5.1.1 <{address}> User doesn't exist: {address}"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        envelope.recipients.append(rcpt)
        return "250 2.1.5 Ok"


class LMTPConnection(LMTP):
    """One LMTP client connection."""

    line_length_limit = 64 * 1024  # the stream's buffer limit; DATA lines may be longer (read in parts)

    def __init__(self, service: LMTPService, loop: asyncio.AbstractEventLoop, *,
                 proxied: ProxyHeader | None = None) -> None:
        self.service = service
        self._proxied = proxied
        self._raw_replies = False
        self.session_id = secrets.token_urlsafe(16)
        settings = service.settings
        super().__init__(_Hooks(service), data_size_limit=settings.max_message_size, enable_SMTPUTF8=True,
                         decode_data=False, hostname=service.hostname, ident="imapd LMTP ready",
                         timeout=settings.timeout, loop=loop)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.service.connections.add(self)
        super().connection_made(transport)
        proxied = self._proxied
        if proxied is not None and proxied.source is not None and self.session is not None:
            # aiosmtpd took the socket's peer (a tuple, whatever its annotation says); the balancer named the MTA.
            self.session.peer = proxied.source  # type: ignore[assignment]

    def connection_lost(self, error: Exception | None) -> None:
        self.service.connections.discard(self)
        super().connection_lost(error)

    def _create_envelope(self) -> _Envelope:
        return _Envelope()

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        plain = _PLAIN_ADDRESS.match(arg)
        if plain is None:
            return super()._getaddr(arg)
        address = plain.group(1)
        if self.local_part_limit and len(address.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return address, arg[plain.end():]

    def _env(self) -> _Envelope:  # not a property: aiosmtpd reads every member before there is one
        assert isinstance(self.envelope, _Envelope)
        return self.envelope

    async def push(self, status: Any) -> None:
        if isinstance(status, str) and not self._raw_replies:
            status = with_enhanced_code(status)
        await super().push(status)

    async def smtp_LHLO(self, arg: str) -> None:
        self._raw_replies = True  # the LHLO reply lists keywords; RFC 2034 puts no codes there
        try:
            await super().smtp_LHLO(arg)
        finally:
            self._raw_replies = False

    async def _data_allowed(self, verb: str, arg: str | None) -> bool:
        if await self.check_helo_needed("LHLO"):
            return False
        if not self._env().recipients:
            await self.push(f"503 5.5.1 Error: need RCPT command before {verb}")
            return False
        return True

    # -- DATA --------------------------------------------------------------------------------------------
    async def _read_dot_data(self, limit: int) -> bytes | None:
        """The message up to the lone dot, dot-unstuffed; None if it is larger than ``limit``.

        Runs of lines are taken whole (``readuntil`` the next line that starts with a dot); only around
        such a line is the stream read byte by byte, to tell the end from a stuffed dot. The states say
        what the bytes read so far end with: a line end, a CR, a dot at the start of a line, or neither."""
        data = bytearray()
        too_big = False

        def add(piece: bytes) -> None:
            nonlocal too_big
            if too_big:
                return
            if len(data) + len(piece) > limit:
                too_big = True
                data.clear()
            else:
                data.extend(piece)

        reader = self._reader
        state = _START
        while True:
            if state == _MID:
                try:
                    chunk = await reader.readuntil(b"\r\n.")
                except asyncio.LimitOverrunError as exc:
                    piece = await reader.readexactly(exc.consumed)
                    add(piece)
                    state = _START if piece.endswith(b"\r\n") else _CR if piece.endswith(b"\r") else _MID
                    self._reset_timeout()
                    continue
                add(chunk[:-1])
                state = _DOT
                self._reset_timeout()
            elif state == _DOT:
                byte = await reader.readexactly(1)
                if byte == b"\r":
                    after = await reader.readexactly(1)
                    if after == b"\n":
                        break  # CRLF . CRLF
                    add(byte + after)
                    state = _CR if after == b"\r" else _MID
                else:
                    add(byte)  # the stuffed dot is dropped
                    state = _MID
            else:
                # At a line start (or after a CR): look at what is buffered before reading byte by byte,
                # so that runs of empty lines after a long stretch go back to bulk reading at once.
                ahead = _buffered(reader)
                if state == _START and ahead and ahead[:1] != b".":
                    state = _MID
                    continue
                if state == _CR and ahead and ahead[:1] != b"\n":
                    state = _MID
                    continue
                byte = await reader.readexactly(1)
                if state == _START and byte == b".":
                    state = _DOT
                    continue
                add(byte)
                state = _CR if byte == b"\r" else _START if state == _CR and byte == b"\n" else _MID
        return None if too_big else bytes(data)

    async def smtp_DATA(self, arg: str | None) -> None:
        if not await self._data_allowed("DATA", arg):
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        if self._env().chunks:
            await self.push("503 5.5.1 Error: DATA after BDAT")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        data = await self._read_dot_data(self.service.settings.max_message_size)
        await self._finish_message(data)

    async def smtp_BDAT(self, arg: str | None) -> None:
        """RFC 3030: ``BDAT <size> [LAST]``; the chunk is read (and counted) even when it is refused."""
        words = (arg or "").split()
        if not 1 <= len(words) <= 2 or not words[0].isdigit() or (len(words) == 2 and words[1].upper() != "LAST"):
            await self.push("501 5.5.4 Syntax: BDAT <size> [LAST]")
            return
        size, last = int(words[0]), len(words) == 2
        env = self._env()
        limit = self.service.settings.max_message_size
        keep = bool(env.recipients) and self.session is not None and bool(self.session.host_name)
        remaining = size
        while remaining:
            piece = await self._reader.readexactly(min(remaining, _CHUNK))
            remaining -= len(piece)
            self._reset_timeout()
            if keep and not env.chunk_overflow:
                if env.chunk_bytes + len(piece) > limit:
                    env.chunk_overflow = True
                    env.chunks.clear()
                else:
                    env.chunks.append(piece)
            env.chunk_bytes += len(piece)
        if not keep:
            await self._data_allowed("BDAT", arg)
            env.chunks.clear()
            return
        if not last:
            await self.push(f"250 2.0.0 {size} octets received")
            return
        data = None if env.chunk_overflow else b"".join(env.chunks)
        env.chunks = []
        await self._finish_message(data)

    async def _finish_message(self, data: bytes | None) -> None:
        """One reply per accepted recipient, in RCPT order; each copy durable before its 250."""
        env = self._env()
        recipients = list(env.recipients)
        if data is None:
            replies = [f"552 5.3.4 <{r.address}> Message too big for this system" for r in recipients]
        else:
            body = to_crlf(data)
            peer = self.session.peer if self.session is not None else None
            peer_ip = str(peer[0]) if isinstance(peer, tuple) and peer else ""
            helo = (self.session.host_name if self.session is not None else None) or ""
            sender = env.mail_from if env.mail_from not in (None, "<>") else ""
            settings = self.service.settings
            copies = [self.service.deliver(Envelope(
                mail_from=sender or "", recipient=rcpt, helo=helo, peer_ip=peer_ip,
                session_id=self.session_id, hostname=self.hostname,
                detail_mailbox=rcpt.detail if settings.save_to_detail_mailbox else ""), body)
                for rcpt in recipients]
            # (one recipient, the usual case: awaited directly, without the task gather() wraps it in)
            outcomes = [await copies[0]] if len(copies) == 1 else await asyncio.gather(*copies)
            replies = [reply_for(outcome, rcpt.address, quota_tempfail=settings.quota_full_tempfail)
                       for outcome, rcpt in zip(outcomes, recipients, strict=True)]
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push("\r\n".join(replies))

"""Commands valid in any state, the ways in (STARTTLS, LOGIN, AUTHENTICATE PLAIN) and back out
(UNAUTHENTICATE)."""

from __future__ import annotations

import asyncio
import ipaddress
import logging

from imapd import __version__
from imapd.protocol import commands as c
from imapd.protocol.events import SaslResponse
from imapd.protocol.response_codes import CapabilityCode, Code
from imapd.protocol.responses import (
    CapabilityResponse,
    ContinuationResponse,
    EnabledResponse,
    IdResponse,
    TaggedResponse,
    UntaggedStatus,
)
from imapd.session.auth import (
    HashesBusy,
    LoginRefused,
    audit,
    check_password,
    client_address,
    is_trusted_proxy,
)
from imapd.session.errors import CommandBad, CommandNo
from imapd.session.session import Done, Session, State
from imapd.store.errors import NotOwner

log = logging.getLogger(__name__)

# Extensions ENABLE can turn on (RFC 5161).
ENABLEABLE: frozenset[str] = frozenset({"CONDSTORE", "QRESYNC", "UTF8=ACCEPT", "UIDONLY", "IMAP4REV2"})
# How ENABLED spells a name when it is not all capitals (RFC 9051 6.3.1 writes "IMAP4rev2").
_SPELLING = {"IMAP4REV2": "IMAP4rev2"}


def utf8_names(enabled: frozenset[str]) -> bool:
    """Mailbox names and quoted strings in UTF-8, not modified UTF-7: after UTF8=ACCEPT (RFC 6855 3) and
    after IMAP4rev2 (RFC 9051 5.1, 4.3), which both say so."""
    return "UTF8=ACCEPT" in enabled or "IMAP4REV2" in enabled


async def capability(s: Session, cmd: c.Capability) -> Done:
    s.send(CapabilityResponse(tuple(s.capability_list())))
    return Done("CAPABILITY completed")


async def noop(s: Session, cmd: c.Noop | c.Check) -> Done:
    view = s.selected
    if view is not None:
        view.mailbox.sync()
    return Done(f"{type(cmd).__name__.upper()} completed")


async def logout(s: Session, cmd: c.Logout) -> None:
    s.send(UntaggedStatus("BYE", "Logging out"))
    s.send(TaggedResponse(cmd.tag, "OK", "LOGOUT completed"))
    s.logout()


async def id_(s: Session, cmd: c.Id) -> Done:
    if cmd.params:
        client = ", ".join(f"{k}={v}" for k, v in cmd.params[:8])
        log.debug("client %s identifies as %s", s.conn.peer_host, client)
    if s.state is State.NOT_AUTHENTICATED:
        _note_originating_client(s, cmd.params or ())  # (ID NIL too: the first ID settles the origin)
    s.send(IdResponse((("name", "imapd"), ("version", __version__), ("vendor", "imapd-webmail"))))
    return Done("ID completed")


def _note_originating_client(s: Session, params: tuple[tuple[str, str | None], ...]) -> None:
    """A trusted proxy (``auth.trusted_networks``) names the real client with ``x-originating-ip`` and
    ``x-originating-port`` (as Dovecot's login_trusted_networks allows): limits, throttles and logs use it.
    Only the first one of a connection counts: the proxy sends it before anything of the client's, so a
    client relayed after UNAUTHENTICATE cannot rename itself with an ID of its own."""
    if s.client_origin is not None or not is_trusted_proxy(s.conn.peer_host, s.ctx.settings.auth.trusted_networks):
        return
    fields = {k.lower(): v for k, v in params if v is not None}
    ip_text = fields.get("x-originating-ip")
    # The first ID settles it even without a usable address: the peer stays the origin, for good.
    s.client_origin = (s.conn.peer_host, None)
    if ip_text is None:
        return
    try:
        ip = str(ipaddress.ip_address(ip_text.strip().strip("[]")))
    except ValueError:
        log.info("trusted proxy %s sent an invalid x-originating-ip %r", s.conn.peer_host, ip_text[:64])
        return
    port_text = fields.get("x-originating-port", "")
    port = int(port_text) if port_text.isdigit() and int(port_text) < 65536 else None
    s.client_origin = (ip, port)


async def enable(s: Session, cmd: c.Enable) -> Done:
    newly = [name for name in dict.fromkeys(cmd.capabilities) if name in ENABLEABLE and name not in s.enabled]
    if "QRESYNC" in newly:
        # RFC 7162 3.2.3: enabling QRESYNC also enables CONDSTORE.
        s.enable_condstore()
    s.enabled = s.enabled.union(newly)
    if utf8_names(s.enabled) and not s.utf8:
        s.utf8 = True
        s.conn.set_utf8(True)
    s.send(EnabledResponse(tuple(_SPELLING.get(name, name) for name in newly)))
    return Done("ENABLE completed")


async def starttls(s: Session, cmd: c.StartTLS) -> None:
    context = s.ctx.tls_context
    if context is None:
        raise CommandNo("STARTTLS is not configured on this server", "CANNOT")
    if s.conn.is_tls or s.conn.balancer_tls:
        raise CommandBad("TLS is already active")
    s.send(TaggedResponse(cmd.tag, "OK", "Begin TLS negotiation now"))
    try:
        await s.conn.start_tls(context)
    except (OSError, ConnectionError) as exc:
        log.info("STARTTLS handshake with %s failed: %s", s.conn.peer_host, exc)
        s.conn.close()


async def compress(s: Session, cmd: c.Compress) -> None:
    """RFC 4978: from the byte after this OK, both directions are deflated (imapd/protocol/compress.py)."""
    if cmd.mechanism != "DEFLATE":
        raise CommandBad(f"Unknown compression mechanism {cmd.mechanism}; this server offers DEFLATE")
    if s.conn.compressed:
        raise CommandNo("DEFLATE is already active", "COMPRESSIONACTIVE")
    s.send(TaggedResponse(cmd.tag, "OK", "DEFLATE active"))
    s.conn.start_compression()


def _check_plaintext(s: Session) -> None:
    if not s.plaintext_auth_allowed:
        raise CommandNo("Plaintext authentication is disabled on an unencrypted connection; use STARTTLS",
                        "PRIVACYREQUIRED")


async def login_user(s: Session, username: str, password: str, mechanism: str = "LOGIN") -> None:
    """Check a password (``auth.check_password``) and enter AUTHENTICATED; every outcome is one
    ``imapd.audit`` line."""
    address = client_address(s)
    try:
        name = await check_password(s.ctx, address, username, password)
    except LoginRefused as exc:
        audit(s, "login failed", username, mechanism, exc.reason)
        await asyncio.sleep(exc.delay)
        raise CommandNo("Invalid credentials", "AUTHENTICATIONFAILED") from None
    except HashesBusy:
        audit(s, "login failed", username, mechanism, "busy: too many password checks waiting")
        raise CommandNo("Too many logins in progress; try again later", "UNAVAILABLE") from None
    await claim_user(s, name, mechanism)
    _logged_in(s, name, mechanism, address)


async def claim_user(s: Session, username: str, mechanism: str) -> None:
    """In a cluster, this node must hold the user's lease before it opens the index (NO [UNAVAILABLE]
    naming nothing of the cluster when another live node serves the user)."""
    cluster = s.ctx.cluster
    if cluster is None:
        return
    try:
        await cluster.claim(username)
    except NotOwner as exc:
        audit(s, "login refused", username, mechanism, str(exc))
        raise CommandNo("This mailbox is being served elsewhere right now; try again shortly",
                        "UNAVAILABLE") from None


def _logged_in(s: Session, username: str, mechanism: str, address: str) -> None:
    try:
        enter_authenticated(s, username)
    except Exception as exc:
        audit(s, "login refused", username, mechanism, str(exc))
        raise
    s.ctx.throttle.record_success(address, username)
    audit(s, "login", username, mechanism)


def enter_authenticated(s: Session, username: str) -> None:
    ctx = s.ctx
    if not ctx.admit_user(s, username):
        raise CommandNo(f"Too many connections for user {username}", "LIMIT")
    s.user_name = username
    try:
        s.user = ctx.store.user(username)
    except Exception:
        ctx.release_user(s)
        raise
    s.state = State.AUTHENTICATED
    s.conn.raise_input_limits()


def _auth_done(s: Session, text: str) -> Done:
    return Done(text, CapabilityCode(tuple(s.capability_list())))


async def login(s: Session, cmd: c.Login) -> Done:
    _check_plaintext(s)
    await login_user(s, cmd.username, cmd.password)
    return _auth_done(s, "LOGIN completed")


async def authenticate(s: Session, cmd: c.Authenticate) -> Done | None:
    if cmd.mechanism.upper() != "PLAIN":
        raise CommandNo(f"Unsupported SASL mechanism {cmd.mechanism}", "CANNOT")
    _check_plaintext(s)
    if cmd.initial_response is None:
        s.pending_sasl = cmd.tag
        s.conn.expect_sasl_response()
        s.send(ContinuationResponse(""))
        return None
    return await _finish_plain(s, cmd.initial_response)


async def continue_authenticate(s: Session, event: SaslResponse) -> None:
    tag = s.pending_sasl
    s.pending_sasl = None
    if tag is None:
        return
    if event.cancelled:
        s.send(TaggedResponse(tag, "BAD", "AUTHENTICATE cancelled"))
        return
    try:
        done = await _finish_plain(s, event.data)
    except CommandNo as exc:
        s.send(TaggedResponse(tag, "NO", exc.text, Code(exc.code) if exc.code else None))
        return
    except CommandBad as exc:
        s.send(TaggedResponse(tag, "BAD", exc.text))
        return
    s.send(TaggedResponse(tag, "OK", done.text, done.code))


async def _finish_plain(s: Session, data: bytes) -> Done:
    # RFC 4616: [authzid] NUL authcid NUL passwd
    parts = data.split(b"\0")
    if len(parts) != 3:
        raise CommandBad("Malformed PLAIN response")
    authzid, authcid, passwd = (p.decode("utf-8", "replace") for p in parts)
    if authzid and authzid != authcid:
        raise CommandNo("Authorization identity must match the authentication identity",
                        "AUTHORIZATIONFAILED")
    await login_user(s, authcid, passwd, "PLAIN")
    return _auth_done(s, "AUTHENTICATE completed")


async def unauthenticate(s: Session, cmd: c.Unauthenticate) -> Done:
    """RFC 8437: back to NOT AUTHENTICATED on this connection, as if it had just been greeted.

    The selected mailbox is closed without expunge (as UNSELECT), ENABLEd extensions and UTF8=ACCEPT are
    off again, the user's connection slot is given back, and the pre-auth input limits apply. The next
    LOGIN (or X-STATE RESTORE) names its user afresh, so a connection served by this user's owner worker
    moves to the new user's owner exactly as a new connection's first LOGIN does (server/connection.py
    ``_must_move`` looks at ``user_name`` only). TLS stays; we offer no SASL security layer to undo.
    """
    user = s.user_name or ""
    s.close_selected()
    s.ctx.release_user(s)  # user_name None: the next command runs on the network loop, not the lane
    s.user = None
    s.state = State.NOT_AUTHENTICATED
    s.enabled = frozenset()
    if s.utf8:
        s.utf8 = False
        s.conn.set_utf8(False)
    s.search_result = None
    s.xstate_lineage = b""  # a later login is a new login: new X-STATE lineage
    s.conn.lower_input_limits()
    audit(s, "unauthenticate", user, "UNAUTHENTICATE")
    return Done("UNAUTHENTICATE completed", CapabilityCode(tuple(s.capability_list())))

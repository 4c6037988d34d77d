"""ManageSieve (RFC 5804) semantics: authentication as IMAP does it, then the user's scripts.

One :class:`ManageSieveSession` per connection; ``execute`` answers one command with the bytes to send.
The password check follows IMAP's order and shares its state (``ServerContext``: the failed-login
throttle, the credential cache, the hash slots, the passwd file), so a guessing client gains nothing by
switching protocols. Script files are read and written off the event loop (``imapd/sieve/scripts.py``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from imapd.protocol.managesieve import ManageSieveCommand, quoted, response, string
from imapd.session.auth import HashesBusy, LoginRefused, check_password, is_trusted_loopback
from imapd.session.cmd_xstate import address_bytes, check_token
from imapd.session.errors import CommandNo
from imapd.sieve.grammar import EXTENSIONS, SieveSyntaxError, parse_script
from imapd.sieve.scripts import ActiveScript, NoSuchScript, ScriptExists, ScriptStore, valid_script_name
from imapd.store.revocations import is_revoked

if TYPE_CHECKING:
    from imapd.session.context import ServerContext

__all__ = ["ManageSieveSession"]

log = logging.getLogger("imapd.managesieve")
audit_log = logging.getLogger("imapd.audit")
T = TypeVar("T")


class _No(Exception):
    def __init__(self, text: str, code: str | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.code = code


class ManageSieveSession:
    def __init__(self, ctx: ServerContext, peer_host: str, *, is_tls: bool) -> None:
        self.ctx = ctx
        self.peer_host = peer_host
        self.is_tls = is_tls
        self.user: str | None = None
        self.scripts: ScriptStore | None = None
        self.start_tls = False  # set by STARTTLS: the connection upgrades after sending the OK
        self.sasl_pending = False  # AUTHENTICATE without an initial response: the next line is it
        self.sasl_mechanism = "PLAIN"
        self.logout = False

    # -- state -------------------------------------------------------------------------------------------
    @property
    def is_loopback(self) -> bool:
        return is_trusted_loopback(self.peer_host, self.ctx.settings.tls.trust_loopback)

    @property
    def plaintext_auth_allowed(self) -> bool:
        """The same rule as IMAP's LOGIN (``Session.plaintext_auth_allowed``)."""
        return self.is_tls or self.is_loopback or self.ctx.settings.tls.allow_plaintext_auth

    def mechanisms(self) -> list[str]:
        """PLAIN, and X-STATE (an IMAP X-STATE token as the credential: a webmail that keeps no password
        manages its user's filters with the token it restores IMAP with) when tokens may authenticate."""
        if not self.plaintext_auth_allowed:
            return []
        return ["PLAIN", "X-STATE"] if self.ctx.settings.xstate.authenticates else ["PLAIN"]

    def capabilities(self) -> bytes:
        settings = self.ctx.settings
        lines = [
            quoted("IMPLEMENTATION") + b" " + quoted("imapd"),
            quoted("SASL") + b" " + quoted(" ".join(self.mechanisms()) if self.user is None else ""),
            quoted("SIEVE") + b" " + quoted(" ".join(EXTENSIONS)),
            quoted("MAXREDIRECTS") + b" " + quoted(str(settings.sieve.max_redirects)),
            quoted("VERSION") + b" " + quoted("1.0"),
        ]
        if self.ctx.tls_context is not None and not self.is_tls and self.user is None:
            lines.append(quoted("STARTTLS"))
        if self.user is not None:
            lines.append(quoted("OWNER") + b" " + quoted(self.user))
        return b"".join(line + b"\r\n" for line in lines)

    def greeting(self) -> bytes:
        return self.capabilities() + response("OK", "imapd ManageSieve ready")

    # -- dispatch ----------------------------------------------------------------------------------------
    async def execute(self, cmd: ManageSieveCommand) -> bytes:
        if self.sasl_pending:
            self.sasl_pending = False
            if len(cmd.args) != 1 or cmd.name or cmd.args[0] == "*":
                return response("NO", "Authentication cancelled")
            try:
                return await self._finish(str(cmd.args[0]))
            except _No as exc:
                return response("NO", exc.text, exc.code)
        handler = _PREAUTH.get(cmd.name) or (_AUTHED.get(cmd.name) if self.user is not None else None)
        if handler is None:
            if cmd.name in _AUTHED:
                return response("NO", "Authenticate first")
            return response("NO", f"Unknown command {cmd.name}")
        try:
            return await handler(self, *cmd.args)
        except _No as exc:
            return response("NO", exc.text, exc.code)
        except TypeError:
            return response("NO", f"Wrong arguments for {cmd.name}")
        except OSError as exc:  # the disk: full, read-only, gone
            log.error("managesieve %s for user %r failed: %s", cmd.name, self.user, exc)
            return response("NO", "Cannot access the scripts now; try again later", "TRYLATER")

    async def _off_loop(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.to_thread(fn, *args)

    # -- not authenticated -------------------------------------------------------------------------------
    async def capability(self) -> bytes:
        return self.capabilities() + response("OK", "CAPABILITY completed")

    async def noop(self, tag: str | None = None) -> bytes:
        if tag is not None:
            return response("OK", "Done", "TAG " + quoted(str(tag)).decode())
        return response("OK", "NOOP completed")

    async def do_logout(self) -> bytes:
        self.logout = True
        return response("OK", "Logout completed")

    async def starttls(self) -> bytes:
        if self.is_tls or self.ctx.tls_context is None:
            raise _No("STARTTLS is not available")
        if self.user is not None:
            raise _No("Already authenticated")
        self.start_tls = True
        return response("OK", "Begin TLS negotiation now")

    async def authenticate(self, mechanism: str, initial: str | None = None) -> bytes:
        if self.user is not None:
            raise _No("Already authenticated")
        mech = str(mechanism).upper()
        if mech not in ("PLAIN", "X-STATE") or (mech == "X-STATE" and not self.ctx.settings.xstate.authenticates):
            raise _No(f"Unsupported SASL mechanism {mechanism}")
        if not self.plaintext_auth_allowed:
            raise _No("Plaintext authentication needs TLS; use STARTTLS", "ENCRYPT-NEEDED")
        self.sasl_mechanism = mech
        if initial is None:  # RFC 5804 2.1: an empty challenge, then the client's response on its own line
            self.sasl_pending = True
            return b'""\r\n'
        return await self._finish(str(initial))

    async def _finish(self, initial: str) -> bytes:
        if self.sasl_mechanism == "X-STATE":
            return await self._finish_xstate(initial)
        return await self._finish_plain(initial)

    async def _finish_xstate(self, initial: str) -> bytes:
        """The response is the base64 of an X-STATE token: checked as X-STATE RESTORE checks it (signature,
        age, credential generation, address binding, revocation), a failure counted like a failed login.
        Nothing of the IMAP state is restored; the token only says who the user is."""
        try:
            token = base64.b64decode(initial, validate=True).decode("ascii")
        except (binascii.Error, ValueError):
            raise _No("Malformed X-STATE response") from None
        try:
            state = check_token(self.ctx, token, address_bytes(self.peer_host))
            cluster = self.ctx.cluster
            revoked_elsewhere = (cluster is not None and not cluster.owns_fresh(state.user)
                                 and await cluster.is_revoked(state.lineage))
            if revoked_elsewhere or await self._off_loop(self._revoked, state.user, state.lineage):  # (index)
                raise CommandNo("State token was revoked (X-STATE REVOKE)", "X-STATE-EXPIRED")
        except CommandNo as exc:
            self._audit("login failed", "", exc.text, "X-STATE")
            await asyncio.sleep(self.ctx.throttle.record_failure(self.peer_host))
            raise _No(exc.text, "AUTH-FAILED") from None
        self.user = state.user
        self.scripts = ScriptStore(self.ctx.store.user_root(state.user))
        self._audit("login", state.user, mechanism="X-STATE")
        return response("OK", "Logged in")

    async def _finish_plain(self, initial: str) -> bytes:
        try:
            parts = base64.b64decode(initial, validate=True).split(b"\0")
        except (binascii.Error, ValueError):
            raise _No("Malformed PLAIN response") from None
        if len(parts) != 3:
            raise _No("Malformed PLAIN response")
        authzid, authcid, password = (p.decode("utf-8", "replace") for p in parts)
        if authzid and authzid != authcid:
            raise _No("Authorization identity must match the authentication identity", "AUTHZ-FAILED")
        name = await self._check_password(authcid, password)
        self.user = name
        self.scripts = ScriptStore(self.ctx.store.user_root(name))
        return response("OK", "Logged in")

    def _revoked(self, user: str, lineage: bytes) -> bool:
        return is_revoked(self.ctx.store.user(user), lineage, now=time.time())

    async def _check_password(self, username: str, password: str) -> str:
        """IMAP's check (``auth.check_password``: the same throttle, credential cache and hash slots);
        every outcome is one ``imapd.audit`` line."""
        try:
            name = await check_password(self.ctx, self.peer_host, username, password)
        except LoginRefused as exc:
            self._audit("login failed", username, exc.reason)
            await asyncio.sleep(exc.delay)
            raise _No("Authentication failed", "AUTH-FAILED") from None
        except HashesBusy:
            self._audit("login failed", username, "busy: too many password checks waiting")
            raise _No("Too many logins in progress; try again later", "TRYLATER") from None
        self.ctx.throttle.record_success(self.peer_host, name)
        self._audit("login", name)
        return name

    def _audit(self, event: str, user: str, reason: str | None = None, mechanism: str = "PLAIN") -> None:
        audit_log.info("%s user=%r address=%s protocol=managesieve mechanism=%s%s", event, user, self.peer_host,
                       mechanism, f" reason={reason}" if reason else "")

    # -- authenticated -----------------------------------------------------------------------------------
    def _store(self) -> ScriptStore:
        assert self.scripts is not None
        return self.scripts

    async def unauthenticate(self) -> bytes:
        self.user = None
        self.scripts = None
        return response("OK", "Unauthenticated")

    def _check_fits(self, store: ScriptStore, name: str, size: int) -> None:
        limits = self.ctx.settings.sieve
        if size > limits.max_script_size:
            raise _No(f"Script is larger than {limits.max_script_size} octets", "QUOTA/MAXSIZE")
        if not store.exists(name) and len(store.names()) >= limits.max_scripts:
            raise _No(f"At most {limits.max_scripts} scripts", "QUOTA/MAXSCRIPTS")

    async def havespace(self, name: str, size: int) -> bytes:
        if not isinstance(size, int):
            raise _No("HAVESPACE takes a script name and a number")
        self._name(name)
        await self._off_loop(self._check_fits, self._store(), name, size)
        return response("OK", "Putscript would succeed")

    def _name(self, name: object) -> str:
        if not isinstance(name, str) or not valid_script_name(name):
            raise _No("Invalid script name")
        return name

    def _check_source(self, source: object) -> str:
        if not isinstance(source, str):
            raise _No("A script is a string")
        try:
            parse_script(source)
        except SieveSyntaxError as exc:
            raise _No(str(exc)) from None
        return source

    async def putscript(self, name: str, source: str) -> bytes:
        name = self._name(name)
        store = self._store()
        text = await self._off_loop(self._check_source, source)  # a big script parses for a while
        await self._off_loop(self._check_fits, store, name, len(text.encode("utf-8")))
        await self._off_loop(store.put, name, text)
        log.info("user %r stored sieve script %r (%d octets)", self.user, name, len(text))
        return response("OK", "Script stored")

    async def checkscript(self, source: str) -> bytes:
        await self._off_loop(self._check_source, source)
        if len(str(source).encode("utf-8")) > self.ctx.settings.sieve.max_script_size:
            raise _No("Script is too large", "QUOTA/MAXSIZE")
        return response("OK", "Script is valid")

    async def listscripts(self) -> bytes:
        listing = await self._off_loop(self._store().listing)
        lines = b"".join(string(name) + (b" ACTIVE" if active else b"") + b"\r\n" for name, active in listing)
        return lines + response("OK", "Listscripts completed")

    async def setactive(self, name: str) -> bytes:
        if name:
            self._name(name)
        try:
            await self._off_loop(self._store().set_active, str(name))
        except NoSuchScript:
            raise _No(f"No script {name!r}", "NONEXISTENT") from None
        return response("OK", "Active script set" if name else "No script is active")

    async def getscript(self, name: str) -> bytes:
        try:
            text = await self._off_loop(self._store().get, self._name(name))
        except NoSuchScript:
            raise _No(f"No script {name!r}", "NONEXISTENT") from None
        data = text.encode("utf-8")
        return b"{%d}\r\n" % len(data) + data + b"\r\n" + response("OK", "Getscript completed")

    async def deletescript(self, name: str) -> bytes:
        try:
            await self._off_loop(self._store().delete, self._name(name))
        except NoSuchScript:
            raise _No(f"No script {name!r}", "NONEXISTENT") from None
        except ActiveScript:
            raise _No("The active script cannot be deleted", "ACTIVE") from None
        return response("OK", "Script deleted")

    async def renamescript(self, old: str, new: str) -> bytes:
        try:
            await self._off_loop(self._store().rename, self._name(old), self._name(new))
        except NoSuchScript:
            raise _No(f"No script {old!r}", "NONEXISTENT") from None
        except ScriptExists:
            raise _No(f"A script {new!r} exists", "ALREADYEXISTS") from None
        return response("OK", "Script renamed")


_Handler = Callable[..., Awaitable[bytes]]
_PREAUTH: dict[str, _Handler] = {
    "CAPABILITY": ManageSieveSession.capability, "NOOP": ManageSieveSession.noop,
    "LOGOUT": ManageSieveSession.do_logout, "STARTTLS": ManageSieveSession.starttls,
    "AUTHENTICATE": ManageSieveSession.authenticate,
}
_AUTHED: dict[str, _Handler] = {
    "UNAUTHENTICATE": ManageSieveSession.unauthenticate, "HAVESPACE": ManageSieveSession.havespace,
    "PUTSCRIPT": ManageSieveSession.putscript, "CHECKSCRIPT": ManageSieveSession.checkscript,
    "LISTSCRIPTS": ManageSieveSession.listscripts, "SETACTIVE": ManageSieveSession.setactive,
    "GETSCRIPT": ManageSieveSession.getscript, "DELETESCRIPT": ManageSieveSession.deletescript,
    "RENAMESCRIPT": ManageSieveSession.renamescript,
}

"""Delivering one message to one user through their active Sieve script: the call the delivery paths make.

:func:`deliver` is synchronous and does disk and network I/O: ``imapd deliver`` calls it directly; a
server (LMTP) awaits :func:`deliver_on_lane`, which stores on the user's lane and sends from a thread.
It loads the active script, :func:`~imapd.sieve.interpreter.evaluate` decides, :func:`apply` stores,
then redirects and vacation replies go out through ``sieve.smtp_relay`` and the memos are recorded.
Mail is never lost to a script: a run-time error, a missing folder, a redirect that cannot be sent all
end in the INBOX (or the delivery's default mailbox), and the log says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import smtplib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from imapd.config import SieveSettings
from imapd.sieve.actions import (
    Action,
    Discard,
    FileInto,
    Keep,
    Memo,
    Redirect,
    Reject,
    SieveResult,
    VacationReply,
)
from imapd.sieve.grammar import SieveSyntaxError, parse_script
from imapd.sieve.interpreter import REDIRECT_HEADER, Envelope, SieveLimits, evaluate
from imapd.sieve.scripts import ScriptStore, SieveState
from imapd.store.errors import InvalidMailboxName, NoSuchMailbox
from imapd.store.store import Store
from imapd.store.userstore import UserStore

if TYPE_CHECKING:
    from imapd.session.context import ServerContext

__all__ = ["DeliveryReport", "Outgoing", "SmtpRelay", "apply", "deliver", "deliver_on_lane", "keep_unsent",
           "limits_from", "run_active_script", "send_outgoing"]

log = logging.getLogger("imapd.sieve")


@dataclass(frozen=True)
class Outgoing:
    """One message to hand to the relay: ``mail_from`` "" is the null return path."""

    mail_from: str
    rcpt_to: str
    data: bytes
    redirect: bool = False  # a redirect (the message itself), not a vacation reply


@dataclass
class DeliveryReport:
    """What happened: (mailbox, UID) stored, the reject reason if the script rejected, what was sent."""

    stored: list[tuple[str, int]] = field(default_factory=list)
    rejected: str | None = None
    discarded: bool = False
    outgoing: list[Outgoing] = field(default_factory=list)
    sent: int = 0
    error: str | None = None
    memos: list[Memo] = field(default_factory=list)  # recorded by send_outgoing
    user_root: str = ""


class SmtpRelay:
    """``sieve.smtp_relay`` over smtplib (blocking: called off the event loop)."""

    def __init__(self, hostport: str, timeout: float = 30.0) -> None:
        host, _, port = hostport.rpartition(":")
        self.host = host.strip("[]") or "127.0.0.1"
        self.port = int(port)
        self.timeout = timeout

    def send(self, items: list[Outgoing]) -> list[bool]:
        """Send each item; which ones the relay accepted (failures are logged, not raised)."""
        done = [False] * len(items)
        if not items:
            return done
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                for i, item in enumerate(items):
                    try:
                        smtp.sendmail(item.mail_from, [item.rcpt_to], item.data)
                        done[i] = True
                    except smtplib.SMTPException as exc:
                        log.error("relay %s:%d refused mail to %s: %s", self.host, self.port, item.rcpt_to, exc)
        except (OSError, smtplib.SMTPException) as exc:
            log.error("relay %s:%d unreachable: %s", self.host, self.port, exc)
        return done


def limits_from(settings: SieveSettings) -> SieveLimits:
    return SieveLimits(max_actions=settings.max_actions, max_redirects=settings.max_redirects,
                       max_vacation_days=settings.max_vacation_days,
                       max_duplicate_seconds=settings.max_vacation_days * 24 * 3600)


def deliver(store: Store, user: str, envelope: Envelope, message: bytes, settings: SieveSettings, *,
            mailbox: str = "INBOX", relay: SmtpRelay | None = None, send: bool = True) -> DeliveryReport:
    """Deliver ``message`` (CRLF line ends) to ``user``: their active script decides, else ``mailbox``.

    Raises the store's errors (``NoSuchUser``, ``StorageIOError`` ...) when nothing could be stored, so
    the caller can answer a temporary failure; a reject is ``report.rejected`` (answer 550 with it).
    With ``send=False`` the outgoing mail and the memos wait in the report for :func:`send_outgoing`
    (a server stores on the user's lane, then sends from a thread that holds up no lane).
    """
    us = store.user(user)
    result = run_active_script(us, envelope, message, settings)
    report = apply(result, us, message, envelope, mailbox=mailbox)
    report.user_root = us.root
    report.memos = list(result.memos)
    if send and not send_outgoing(report, settings, relay):
        keep_unsent(us, report, message, mailbox)
    return report


@functools.lru_cache(maxsize=256)
def _parsed(source: str) -> list[Any]:
    """Parsed trees by script text: a big script takes sievelib a good part of a second, and every
    delivery to the user runs it (evaluate() only reads the tree, so threads may share it)."""
    return parse_script(source)


def run_active_script(us: UserStore, envelope: Envelope, message: bytes, settings: SieveSettings) -> SieveResult:
    """The actions of the user's active script for this message, stored nowhere yet (the implicit keep
    when there is no active script, Sieve is off, or the script fails). Blocking (reads the script and the
    user's memory): call it where the user's store work runs. Its memos are for :func:`send_outgoing`."""
    active = ScriptStore(us.root).active() if settings.enabled else None
    if active is None:
        return SieveResult([Keep()])
    name, source = active
    if len(source.encode("utf-8")) > settings.max_script_size:
        log.error("sieve script %r of user %r is over sieve.max_script_size; keeping the message", name, us.user)
        return SieveResult([Keep()], error="script too large")
    script: str | list[Any] = source
    with contextlib.suppress(SieveSyntaxError):  # a bad script: evaluate() logs it and keeps the message
        script = _parsed(source)
    state = SieveState(us.root)
    try:
        return evaluate(script, envelope, message, memory=state, limits=limits_from(settings),
                        own_addresses=(envelope.rcpt_to,), mailbox_exists=us.exists, user=us.user,
                        script_name=name)
    finally:
        state.close()


def send_outgoing(report: DeliveryReport, settings: SieveSettings, relay: SmtpRelay | None = None) -> bool:
    """Send the report's redirects and vacation replies, then record its memos (blocking: off the loop).

    False when a redirect could not be sent and the message is stored nowhere: then call
    :func:`keep_unsent` (on the user's lane), so the message is kept rather than lost.
    """
    done = [False] * len(report.outgoing)
    if report.outgoing:
        if relay is None and settings.smtp_relay:
            relay = SmtpRelay(settings.smtp_relay, settings.smtp_timeout)
        if relay is None:
            log.error("%d redirect/vacation message(s) not sent: sieve.smtp_relay is not set", len(report.outgoing))
        else:
            done = relay.send(report.outgoing)
            report.sent = sum(done)
    if report.memos and report.user_root:
        state = SieveState(report.user_root)
        try:
            state.record(report.memos)
        finally:
            state.close()
        report.memos = []
    unsent_redirect = any(o.redirect and not ok for o, ok in zip(report.outgoing, done, strict=True))
    return not (unsent_redirect and not report.stored and report.rejected is None)


def keep_unsent(us: UserStore, report: DeliveryReport, message: bytes, mailbox: str = "INBOX") -> None:
    """A redirect that did not go out: keep the message instead (logged)."""
    log.error("user %r: a redirect could not be sent; keeping the message in %s", us.user, mailbox)
    report.stored.extend(_store(us, mailbox, message, ()))


def _store(us: UserStore, mailbox: str, message: bytes, flags: tuple[str, ...]) -> list[tuple[str, int]]:
    mb = us.open(mailbox)
    try:
        return [(mailbox, mb.append(message, flags))]
    finally:
        mb.release()


def apply(result: SieveResult, us: UserStore, message: bytes, envelope: Envelope, *,
          mailbox: str = "INBOX") -> DeliveryReport:
    """Carry out the storage actions (keep -> ``mailbox``, fileinto, with their flags) and collect the
    outgoing mail (redirects with the original return path, vacation replies with a null one).

    A fileinto a folder that does not exist (without ``:create``) or cannot be named stores in
    ``mailbox`` instead, as RFC 5228 4.1 allows. Nothing is sent here: see :class:`SmtpRelay`.
    """
    report = DeliveryReport(error=result.error)
    done: set[str] = set()
    for action in result.actions:
        _apply_one(action, us, message, envelope, mailbox, report, done)
    return report


def _apply_one(action: Action, us: UserStore, message: bytes, envelope: Envelope, mailbox: str,
               report: DeliveryReport, done: set[str]) -> None:
    if isinstance(action, Keep | FileInto):
        target = mailbox if isinstance(action, Keep) else action.mailbox
        if isinstance(action, FileInto):
            try:
                if not us.exists(target):
                    if not action.create:
                        raise NoSuchMailbox(f"no folder {target!r}")
                    us.create_mailbox(target)
            except (NoSuchMailbox, InvalidMailboxName) as exc:
                log.warning("user %r: fileinto %r: %s; delivering to %s", us.user, target, exc, mailbox)
                target = mailbox
        key = target.upper() if target.upper() == "INBOX" else target
        if key in done:
            return
        done.add(key)
        report.stored.extend(_store(us, target, message, action.flags))
    elif isinstance(action, Redirect):
        stamped = f"{REDIRECT_HEADER}: {action.address}\r\n".encode() + message
        report.outgoing.append(Outgoing(envelope.mail_from, action.address, stamped, redirect=True))
    elif isinstance(action, VacationReply):
        report.outgoing.append(Outgoing("", action.recipient, action.message))
    elif isinstance(action, Reject):
        report.rejected = action.reason
    elif isinstance(action, Discard):
        report.discarded = True


async def deliver_on_lane(ctx: ServerContext, user: str, envelope: Envelope, message: bytes, *,
                          mailbox: str = "INBOX") -> DeliveryReport:
    """:func:`deliver` inside a running server (LMTP): storing runs on the user's lane, where the user's
    mailboxes are shared with their IMAP sessions (who see the message at once); the relay and the memos
    run in a thread, so neither the network loop nor the user's lane waits for SMTP. Await it on the
    network loop.
    """
    settings = ctx.settings.sieve

    async def store_part() -> DeliveryReport:
        return deliver(ctx.store, user, envelope, message, settings, mailbox=mailbox, send=False)

    report = await ctx.lanes.run(user, "delivery", store_part())
    if (report.outgoing or report.memos) and not await asyncio.to_thread(send_outgoing, report, settings):

        async def keep_part() -> None:
            keep_unsent(ctx.store.user(user), report, message, mailbox)

        await ctx.lanes.run(user, "delivery: keep an unsent redirect", keep_part())
    return report

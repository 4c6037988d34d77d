"""One message to one recipient: trace headers, the user's filter, then one durable write per target.

:func:`deliver` is synchronous and does disk work: call it on the recipient's lane (``imapd/lanes.py``).
It never raises for a store failure; the failure is an :class:`Outcome` the caller turns into a reply
(``imapd/server/lmtp.py``) or an exit code.
"""

from __future__ import annotations

import email.utils
import logging
import os
from datetime import datetime
from typing import TYPE_CHECKING, Literal

import msgspec

from imapd.delivery.filters import FileInto, Reject, run_user_filter
from imapd.delivery.recipients import Recipient
from imapd.sieve.delivery import DeliveryReport
from imapd.store import maildir
from imapd.store.errors import InvalidMailboxName, NoSuchMailbox, NoSuchUser, StorageIOError, StoreError
from imapd.store.mailbox import AppendItem, Mailbox
from imapd.store.names import INBOX, normalize
from imapd.store.store import Store
from imapd.store.userstore import UserStore

if TYPE_CHECKING:
    from imapd.config import SieveSettings

log = logging.getLogger(__name__)

__all__ = ["Envelope", "Failure", "Outcome", "deliver", "deliver_file_only", "failure_outcome", "to_crlf", "trace_headers"]

Failure = Literal["quota", "disk_full", "tempfail", "nouser"]


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    """What the MTA told us about one recipient's copy (the Sieve executor reads it too)."""

    mail_from: str
    """The reverse path without angle brackets; ``""`` for the null sender (bounces)."""
    recipient: Recipient
    helo: str = ""
    peer_ip: str = ""
    """The client's address; ``""`` on a UNIX socket."""
    session_id: str = ""
    hostname: str = ""
    """Our name, for the Received: header."""
    detail_mailbox: str = ""
    """The folder the ``+detail`` names, when ``lmtp.save_to_detail_mailbox`` is on (else ``""``)."""


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    kind: Literal["stored", "discarded", "rejected", "failed"]
    stored: tuple[tuple[str, int], ...] = ()
    """(mailbox, UID) of each copy written."""
    failure: Failure | None = None
    reason: str = ""
    report: DeliveryReport | None = None
    """The Sieve script's redirects, vacation replies and memos, for ``send_outgoing`` (in a thread)."""


def to_crlf(data: bytes) -> bytes:
    """MTAs pipe messages with bare LF line ends; IMAP serves CRLF, and sizes must match what is served."""
    if b"\n" not in data.replace(b"\r\n", b""):
        return data
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def trace_headers(envelope: Envelope, now: datetime | None = None) -> bytes:
    """``Return-Path``, ``Delivered-To`` and ``Received``, laid out as Dovecot's LMTP adds them."""
    when = email.utils.format_datetime((now or datetime.now()).astimezone())
    source = envelope.helo or "localhost"
    if envelope.peer_ip:
        source += f" ([{envelope.peer_ip}])"
    rcpt = envelope.recipient.address
    lines = [
        f"Return-Path: <{envelope.mail_from}>",
        f"Delivered-To: {rcpt}",
        f"Received: from {source}",
        f"\tby {envelope.hostname or 'localhost'} with LMTP",
        *([f"\tid {envelope.session_id}"] if envelope.session_id else []),
        f"\t(envelope-from <{envelope.mail_from}>)",
        f"\tfor <{rcpt}>; {when}",
    ]
    return ("\r\n".join(lines) + "\r\n").encode("utf-8", "surrogateescape")


def failure_outcome(exc: StoreError) -> Outcome:
    """A store error as an outcome; a quota error is known by its code, whatever the store names it."""
    """A store error as an outcome; a quota error is known by its code, whatever the store names it."""
    if isinstance(exc, NoSuchUser):
        return Outcome(kind="failed", failure="nouser", reason=str(exc))
    if isinstance(exc, StorageIOError):
        return Outcome(kind="failed", failure="disk_full" if exc.disk_full else "tempfail", reason=str(exc))
    if exc.code == "OVERQUOTA":  # the store's quota error (QUOTA), whatever its class is called
        return Outcome(kind="failed", failure="quota", reason=str(exc))
    return Outcome(kind="failed", failure="tempfail", reason=str(exc))


def _open(store: Store, us: UserStore, name: str) -> Mailbox:
    """The target mailbox, or INBOX when it does not exist or cannot be a name: never a bounce."""
    try:
        mailbox, expected = us.open(name), normalize(name)
    except (NoSuchMailbox, InvalidMailboxName):
        if name == INBOX:
            raise
        log.info("delivery for %s: no mailbox %r, filing into INBOX", us.user, name)
        mailbox, expected = us.open(INBOX), INBOX
    if mailbox.name == expected and not mailbox.deleted:
        return mailbox
    # A warm object of a delivery-only store whose folder another process renamed: start over.
    us.release(mailbox)
    store.remove_user(us.user)
    return store.user(us.user).open(expected)


def deliver(store: Store, envelope: Envelope, body: bytes, *, fsync: bool = True,
            sieve: SieveSettings | None = None, text_later: bool = False) -> Outcome:
    """Deliver ``body`` (CRLF) to ``envelope.recipient``: durable (fsync) before it returns ``stored``.
    With ``sieve`` settings, the user's active script decides (``imapd/delivery/filters.py``);
    ``text_later`` queues the copies for the full-text index (the LMTP server's lanes flush it)."""
    user = envelope.recipient.user
    message = trace_headers(envelope) + body
    stored: list[tuple[str, int]] = []
    try:
        try:
            us = store.user(user)
        except NoSuchUser:
            us = store.create_user(user)  # in the users file but never delivered to: as `imapd deliver`
        actions, report = run_user_filter(us, envelope, message, sieve)
        pending = report if report.outgoing or report.memos else None
        for action in actions:
            if isinstance(action, Reject):
                return Outcome(kind="rejected", reason=action.reason, report=pending)
        targets: dict[str, FileInto] = {}
        for action in actions:
            if isinstance(action, FileInto):
                targets.setdefault(action.mailbox, action)
        if not targets:
            return Outcome(kind="discarded", report=pending)
        for target in targets.values():
            mailbox = _open(store, us, target.mailbox)
            try:
                uid = mailbox.append_many([AppendItem(message, target.flags, None)], fsync=fsync,
                                          text_later=text_later)[0]
                stored.append((mailbox.name, uid))
            finally:
                mailbox.release()
    except StoreError as exc:
        if stored:
            log.error("delivery for %s failed after %d copies were stored (the retry repeats them): %s",
                      user, len(stored), exc)
        return failure_outcome(exc)
    except OSError as exc:
        return failure_outcome(StorageIOError(user, None, "deliver", exc))
    if pending is not None:
        pending.stored = list(stored)
    return Outcome(kind="stored", stored=tuple(stored), report=pending)


def deliver_file_only(store: Store, envelope: Envelope, body: bytes, *, fsync: bool = True) -> Outcome:
    """A delivery for a user whose index another cluster node writes: the message file alone, made
    durable in ``tmp/`` and renamed into INBOX's ``new/`` (atomic), without the index and without Sieve
    (both belong to the owner, whose next look at ``new/`` indexes the file; the caller tells it).
    ``stored`` names INBOX with UID 0: the UID is the owner's to give."""
    user = envelope.recipient.user
    try:
        root = store.user_root(user)
        maildir.ensure_maildir(root)
        tmp, base = maildir.write_tmp(root, trace_headers(envelope) + body, fsync=fsync)
        os.rename(tmp, os.path.join(root, "new", base))
        if fsync:
            maildir.fsync_dir(os.path.join(root, "new"))
    except OSError as exc:
        return failure_outcome(StorageIOError(user, INBOX, "deliver", exc))
    except StoreError as exc:
        return failure_outcome(exc)
    return Outcome(kind="stored", stored=((INBOX, 0),))

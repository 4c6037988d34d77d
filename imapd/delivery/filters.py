"""The user's filter: the one place where a delivery asks what to do with a message.

:func:`run_user_filter` runs the user's active Sieve script (``imapd/sieve/``) on the user's lane (it reads
the script and the script's memory from disk) once per recipient, before anything is written, and turns
its decision into what the delivery carries out:

- :class:`FileInto` - store into that mailbox with those flags (an unknown or invalid mailbox falls back
  to INBOX: a filter mistake never loses or bounces mail; ``fileinto :create`` made it first); several
  FileInto = several copies; Sieve's keep is a FileInto of the default mailbox (INBOX, or the ``+detail``
  folder);
- :class:`Discard` - store nothing and answer 250 (Sieve ``discard``);
- :class:`Reject` - answer that recipient 550 5.7.1 with the reason (Sieve ``reject`` at LMTP time, so the
  MTA bounces; nothing is stored).

Redirects and vacation replies are not storage: they wait in the returned
:class:`~imapd.sieve.delivery.DeliveryReport` (with the script's memos) for
:func:`~imapd.sieve.delivery.send_outgoing`, which the caller runs in a thread once the copies are stored.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import msgspec

from imapd.sieve import actions as sieve
from imapd.sieve.delivery import DeliveryReport, Outgoing, run_active_script
from imapd.sieve.interpreter import REDIRECT_HEADER
from imapd.sieve.interpreter import Envelope as SieveEnvelope
from imapd.store.errors import InvalidMailboxName, NoSuchMailbox
from imapd.store.names import INBOX

if TYPE_CHECKING:
    from imapd.config import SieveSettings
    from imapd.delivery.agent import Envelope
    from imapd.store.userstore import UserStore

log = logging.getLogger(__name__)

__all__ = ["Discard", "FileInto", "FilterAction", "Reject", "default_actions", "run_user_filter"]


class FileInto(msgspec.Struct, frozen=True, tag="fileinto"):
    mailbox: str
    flags: tuple[str, ...] = ()


class Discard(msgspec.Struct, frozen=True, tag="discard"):
    pass


class Reject(msgspec.Struct, frozen=True, tag="reject"):
    reason: str


FilterAction = FileInto | Discard | Reject


def default_actions(envelope: Envelope) -> list[FilterAction]:
    """Implicit keep: INBOX, or the ``+detail`` folder when ``lmtp.save_to_detail_mailbox`` is on."""
    return [FileInto(envelope.detail_mailbox or INBOX)]


def run_user_filter(us: UserStore, envelope: Envelope, message: bytes,
                    settings: SieveSettings | None) -> tuple[list[FilterAction], DeliveryReport]:
    """What to do with ``message`` for ``us.user``: the storage actions, and a report holding what is to be
    sent (redirects, vacation replies) and remembered. ``settings`` None: no Sieve (the implicit keep)."""
    report = DeliveryReport()
    if settings is None or not settings.enabled:
        return default_actions(envelope), report
    keep_into = envelope.detail_mailbox or INBOX
    senv = SieveEnvelope(mail_from=envelope.mail_from, rcpt_to=envelope.recipient.address)
    result = run_active_script(us, senv, message, settings)
    report.error, report.memos, report.user_root = result.error, list(result.memos), us.root
    out: list[FilterAction] = []
    for action in result.actions:
        if isinstance(action, sieve.Keep):
            out.append(FileInto(keep_into, action.flags))
        elif isinstance(action, sieve.FileInto):
            if action.create:
                try:
                    if not us.exists(action.mailbox):
                        us.create_mailbox(action.mailbox)
                except (NoSuchMailbox, InvalidMailboxName) as exc:
                    log.warning("user %r: fileinto :create %r: %s", us.user, action.mailbox, exc)
            out.append(FileInto(action.mailbox, action.flags))
        elif isinstance(action, sieve.Discard):
            out.append(Discard())
        elif isinstance(action, sieve.Reject):
            out.append(Reject(action.reason))
        elif isinstance(action, sieve.Redirect):
            stamped = f"{REDIRECT_HEADER}: {action.address}\r\n".encode() + message
            report.outgoing.append(Outgoing(envelope.mail_from, action.address, stamped, redirect=True))
        elif isinstance(action, sieve.VacationReply):
            report.outgoing.append(Outgoing("", action.recipient, action.message))
    return out, report

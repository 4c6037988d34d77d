"""The user's filter: the one place where a delivery asks what to do with a message.

:func:`run_user_filter` is THE hook for Sieve: the Sieve executor (a package of its own) replaces its
body with one call, returning the actions the user's active script takes. It runs on the user's lane (it
may read the script from disk) once per recipient, before anything is written. The delivery carries out:

- :class:`FileInto` - store into that mailbox with those flags (an unknown or invalid mailbox falls back
  to INBOX: a filter mistake never loses or bounces mail); several FileInto = several copies;
- :class:`Discard` - store nothing and answer 250 (Sieve ``discard``);
- :class:`Reject` - answer that recipient 550 5.7.1 with the reason (Sieve ``reject``/``ereject`` at
  LMTP time, so the MTA bounces; nothing is stored).

An empty list means "discard" too. Redirect and vacation need an outgoing MTA and are left to the Sieve
package to add as further action types here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from imapd.store.names import INBOX

if TYPE_CHECKING:
    from imapd.delivery.agent import Envelope

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


def run_user_filter(user: str, envelope: Envelope, message: bytes) -> list[FilterAction]:
    """What to do with ``message`` for ``user``. The Sieve branch replaces this body with its executor
    (falling back to :func:`default_actions` when the user has no active script)."""
    del user, message  # used by the Sieve executor
    return default_actions(envelope)

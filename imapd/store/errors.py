"""Typed store errors. Each carries the IMAP response code the session layer should put in its NO reply.

The store knows nothing of IMAP syntax; ``code`` is only the bare response-code atom (``"NONEXISTENT"``),
or ``None`` when there is none. The session layer turns these into ``NO [CODE] text`` in one place.
"""

from __future__ import annotations

import errno

__all__ = [
    "CannotDeleteInbox",
    "InvalidFlag",
    "InvalidMailboxName",
    "LimitExceeded",
    "MailboxExists",
    "MailboxHasChildren",
    "NotOwner",
    "NoSuchMailbox",
    "NoSuchUser",
    "OverQuota",
    "StorageIOError",
    "StoreError",
    "UserExists",
]


class StoreError(Exception):
    """Base of every error the store raises on purpose."""

    code: str | None = None


class NotOwner(StoreError):
    """This node may not write the user's index now: another node holds the user's lease (a cluster, see
    ``imapd/cluster/``), or this node could not confirm its own. Nothing was written."""

    code = "UNAVAILABLE"


class NoSuchUser(StoreError):
    code = "AUTHENTICATIONFAILED"


class UserExists(StoreError):
    code = "ALREADYEXISTS"


class NoSuchMailbox(StoreError):
    """The mailbox does not exist (session: ``[NONEXISTENT]``, or ``[TRYCREATE]`` for APPEND/COPY)."""

    code = "NONEXISTENT"


class MailboxExists(StoreError):
    code = "ALREADYEXISTS"


class InvalidMailboxName(StoreError):
    """A name that cannot be stored safely (``..``, empty component, control characters, ...)."""

    code = "CANNOT"


class MailboxHasChildren(StoreError):
    """DELETE of a mailbox that has inferiors (Maildir++ cannot keep a \\Noselect parent; RFC 9051)."""

    code = "HASCHILDREN"


class CannotDeleteInbox(StoreError):
    code = "CANNOT"


class InvalidFlag(StoreError):
    """A flag or keyword that cannot be stored (not an atom, unknown system flag, \\Recent)."""

    code = "CANNOT"


class LimitExceeded(StoreError):
    """A store limit (e.g. 63 distinct keywords per mailbox)."""

    code = "LIMIT"


class OverQuota(StoreError):
    """A write would pass the user's quota (RFC 9208): ``resource`` is ``STORAGE`` or ``MESSAGE``.

    ``imapd deliver`` maps it to EX_TEMPFAIL (75) so the MTA keeps the message and retries; an LMTP
    server answers 452 4.2.2 (or 552 5.2.2 for a permanent refusal)."""

    code = "OVERQUOTA"

    def __init__(self, resource: str, usage: int, limit: int, text: str) -> None:
        super().__init__(text)
        self.resource = resource
        self.usage = usage
        self.limit = limit


class StorageIOError(StoreError):
    """A filesystem or index write failed; nothing partial was left behind.

    ``code`` is ``OVERQUOTA`` for ENOSPC/EDQUOT (as Dovecot answers), ``UNAVAILABLE`` otherwise.
    """

    def __init__(self, user: str, mailbox: str | None, action: str, exc: BaseException) -> None:
        self.user = user
        self.mailbox = mailbox
        self.action = action
        self.errno: int | None = getattr(exc, "errno", None)
        text = str(exc)
        if isinstance(exc, OSError) and exc.strerror:
            text = exc.strerror
        full = "database or disk is full" in str(exc)
        if self.errno in (errno.ENOSPC, errno.EDQUOT) or full:
            self.code = "OVERQUOTA"
            self.errno = self.errno or errno.ENOSPC
        else:
            self.code = "UNAVAILABLE"
        where = f"user {user!r}" + (f", mailbox {mailbox!r}" if mailbox is not None else "")
        super().__init__(f"{action} failed for {where}: {text}")

    @property
    def disk_full(self) -> bool:
        return self.code == "OVERQUOTA"

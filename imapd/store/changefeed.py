"""In-process change feed: plain callbacks, called synchronously after the index commit.

Subscribe per open mailbox ``(user, mailbox_id)`` for message events and per user for mailbox-list
events. Callbacks run on the thread that made the change and must be cheap (queue the event and return);
an exception in one callback is logged and does not stop delivery to the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import msgspec

__all__ = [
    "ChangeFeed",
    "FlagsChanged",
    "MailboxEvent",
    "MailboxListChanged",
    "MessageEvent",
    "MessagesAdded",
    "MessagesExpunged",
    "Subscription",
]

log = logging.getLogger(__name__)


class MessagesAdded(msgspec.Struct, frozen=True, tag=True):
    user: str
    mailbox_id: int
    uids: list[int]
    modseq: int
    """The mailbox's HIGHESTMODSEQ after the change."""


class FlagsChanged(msgspec.Struct, frozen=True, tag=True):
    user: str
    mailbox_id: int
    changes: list[tuple[int, tuple[str, ...], int]]
    """``(uid, flags, modseq)`` per changed message."""
    modseq: int


class MessagesExpunged(msgspec.Struct, frozen=True, tag=True):
    user: str
    mailbox_id: int
    uids: list[int]
    modseq: int


class MailboxListChanged(msgspec.Struct, frozen=True, tag=True):
    user: str
    kind: str
    """``created``, ``deleted``, ``renamed``, ``subscribed``, ``unsubscribed``, ``metadata``."""
    name: str
    old_name: str | None = None
    mailbox_id: int | None = None
    entries: tuple[str, ...] = ()
    """``metadata``: the RFC 5464 entry names set or removed (``name`` "" for the server's)."""


MessageEvent = MessagesAdded | FlagsChanged | MessagesExpunged
MailboxEvent = MailboxListChanged
MessageCallback = Callable[[MessageEvent], None]
ListCallback = Callable[[MailboxListChanged], None]
CommitCallback = Callable[[str, str, int, int, str], None]
"""``(user, mailbox name, UIDVALIDITY, HIGHESTMODSEQ, kind)`` of one committed change (a cluster's tap)."""
UserMessageCallback = Callable[[MessageEvent | None], None]
"""Message events of any of the user's mailboxes; None: something of the user's may have changed that
nobody had open (another process wrote it), so a subscriber re-reads what it watches."""


class Subscription:
    """Returned by the subscribe methods; ``cancel()`` is idempotent. One small object per subscriber
    (thousands of IDLE sessions each hold one), so no closure."""

    __slots__ = ("_callback", "_key", "_table")

    def __init__(self, table: dict[Any, list[Any]], key: Any, callback: Callable[[Any], None]) -> None:
        self._table: dict[Any, list[Any]] | None = table
        self._key = key
        self._callback = callback

    def cancel(self) -> None:
        table = self._table
        if table is None:
            return
        self._table = None
        lst = table.get(self._key)
        if lst is not None:
            for i, cb in enumerate(lst):
                if cb is self._callback or cb == self._callback:
                    del lst[i]
                    break
            if not lst:
                del table[self._key]


class ChangeFeed:
    def __init__(self) -> None:
        self._mailbox: dict[tuple[str, int], list[MessageCallback]] = {}
        self._user: dict[str, list[ListCallback]] = {}
        self._user_messages: dict[str, list[UserMessageCallback]] = {}
        self.on_commit: CommitCallback | None = None
        """Told of every committed change once (set by a cluster node, which publishes it to Redis);
        called on the writing thread, so it must only queue."""

    def subscribe_mailbox(self, user: str, mailbox_id: int, callback: MessageCallback) -> Subscription:
        key = (user, mailbox_id)
        self._mailbox.setdefault(key, []).append(callback)
        return Subscription(self._mailbox, key, callback)

    def subscribe_user(self, user: str, callback: ListCallback) -> Subscription:
        self._user.setdefault(user, []).append(callback)
        return Subscription(self._user, user, callback)

    def subscribe_user_messages(self, user: str, callback: UserMessageCallback) -> Subscription:
        """Every message event of ``user``'s mailboxes, and :meth:`publish_user_touched` (NOTIFY's STATUS
        of mailboxes the session has not selected)."""
        self._user_messages.setdefault(user, []).append(callback)
        return Subscription(self._user_messages, user, callback)

    def publish_user_touched(self, user: str) -> None:
        for cb in list(self._user_messages.get(user, ())):
            try:
                cb(None)
            except Exception:
                log.exception("change-feed subscriber failed")

    def has_user_message_subscribers(self, user: str) -> bool:
        return user in self._user_messages

    def has_mailbox_subscribers(self, user: str, mailbox_id: int) -> bool:
        return (user, mailbox_id) in self._mailbox

    def publish(self, event: MessageEvent) -> None:
        for cb in list(self._mailbox.get((event.user, event.mailbox_id), ())):
            try:
                cb(event)
            except Exception:
                log.exception("change-feed subscriber failed")
        for ucb in list(self._user_messages.get(event.user, ())):
            try:
                ucb(event)
            except Exception:
                log.exception("change-feed subscriber failed")

    def committed(self, user: str, mailbox: str, uidvalidity: int, modseq: int, kind: str) -> None:
        tap = self.on_commit
        if tap is not None:
            try:
                tap(user, mailbox, uidvalidity, modseq, kind)
            except Exception:
                log.exception("change-feed commit tap failed")

    def publish_list(self, event: MailboxListChanged) -> None:
        self.committed(event.user, event.name, 0, 0, "mailbox")
        for cb in list(self._user.get(event.user, ())):
            try:
                cb(event)
            except Exception:
                log.exception("change-feed subscriber failed")

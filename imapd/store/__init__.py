"""imapd.store: Maildir++ storage with a per-user SQLite index, shared mailbox objects and a change feed.

Knows nothing of IMAP syntax. Entry point: :class:`Store` (one per process).
"""

from imapd.store.changefeed import (
    ChangeFeed,
    FlagsChanged,
    MailboxListChanged,
    MessageEvent,
    MessagesAdded,
    MessagesExpunged,
    Subscription,
)
from imapd.store.errors import (
    CannotDeleteInbox,
    InvalidFlag,
    InvalidMailboxName,
    LimitExceeded,
    MailboxExists,
    MailboxHasChildren,
    NoSuchMailbox,
    NoSuchUser,
    StorageIOError,
    StoreError,
    UserExists,
)
from imapd.store.mailbox import AppendItem, FlagMode, Mailbox, MailboxStatus, MessageInfo, StoreResult
from imapd.store.store import Store
from imapd.store.userstore import MailboxInfo, UserStore

__all__ = [
    "AppendItem",
    "CannotDeleteInbox",
    "ChangeFeed",
    "FlagMode",
    "FlagsChanged",
    "InvalidFlag",
    "InvalidMailboxName",
    "LimitExceeded",
    "Mailbox",
    "MailboxExists",
    "MailboxHasChildren",
    "MailboxInfo",
    "MailboxListChanged",
    "MailboxStatus",
    "MessageEvent",
    "MessageInfo",
    "MessagesAdded",
    "MessagesExpunged",
    "NoSuchMailbox",
    "NoSuchUser",
    "StorageIOError",
    "Store",
    "StoreError",
    "StoreResult",
    "Subscription",
    "UserExists",
    "UserStore",
]

"""What a Sieve run decides, as plain values: the delivery path applies them (``delivery.apply``)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Action", "Discard", "FileInto", "Keep", "Memo", "Redirect", "Reject", "SieveResult", "VacationReply"]


@dataclass(frozen=True)
class Keep:
    """Store in the user's INBOX (the explicit or the implicit keep), with these IMAP flags."""

    flags: tuple[str, ...] = ()
    mailbox: str = "INBOX"


@dataclass(frozen=True)
class FileInto:
    """Store in ``mailbox`` (a name as IMAP shows it, ``/`` separated); ``create``: make it if missing."""

    mailbox: str
    flags: tuple[str, ...] = ()
    create: bool = False


@dataclass(frozen=True)
class Redirect:
    """Send the message, unchanged, to ``address`` (through ``sieve.smtp_relay``)."""

    address: str


@dataclass(frozen=True)
class Reject:
    """Refuse the message with ``reason`` (an LMTP/SMTP 550 with this text, or a bounce)."""

    reason: str


@dataclass(frozen=True)
class Discard:
    """The script threw the message away on purpose: nothing is stored and nothing is sent."""


@dataclass(frozen=True)
class VacationReply:
    """An auto-reply to send: ``message`` is the whole RFC 5322 message, sent with a null return path."""

    recipient: str
    message: bytes


Action = Keep | FileInto | Redirect | Reject | Discard | VacationReply


@dataclass(frozen=True)
class Memo:
    """Something to remember once the actions are carried out (a vacation reply sent, a message id seen)."""

    kind: str  # "vacation" or "duplicate"
    key: str
    expires: float


@dataclass
class SieveResult:
    """The actions in the order the script took them (implicit keep last), and what to remember.

    ``error`` is set when the script failed at run time: the actions are then only the implicit keep.
    """

    actions: list[Action] = field(default_factory=list)
    memos: list[Memo] = field(default_factory=list)
    error: str | None = None

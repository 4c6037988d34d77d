"""What :meth:`ServerConnection.next_event` returns: small immutable values, no behaviour."""

from __future__ import annotations

from dataclasses import dataclass

from .commands import Command

__all__ = [
    "NEED_DATA",
    "CommandReceived",
    "ConnectionClosed",
    "ContinuationRequest",
    "Event",
    "IdleDone",
    "ProtocolError",
    "SaslResponse",
]


class NEED_DATA:  # a sentinel class, compared with ``is`` (as in h11)
    """Returned (the class itself) by ``next_event()`` when more bytes must be received first."""


@dataclass(frozen=True, slots=True)
class CommandReceived:
    command: Command


@dataclass(frozen=True, slots=True)
class ContinuationRequest:
    """A synchronizing literal is awaited: the caller must write ``+ text\\r\\n`` now."""

    text: str = "Ready for literal data"


@dataclass(frozen=True, slots=True)
class IdleDone:
    """The ``DONE`` line ending IDLE (after :meth:`ServerConnection.expect_idle_done`)."""


@dataclass(frozen=True, slots=True)
class SaslResponse:
    """One client line of a SASL exchange, base64-decoded; ``*`` gives ``cancelled=True``."""

    data: bytes
    cancelled: bool = False


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """Input we could not turn into a command: answer ``tag BAD [code] text`` (``* BAD`` if no tag).

    ``fatal`` means the stream cannot be resynchronised: send ``* BYE`` and close.
    """

    tag: str | None
    code: str | None
    text: str
    fatal: bool = False


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The client closed its side (``receive_data(b"")``) or a fatal error ended the stream."""


Event = CommandReceived | ContinuationRequest | IdleDone | SaslResponse | ProtocolError | ConnectionClosed

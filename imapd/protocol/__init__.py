"""Sans-IO IMAP protocol: bytes -> typed commands, typed responses -> bytes (no asyncio, no storage).

Start with :class:`ServerConnection`; commands are in ``commands``, responses in ``responses`` with
codes in ``response_codes`` and the FETCH value wrappers in ``values``.
"""

from .connection import NEED_DATA, ServerConnection
from .events import (
    CommandReceived,
    ConnectionClosed,
    ContinuationRequest,
    Event,
    IdleDone,
    ProtocolError,
    SaslResponse,
)
from .sequence import SequenceSet
from .values import Atom, Literal8, Raw, Value

__all__ = [
    "NEED_DATA",
    "Atom",
    "CommandReceived",
    "ConnectionClosed",
    "ContinuationRequest",
    "Event",
    "IdleDone",
    "Literal8",
    "ProtocolError",
    "Raw",
    "SaslResponse",
    "SequenceSet",
    "ServerConnection",
    "Value",
]

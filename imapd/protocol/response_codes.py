"""Response codes (the ``[...]`` after OK/NO/BAD/BYE/PREAUTH), typed where they carry arguments.

:class:`Code` covers every code without structured arguments, including our own atoms such as
``X-STATE-STALE``; its ``text`` is written verbatim after the name (no ``]``, CR or LF allowed there).
"""

from __future__ import annotations

import msgspec

from .sequence import SequenceSet

__all__ = [
    "AppendUidCode",
    "BadCharsetCode",
    "CapabilityCode",
    "Code",
    "CopyUidCode",
    "InProgressCode",
    "ModifiedCode",
    "NUMBER_CODES",
    "NumberCode",
    "PermanentFlagsCode",
    "ResponseCode",
]

NUMBER_CODES = frozenset({"UIDNEXT", "UIDVALIDITY", "UNSEEN", "HIGHESTMODSEQ", "APPENDLIMIT"})


class Code(msgspec.Struct, frozen=True):
    """``[NAME]`` or ``[NAME text]``: ALERT, PARSE, READ-ONLY, READ-WRITE, TRYCREATE, UIDNOTSTICKY,
    NOMODSEQ, CLOSED, NONEXISTENT, ALREADYEXISTS, TOOBIG, LIMIT, OVERQUOTA, INUSE, CANNOT, NOPERM,
    SERVERBUG, UNAVAILABLE, AUTHENTICATIONFAILED, AUTHORIZATIONFAILED, EXPIRED, X-STATE-STALE, ..."""

    name: str
    text: str | None = None


class BadCharsetCode(msgspec.Struct, frozen=True):
    charsets: tuple[str, ...] = ()


class CapabilityCode(msgspec.Struct, frozen=True):
    capabilities: tuple[str, ...]


class PermanentFlagsCode(msgspec.Struct, frozen=True):
    """Flags may include ``\\*``."""

    flags: tuple[str, ...]


class NumberCode(msgspec.Struct, frozen=True):
    """UIDNEXT, UIDVALIDITY, UNSEEN, HIGHESTMODSEQ (and APPENDLIMIT) with their number."""

    name: str
    value: int


class AppendUidCode(msgspec.Struct, frozen=True):
    uidvalidity: int
    uids: SequenceSet


class CopyUidCode(msgspec.Struct, frozen=True):
    uidvalidity: int
    source: SequenceSet
    destination: SequenceSet


class ModifiedCode(msgspec.Struct, frozen=True):
    """RFC 7162 ``[MODIFIED set]``: messages a conditional STORE did not change."""

    sequence: SequenceSet


class InProgressCode(msgspec.Struct, frozen=True):
    """RFC 9585 ``[INPROGRESS ("tag" current total)]``: progress of a long command; either number may be
    unknown (``NIL``)."""

    tag: str
    current: int | None = None
    total: int | None = None


ResponseCode = (
    Code
    | InProgressCode
    | BadCharsetCode
    | CapabilityCode
    | PermanentFlagsCode
    | NumberCode
    | AppendUidCode
    | CopyUidCode
    | ModifiedCode
)

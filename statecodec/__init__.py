"""statecodec: the versioned, signed session-state codec behind the X-STATE IMAP extension.

A library of its own: no sockets, no storage, no ``imapd`` import. See README.md.
"""

from .errors import TokenError, TokenExpired, TokenInvalid, UnsupportedVersion
from .keyring import KeyFileError, KeyRing
from .signing import decode, encode
from .state import (
    CURRENT_VERSION,
    EXTENSION_REGISTRY,
    LINEAGE_BYTES,
    MAX_LIVE_SEARCH_BYTES,
    MAX_SEARCH_RESULT_BYTES,
    LiveSearch,
    MailboxView,
    SessionState,
    bounded_search_result,
    decode_extensions,
    encode_extensions,
    new_lineage,
    pack,
    unpack,
)
from .uidset import (
    KnownUids,
    UidFingerprint,
    UidRanges,
    UidSet,
    UidSetFormatError,
    compact_uids,
    fingerprint,
    known_uids_match,
)

__all__ = [
    "CURRENT_VERSION",
    "EXTENSION_REGISTRY",
    "KeyFileError",
    "LINEAGE_BYTES",
    "MAX_LIVE_SEARCH_BYTES",
    "MAX_SEARCH_RESULT_BYTES",
    "KeyRing",
    "LiveSearch",
    "KnownUids",
    "MailboxView",
    "SessionState",
    "TokenError",
    "TokenExpired",
    "TokenInvalid",
    "UidFingerprint",
    "UidRanges",
    "UidSet",
    "UidSetFormatError",
    "UnsupportedVersion",
    "bounded_search_result",
    "compact_uids",
    "decode",
    "decode_extensions",
    "encode",
    "encode_extensions",
    "fingerprint",
    "known_uids_match",
    "new_lineage",
    "pack",
    "unpack",
]

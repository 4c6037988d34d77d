"""statecodec: the versioned, signed session-state codec behind the X-STATE IMAP extension.

A library of its own: no sockets, no storage, no ``imapd`` import. See README.md.
"""

from .errors import TokenError, TokenExpired, TokenInvalid, UnsupportedVersion
from .keyring import KeyFileError, KeyRing
from .signing import decode, encode
from .state import (
    CURRENT_VERSION,
    EXTENSION_REGISTRY,
    MailboxView,
    SessionState,
    decode_extensions,
    encode_extensions,
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
    "KeyRing",
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
    "compact_uids",
    "decode",
    "decode_extensions",
    "encode",
    "encode_extensions",
    "fingerprint",
    "known_uids_match",
    "pack",
    "unpack",
]

"""The session state: versioned msgspec structs, and their unsigned msgpack form.

The same :class:`SessionState` serves the signed X-STATE token (:mod:`statecodec.signing`) and
unsigned internal hand-off (hibernating an idle session, passing a connection to another process)
through :func:`pack` / :func:`unpack`.

Versioning
----------
Structs are ``array_like`` (positional, no field names on the wire) and :class:`SessionState` is
tagged with its schema version: the first array element is the version, starting at 1. The rules:

* Fields are only ever appended, always with a default. Nothing is removed or reordered.
* Every change bumps the tag. An older decoder then answers :class:`UnsupportedVersion` for a newer
  state rather than silently dropping fields it does not know (``forbid_unknown_fields`` also
  rejects a same-version array with extra elements).
* A newer decoder reads every older version: to go from version N to N+1, set ``tag=N+1`` on
  :class:`SessionState`, append the new fields with defaults, and register
  ``class _SessionStateVN(SessionState, tag=N): pass`` in ``_OLDER_VERSIONS``. An old array decodes
  into the subclass (missing trailing fields take their defaults) and :func:`unpack` upgrades it.
  The same rule holds for :class:`MailboxView` (its fields belong to the session's version).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Annotated, Final

import msgspec

from .errors import TokenInvalid, UnsupportedVersion
from .uidset import MAX_UID, KnownUids, UidRanges, UidSet

__all__ = [
    "CURRENT_VERSION",
    "EXTENSION_REGISTRY",
    "decode_extensions",
    "encode_extensions",
    "LINEAGE_BYTES",
    "MAX_SEARCH_RESULT_BYTES",
    "SUPPORTED_VERSIONS",
    "LiveSearch",
    "MAX_LIVE_SEARCH_BYTES",
    "MailboxView",
    "bounded_search_result",
    "new_lineage",
    "SessionState",
    "pack",
    "unpack",
]

CURRENT_VERSION: Final = 4

EXTENSION_REGISTRY: Final[tuple[str, ...]] = (
    "CONDSTORE",
    "QRESYNC",
    "UTF8=ACCEPT",
    "IMAP4REV2",
    "UIDONLY",
    "METADATA",
    "METADATA-SERVER",
)
"""Extensions a client can ENABLE, each owning one bit of :attr:`SessionState.extensions` by its
position. Append-only: a name's position never changes. Other names travel as strings."""

_EXTENSION_BIT: Final = {name: 1 << i for i, name in enumerate(EXTENSION_REGISTRY)}

LINEAGE_BYTES: Final = 16
"""Size of a new lineage id (:func:`new_lineage`): 128 random bits."""

MAX_SEARCH_RESULT_BYTES: Final = 512
"""Cap on the range encoding of a saved SEARCHRES ``$`` (:func:`bounded_search_result`). It keeps every
token well inside :data:`~statecodec.signing.MAX_TOKEN_LENGTH` and a server's pre-login line limit:
512 bytes hold a few hundred scattered UIDs, or any number of long runs."""

MAX_LIVE_SEARCH_BYTES: Final = 1024
"""Cap on the live searches of one state (their command texts and result ranges together), for the same
reason as :data:`MAX_SEARCH_RESULT_BYTES`; a server leaves out the ones beyond it."""

_U32 = Annotated[int, msgspec.Meta(ge=0, le=MAX_UID)]
_UidNext = Annotated[int, msgspec.Meta(ge=0, le=MAX_UID + 1)]
_U63 = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


class LiveSearch(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    """A searching command with ``RETURN (UPDATE)`` (RFC 5267 CONTEXT=SEARCH/SORT) whose updates continue
    after a restore."""

    command: str
    """The command as the server re-serializes it: tag (the ESEARCH correlator), ``UID SEARCH`` or
    ``UID SORT (keys) charset``, and the criteria with every message set resolved to UIDs."""
    result: UidRanges
    """The UIDs the client holds as the result (a SORT result is in the sort order of these UIDs)."""


class MailboxView(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    """The selected mailbox exactly as the client last saw it."""

    name: str
    """Mailbox name as the client selected it (decoded, i.e. not modified UTF-7)."""
    mailbox_id: bytes
    """Stable, opaque id of the mailbox (survives renames; encode a ``str`` id as UTF-8)."""
    uidvalidity: _U32
    read_only: bool
    """True when selected with EXAMINE (or forced read-only)."""
    uidnext: _UidNext
    """UIDNEXT the client saw."""
    message_count: _U32
    """EXISTS the client saw; with ``known_uids`` it fixes the sequence numbers."""
    highest_modseq: _U63
    """HIGHESTMODSEQ the client has seen (0 when the mailbox has no mod-sequences)."""
    known_uids: KnownUids
    """UIDs the client knows: exact ranges, or a fingerprint when too irregular."""
    search_result: UidRanges | None = None
    """SEARCHRES ``$`` (RFC 5182) as UIDs, or None when nothing was saved."""
    keywords_digest: _U32 = 0
    """A 32-bit digest of the mailbox's keyword list the client saw, so a restore knows whether to send
    ``FLAGS``/``PERMANENTFLAGS`` again (0: unknown, send them)."""
    # -- version 2 --
    recent: UidRanges | None = None
    """The UIDs that are ``\\Recent`` for this session (RFC 3501 2.3.2), so a restored session keeps
    them; None: none (or a version-1 state)."""
    # -- version 3 --
    live_searches: tuple[LiveSearch, ...] = ()
    """Live CONTEXT=SEARCH/SORT results (RFC 5267), at most :data:`MAX_LIVE_SEARCH_BYTES` of them."""


class SessionState(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True, tag=4):
    """Everything needed to resume an IMAP session. Holds no password and no secret."""

    user: str
    credential_generation: _U63
    """Bumped by the server on every password change / disable; older states are revoked."""
    extensions: _U63 = 0
    """Enabled extensions of :data:`EXTENSION_REGISTRY`, as a bitmask."""
    other_extensions: tuple[str, ...] = ()
    """Enabled extensions outside the registry, upper-cased and sorted."""
    mailbox: MailboxView | None = None
    """The selected mailbox, or None in the AUTHENTICATED state."""
    # -- version 2 --
    lineage: bytes = b""
    """Random id of the login this state descends from, kept by every later save of a session restored
    from it, so that revoking one lineage kills all its tokens (b"": none, a version-1 state)."""
    bound_address: bytes = b""
    """The client address the state may be restored from, as the server encodes it (b"": any)."""
    # -- version 4 --
    notify: str = ""
    """The session's RFC 5465 ``NOTIFY SET ...`` as the client could have sent it (without tag), or ""
    (none). The server keeps its meaning; this library only carries the text."""

    @classmethod
    def create(
        cls,
        user: str,
        credential_generation: int,
        *,
        enabled: Iterable[str] = (),
        mailbox: MailboxView | None = None,
        lineage: bytes = b"",
        bound_address: bytes = b"",
        notify: str = "",
    ) -> SessionState:
        """Build a state from extension names (case-insensitive) rather than a bitmask."""
        mask, others = encode_extensions(enabled)
        return cls(user, credential_generation, mask, others, mailbox, lineage, bound_address, notify)

    @property
    def enabled(self) -> frozenset[str]:
        """Names of the enabled extensions (upper case)."""
        return decode_extensions(self.extensions, self.other_extensions)


def encode_extensions(names: Iterable[str]) -> tuple[int, tuple[str, ...]]:
    """Split extension names into (bitmask over the registry, sorted upper-case others)."""
    mask = 0
    others: set[str] = set()
    for name in names:
        upper = name.upper()
        bit = _EXTENSION_BIT.get(upper)
        if bit is None:
            others.add(upper)
        else:
            mask |= bit
    return mask, tuple(sorted(others))


def decode_extensions(mask: int, others: Iterable[str] = ()) -> frozenset[str]:
    """Inverse of :func:`encode_extensions`. Bits beyond the registry (from a newer registry)
    are ignored: this code could not honour those extensions anyway."""
    names = {name for name, bit in _EXTENSION_BIT.items() if mask & bit}
    names.update(others)
    return frozenset(names)


class _VersionPeek(msgspec.Struct, array_like=True):
    """First element of any version's array; extra elements are ignored."""

    version: int


class _SessionStateV1(SessionState, frozen=True, tag=1):
    """Version 1: no ``lineage`` and no ``bound_address`` (they decode as their defaults)."""


class _SessionStateV2(SessionState, frozen=True, tag=2):
    """Version 2: no live searches in the mailbox view."""


class _SessionStateV3(SessionState, frozen=True, tag=3):
    """Version 3: no NOTIFY registration."""


_OLDER_VERSIONS: Final[dict[int, type[SessionState]]] = {1: _SessionStateV1, 2: _SessionStateV2,
                                                               3: _SessionStateV3}
"""Version tag -> subclass of :class:`SessionState` carrying that tag."""
SUPPORTED_VERSIONS: Final = frozenset({CURRENT_VERSION, *_OLDER_VERSIONS})

_ENCODER: Final = msgspec.msgpack.Encoder()
_PEEK: Final = msgspec.msgpack.Decoder(_VersionPeek)
_DECODER: Final = msgspec.msgpack.Decoder(
    SessionState | _SessionStateV1 | _SessionStateV2 | _SessionStateV3)


def new_lineage() -> bytes:
    """A fresh lineage id, for a session that logged in with a password (not from a state)."""
    return secrets.token_bytes(LINEAGE_BYTES)


def bounded_search_result(uids: UidSet | None) -> UidRanges | None:
    """``uids`` as :class:`UidRanges` if its encoding fits :data:`MAX_SEARCH_RESULT_BYTES`, else None
    (the state is then saved without ``$``, and the server says so)."""
    if uids is None:
        return None
    data = uids.to_bytes()
    return UidRanges(data) if len(data) <= MAX_SEARCH_RESULT_BYTES else None


def pack(state: SessionState) -> bytes:
    """Serialize to msgpack (unsigned). Raises ``ValueError`` if a field is out of range, so a bad
    state fails here rather than when it comes back."""
    if type(state) is not SessionState:
        raise TypeError(f"expected SessionState, got {type(state).__name__}")
    data = _ENCODER.encode(state)
    try:
        _DECODER.decode(data)
    except msgspec.ValidationError as exc:
        raise ValueError(f"invalid session state: {exc}") from None
    return data


def unpack(data: bytes) -> SessionState:
    """Deserialize msgpack from :func:`pack` (any supported version).

    Raises :class:`UnsupportedVersion` for a version tag this code does not know and
    :class:`TokenInvalid` for anything else that is not a valid state.
    """
    try:
        version = _PEEK.decode(data).version
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise TokenInvalid(f"undecodable state: {exc}") from None
    if version not in SUPPORTED_VERSIONS:
        raise UnsupportedVersion(f"unsupported state version {version}", version=version)
    try:
        state = _DECODER.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise TokenInvalid(f"invalid state: {exc}") from None
    if type(state) is not SessionState:  # an older version: upgrade (new fields keep defaults)
        if type(state) is _SessionStateV1 and (state.lineage or state.bound_address):
            raise TokenInvalid("invalid state: fields beyond version 1")
        if type(state) is not _SessionStateV3 and state.mailbox is not None and state.mailbox.live_searches:
            raise TokenInvalid("invalid state: fields beyond version 2")
        if state.notify:
            raise TokenInvalid("invalid state: fields beyond version 3")
        state = SessionState(**msgspec.structs.asdict(state))
    return state

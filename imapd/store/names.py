"""Mailbox names: validation, and the mapping between client names and Maildir++ folder directories.

Client names are Unicode ``str`` with ``/`` as the hierarchy separator (``"Archive/2024"``). On disk a
folder is the directory ``.<c1>.<c2>...`` under the user's Maildir++ root, each component written as:

1. modified UTF-7 (``imapd.mutf7``), as Dovecot and Courier write folder names;
2. then escaped the way Dovecot's ``listescape`` plugin does it, with ``\\`` + two lowercase hex digits:
   ``.`` -> ``\\2e`` (so a dot inside a component survives the ``.`` separator), ``\\`` -> ``\\5c``, and a
   leading ``~`` -> ``\\7e``.

``INBOX`` (any case) is the root itself. Names that could escape the user's directory or that no
filesystem would keep are refused with :class:`InvalidMailboxName`.
"""

from __future__ import annotations

import re

from imapd import mutf7
from imapd.store.errors import InvalidMailboxName

__all__ = ["SEPARATOR", "INBOX", "decode_folder_dir", "folder_dir_name", "normalize", "parent_names"]

SEPARATOR = "/"
INBOX = "INBOX"
_MAX_DIR_BYTES = 255
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_ESCAPE = re.compile(r"\\([0-9a-f]{2})")


def normalize(name: str) -> str:
    """Validate a client mailbox name and return its canonical form (``INBOX`` upper-cased)."""
    if not isinstance(name, str) or not name:
        raise InvalidMailboxName("empty mailbox name")
    if _FORBIDDEN.search(name):
        raise InvalidMailboxName("mailbox name contains control characters")
    if name.startswith(SEPARATOR) or name.endswith(SEPARATOR):
        raise InvalidMailboxName("mailbox name starts or ends with the hierarchy separator")
    parts = name.split(SEPARATOR)
    for part in parts:
        if part == "":
            raise InvalidMailboxName("mailbox name has an empty component")
        if part in (".", ".."):
            raise InvalidMailboxName(f"mailbox name component {part!r} is not allowed")
    if parts[0].upper() == INBOX:
        parts[0] = INBOX
    canonical = SEPARATOR.join(parts)
    if canonical != INBOX and len(folder_dir_name(canonical).encode("utf-8")) > _MAX_DIR_BYTES:
        raise InvalidMailboxName("mailbox name too long")
    return canonical


def _escape_component(part: str) -> str:
    enc = mutf7.encode(part).replace("\\", "\\5c").replace(".", "\\2e")
    if enc.startswith("~"):
        enc = "\\7e" + enc[1:]
    return enc


def folder_dir_name(name: str) -> str:
    """The Maildir++ directory name (``.A.B``) of an already-normalized non-INBOX name."""
    return "." + ".".join(_escape_component(p) for p in name.split(SEPARATOR))


def decode_folder_dir(dirname: str) -> str | None:
    """The client name of a Maildir++ folder directory, or None if it is not one we can represent."""
    if not dirname.startswith(".") or dirname in (".", ".."):
        return None
    parts: list[str] = []
    for raw in dirname[1:].split("."):
        if not raw:
            return None
        unescaped = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), raw)
        try:
            part = mutf7.decode(unescaped)
        except mutf7.MUTF7Error:
            return None
        parts.append(part)
    name = SEPARATOR.join(parts)
    try:
        canonical = normalize(name)
    except InvalidMailboxName:
        return None
    if canonical == INBOX or folder_dir_name(canonical) != dirname:
        return None
    return canonical


def parent_names(name: str) -> list[str]:
    """``"A/B/C"`` -> ``["A", "A/B"]``."""
    parts = name.split(SEPARATOR)
    return [SEPARATOR.join(parts[:i]) for i in range(1, len(parts))]

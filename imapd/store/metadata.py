"""The one place the store touches ``imapd.mime``: parse a message, encode/decode the cached metadata.

``imapd.mime`` is imported lazily so the store works (and caches nothing) while it does not exist yet.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import msgspec

__all__ = ["decode_metadata", "mime_available", "parse_to_blob", "search_document"]

_mime: ModuleType | None = None
_missing = False


def _module() -> ModuleType | None:
    global _mime, _missing
    if _mime is None and not _missing:
        try:
            _mime = importlib.import_module("imapd.mime")
            if not hasattr(_mime, "parse_message"):
                _mime = None
                raise ImportError("imapd.mime has no parse_message")
        except ImportError:
            _missing = True
    return _mime


def mime_available() -> bool:
    return _module() is not None


def parse_to_blob(raw: bytes) -> bytes | None:
    """``msgpack(parse_message(raw))``, or None if ``imapd.mime`` is unavailable or fails on the input."""
    mod = _module()
    if mod is None:
        return None
    try:
        meta = mod.parse_message(raw)
        return msgspec.msgpack.encode(meta)
    except Exception:
        return None


def decode_metadata(blob: bytes) -> Any:
    """The ``MessageMetadata`` struct from a cached blob (``imapd.mime`` must be importable)."""
    mod = _module()
    if mod is None:
        raise RuntimeError("imapd.mime is not available")
    return msgspec.msgpack.decode(blob, type=mod.MessageMetadata)


def search_document(raw: bytes, blob: bytes | None) -> tuple[list[str | None], str, list[str], list[str]] | None:
    """What SEARCH compares in a message (``imapd.mime.search_document``), with the ENVELOPE of its cached
    metadata ``blob`` (parsed from ``raw`` when None) as the scan uses it; None when it cannot be had."""
    mod = _module()
    if mod is None:
        return None
    try:
        meta = mod.parse_message(raw) if blob is None else decode_metadata(blob)
        doc = mod.search_document(raw, meta.envelope)
    except Exception:
        return None
    return doc.envelope, doc.header, doc.body, doc.fields

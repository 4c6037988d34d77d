"""RFC 5322 Date header parsing (obsolete forms and two-digit years included)."""

from __future__ import annotations

import email.utils
from datetime import datetime, timedelta, timezone

from imapd.mime.headers import Header, to_str


def parse_date(value: str | None) -> datetime | None:
    """An aware datetime for a Date header value; a missing or ``-0000`` zone means UTC.

    None when the value cannot be understood (callers then fall back to INTERNALDATE).
    """
    if not value:
        return None
    try:
        parts = email.utils.parsedate_tz(value)
        if parts is None:
            return None
        offset = parts[9] or 0
        if abs(offset) >= 24 * 3600:
            offset = 0
        return datetime(*parts[:6], tzinfo=timezone(timedelta(seconds=offset)))
    except (ValueError, OverflowError, TypeError, IndexError):
        return None


def epoch_seconds(value: str | None) -> int | None:
    """The Date value as Unix seconds (what SORT DATE compares), or None."""
    parsed = parse_date(value)
    if parsed is None:
        return None
    try:
        return int(parsed.timestamp())
    except (OverflowError, ValueError, OSError):
        return None


def header_date(raw: bytes) -> datetime | None:
    """The parsed Date header of a message (or of a bare header block)."""
    value = Header(raw, 0, len(raw)).raw("date")
    return parse_date(to_str(value)) if value else None

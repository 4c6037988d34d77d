"""RFC 9208 commands: GETQUOTA, GETQUOTAROOT, SETQUOTA (registered in :mod:`.command_parser`)."""

from __future__ import annotations

from . import commands as c
from .reader import ParseError, TokenReader

__all__ = ["parse_getquota", "parse_getquotaroot", "parse_setquota"]


def parse_getquota(r: TokenReader, tag: str, uid: bool) -> c.Command:
    r.sp()
    return c.GetQuota(tag, r.astring_str())


def parse_getquotaroot(r: TokenReader, tag: str, uid: bool) -> c.Command:
    r.sp()
    return c.GetQuotaRoot(tag, r.mailbox())


def parse_setquota(r: TokenReader, tag: str, uid: bool) -> c.Command:
    """``SETQUOTA root (resource limit ...)``; a resource named twice is a syntax error."""
    r.sp()
    root = r.astring_str()
    r.sp()
    r.open()
    limits: list[tuple[str, int]] = []
    while not r.take(b")"):
        if limits:
            r.sp()
        name = r.keyword()
        r.sp()
        limit = r.number(bits=64)
        if any(n == name for n, _ in limits):
            raise ParseError(f"Resource {name} given twice")
        limits.append((name, limit))
    r.depth -= 1
    return c.SetQuota(tag, root, tuple(limits))

"""Recipient address -> user, as the users file (``<data_dir>/passwd``) has them.

User names there are either plain names (``alice``) or whole addresses (``alice@example.org``). For
``local+detail@domain`` the candidates are tried in this order, the first user found wins:

1. the whole address, ``local+detail@domain`` (a user may really be called ``bob+x``);
2. the address without the detail, ``local@domain``;
3. only if ``domain`` is one of ``lmtp.domains`` (or that list is empty, meaning any domain, or the
   address has no domain at all): the local part, ``local+detail``, then ``local``.

The domain is compared without regard to case; each candidate is also tried lower-cased, since MTAs keep
the case the sender typed. The detail (after ``lmtp.recipient_delimiter``) names a folder to file into.

Reading the users file is disk work (two stats when unchanged), done in a thread for every RCPT; a
recipient found in a read of the last :data:`RECENT_SECONDS` is answered from memory instead
(:meth:`RecipientResolver.resolve_recent`), on the network loop. An unknown address is always looked up
afresh, so a user added a moment ago is found; a user removed a moment ago may still be accepted for
that second, as by any MTA whose lookup raced the removal.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

import msgspec

from imapd.store.users import PasswdFile

__all__ = ["RECENT_SECONDS", "Recipient", "RecipientResolver", "split_address"]

RECENT_SECONDS = 1.0


class Recipient(msgspec.Struct, frozen=True):
    address: str
    """As the client gave it in RCPT TO (without the angle brackets)."""
    user: str
    detail: str = ""


def split_address(address: str) -> tuple[str, str]:
    """(local part, lower-cased domain); a quoted local part keeps its quotes' content."""
    local, at, domain = address.rpartition("@")
    if not at:
        local, domain = address, ""
    if len(local) >= 2 and local.startswith('"') and local.endswith('"'):
        local = local[1:-1]
    return local, domain.lower()


class RecipientResolver:
    def __init__(self, users: PasswdFile, domains: Iterable[str] = (), delimiter: str = "+") -> None:
        self.users = users
        self.domains = frozenset(d.lower().strip(".") for d in domains)
        self.delimiter = delimiter
        self._recent: tuple[float, Mapping[str, object]] = (float("-inf"), {})

    def ours(self, domain: str) -> bool:
        return not domain or not self.domains or domain.strip(".") in self.domains

    def resolve(self, address: str) -> Recipient | None:
        """The user ``address`` delivers to, or None. Reads the users file (two stats when unchanged)."""
        known = self.users.load()  # replaced, never changed, when the file changes: safe to keep
        self._recent = (time.monotonic(), known)
        return self._lookup(known, address)

    def resolve_recent(self, address: str) -> Recipient | None:
        """The user ``address`` delivers to if the last :meth:`resolve` (under RECENT_SECONDS ago) knew
        it; None otherwise (then call :meth:`resolve`). No disk access: for the network loop."""
        when, known = self._recent
        if time.monotonic() - when > RECENT_SECONDS:
            return None
        return self._lookup(known, address)

    def _lookup(self, known: Mapping[str, object], address: str) -> Recipient | None:
        local, domain = split_address(address)
        base, detail = local, ""
        if self.delimiter and self.delimiter in local:
            base, _, detail = local.partition(self.delimiter)
        at = f"@{domain}" if domain else ""
        candidates: list[tuple[str, str]] = [(local + at, "")]
        if detail:
            candidates.append((base + at, detail))
        if domain and self.ours(domain):
            candidates.append((local, ""))
            if detail:
                candidates.append((base, detail))
        for name, det in candidates:
            for variant in (name, name.lower()):
                if variant in known:
                    return Recipient(address, variant, det)
        return None

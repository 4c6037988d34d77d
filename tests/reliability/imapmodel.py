"""A client's model of its selected mailbox, built only from the untagged responses it receives."""

from __future__ import annotations

import contextlib
import re

from tests.conftest import RunningServer
from tests.rawimap import RawIMAP

_EXISTS = re.compile(rb"^\* (\d+) EXISTS$")
_EXPUNGE = re.compile(rb"^\* (\d+) EXPUNGE$")
_VANISHED = re.compile(rb"^\* VANISHED (\(EARLIER\) )?([\d:,]+)$")
_FETCH = re.compile(rb"^\* (\d+) FETCH \((.*)\)$")
_UID = re.compile(rb"\bUID (\d+)")
_FLAGS = re.compile(rb"\bFLAGS \(([^)]*)\)")
_SEARCH = re.compile(rb"^\* SEARCH ?([\d ]*)")
_UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)")
_APPENDUID = re.compile(rb"APPENDUID (\d+) (\d+)")


def parse_set(text: bytes) -> list[int]:
    out: list[int] = []
    for part in text.split(b","):
        lo, _, hi = part.partition(b":")
        a, b = int(lo), int(hi or lo)
        out.extend(range(min(a, b), max(a, b) + 1))
    return out


def flagset(raw: bytes) -> frozenset[str]:
    return frozenset(f for f in raw.decode().split() if f.lower() != "\\recent")


class ModelError(AssertionError):
    pass


class ViewModel:
    """Sequence -> (UID or None, flags or None), updated by EXISTS/EXPUNGE/VANISHED/FETCH only."""

    def __init__(self) -> None:
        self.uids: list[int | None] = []
        self.flags: list[frozenset[str] | None] = []
        self.max_uid_seen = 0

    def apply(self, lines: list[bytes], *, command: str = "") -> None:
        for line in lines:
            if m := _EXISTS.match(line):
                n = int(m.group(1))
                if n < len(self.uids):
                    raise ModelError(f"EXISTS {n} below the {len(self.uids)} messages known ({command})")
                self.uids += [None] * (n - len(self.uids))
                self.flags += [None] * (n - len(self.flags))
            elif m := _EXPUNGE.match(line):
                n = int(m.group(1))
                if not 1 <= n <= len(self.uids):
                    raise ModelError(f"EXPUNGE {n} outside 1..{len(self.uids)} ({command})")
                del self.uids[n - 1]
                del self.flags[n - 1]
            elif m := _VANISHED.match(line):
                gone = set(parse_set(m.group(2)))
                if m.group(1):
                    raise ModelError(f"VANISHED (EARLIER) in a plain command ({command}): {line!r}")
                known = {u for u in self.uids if u is not None}
                if None not in self.uids and not gone <= known:
                    raise ModelError(f"VANISHED of unknown UIDs {sorted(gone - known)[:5]} ({command})")
                keep = [i for i, u in enumerate(self.uids) if u not in gone]
                self.uids = [self.uids[i] for i in keep]
                self.flags = [self.flags[i] for i in keep]
            elif m := _FETCH.match(line):
                n = int(m.group(1))
                if not 1 <= n <= len(self.uids):
                    raise ModelError(f"FETCH {n} outside 1..{len(self.uids)} ({command}): {line!r}")
                body = m.group(2)
                if u := _UID.search(body):
                    uid = int(u.group(1))
                    if self.uids[n - 1] is not None and self.uids[n - 1] != uid:
                        raise ModelError(f"FETCH {n} says UID {uid}, known as {self.uids[n - 1]} ({command})")
                    self.uids[n - 1] = uid
                if f := _FLAGS.search(body):
                    self.flags[n - 1] = flagset(f.group(1))
        known = [u for u in self.uids if u is not None]
        if known != sorted(set(known)):
            raise ModelError(f"UIDs not strictly ascending: {known} ({command})")

    def unknown_from(self) -> int | None:
        """First sequence number whose UID or flags the client does not know."""
        for i, (u, f) in enumerate(zip(self.uids, self.flags, strict=True)):
            if u is None or f is None:
                return i + 1
        return None


class Client:
    def __init__(self, server: RunningServer, user: str, mailbox: str = "INBOX", qresync: bool = False) -> None:
        self.imap = RawIMAP(server.host, server.port, timeout=30)
        self.imap.ok(f"LOGIN {user} {server.users[user]}")
        if qresync:
            self.imap.ok("ENABLE QRESYNC")
        self.qresync = qresync
        self.transcript: list[tuple[str, list[bytes], bytes]] = []
        self.model = ViewModel()
        untagged, tagged = self.imap.command(f"SELECT {mailbox}")
        assert b" OK" in tagged, tagged
        self.model.apply(untagged, command="SELECT")
        self.fill()

    def run(self, text: str | bytes) -> tuple[list[bytes], bytes]:
        untagged, tagged = self.imap.command(text)
        name = text if isinstance(text, str) else text[:40].decode(errors="replace")
        words = name.upper().split()
        plain = words[:1] in (["FETCH"], ["STORE"], ["SEARCH"])
        self.transcript = [*self.transcript[-12:], (name, untagged, tagged)]
        try:
            if plain:  # RFC 3501 7.4.1 (and RFC 7162 3.2.10 for VANISHED)
                bad = [x for x in untagged if _EXPUNGE.match(x) or _VANISHED.match(x)]
                if bad:
                    raise ModelError(f"{bad[0]!r} sent during {name}")
            self.model.apply(untagged, command=name)
        except ModelError as exc:
            raise ModelError(f"{exc}\nlast commands of this client (qresync={self.qresync}):\n"
                             + "\n".join(f"  {n!r} -> {u!r} {t!r}" for n, u, t in self.transcript)) from None
        return untagged, tagged

    def fill(self) -> None:
        """Learn the UIDs/flags of messages announced only by EXISTS (as real clients do)."""
        for _ in range(5):
            start = self.model.unknown_from()
            if start is None:
                return
            self.run(f"FETCH {start}:* (UID FLAGS)")
            if self.model.unknown_from() is not None:
                self.run("NOOP")  # a message expunged meanwhile is only reported outside FETCH
        raise ModelError("could not learn the UIDs of new messages: " + "\n".join(
            f"  {n!r} -> {u!r} {t!r}" for n, u, t in self.transcript))

    def close(self) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            self.imap.command("LOGOUT")
        self.imap.close()


def server_state(server: RunningServer, user: str, mailbox: str = "INBOX") -> list[tuple[int, frozenset[str]]]:
    """(UID, flags) of every message, from a fresh connection (UID SEARCH ALL + UID FETCH FLAGS)."""
    imap = RawIMAP(server.host, server.port, timeout=30)
    try:
        imap.ok(f"LOGIN {user} {server.users[user]}")
        imap.ok(f"EXAMINE {mailbox}")
        untagged = imap.ok("UID SEARCH ALL")
        uids = sorted(int(x) for line in untagged if (m := _SEARCH.match(line)) for x in m.group(1).split())
        flags: dict[int, frozenset[str]] = {}
        if uids:
            for line in imap.ok("UID FETCH 1:* (UID FLAGS)"):
                if (m := _FETCH.match(line)) and (u := _UID.search(m.group(2))) and (f := _FLAGS.search(line)):
                    flags[int(u.group(1))] = flagset(f.group(1))
        assert sorted(flags) == uids, (uids, sorted(flags))
        imap.command("LOGOUT")
        return [(u, flags[u]) for u in uids]
    finally:
        imap.close()

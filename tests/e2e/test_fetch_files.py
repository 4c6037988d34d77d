"""Whole-message FETCH (the file path: sendfile on plaintext, reads under TLS) and the FLAGS fast path.

The answers are checked against the message files on disk and against the general FETCH path: a
partial ``BODY.PEEK[]<0.N>`` larger than the message goes through the general renderer and must give the
same octets; ``(FLAGS ... INTERNALDATE)`` goes through the general path and must give the same flags.
"""

from __future__ import annotations

import random
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import imapd_cli
from tests.e2e.test_tls import TLSServer, client_context, start_tls_server, stop
from tests.rawimap import RawIMAP

_FETCH = re.compile(rb"^\* (\d+) FETCH \(")
_LIT = re.compile(rb"~?\{(\d+)\}\r\n")


def message(n: int, size: int) -> bytes:
    """A message of about ``size`` octets whose body lines differ from message to message."""
    head = (f"From: a{n}@example.org\r\nTo: b@example.org\r\nSubject: message {n}\r\n"
            f"Message-ID: <m{n}@example.org>\r\n\r\n").encode()
    rng = random.Random(n)
    lines = []
    total = len(head)
    while total < size:
        line = (f"{n:06d} " + "".join(rng.choice("abcdefghij klmnop") for _ in range(70))).encode() + b"\r\n"
        lines.append(line)
        total += len(line)
    return head + b"".join(lines)


SIZES = [600, 3000, 70_000, 200_000, 3_500_000, 5_200_000, 1500]


class Sock:
    """RawIMAP over a given (possibly TLS) socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.raw = RawIMAP.__new__(RawIMAP)
        self.raw.sock = sock
        self.raw.buf = b""
        self.raw._n = 0
        self.raw.greeting = self.raw.readline()


def connect(ts: TLSServer, tls: bool, user: str = "alice", password: str = "secret1") -> RawIMAP:
    if tls:
        plain = socket.create_connection(("127.0.0.1", ts.tls_port), timeout=30)
        sock: socket.socket = client_context().wrap_socket(plain, server_hostname="localhost")
    else:
        sock = socket.create_connection(("127.0.0.1", ts.plain_port), timeout=30)
    imap = Sock(sock).raw
    imap.ok(f"LOGIN {user} {password}")
    return imap


def append(imap: RawIMAP, mailbox: str, data: bytes, flags: str = "") -> None:
    imap.sock.sendall(b"a APPEND %s (%s) {%d+}\r\n" % (mailbox.encode(), flags.encode(), len(data)) + data + b"\r\n")
    while True:
        line = imap.readline()
        if line.startswith(b"a "):
            assert line.startswith(b"a OK"), line
            return


def fetch_items(untagged: list[bytes]) -> list[tuple[int, list[tuple[bytes, bytes]]]]:
    """Parse ``* n FETCH (KEY value ...)`` lines (values: atoms, (lists) or literals) exactly."""
    out = []
    for line in untagged:
        m = _FETCH.match(line)
        assert m, line[:200]
        pos = m.end()
        items: list[tuple[bytes, bytes]] = []
        while line[pos:pos + 1] != b")":
            sp = line.index(b" ", pos)
            key = line[pos:sp]
            pos = sp + 1
            lit = _LIT.match(line, pos)
            if lit:
                size = int(lit.group(1))
                value = line[lit.end():lit.end() + size]
                assert len(value) == size
                pos = lit.end() + size
            elif line[pos:pos + 1] == b"(":
                end = line.index(b")", pos) + 1
                value, pos = line[pos:end], end
            else:
                end = pos
                while line[end:end + 1] not in (b" ", b")"):
                    end += 1
                value, pos = line[pos:end], end
            items.append((key, value))
            if line[pos:pos + 1] == b" ":
                pos += 1
        assert line[pos:] == b")", line[pos:pos + 50]
        out.append((int(m.group(1)), items))
    return out


def disk_files(ts: TLSServer) -> dict[bytes, bytes]:
    """Message-ID header line -> file content, for every message file of alice."""
    out = {}
    for path in Path(ts.srv.data_dir).rglob("cur/*"):
        data = path.read_bytes()
        m = re.search(rb"Message-ID: <(m\d+)@", data)
        if m:
            out[m.group(1)] = data
    return out


@pytest.fixture(scope="module")
def ts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSServer]:
    ts = start_tls_server(tmp_path_factory.mktemp("imapd-fetchfiles"))
    imap = connect(ts, tls=False)
    imap.ok("CREATE Big")
    for n, size in enumerate(SIZES):
        append(imap, "Big", message(n, size), "\\Seen" if n % 2 else "$Label1")
    imap.ok("LOGOUT")
    try:
        yield ts
    finally:
        stop(ts)


@pytest.mark.parametrize("tls", [False, True], ids=["plaintext", "tls"])
@pytest.mark.parametrize("items", ["BODY.PEEK[]", "FLAGS BODY.PEEK[]", "UID BODY.PEEK[] FLAGS", "BINARY.PEEK[]",
                                   "RFC822 FLAGS"])
def test_whole_messages_are_the_files(ts: TLSServer, tls: bool, items: str) -> None:
    imap = connect(ts, tls)
    imap.ok("EXAMINE Big")
    untagged, tagged = imap.command(f"UID FETCH 1:* ({items})")
    assert tagged.split()[1] == b"OK", tagged
    files = disk_files(ts)
    got = fetch_items(untagged)
    assert [seq for seq, _ in got] == list(range(1, len(SIZES) + 1))  # all, in order
    body_key = b"BINARY[]" if "BINARY" in items else b"RFC822" if "RFC822" in items else b"BODY[]"
    for n, (_, pairs) in enumerate(got):
        keys = [k for k, _ in pairs]
        expected = [k.encode().replace(b".PEEK", b"") for k in items.split()]
        if b"UID" not in expected:
            expected.insert(0, b"UID")  # UID FETCH adds it first
        assert keys == expected
        values = dict(pairs)
        assert values[body_key] == files[f"m{n}".encode()], n
        assert len(values[body_key]) >= SIZES[n]
        if b"FLAGS" in values:
            # the first EXAMINE of the mailbox shows every message as \Recent (nobody claimed them)
            assert values[b"FLAGS"].replace(b" \\Recent", b"") == (b"(\\Seen)" if n % 2 else b"($Label1)")
    # the general path (a partial larger than the message) gives the same octets
    untagged2, _ = imap.command("UID FETCH 1:* (BODY.PEEK[]<0.100000000>)")
    general = [dict(p)[b"BODY[]<0>"] for _, p in fetch_items(untagged2)]
    assert general == [dict(p)[body_key] for _, p in got]
    imap.ok("NOOP")  # still in step after the literals
    imap.ok("LOGOUT")


@pytest.mark.parametrize("tls", [False, True], ids=["plaintext", "tls"])
def test_body_sets_seen_and_reports_flags(ts: TLSServer, tls: bool) -> None:
    imap = connect(ts, tls)
    name = f"Seen{int(tls)}"
    imap.ok(f"CREATE {name}")
    for n in (3, 4, 0):
        append(imap, name, message(n, SIZES[n]))
    imap.ok(f"SELECT {name}")
    untagged, tagged = imap.command("FETCH 1:3 (BODY[])")
    assert tagged.split()[1] == b"OK"
    files = disk_files(ts)
    for (seq, pairs), n in zip(fetch_items(untagged), (3, 4, 0), strict=True):
        values = dict(pairs)
        assert values[b"BODY[]"] == files[f"m{n}".encode()]
        assert b"\\Seen" in values[b"FLAGS"], (seq, pairs[:1])  # RFC 3501 6.4.5: the FETCH tells the client
    untagged, _ = imap.command("FETCH 1:3 (FLAGS)")
    assert all(b"\\Seen" in line for line in untagged)
    imap.ok("LOGOUT")


def test_pipelined_fetches_keep_their_order(ts: TLSServer) -> None:
    """Big literals sent from files, with small responses around them in one pipeline."""
    imap = connect(ts, tls=False)
    imap.ok("EXAMINE Big")
    cmds = b"p1 UID FETCH 5 (BODY.PEEK[])\r\np2 NOOP\r\np3 FETCH 1:* (FLAGS)\r\np4 UID FETCH 4:6 (BODY.PEEK[] UID)\r\n"
    imap.sock.sendall(cmds)
    lines = []
    while True:
        line = imap.readline()
        lines.append(line)
        if line.startswith(b"p4 "):
            break
    tags = [line.split()[0] for line in lines if not line.startswith(b"*")]
    assert tags == [b"p1", b"p2", b"p3", b"p4"]
    assert all(line.split()[1] == b"OK" for line in lines if not line.startswith(b"*"))
    files = disk_files(ts)
    bodies = [dict(p)[b"BODY[]"] for _, p in fetch_items([x.rstrip(b"\r\n") for x in lines
                                                          if x.startswith(b"*") and b"BODY[]" in x])]
    assert bodies == [files[b"m4"], files[b"m3"], files[b"m4"], files[b"m5"]]


@pytest.mark.parametrize("tls", [False, True], ids=["plaintext", "tls"])
def test_file_removed_between_select_and_fetch(ts: TLSServer, tls: bool) -> None:
    imap = connect(ts, tls)
    name = f"Gone{int(tls)}"
    imap.ok(f"CREATE {name}")
    for n in (4, 2, 5):
        append(imap, name, message(n, SIZES[n]))
    imap.ok(f"SELECT {name}")
    victim = next(p for p in Path(ts.srv.data_dir).rglob(f"*{name}/cur/*") if b"<m2@" in p.read_bytes())
    victim.unlink()
    untagged, tagged = imap.command("FETCH 1:3 (BODY.PEEK[])")
    # Documented answer: the messages still there, then NO [EXPUNGEISSUED] (RFC 3501 allows NO)
    assert tagged.split()[1:3] == [b"NO", b"[EXPUNGEISSUED]"], tagged
    fetched = fetch_items([line for line in untagged if _FETCH.match(line)])
    files = disk_files(ts)
    assert [(seq, dict(p)[b"BODY[]"]) for seq, p in fetched] == [(1, files[b"m4"]), (3, files[b"m5"])]
    untagged, tagged = imap.command("NOOP")  # in step; the expunge is reported now
    assert tagged.split()[1] == b"OK"
    assert b"* 2 EXPUNGE" in untagged
    imap.ok("LOGOUT")


# -- FLAGS fast path ---------------------------------------------------------------------------------------
_KEYWORDS = ["$Label1", "$Label2", "Junk", "$Forwarded"]
_SYSTEM = ["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"]


def _strip(untagged: list[bytes], drop: bytes) -> list[bytes]:
    """The FETCH lines with the ``drop`` item (a general-path-only item and its value) cut out."""
    return [re.sub(rb" ?" + re.escape(drop) + rb" \"[^\"]*\"", b"", line) for line in untagged
            if _FETCH.match(line)]


def test_flags_fast_path_matches_general_path(ts: TLSServer) -> None:
    imap = connect(ts, tls=False)
    imap.ok("CREATE Flags")
    rng = random.Random(7)
    for n in range(300):  # more than one chunk of 256
        append(imap, "Flags", b"Subject: %d\r\n\r\nx\r\n" % n)
    imap.ok("SELECT Flags")  # claims \Recent of these 300
    for n in range(1, 301):
        flags = [f for f in _SYSTEM + _KEYWORDS if rng.random() < 0.3]
        if flags:
            imap.ok(f"STORE {n} FLAGS ({' '.join(flags)})")
    imap.ok("UNSELECT")  # (CLOSE would expunge the \\Deleted ones)
    for n in range(300, 330):
        append(imap, "Flags", b"Subject: %d\r\n\r\nx\r\n" % n, "Junk \\Flagged")
    other = connect(ts, tls=False)
    imap.ok("SELECT Flags")  # \Recent: the last 30 only
    other.ok("SELECT Flags")  # \Recent: none
    cases = [("FLAGS", False), ("FLAGS", True), ("UID FLAGS", False), ("FLAGS UID FLAGS", True),
             ("FLAGS MODSEQ", False), ("MODSEQ UID", True)]
    for client in (imap, other):
        for items, uid in cases:
            prefix = "UID " if uid else ""
            fast, t1 = client.command(f"{prefix}FETCH 1:* ({items})")
            general, t2 = client.command(f"{prefix}FETCH 1:* ({items} INTERNALDATE)")
            assert t1.split()[1] == t2.split()[1] == b"OK"
            fast = [line for line in fast if _FETCH.match(line)]
            assert len(fast) == 330
            assert fast == _strip(general, b"INTERNALDATE"), items
        for sequence in ("3,7,250:260,320:*", "*:300", "5"):
            for items, uid in cases[:3]:
                prefix = "UID " if uid else ""
                fast, _ = client.command(f"{prefix}FETCH {sequence} ({items})")
                general, _ = client.command(f"{prefix}FETCH {sequence} ({items} INTERNALDATE)")
                fast = [line for line in fast if _FETCH.match(line)]
                assert fast and fast == _strip(general, b"INTERNALDATE"), (sequence, items)
        # CHANGEDSINCE (CONDSTORE is on now): only the changed ones, with MODSEQ
        fast, _ = client.command("FETCH 1:* (FLAGS) (CHANGEDSINCE 200)")
        general, _ = client.command("FETCH 1:* (FLAGS INTERNALDATE) (CHANGEDSINCE 200)")
        assert [line for line in fast if _FETCH.match(line)] == _strip(general, b"INTERNALDATE")
    recent = [line for line in imap.command("FETCH 1:* (FLAGS)")[0] if b"\\Recent" in line]
    assert len(recent) == 30
    assert not [line for line in other.command("FETCH 1:* (FLAGS)")[0] if b"\\Recent" in line]
    imap.ok("LOGOUT")
    other.ok("LOGOUT")



# -- worker hand-off: a plaintext socket moves to the owner (sendfile there), a TLS one is relayed -----------
def test_whole_messages_through_worker_hand_off(tmp_path: Path) -> None:
    """Two workers, users owned by each: every connection accepted by the other worker moves (plaintext:
    the socket itself; TLS: relayed over a UNIX socket pair, where the owner must not use sendfile)."""
    base = tmp_path / "srv"
    base.mkdir()
    ts = start_tls_server(base, "-o", "server.workers=2")
    users = [f"user{i}" for i in range(4)]
    try:
        for user in users:
            imapd_cli("user", "add", user, "--password-stdin", "--data-dir", str(ts.srv.data_dir), stdin="pw")
        bodies = [message(10 + i, size) for i, size in enumerate((5_000, 300_000, 3_500_000))]
        for user in users:
            for tls in (False, True):
                imap = connect(ts, tls, user=user, password="pw")
                if not tls:
                    for data in bodies:
                        append(imap, "INBOX", data)
                imap.ok("EXAMINE INBOX")
                untagged, tagged = imap.command("UID FETCH 1:* (FLAGS BODY.PEEK[])")
                assert tagged.split()[1] == b"OK", tagged
                assert [dict(p)[b"BODY[]"] for _, p in fetch_items(untagged)] == bodies, (user, tls)
                imap.ok("NOOP")
                imap.ok("LOGOUT")
    finally:
        stop(ts)


@pytest.mark.parametrize("tls", [False, True], ids=["plaintext", "tls"])
def test_read_messages_are_byte_exact(ts: TLSServer, tls: bool) -> None:
    """The messages read on the lane (under SENDFILE_MIN, or all under TLS) are serialized straight to
    bytes: exactly ``* seq FETCH (UID u FLAGS (...) BODY[] {n}`` + the file + ``MODSEQ (m))``."""
    imap = connect(ts, tls)
    imap.ok("EXAMINE Big")
    untagged, tagged = imap.command("UID FETCH 1:* (FLAGS BODY.PEEK[] MODSEQ)")
    assert tagged.split()[1] == b"OK", tagged
    untagged = [line for line in untagged if _FETCH.match(line)]  # (not CONDSTORE's HIGHESTMODSEQ)
    files = disk_files(ts)
    small = [n for n, size in enumerate(SIZES) if size < 64 * 1024 or tls]
    assert small
    for n in small:
        line = untagged[n]
        m = re.match(rb"\* (\d+) FETCH \(UID (\d+) FLAGS \(([^)]*)\) BODY\[\] \{(\d+)\}\r\n", line)
        assert m is not None, line[:120]
        assert int(m.group(1)) == n + 1
        flags = m.group(3)
        body = files[f"m{n}".encode()]
        head = m.group(0)
        rest = line[len(head):]
        assert rest[: len(body)] == body and int(m.group(4)) == len(body)
        assert re.fullmatch(rb" MODSEQ \(\d+\)\)", rest[len(body):]), rest[len(body):]  # (CRLF stripped)
        assert flags.replace(b" \\Recent", b"").replace(b"\\Recent", b"") in (b"\\Seen", b"$Label1")
    imap.ok("LOGOUT")

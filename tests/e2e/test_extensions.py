"""The extensions webmail clients lean on, as raw protocol transcripts against a real server."""

from __future__ import annotations

import base64
import imaplib
import re
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import SMTP

import pytest

from tests.conftest import RunningServer
from tests.rawimap import RawIMAP


def message(subject: str, *, sender: str = "Ann <ann@example.org>", date: str = "Mon, 02 Nov 2026 10:00:00 +0000",
            msgid: str | None = None, in_reply_to: str | None = None, attachment: bytes | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "alice@example.org"
    msg["Subject"] = subject
    msg["Date"] = date
    if msgid:
        msg["Message-ID"] = msgid
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    msg.set_content(f"Body of {subject}\n")
    if attachment is not None:
        msg.add_attachment(attachment, maintype="application", subtype="octet-stream", filename="a.bin")
    return msg.as_bytes(policy=SMTP)


@pytest.fixture
def client(server: RunningServer) -> Iterator[RawIMAP]:
    c = RawIMAP(server.host, server.port)
    c.ok("LOGIN alice secret1")
    yield c
    c.close()


def fill(server: RunningServer, mailbox: str, messages: list[bytes]) -> None:
    imap = imaplib.IMAP4(server.host, server.port)
    imap.login("alice", "secret1")
    imap.create(mailbox)
    for raw in messages:
        assert imap.append(mailbox, None, None, raw)[0] == "OK"
    imap.logout()


def _number(lines: list[bytes], name: bytes) -> int:
    for line in lines:
        m = re.search(rb"\[" + name + rb" (\d+)\]", line)
        if m:
            return int(m.group(1))
    raise AssertionError(f"{name!r} not in {lines!r}")


def test_condstore(server: RunningServer, client: RawIMAP) -> None:
    fill(server, "Cond", [message(f"c{i}") for i in range(4)])
    lines = client.ok("SELECT Cond (CONDSTORE)")
    hms = _number(lines, b"HIGHESTMODSEQ")
    lines = client.ok("FETCH 1:* (UID MODSEQ)")
    modseqs = {int(m.group(1)): int(m.group(2)) for m in
               (re.search(rb"UID (\d+) MODSEQ \((\d+)\)", ln) for ln in lines) if m}
    assert len(modseqs) == 4 and max(modseqs.values()) == hms
    # A conditional STORE that succeeds for 1 and fails for 2 (changed meanwhile).
    client.ok("STORE 2 +FLAGS (\\Flagged)")
    untagged, tagged = client.command(f"STORE 1:2 (UNCHANGEDSINCE {hms}) +FLAGS.SILENT (\\Seen)")
    assert b"OK [MODIFIED 2]" in tagged
    assert any(re.match(rb"\* 1 FETCH \(.*MODSEQ \(\d+\)\)", ln) and b"FLAGS" not in ln for ln in untagged)
    lines = client.ok(f"FETCH 1:* (FLAGS) (CHANGEDSINCE {hms})")
    assert sorted(int(ln.split()[1]) for ln in lines if b"FETCH" in ln) == [1, 2]
    assert all(b"MODSEQ" in ln for ln in lines if b"FETCH" in ln)
    lines = client.ok(f"SEARCH MODSEQ {hms + 1}")  # MODSEQ matches >= (RFC 7162 3.1.5)
    assert re.search(rb"\* SEARCH 1 2 \(MODSEQ \d+\)", b"\n".join(lines))
    lines = client.ok("STATUS Cond (HIGHESTMODSEQ MESSAGES SIZE)")
    assert re.search(rb"\* STATUS \"?Cond\"? \(HIGHESTMODSEQ \d+ MESSAGES 4 SIZE \d+\)", lines[0])


def test_qresync_select_ends_with_the_servers_view(server: RunningServer, client: RawIMAP) -> None:
    fill(server, "Sync", [message(f"q{i}") for i in range(8)])
    client.ok("ENABLE QRESYNC")
    lines = client.ok("SELECT Sync")
    uidvalidity = _number(lines, b"UIDVALIDITY")
    modseq = _number(lines, b"HIGHESTMODSEQ")
    lines = client.ok("UID SEARCH ALL")
    known = [int(x) for x in lines[0].split()[2:]]
    client.close()

    other = RawIMAP(server.host, server.port)
    other.ok("LOGIN alice secret1")
    other.ok("SELECT Sync")
    other.ok(f"UID STORE {known[1]},{known[5]} +FLAGS (\\Deleted)")
    other.ok("EXPUNGE")
    other.ok(f"UID STORE {known[3]} +FLAGS (\\Answered $Important)")
    new = message("new")
    other.ok(b"APPEND Sync {%d+}\r\n" % len(new) + new)
    final = [int(x) for x in other.ok("UID SEARCH ALL")[0].split()[2:]]
    other.close()

    again = RawIMAP(server.host, server.port)
    again.ok("LOGIN alice secret1")
    again.ok("ENABLE QRESYNC")
    known_set = f"{known[0]}:{known[-1]}"
    lines = again.ok(f"SELECT Sync (QRESYNC ({uidvalidity} {modseq} {known_set}))")
    text = b"\n".join(lines)
    vanished = re.search(rb"\* VANISHED \(EARLIER\) (\S+)", text)
    assert vanished is not None
    gone = set()
    for part in vanished.group(1).split(b","):
        lo, _, hi = part.partition(b":")
        gone.update(range(int(lo), int(hi or lo) + 1))
    assert gone == {known[1], known[5]}
    fetched = {int(m.group(1)): m.group(0) for m in re.finditer(rb"UID (\d+) FLAGS \(([^)]*)\) MODSEQ", text)}
    assert known[3] in fetched and b"$Important" in fetched[known[3]]
    # What a QRESYNC client computes: known minus vanished, plus the new arrivals it is told of.
    exists = int(re.search(rb"\* (\d+) EXISTS", text).group(1))  # type: ignore[union-attr]
    model = sorted((set(known) - gone) | {u for u in fetched if u > known[-1]})
    assert model == final and exists == len(final)
    # Live updates now come as VANISHED, not EXPUNGE.
    again.ok(f"UID STORE {final[0]} +FLAGS (\\Deleted)")
    lines = again.ok("EXPUNGE")
    assert f"* VANISHED {final[0]}".encode() in lines
    lines = again.ok(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {modseq} VANISHED)")
    assert any(ln.startswith(b"* VANISHED (EARLIER)") for ln in lines)
    again.close()


def test_qresync_needs_enable(client: RawIMAP) -> None:
    _, tagged = client.command("SELECT INBOX (QRESYNC (1 1))")
    assert b"BAD" in tagged


def test_esearch_and_searchres(server: RunningServer, client: RawIMAP) -> None:
    fill(server, "Find", [message(f"find {i}") for i in range(6)])
    client.ok("SELECT Find")
    client.ok("STORE 2,4,5 +FLAGS (\\Flagged)")
    lines = client.ok("SEARCH RETURN (MIN MAX COUNT ALL) FLAGGED")
    assert re.search(rb'\* ESEARCH \(TAG "t\d+"\) MIN 2 MAX 5 ALL 2,4:5 COUNT 3', lines[0]), lines
    lines = client.ok("UID SEARCH RETURN () FLAGGED")
    assert re.search(rb"\* ESEARCH \(TAG \"t\d+\"\) UID ALL \d+", lines[0])
    lines = client.ok("SEARCH RETURN (COUNT) SUBJECT nothing-like-this")
    assert lines[0].endswith(b"COUNT 0")
    assert client.ok("SEARCH RETURN (SAVE) FLAGGED") == []
    lines = client.ok("FETCH $ (FLAGS)")
    assert [ln.split()[1] for ln in lines] == [b"2", b"4", b"5"]
    lines = client.ok("SEARCH $ SUBJECT \"find 3\"")
    assert lines == [b"* SEARCH 4"]


def test_sort_and_thread(server: RunningServer, client: RawIMAP) -> None:
    fill(server, "Sorted", [
        message("banana", sender="Zed <zed@example.org>", date="Tue, 03 Nov 2026 10:00:00 +0000",
                msgid="<a@x>"),
        message("Re: apple", sender="Amy <amy@example.org>", date="Wed, 04 Nov 2026 10:00:00 +0000",
                msgid="<b@x>", in_reply_to="<c@x>"),
        message("apple", sender="bob@example.org", date="Mon, 02 Nov 2026 10:00:00 +0000", msgid="<c@x>"),
    ])
    client.ok("SELECT Sorted")
    assert client.ok("SORT (DATE) UTF-8 ALL") == [b"* SORT 3 1 2"]
    assert client.ok("SORT (REVERSE DATE) UTF-8 ALL") == [b"* SORT 2 1 3"]
    assert client.ok("SORT (SUBJECT DATE) US-ASCII ALL") == [b"* SORT 3 2 1"]
    assert client.ok("SORT (DISPLAYFROM) UTF-8 ALL") == [b"* SORT 2 3 1"]
    uids = [int(x) for x in client.ok("UID SEARCH ALL")[0].split()[2:]]
    assert client.ok("UID SORT (REVERSE DATE) UTF-8 ALL") == [f"* SORT {uids[1]} {uids[0]} {uids[2]}".encode()]
    # Equal arrival times (same second): ties go to sequence order, also under REVERSE (RFC 5256). The
    # three APPENDs may straddle a second on a busy machine: the expected order comes from INTERNALDATE.
    import email.utils

    dates = {int(m.group(1)): email.utils.parsedate_to_datetime(m.group(2).decode())
             for line in client.ok("FETCH 1:3 (INTERNALDATE)")
             if (m := re.search(rb'^\* (\d+) FETCH \(INTERNALDATE "([^"]+)"\)', line))}
    expected = sorted(dates, key=lambda seq: (-dates[seq].timestamp(), seq))
    assert client.ok("SORT (REVERSE ARRIVAL) UTF-8 ALL") == [b"* SORT " + " ".join(map(str, expected)).encode()]
    assert client.ok("THREAD REFERENCES UTF-8 ALL") == [b"* THREAD (3 2)(1)"]  # roots by sent date
    assert client.ok("THREAD ORDEREDSUBJECT UTF-8 ALL") == [b"* THREAD (3 2)(1)"]
    lines = client.ok("THREAD REFS UTF-8 ALL")
    assert lines[0].startswith(b"* THREAD ") and b"(3 2)" in lines[0]
    _, tagged = client.command("SORT (DATE) KOI8-R ALL")
    assert b"NO [BADCHARSET" in tagged


def test_list_extended_and_status(server: RunningServer, client: RawIMAP) -> None:
    client.ok("CREATE Lists/Sub")
    client.ok("SUBSCRIBE Lists/Sub")
    client.ok("UNSUBSCRIBE Lists")
    client.ok("SUBSCRIBE Gone")  # remains subscribed after the mailbox is deleted
    lines = client.ok('LIST (SUBSCRIBED) "" "*"')
    text = b"\n".join(lines)
    assert b'\\Subscribed) "/" "Lists/Sub"' in text
    assert b"\\NonExistent" in text and b"Gone" in text
    lines = client.ok('LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"')
    assert any(b'"/" "Lists" ("CHILDINFO" ("SUBSCRIBED"))' in ln for ln in lines), lines
    lines = client.ok('LIST (SPECIAL-USE) "" "*" RETURN (SUBSCRIBED)')
    assert len(lines) == 5 and all(b"\\Subscribed" in ln for ln in lines)
    lines = client.ok('LIST "" "*" RETURN (STATUS (MESSAGES UNSEEN))')
    assert any(ln.startswith(b'* STATUS "INBOX" (MESSAGES ') for ln in lines)
    assert not any(ln.startswith(b'* STATUS "Gone"') for ln in lines)
    _, tagged = client.command('LIST (RECURSIVEMATCH) "" "*"')
    assert b"BAD" in tagged


def test_binary_fetch_decodes_server_side(server: RunningServer, client: RawIMAP) -> None:
    payload = bytes(range(256)) * 4
    fill(server, "Bin", [message("binary", attachment=payload)])
    client.ok("SELECT Bin")
    lines = client.ok("FETCH 1 (BINARY.PEEK[2] BINARY.SIZE[2])")
    assert b"BINARY[2] ~{1024}\r\n" in lines[0]
    start = lines[0].index(b"~{1024}\r\n") + len(b"~{1024}\r\n")
    assert lines[0][start:start + 1024] == payload
    assert b"BINARY.SIZE[2] 1024" in lines[0]
    lines = client.ok("FETCH 1 (BODY.PEEK[2])")
    assert base64.b64decode(lines[0].split(b"}\r\n", 1)[1].rsplit(b")", 1)[0]) == payload


def test_utf8_accept(server: RunningServer, client: RawIMAP) -> None:
    assert client.ok("ENABLE UTF8=ACCEPT") == [b"* ENABLED UTF8=ACCEPT"]
    client.ok('CREATE "Entwürfe-utf8"'.encode())
    lines = client.ok('LIST "" "Entw*"')
    assert any("Entwürfe-utf8".encode() in ln for ln in lines)
    plain = RawIMAP(server.host, server.port)
    plain.ok("LOGIN alice secret1")
    lines = plain.ok('LIST "" "Entw*"')
    assert any(b"Entw&APw-rfe-utf8" in ln for ln in lines)
    plain.close()

"""MULTIAPPEND (RFC 3502), CATENATE (RFC 4469) with URL-PARTIAL (RFC 5550), REPLACE (RFC 8508): the
RFCs' examples and their failure cases as exact exchanges with a real server.

The server's APPENDLIMIT is small (4096) so that TOOBIG is reachable.
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Iterator

import pytest

from tests.conftest import RunningServer, imapd_cli, start_server, stop_server
from tests.rawimap import RawIMAP

LIMIT = 4096


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data_dir = tmp_path_factory.mktemp("append-ext") / "data"
    data_dir.mkdir()
    for name, password in (("alice", "secret1"), ("bob", "secret2")):
        imapd_cli("user", "add", name, "--password-stdin", "--data-dir", str(data_dir), stdin=password)
    srv = start_server(data_dir, "-o", f"limits.max_literal={LIMIT}")
    srv.users.update(alice="secret1", bob="secret2")
    try:
        yield srv
    finally:
        stop_server(srv)
        if srv.proc.returncode not in (0, -signal.SIGTERM):
            print(srv.log())


def message(subject: str, body: str = "hello\r\n") -> bytes:
    return (f"From: a@example.org\r\nTo: b@example.org\r\nSubject: {subject}\r\n"
            f"Date: Mon, 02 Nov 2026 10:00:00 +0000\r\n\r\n{body}").encode()


MULTIPART = (
    b"From: Fred Foobar <foobar@Blurdybloop.example>\r\nSubject: afternoon meeting\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"bnd\"\r\n\r\n"
    b"--bnd\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nHello Joe, do you think we can meet?\r\n"
    b"--bnd\r\nContent-Type: application/octet-stream\r\n\r\nAAEC\r\n--bnd--\r\n"
)
MULTIPART_HEADER = MULTIPART[: MULTIPART.index(b"\r\n\r\n") + 4]
PART1_MIME = b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
PART1 = b"Hello Joe, do you think we can meet?"


def login(server: RunningServer, user: str = "alice") -> RawIMAP:
    c = RawIMAP(server.host, server.port)
    c.ok(f"LOGIN {user} {server.users[user]}")
    return c


def sync(c: RawIMAP, pieces: list[bytes], tag: bytes) -> tuple[int, list[bytes], bytes]:
    """Send a command whose pieces end in synchronizing literals, each after the server's ``+``;
    return (continuations seen, untagged lines, tagged line)."""
    c.sock.sendall(pieces[0])
    plus = 0
    for piece in pieces[1:]:
        line = c.readline()
        assert line.startswith(b"+ "), (line, piece[:40])
        plus += 1
        c.sock.sendall(piece)
    untagged: list[bytes] = []
    while True:
        line = c.readline().rstrip(b"\r\n")
        if line.startswith(tag + b" "):
            return plus, untagged, line
        untagged.append(line)


def command(c: RawIMAP, data: bytes, tag: bytes = b"t") -> tuple[list[bytes], bytes]:
    return c.command(data, tag.decode())


def count(c: RawIMAP, mailbox: str) -> int:
    lines = c.ok(f"STATUS {mailbox} (MESSAGES)")
    m = re.search(rb"MESSAGES (\d+)", lines[0])
    assert m, lines
    return int(m.group(1))


def uidvalidity(c: RawIMAP, mailbox: str) -> int:
    m = re.search(rb"UIDVALIDITY (\d+)", c.ok(f"STATUS {mailbox} (UIDVALIDITY)")[0])
    assert m
    return int(m.group(1))


def bodies(c: RawIMAP, mailbox: str) -> list[bytes]:
    """Every message of ``mailbox``, in UID order (the session ends up in AUTHENTICATED state)."""
    c.ok(f"EXAMINE {mailbox}")
    out = []
    for line in c.ok("FETCH 1:* BODY.PEEK[]") if count(c, mailbox) else []:
        head, _, rest = line.partition(b"}\r\n")
        size = int(head.rsplit(b"{", 1)[1])
        out.append(rest[:size])
    c.ok("UNSELECT")
    return out


def literal_plus(data: bytes) -> bytes:
    return b"{%d+}\r\n" % len(data) + data


def appenduid(line: bytes) -> tuple[int, str]:
    m = re.search(rb"\[APPENDUID (\d+) ([0-9:,]+)\]", line)
    assert m, line
    return int(m.group(1)), m.group(2).decode()


# -- MULTIAPPEND -----------------------------------------------------------------------------------------
def test_capabilities_advertised(server: RunningServer) -> None:
    c = login(server)
    caps = c.ok("CAPABILITY")[0].split()
    for cap in (b"MULTIAPPEND", b"CATENATE", b"URL-PARTIAL", b"REPLACE", b"UIDPLUS", b"LITERAL+",
                b"APPENDLIMIT=%d" % LIMIT):
        assert cap in caps
    c.close()


def test_rfc3502_example_with_synchronizing_literals(server: RunningServer) -> None:
    c = login(server)
    c.ok("CREATE saved-messages")
    one, two = message("afternoon meeting"), message("afternoon meeting again", "second\r\n")
    plus, untagged, tagged = sync(c, [
        b"A003 APPEND saved-messages (\\Seen) {%d}\r\n" % len(one),
        one + b" (\\Seen) {%d}\r\n" % len(two),
        two + b"\r\n",
    ], b"A003")
    assert plus == 2 and untagged == []
    assert tagged.startswith(b"A003 OK [APPENDUID ")
    assert appenduid(tagged) == (uidvalidity(c, "saved-messages"), "1:2")
    assert bodies(c, "saved-messages") == [one, two]
    c.ok("EXAMINE saved-messages")
    assert c.ok("FETCH 1:2 (FLAGS)") == [b"* 1 FETCH (FLAGS (\\Seen \\Recent))", b"* 2 FETCH (FLAGS (\\Seen \\Recent))"]
    c.close()


def test_literal_plus_multiappend_gives_a_uid_set(server: RunningServer) -> None:
    c = login(server)
    c.ok("CREATE Many")
    c.ok(b"APPEND Many " + literal_plus(message("first")))
    msgs = [message(f"m{i}") for i in range(3)]
    untagged, tagged = command(c, b"APPEND Many " + b" ".join(
        b'(\\Flagged) "02-Nov-2026 10:00:00 +0000" ' + literal_plus(m) for m in msgs))
    assert tagged.startswith(b"t OK") and untagged == []
    assert appenduid(tagged) == (uidvalidity(c, "Many"), "2:4")
    assert bodies(c, "Many")[1:] == msgs
    c.ok("EXAMINE Many")
    assert c.ok("FETCH 4 (FLAGS INTERNALDATE)") == [
        b'* 4 FETCH (FLAGS (\\Flagged \\Recent) INTERNALDATE " 2-Nov-2026 10:00:00 +0000")']
    c.close()


def test_multiappend_into_the_selected_mailbox_announces_all(server: RunningServer) -> None:
    c = login(server)
    c.ok("CREATE Sel")
    c.ok("SELECT Sel")
    untagged, tagged = command(c, b"APPEND Sel " + literal_plus(message("a")) + b" " + literal_plus(message("b")))
    assert tagged.startswith(b"t OK [APPENDUID ") and untagged == [b"* 2 EXISTS", b"* 2 RECENT"]
    c.close()


@pytest.mark.parametrize(("second", "reply"), [
    (b"{0+}\r\n", b"t NO [CANNOT]"),                          # an empty message
    (b"CATENATE (URL \"/INBOX/;UID=999999\")", b"t NO [BADURL /INBOX/;UID=999999]"),
    (b"CATENATE (URL \"/Nope/;UID=1\" TEXT {1+}\r\nx)", b"t NO [BADURL /Nope/;UID=1]"),
])
def test_multiappend_is_all_or_none(server: RunningServer, second: bytes, reply: bytes) -> None:
    c = login(server)
    c.command("CREATE AllOrNone")
    before = count(c, "AllOrNone")
    _untagged, tagged = command(c, b"APPEND AllOrNone " + literal_plus(message("kept?")) + b" " + second
                               + b" " + literal_plus(message("kept too?")))
    assert tagged.startswith(reply), tagged
    assert count(c, "AllOrNone") == before
    c.close()


def test_a_message_over_appendlimit_refuses_the_whole_multiappend(server: RunningServer) -> None:
    c = login(server)
    c.ok("CREATE Big")
    small = message("small")
    # Synchronizing: the first literal is accepted, the second one is refused without a continuation.
    plus, untagged, tagged = sync(c, [b"a1 APPEND Big {%d}\r\n" % len(small),
                                      small + b" {%d}\r\n" % (LIMIT + 1)], b"a1")
    assert plus == 1 and untagged == [] and tagged.startswith(b"a1 BAD [TOOBIG]"), tagged
    # Non-synchronizing: the oversized literal is read off and dropped, then the connection goes on.
    untagged, tagged = command(c, b"APPEND Big " + literal_plus(small) + b" " + literal_plus(b"x" * (LIMIT + 1))
                               + b" " + literal_plus(small), b"a2")
    assert tagged.startswith(b"a2 BAD [TOOBIG]"), tagged
    assert count(c, "Big") == 0
    c.close()


def test_multiappend_to_a_missing_mailbox(server: RunningServer) -> None:
    c = login(server)
    _untagged, tagged = command(c, b"APPEND Missing " + literal_plus(message("a")) + b" " + literal_plus(message("b")))
    assert tagged.startswith(b"t NO [TRYCREATE]")
    c.close()


@pytest.mark.parametrize("cut", ["between messages", "inside a literal", "while waiting for +"])
def test_a_multiappend_cut_off_by_a_disconnect_keeps_nothing(server: RunningServer, cut: str) -> None:
    c = login(server)
    c.command("CREATE Cut")
    before = count(c, "Cut")
    one = message("one")
    if cut == "while waiting for +":
        c.sock.sendall(b"a APPEND Cut " + literal_plus(one) + b" {%d}\r\n" % len(one))
        assert c.readline().startswith(b"+ ")
    elif cut == "inside a literal":
        c.sock.sendall(b"a APPEND Cut " + literal_plus(one) + b" " + literal_plus(one)[:20])
    else:
        c.sock.sendall(b"a APPEND Cut " + literal_plus(one) + b" " + literal_plus(one) + b" ")
    time.sleep(0.2)  # everything sent so far has reached the server
    c.close()
    other = login(server)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:  # the server has seen the close; nothing may show up
        assert count(other, "Cut") == before
        time.sleep(0.1)
    other.close()


# -- CATENATE ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def drafts(server: RunningServer) -> tuple[int, int, int]:
    """Drafts holds the RFC's multipart draft (UID 1) and a forwarded message (UID 2); (uidvalidity, 1, 2)."""
    c = login(server)
    c.command("CREATE Drafts")  # may exist already: new users get the special-use mailboxes
    _, first = command(c, b"APPEND Drafts (\\Draft) " + literal_plus(MULTIPART))
    _, second = command(c, b"APPEND Drafts " + literal_plus(message("forwarded")))
    v = uidvalidity(c, "Drafts")
    assert (appenduid(first), appenduid(second)) == ((v, "1"), (v, "2"))
    c.close()
    return v, 1, 2


def test_rfc4469_first_example(server: RunningServer, drafts: tuple[int, int, int]) -> None:
    v, draft, fwd = drafts
    base = b"/Drafts;UIDVALIDITY=%d/;UID=%d" % (v, draft)
    sep, end = b"\r\n--------------030308070208000400050907\r\n", b"\r\n--------------030308070208000400050907--\r\n"
    c = login(server)
    plus, untagged, tagged = sync(c, [
        b"A003 APPEND Drafts (\\Seen \\Draft $MDNSent) CATENATE (URL \"" + base + b"/;section=HEADER\" TEXT {%d}\r\n"
        % len(sep),
        sep + b" URL \"" + base + b"/;section=1.MIME\" URL \"" + base + b"/;section=1\" TEXT {%d}\r\n" % len(sep),
        sep + b" URL \"/Drafts;UIDVALIDITY=%d/;UID=%d\" TEXT {%d}\r\n" % (v, fwd, len(end)),
        end + b")\r\n",
    ], b"A003")
    assert plus == 3 and untagged == [] and tagged.startswith(b"A003 OK [APPENDUID %d 3]" % v), tagged
    assert bodies(c, "Drafts")[2] == MULTIPART_HEADER + sep + PART1_MIME + sep.join([PART1, message("forwarded")]) + end
    c.ok("EXAMINE Drafts")
    assert c.ok("FETCH 3 FLAGS") == [b"* 3 FETCH (FLAGS (\\Seen \\Draft $MDNSent \\Recent))"]
    c.close()


def test_rfc4469_second_example_badurl(server: RunningServer, drafts: tuple[int, int, int]) -> None:
    v, draft, _ = drafts
    bad = b"/INBOX;UIDVALIDITY=785799047/;UID=113330;section=1.5.9"
    c = login(server)
    before = count(c, "Drafts")
    _untagged, tagged = command(c, b"APPEND Drafts CATENATE (URL \"/Drafts;UIDVALIDITY=%d/;UID=%d/;section=HEADER\""
                               b" TEXT {42+}\r\n%s URL \"%s\")" % (v, draft, b"x" * 42, bad), b"A004")
    assert tagged.startswith(b"A004 NO [BADURL " + bad + b"] "), tagged
    assert count(c, "Drafts") == before
    c.close()


@pytest.mark.parametrize(("url", "expected"), [
    (b"/Drafts/;UID=2/;PARTIAL=0.4", message("forwarded")[:4]),
    (b"/Drafts/;UID=2/;SECTION=TEXT/;PARTIAL=2", b"llo\r\n"),
    (b"/Drafts/;UID=1/;SECTION=HEADER.FIELDS%20(SUBJECT)", b"Subject: afternoon meeting\r\n\r\n"),
    (b"/Drafts/;UID=1/;SECTION=2", b"AAEC"),                # as stored: no transfer decoding
    (b"/Drafts/;uid=2/;partial=100000", b""),               # past the end: nothing, the TEXT alone is kept
    (b"imap://alice@any.host.example/Drafts/;UID=2/;PARTIAL=0.4", message("forwarded")[:4]),
    (b"imap://alice;AUTH=*@localhost:143/Drafts/;UID=2/;PARTIAL=0.4", message("forwarded")[:4]),
])
def test_url_partial_and_sections(server: RunningServer, drafts: tuple[int, int, int], url: bytes,
                                  expected: bytes) -> None:
    c = login(server)
    c.command("CREATE Cat")
    _untagged, tagged = command(c, b"APPEND Cat CATENATE (URL \"" + url + b"\" TEXT {1+}\r\n!)")
    assert tagged.startswith(b"t OK [APPENDUID"), tagged
    assert bodies(c, "Cat")[-1] == expected + b"!"
    c.close()


@pytest.mark.parametrize("url", [
    b"imap://bob@localhost/INBOX/;UID=1",     # another user's message, which exists
    b"imap://localhost/INBOX/;UID=1",         # anonymous
    b"/Drafts;UIDVALIDITY=1/;UID=1",          # stale UIDVALIDITY
    b"/Drafts/;UID=1/;SECTION=3",             # no such part
    b"/Drafts/;UID=1/;SECTION=1.HEADER",      # not a message/rfc822 part
    b"/Drafts/;UID=1/;URLAUTH=anonymous:internal:00",
    b"Drafts/;UID=1",                         # relative to nothing
    b"/Drafts/../INBOX/;UID=1",               # names no mailbox can have
    b"/Dr%00afts/;UID=1",
    b"/drafts/;UID=1",                        # only INBOX is case-insensitive
])
def test_badurl(server: RunningServer, drafts: tuple[int, int, int], url: bytes) -> None:
    bob = login(server, "bob")
    bob.command(b"APPEND INBOX " + literal_plus(message("bob's")))
    bob.close()
    c = login(server)
    c.command("CREATE Cat")
    before = count(c, "Cat")
    _untagged, tagged = command(c, b"APPEND Cat CATENATE (URL \"" + url + b"\" TEXT {1+}\r\n!)")
    assert tagged.startswith(b"t NO [BADURL " + url + b"] "), tagged
    assert count(c, "Cat") == before
    c.close()


def test_catenate_toobig(server: RunningServer) -> None:
    c = login(server)
    c.ok("CREATE Huge")
    c.ok(b"APPEND Huge " + literal_plus(message("big", "y" * 3000)))
    _, tagged = command(c, b"APPEND Huge CATENATE (URL \"/Huge/;UID=1\" TEXT {5+}\r\nhello)")
    assert tagged.startswith(b"t OK"), tagged
    untagged, tagged = command(c, b"APPEND Huge CATENATE (URL \"/Huge/;UID=1\" URL \"/Huge/;UID=1\")")
    assert tagged.startswith(b"t NO [TOOBIG]") and untagged == [], tagged
    # A TEXT part alone is refused by its literal's size, before the command is parsed.
    _untagged, tagged = command(c, b"APPEND Huge CATENATE (TEXT " + literal_plus(b"z" * (LIMIT + 1)) + b")")
    assert tagged.startswith(b"t BAD [TOOBIG]"), tagged
    assert count(c, "Huge") == 2
    c.close()


def test_catenate_of_a_delivered_message_larger_than_appendlimit(server: RunningServer) -> None:
    """An MDA may deliver more than APPENDLIMIT: a range of it can still be used, the whole cannot."""
    big = message("delivered", "z" * (3 * LIMIT))
    c = login(server)
    c.ok("CREATE Delivered")
    imapd_cli("deliver", "alice", "--mailbox", "Delivered", "--data-dir", str(server.data_dir), stdin=big)
    deadline = time.monotonic() + 10
    while count(c, "Delivered") == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    untagged, tagged = command(c, b"APPEND Delivered CATENATE (URL \"/Delivered/;UID=1\")")
    assert tagged.startswith(b"t NO [TOOBIG]") and untagged == [], tagged
    untagged, tagged = command(c, b"APPEND Delivered CATENATE (URL \"/Delivered/;UID=1/;PARTIAL=%d.100\")" % LIMIT)
    assert tagged.startswith(b"t OK"), tagged
    untagged, tagged = command(c, b"APPEND Delivered CATENATE (URL \"/Delivered/;UID=1/;SECTION=TEXT/;PARTIAL=5.10\")")
    assert tagged.startswith(b"t OK"), tagged
    assert bodies(c, "Delivered")[1:] == [big[LIMIT : LIMIT + 100], b"z" * 10]
    c.close()


def test_catenate_with_multiappend(server: RunningServer, drafts: tuple[int, int, int]) -> None:
    c = login(server)
    c.ok("CREATE CatMulti")
    plus, _untagged, tagged = sync(c, [
        b"a APPEND CatMulti CATENATE (URL \"/Drafts/;UID=2/;SECTION=HEADER\" TEXT {4}\r\n",
        b"body) (\\Seen) {5}\r\n",
        b"plain CATENATE (TEXT {3+}\r\nabc URL \"/Drafts/;UID=1/;SECTION=1\")\r\n",
    ], b"a")
    assert plus == 2 and tagged.startswith(b"a OK"), tagged
    assert appenduid(tagged) == (uidvalidity(c, "CatMulti"), "1:3")
    header = message("forwarded")[: message("forwarded").index(b"\r\n\r\n") + 4]
    assert bodies(c, "CatMulti") == [header + b"body", b"plain", b"abc" + PART1]
    c.close()


def test_catenate_empty_result_is_refused(server: RunningServer, drafts: tuple[int, int, int]) -> None:
    c = login(server)
    _untagged, tagged = command(c, b"APPEND Drafts CATENATE (TEXT {0+}\r\n URL \"/Drafts/;UID=2/;PARTIAL=99999\")")
    assert tagged.startswith(b"t NO [CANNOT]"), tagged
    c.close()


# -- REPLACE ------------------------------------------------------------------------------------------------
def fill(c: RawIMAP, mailbox: str, n: int) -> None:
    c.command(f"CREATE {mailbox}")
    for i in range(n):
        c.ok(b"APPEND " + mailbox.encode() + b" (\\Draft) " + literal_plus(message(f"draft {i + 1}")))


def test_rfc8508_replace_in_the_selected_mailbox(server: RunningServer) -> None:
    c = login(server)
    fill(c, "Drafts8508", 4)
    v = uidvalidity(c, "Drafts8508")
    c.ok("SELECT Drafts8508")
    new = message("draft 4, edited", "more text\r\n")
    plus, untagged, tagged = sync(c, [b"A003 REPLACE 4 Drafts8508 (\\Seen \\Draft) {%d}\r\n" % len(new),
                                      new + b"\r\n"], b"A003")
    assert plus == 1
    assert untagged[0] == b"* OK [APPENDUID %d 5] Replacement Message ready" % v
    assert sorted(untagged[1:]) == [b"* 4 EXISTS", b"* 4 EXPUNGE", b"* 4 RECENT"], untagged
    assert tagged == b"A003 OK REPLACE completed"
    assert c.ok("UID FETCH 1:* (UID FLAGS)")[-1] == b"* 4 FETCH (UID 5 FLAGS (\\Seen \\Draft \\Recent))"
    c.ok("UNSELECT")
    assert bodies(c, "Drafts8508")[-1] == new and count(c, "Drafts8508") == 4
    c.close()


def test_rfc8508_uid_replace_into_another_mailbox(server: RunningServer) -> None:
    c = login(server)
    fill(c, "Work", 3)
    c.command("CREATE Sent8508")
    v = uidvalidity(c, "Sent8508")
    c.ok("SELECT Work")
    new = message("sent")
    untagged, tagged = command(c, b"UID REPLACE 2 Sent8508 " + literal_plus(new), b"A004")
    assert untagged == [b"* OK [APPENDUID %d 1] Replacement Message ready" % v, b"* 2 EXPUNGE"]
    assert tagged == b"A004 OK REPLACE completed"
    assert c.ok("UID SEARCH ALL") == [b"* SEARCH 1 3"]
    c.ok("UNSELECT")
    assert bodies(c, "Sent8508") == [new]
    c.close()


def test_replace_with_qresync_reports_vanished_and_others_see_it(server: RunningServer) -> None:
    c, watcher = login(server), login(server)
    fill(c, "QR", 2)
    c.ok("ENABLE QRESYNC")
    c.ok("SELECT QR")
    watcher.ok("SELECT QR")
    untagged, tagged = command(c, b"UID REPLACE 1 QR " + literal_plus(message("v2")))
    assert untagged[0].startswith(b"* OK [APPENDUID ") and b"* VANISHED 1" in untagged, untagged
    assert tagged.startswith(b"t OK")
    lines = watcher.ok("NOOP")
    assert lines.index(b"* 1 EXPUNGE") < lines.index(b"* 2 EXISTS"), lines
    c.close()
    watcher.close()


def test_replace_with_catenate_keeps_parts_of_the_old_draft(server: RunningServer) -> None:
    c = login(server)
    c.command("CREATE CatDraft")
    c.ok(b"APPEND CatDraft (\\Draft) " + literal_plus(MULTIPART))
    c.ok("SELECT CatDraft")
    untagged, tagged = command(c, b"UID REPLACE 1 CatDraft (\\Draft) CATENATE (URL \"/CatDraft/;UID=1/;SECTION=HEADER\""
                               b" TEXT {9+}\r\nnew body\n)")
    assert tagged == b"t OK REPLACE completed", (untagged, tagged)
    c.ok("UNSELECT")
    assert bodies(c, "CatDraft") == [MULTIPART_HEADER + b"new body\n"]
    c.close()


def test_replace_failures_leave_both_mailboxes_alone(server: RunningServer) -> None:
    c = login(server)
    fill(c, "Keep", 2)
    c.ok("SELECT Keep")
    body = literal_plus(message("new"))
    cases = [
        (b"REPLACE 1 NoSuchBox " + body, b"t NO [TRYCREATE]"),
        (b"REPLACE 3 Keep " + body, b"t BAD"),                    # no message 3
        (b"UID REPLACE 99 Keep " + body, b"t NO"),                # no UID 99
        (b"REPLACE 1 Keep {0+}\r\n", b"t NO [CANNOT]"),           # empty
        (b"REPLACE 1 Keep CATENATE (URL \"/Keep/;UID=77\")", b"t NO [BADURL /Keep/;UID=77]"),
    ]
    for cmd, reply in cases:
        untagged, tagged = command(c, cmd)
        assert tagged.startswith(reply), (cmd, tagged)
        assert not any(b"EXPUNGE" in u or b"EXISTS" in u for u in untagged), untagged
    assert c.ok("UID SEARCH ALL") == [b"* SEARCH 1 2"]
    c.ok("EXAMINE Keep")
    untagged, tagged = command(c, b"REPLACE 1 Keep " + body)
    assert tagged.startswith(b"t NO [READ-ONLY]"), tagged
    c.ok("UNSELECT")
    untagged, tagged = command(c, b"REPLACE 1 Keep " + body)
    assert tagged.startswith(b"t BAD"), tagged                    # needs a selected mailbox
    assert count(c, "Keep") == 2
    c.close()

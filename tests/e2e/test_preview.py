"""RFC 8970 PREVIEW against a real server: imaplib's generic FETCH path and exact transcripts."""

from __future__ import annotations

import imaplib

from tests.conftest import RunningServer
from tests.rawimap import RawIMAP

PLAIN = (b"From: a@example.org\r\nTo: alice@example.org\r\nSubject: lunch\r\nMIME-Version: 1.0\r\n"
         b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
         b"Shall we meet for lunch at the caf=C3=A9?\r\n\r\n> earlier quoted text\r\nCheers\r\n")
HTML = (b"From: a@example.org\r\nSubject: news\r\nMIME-Version: 1.0\r\nContent-Type: text/html\r\n\r\n"
        b"<html><head><style>p {}</style></head><body><p>Weekly &amp; monthly</p><p>news</p></body></html>\r\n")
NOTEXT = (b"From: a@example.org\r\nSubject: pic\r\nMIME-Version: 1.0\r\nContent-Type: image/png\r\n"
          b"Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n")


def test_imaplib_fetch_preview_lazy_then_computed(server: RunningServer) -> None:
    imap = imaplib.IMAP4(server.host, server.port)
    imap.login("alice", "secret1")
    assert "PREVIEW" in imap.capabilities
    imap.create("Previews")
    for raw in (PLAIN, HTML, NOTEXT):
        assert imap.append("Previews", None, None, raw)[0] == "OK"
    imap.select("Previews")
    typ, data = imap.fetch("1:3", "(PREVIEW (LAZY))")
    assert typ == "OK"
    assert data == [b"1 (PREVIEW NIL)", b"2 (PREVIEW NIL)", b"3 (PREVIEW NIL)"]  # not computed yet
    typ, data = imap.fetch("1:2", "(PREVIEW)")
    assert typ == "OK"
    # 8-bit text without UTF8=ACCEPT: a literal
    assert data[0] == (b"1 (PREVIEW {44}", "Shall we meet for lunch at the café? Cheers".encode())
    assert data[2] == b'2 (PREVIEW "Weekly & monthly news")'
    typ, data = imap.fetch("1:3", "(PREVIEW (LAZY) FLAGS)")
    assert data[-1] == b"3 (PREVIEW NIL FLAGS (\\Recent))"
    assert data[2] == b'2 (PREVIEW "Weekly & monthly news" FLAGS (\\Recent))'  # now cached: LAZY has it
    typ, data = imap.uid("FETCH", "3", "(PREVIEW)")
    assert typ == "OK" and data == [b'3 (UID 3 PREVIEW "")']  # no text at all: the empty string, not NIL
    imap.close()
    imap.delete("Previews")
    imap.logout()


def test_preview_transcript_utf8_and_seen(server: RunningServer) -> None:
    c = RawIMAP(server.host, server.port)
    c.ok("LOGIN alice secret1")
    c.ok("CREATE Prev2")
    c.ok(b"APPEND Prev2 {%d+}\r\n" % len(PLAIN) + PLAIN)
    c.ok("ENABLE UTF8=ACCEPT")
    c.ok("SELECT Prev2")
    untagged = c.ok("FETCH 1 (PREVIEW FLAGS)")
    assert untagged == ['* 1 FETCH (PREVIEW "Shall we meet for lunch at the café? Cheers" FLAGS (\\Recent))'.encode()]
    assert c.ok("FETCH 1 FLAGS") == [b"* 1 FETCH (FLAGS (\\Recent))"]  # PREVIEW does not set \Seen
    _, tagged = c.command("FETCH 1 (PREVIEW (EAGER))")
    assert tagged.startswith(b"t") and b" BAD " in tagged
    c.ok("CLOSE")
    c.ok("DELETE Prev2")
    c.ok("LOGOUT")
    c.close()

"""RFC 9585 INPROGRESS from a real server: progress lines of a long SEARCH, COPY, MOVE and EXPUNGE, in
order, before the tagged answer, with numbers that only grow; none for a quick command by default."""

from __future__ import annotations

import imaplib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RunningServer, imapd_cli, start_server, stop_server
from tests.rawimap import RawIMAP

COUNT = 120
_PROGRESS = re.compile(rb'^\* OK \[INPROGRESS \("(?P<tag>[^"]+)" (?P<done>\d+|NIL) (?P<total>\d+|NIL)\)\] ')


def msg(n: int) -> bytes:
    return (f"From: a@example.org\r\nTo: carl@example.org\r\nSubject: m{n}\r\n\r\n"
            f"line one of {n}\r\n{'filler text ' * 40}\r\n").encode()


@pytest.fixture(scope="module")
def eager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server that reports progress at every step (interval of a microsecond), with a full mailbox."""
    data = tmp_path_factory.mktemp("inprogress") / "data"
    imapd_cli("user", "add", "carl", "--password-stdin", "--data-dir", str(data), stdin="pw-carl")
    srv = start_server(data, "-o", "server.progress_interval=0.000001")
    srv.users["carl"] = "pw-carl"
    c = RawIMAP(srv.host, srv.port)
    c.ok("LOGIN carl pw-carl")
    for n in range(COUNT):
        data_ = msg(n)
        c.ok(b"APPEND INBOX {%d+}\r\n" % len(data_) + data_)
    c.close()
    try:
        yield srv
    finally:
        stop_server(srv)


def _progress(lines: list[bytes], tag: str) -> list[tuple[int, int | None]]:
    out = []
    for line in lines:
        m = _PROGRESS.match(line)
        if m:
            assert m.group("tag").decode() == tag
            out.append((int(m.group("done")), None if m.group("total") == b"NIL" else int(m.group("total"))))
    return out


def _check(steps: list[tuple[int, int | None]], total: int) -> None:
    assert len(steps) >= 2, steps
    dones = [d for d, _ in steps]
    assert dones == sorted(dones) and all(t == total for _, t in steps) and dones[-1] < total, steps


def test_search_body_reports_progress(eager: RunningServer) -> None:
    c = RawIMAP(eager.host, eager.port)
    c.ok("LOGIN carl pw-carl")
    c.ok("SELECT INBOX")
    untagged, tagged = c.command("UID SEARCH BODY \"one of 7\"", tag="S1")
    assert tagged == b"S1 OK SEARCH completed"
    assert untagged[-1] == b"* SEARCH 8 71 72 73 74 75 76 77 78 79 80"
    _check(_progress(untagged, "S1"), COUNT)
    # a search the index answers reads no file: no progress at all
    untagged, _ = c.command("SEARCH UNSEEN", tag="S2")
    assert _progress(untagged, "S2") == []
    c.close()


def test_copy_move_expunge_report_progress(eager: RunningServer) -> None:
    c = RawIMAP(eager.host, eager.port)
    c.ok("LOGIN carl pw-carl")
    c.ok("CREATE Work")
    c.ok("CREATE Done")
    c.ok("SELECT INBOX")
    untagged, tagged = c.command("COPY 1:* Work", tag="C1")
    assert tagged.startswith(b"C1 OK [COPYUID ")
    _check(_progress(untagged, "C1"), COUNT)
    c.ok("SELECT Work")
    untagged, tagged = c.command("UID MOVE 1:60 Done", tag="M1")
    assert tagged == b"M1 OK MOVE completed"
    _check(_progress(untagged, "M1"), 60)
    assert untagged.index(next(ln for ln in untagged if b"[COPYUID" in ln)) > max(
        i for i, ln in enumerate(untagged) if _PROGRESS.match(ln))  # progress first, then COPYUID, expunges
    c.ok("STORE 1:* +FLAGS.SILENT (\\Deleted)")
    untagged, tagged = c.command("EXPUNGE", tag="E1")
    assert tagged == b"E1 OK EXPUNGE completed"
    _check(_progress(untagged, "E1"), 60)
    assert sum(ln.endswith(b" EXPUNGE") for ln in untagged) == 60
    c.ok("CLOSE")
    c.ok("DELETE Work")
    c.ok("DELETE Done")
    c.close()


def test_imaplib_ignores_progress_lines(eager: RunningServer) -> None:
    imap = imaplib.IMAP4(eager.host, eager.port)
    imap.login("carl", "pw-carl")
    imap.select("INBOX", readonly=True)
    typ, data = imap.search(None, "TEXT", '"one of 11"')
    assert typ == "OK" and data == [b"12 111 112 113 114 115 116 117 118 119 120"]
    assert imap.untagged_responses.get("OK")  # the progress lines were read as untagged OKs
    imap.logout()


def test_default_interval_sends_none_for_a_quick_command(server: RunningServer, tmp_path: Path) -> None:
    c = RawIMAP(server.host, server.port)
    c.ok("LOGIN alice secret1")
    c.ok("CREATE Quick")
    for n in range(5):
        data_ = msg(n)
        c.ok(b"APPEND Quick {%d+}\r\n" % len(data_) + data_)
    c.ok("SELECT Quick")
    untagged, _ = c.command("SEARCH BODY filler", tag="Q1")
    assert _progress(untagged, "Q1") == [] and untagged == [b"* SEARCH 1 2 3 4 5"]
    c.ok("CLOSE")
    c.ok("DELETE Quick")
    c.close()

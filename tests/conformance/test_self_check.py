"""The differential check's sequences against our server alone (no peer needed): every command gets an
answer (no hang, no dropped connection), every NO/BAD carries a human-readable text (RFC 3501 7.1), and the
divergences from Dovecot that were our bugs stay fixed. ``imapdiff.py`` does the comparison with a peer."""

from __future__ import annotations

import re
import time

import pytest

from tests.conformance.cases import CASES, Case
from tests.conformance.imapdiff import Server, run_case, seed
from tests.conftest import RunningServer
from tests.rawimap import RawIMAP

_TAGGED_FAIL = re.compile(rb"^TAG (NO|BAD)(?: \[[^\]]*\])?(.*)$", re.S)


@pytest.fixture(scope="module")
def ours(server: RunningServer) -> Server:
    srv = Server(server.host, server.port, "alice", server.users["alice"])
    seed(srv, timeout=10.0)
    return srv


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case_is_answered(server: RunningServer, ours: Server, case: Case) -> None:
    transcript = run_case(ours, case, timeout=10.0)
    labels = [step for step, _ in transcript]
    assert "<timeout>" not in labels and "<connection>" not in labels, transcript[-1]
    for step, resps in transcript:
        tagged = resps[-1] if resps else b""
        if step == "LOGOUT" or tagged.startswith(b"+"):
            continue
        assert tagged.startswith(b"TAG "), (step, resps)
        m = _TAGGED_FAIL.match(tagged.rstrip(b"\r\n"))
        if m:
            assert m.group(2).strip(), f"{step!r}: {m.group(1).decode()} without text: {tagged!r}"
    assert server.proc.poll() is None


def _session(server: RunningServer) -> RawIMAP:
    c = RawIMAP(server.host, server.port)
    c.ok(f"LOGIN alice {server.users['alice']}")
    c.ok("EXAMINE conf-src")
    return c


def test_empty_section_part_is_bad(server: RunningServer, ours: Server) -> None:
    """RFC 3501 9: section-part = nz-number *("." nz-number); "1." used to be read as BODY[1]."""
    c = _session(server)
    for section in ("1.", "1..2", "0", "2..MIME"):
        untagged, tagged = c.command(f"FETCH 1 BODY.PEEK[{section}]")
        assert tagged.split()[1] == b"BAD" and not untagged, (section, untagged, tagged)
    untagged, tagged = c.command("FETCH 1 BODY.PEEK[1]")
    assert b" OK" in tagged and untagged
    c.close()


def test_bodystructure_carries_content_md5(server: RunningServer, ours: Server) -> None:
    """RFC 3501 7.4.2 body-fld-md5: the Content-MD5 value (corpus message 9 has one), NIL without."""
    c = _session(server)
    untagged, _ = c.command("FETCH 9 BODYSTRUCTURE")
    assert b' 21 3 "Q2hlY2sgSW50ZWdyaXR5IQ==" NIL NIL NIL)' in untagged[0], untagged
    untagged, _ = c.command("FETCH 1 BODYSTRUCTURE")
    assert b" 35 2 NIL NIL NIL NIL)" in untagged[0], untagged
    c.close()


def test_expunge_with_qresync_reports_highestmodseq(server: RunningServer, ours: Server) -> None:
    """RFC 7162 3.2.7, 3.2.9: with QRESYNC enabled, an EXPUNGE that removed something ends in
    ``OK [HIGHESTMODSEQ n]`` (n the mailbox's new HIGHESTMODSEQ); nothing removed, or no QRESYNC: no code."""
    c = RawIMAP(server.host, server.port)
    c.ok(f"LOGIN alice {server.users['alice']}")
    c.command('DELETE "qx"')
    c.ok('CREATE "qx"')
    c.ok('EXAMINE "conf-src"')
    c.ok('COPY 1:4 "qx"')
    c.ok('SELECT "qx"')
    c.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    untagged, tagged = c.command("EXPUNGE")
    assert untagged == [b"* 1 EXPUNGE"] and b"[HIGHESTMODSEQ" not in tagged, tagged
    c.ok("UNSELECT")
    c.ok("ENABLE QRESYNC")
    c.ok('SELECT "qx"')
    c.ok("UID STORE 3 +FLAGS.SILENT (\\Deleted)")
    untagged, tagged = c.command("UID EXPUNGE 2:4")
    m = re.match(rb"\w+ OK \[HIGHESTMODSEQ (\d+)\]", tagged)
    assert untagged == [b"* VANISHED 3"] and m, (untagged, tagged)
    status = c.ok('STATUS "qx" (HIGHESTMODSEQ)')
    assert status == [b'* STATUS "qx" (HIGHESTMODSEQ ' + m.group(1) + b")"], status
    _, tagged = c.command("EXPUNGE")
    assert b"[HIGHESTMODSEQ" not in tagged, tagged
    untagged, tagged = c.command('UID MOVE 4 "qx"')  # into itself: a new UID, the old one vanishes
    m = re.match(rb"\w+ OK \[HIGHESTMODSEQ (\d+)\]", tagged)
    assert b"* VANISHED 4" in untagged and m, (untagged, tagged)
    assert c.ok('STATUS "qx" (HIGHESTMODSEQ)') == [b'* STATUS "qx" (HIGHESTMODSEQ ' + m.group(1) + b")"]
    c.ok("CLOSE")
    c.ok('DELETE "qx"')
    c.close()


def test_hostile_list_pattern_is_answered_at_once(server: RunningServer, ours: Server) -> None:
    """``LIST "" "*a*a...*b"`` against a long name held the worker for minutes (a backtracking regex); now it
    is answered in well under a second and the other sessions of the worker go on."""
    c = RawIMAP(server.host, server.port, timeout=10)
    c.ok(f"LOGIN alice {server.users['alice']}")
    long_name = "a" * 200
    c.command(f'CREATE "{long_name}"')
    start = time.monotonic()
    for pattern in ("*" * 30 + "b", "*a" * 40 + "b", "%a" * 40 + "b"):
        untagged, tagged = c.command(f'LIST "" "{pattern}"')
        assert b" OK" in tagged and not untagged, (pattern, tagged)
    other = RawIMAP(server.host, server.port, timeout=10)
    other.ok(f"LOGIN alice {server.users['alice']}")
    assert time.monotonic() - start < 5.0
    assert c.ok(f'LIST "" "{"*a" * 40}"') == [f'* LIST (\\HasNoChildren) "/" "{long_name}"'.encode()]
    c.ok(f'DELETE "{long_name}"')
    other.close()
    c.close()

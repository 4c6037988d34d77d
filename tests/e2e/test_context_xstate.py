"""Live contexts (RFC 5267 RETURN (UPDATE)) survive X-STATE SAVE/RESTORE and a reload's hand-off: the
restored session tells the client what changed while it was away, then keeps updating."""

from __future__ import annotations

import imaplib
import time
from pathlib import Path

from imapd.protocol.responses import ContextChange, EsearchResponse
from imapd.protocol.sequence import SequenceSet
from tests.conftest import RunningServer, imapd_cli, start_server, stop_server
from tests.e2e.test_context import esearch, fill, imap, login, replay, uid_search, uid_sort
from tests.e2e.test_extensions import message
from tests.e2e.test_workers import _supervisor_ready
from tests.e2e.test_xstate import token_of
from tests.rawimap import RawIMAP


def _ints(lines: list[bytes]) -> list[int]:
    """The ALL of the ESEARCH among ``lines``."""
    line = next(ln for ln in lines if ln.startswith(b"* ESEARCH"))
    out: list[int] = []
    for part in line.split()[-1].decode().split(","):
        lo, _, hi = part.partition(":")
        out += range(int(lo), int(hi or lo) + 1)
    return out


def test_contexts_survive_save_and_restore(server: RunningServer) -> None:
    fill(server, "Live", ["delta", "bravo", "foxtrot", "alpha", "charlie"])
    a = login(server, "Live")
    other = imap(server, "Live")
    other.uid("STORE", "1,3", "+FLAGS", "(\\Flagged)")
    untagged, _ = a.command("UID SEARCH RETURN (UPDATE) FLAGGED", tag="B01")
    flagged = _ints(untagged)
    untagged, _ = a.command("UID SORT RETURN (UPDATE) (SUBJECT) UTF-8 UNFLAGGED", tag="S1")
    unflagged = _ints(untagged)
    assert flagged == [1, 3] and unflagged == [4, 2, 5]
    token = token_of(a.ok("X-STATE SAVE"))
    a.close()
    # While the client is away: 2 is flagged, 1 is expunged, a new unflagged message arrives.
    other.uid("STORE", "2", "+FLAGS", "(\\Flagged)")
    other.uid("STORE", "1", "+FLAGS", "(\\Deleted)")
    other.expunge()
    other.append("Live", None, None, message("echo"))
    b = RawIMAP(server.host, server.port)
    untagged, tagged = b.command(f"X-STATE RESTORE {token}")
    assert b"OK" in tagged
    search_updates, sort_updates = esearch(untagged, "B01"), esearch(untagged, "S1")
    assert search_updates and sort_updates
    flagged = replay(flagged, search_updates)
    unflagged = replay(unflagged, sort_updates)
    assert flagged == uid_search(b, "FLAGGED") == [2, 3]
    assert unflagged == uid_sort(b, "UNFLAGGED") == [4, 5, 6]  # alpha, charlie, echo
    # And the updates go on after the restore.
    other.uid("STORE", "6", "+FLAGS", "(\\Flagged)")
    lines = b.ok("NOOP")
    flagged = replay(flagged, esearch(lines, "B01"))
    unflagged = replay(unflagged, esearch(lines, "S1"))
    assert flagged == uid_search(b, "FLAGGED") == [2, 3, 6]
    assert unflagged == uid_sort(b, "UNFLAGGED") == [4, 5]
    other.logout()
    b.close()


def test_sorted_context_that_lost_a_member_says_noupdate(server: RunningServer) -> None:
    fill(server, "LiveLost", ["b", "a", "c"])
    a = login(server, "LiveLost")
    a.command("UID SORT RETURN (UPDATE) (SUBJECT) UTF-8 ALL", tag="S2")
    a.command("UID SEARCH RETURN (UPDATE) ALL", tag="B02")
    token = token_of(a.ok("X-STATE SAVE"))
    a.close()
    other = imap(server, "LiveLost")
    other.uid("STORE", "2", "+FLAGS", "(\\Deleted)")
    other.expunge()
    b = RawIMAP(server.host, server.port)
    untagged, _ = b.command(f"X-STATE RESTORE {token}")
    assert any(line.startswith(b'* NO [NOUPDATE "S2"]') for line in untagged), untagged
    assert esearch(untagged, "B02") == [EsearchResponse("B02", True, (
        ("REMOVEFROM", ContextChange(((0, SequenceSet.parse("2")),))),))]
    other.uid("STORE", "1", "+FLAGS", "(\\Flagged)")
    other.append("LiveLost", None, None, message("d"))
    lines = b.ok("NOOP")
    assert not esearch(lines, "S2") and esearch(lines, "B02")
    other.logout()
    b.close()


def test_contexts_survive_a_reload_hand_off(tmp_path: Path) -> None:
    data = tmp_path / "data"
    imapd_cli("user", "add", "alice", "--password-stdin", "--data-dir", str(data), stdin="secret1")
    srv = start_server(data, "-o", "server.workers=2")
    try:
        _supervisor_ready(srv, 2)
        fill(srv, "Moving", ["one", "two", "three"])
        a = login(srv, "Moving")
        a.command("UID SEARCH RETURN (UPDATE) FLAGGED", tag="H1")
        a.command("SORT RETURN (UPDATE) (SUBJECT) UTF-8 UNSEEN", tag="H2")  # message numbers: kept too
        imapd_cli("reload", "--data-dir", str(data))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "finished its hand-over" not in srv.log():
            time.sleep(0.05)
        assert "finished its hand-over" in srv.log(), srv.log()
        other = imaplib.IMAP4(srv.host, srv.port)
        other.login("alice", "secret1")
        other.select("Moving")
        other.uid("STORE", "2", "+FLAGS", "(\\Flagged \\Seen)")
        lines = a.ok("NOOP")
        assert lines[-2:] == [b'* ESEARCH (TAG "H1") UID ADDTO (0 2)', b'* ESEARCH (TAG "H2") REMOVEFROM (3 2)']  # one, three, two
        other.logout()
        a.close()
    finally:
        stop_server(srv)

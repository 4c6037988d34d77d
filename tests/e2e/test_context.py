"""ESORT, CONTEXT=SEARCH/CONTEXT=SORT (RFC 5267) and PARTIAL (RFC 9394) against a real server: the RFC
examples as transcripts, and live results that a client replaying ADDTO/REMOVEFROM keeps equal to a fresh
search."""

from __future__ import annotations

import imaplib
import random
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from imapd.protocol import responses as r
from imapd.protocol.response_parser import parse_response
from tests.conftest import RunningServer, imapd_cli, start_server, stop_server
from tests.e2e.test_extensions import message
from tests.rawimap import RawIMAP


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server that allows two live contexts per session, so the third gets NOUPDATE."""
    data_dir: Path = tmp_path_factory.mktemp("imapd") / "data"
    data_dir.mkdir()
    imapd_cli("user", "add", "alice", "--password-stdin", "--data-dir", str(data_dir), stdin="secret1")
    srv = start_server(data_dir, "-o", "limits.max_contexts=2")
    try:
        yield srv
    finally:
        stop_server(srv)


def login(server: RunningServer, mailbox: str) -> RawIMAP:
    c = RawIMAP(server.host, server.port)
    c.ok("LOGIN alice secret1")
    c.ok(f"SELECT {mailbox}")
    return c


def imap(server: RunningServer, mailbox: str | None = None) -> imaplib.IMAP4:
    other = imaplib.IMAP4(server.host, server.port)
    other.login("alice", "secret1")
    if mailbox is not None:
        other.select(mailbox)
    return other


def fill(server: RunningServer, mailbox: str, subjects: list[str]) -> None:
    other = imap(server)
    other.create(mailbox)
    for i, subject in enumerate(subjects):
        raw = message(subject, date=f"Mon, {i + 1:02d} Nov 2026 10:00:00 +0000")
        assert other.append(mailbox, None, None, raw)[0] == "OK"
    other.logout()


def esearch(lines: list[bytes], tag: str) -> list[r.EsearchResponse]:
    out = []
    for line in lines:
        if line.startswith(b"* ESEARCH"):
            parsed = parse_response(line + b"\r\n")
            assert isinstance(parsed, r.EsearchResponse)
            if parsed.tag == tag:
                out.append(parsed)
    return out


def data_line(lines: list[bytes]) -> bytes:
    """The last ESEARCH line without its ``* ESEARCH (TAG "...")`` prefix."""
    return re.sub(rb'^\* ESEARCH \(TAG "[^"]*"\) ', b"", lines[-1])


def data(response: r.EsearchResponse, name: str) -> object:
    return next(v for k, v in response.results if k == name)


def uid_sort(c: RawIMAP, criteria: str) -> list[int]:
    lines = c.ok(f"UID SORT (SUBJECT) UTF-8 {criteria}")
    return [int(n) for n in lines[-1].split()[2:]]


def uid_search(c: RawIMAP, criteria: str) -> list[int]:
    lines = c.ok(f"UID SEARCH {criteria}")
    return [int(n) for n in next(ln for ln in lines if ln.startswith(b"* SEARCH")).split()[2:]]


def replay(result: list[int], updates: list[r.EsearchResponse]) -> list[int]:
    """What a client does with ADDTO/REMOVEFROM (RFC 5267 4.3.3-4.3.4), position 0 in mailbox order."""
    out = list(result)
    for response in updates:
        for name, value in response.results:
            assert isinstance(value, r.ContextChange)
            for pos, seqset in value.pairs:
                numbers = [n for lo, hi in seqset.ranges for n in (range(lo, hi + 1) if lo is not None and hi is not None else ())]
                if name == "REMOVEFROM":
                    if pos == 0:
                        out = [u for u in out if u not in numbers]
                    else:
                        assert out[pos - 1 : pos - 1 + len(numbers)] == numbers, (out, pos, numbers)
                        del out[pos - 1 : pos - 1 + len(numbers)]
                elif pos == 0:
                    out = sorted({*out, *numbers})
                else:
                    out[pos - 1 : pos - 1] = numbers
    return out


def test_capabilities_advertised(server: RunningServer) -> None:
    c = RawIMAP(server.host, server.port)
    caps = c.ok("CAPABILITY")[0].split()
    for name in (b"ESORT", b"CONTEXT=SEARCH", b"CONTEXT=SORT", b"PARTIAL"):
        assert name in caps
    c.close()


def test_esort_rfc5267_3_3(server: RunningServer) -> None:
    fill(server, "Esort", ["delta", "alpha", "charlie", "bravo", "echo"])
    c = login(server, "Esort")
    c.ok("STORE 3 +FLAGS (\\Deleted)")
    # E01: RETURN () is ALL, in sort order; descending runs are not ranges (RFC 5267 3.2).
    lines = c.ok("UID SORT RETURN () (REVERSE DATE) UTF-8 UNDELETED UNKEYWORD $Junk")
    assert data_line(lines) == b'UID ALL 5,4,2,1'
    lines = c.ok("UID SORT RETURN (MIN MAX COUNT) (SUBJECT) UTF-8 ALL")
    assert data_line(lines) == b'UID MIN 2 MAX 5 COUNT 5'  # alpha first, echo last
    lines = c.ok("SORT RETURN (PARTIAL 2:3) (SUBJECT) UTF-8 ALL")
    assert data_line(lines) == b'PARTIAL (2:3 4,3)'  # bravo (4), charlie (3)
    lines = c.ok("SORT RETURN (PARTIAL -1:-2 COUNT) (SUBJECT) UTF-8 ALL")
    assert data_line(lines) == b'COUNT 5 PARTIAL (-1:-2 1,5)'  # delta, echo
    _, tagged = c.command("UID SORT RETURN (ALL PARTIAL 1:2) (SUBJECT) UTF-8 ALL")
    assert b" BAD " in tagged
    c.close()


def test_partial_search_rfc9394(server: RunningServer) -> None:
    fill(server, "Paged", [f"m{i}" for i in range(10)])
    c = login(server, "Paged")
    c.ok("STORE 2 +FLAGS (\\Deleted)")
    lines = c.ok("UID SEARCH RETURN (PARTIAL 1:3) UNDELETED")
    assert data_line(lines) == b'UID PARTIAL (1:3 1,3:4)'
    lines = c.ok("UID SEARCH RETURN (PARTIAL -1:-3) UNDELETED UNKEYWORD $Junk")
    assert data_line(lines) == b'UID PARTIAL (-1:-3 8:10)'
    lines = c.ok("UID SEARCH RETURN (COUNT PARTIAL 8:20) UNDELETED")
    assert data_line(lines) == b'UID COUNT 9 PARTIAL (8:20 9:10)'  # short: spans the end
    lines = c.ok("UID SEARCH RETURN (PARTIAL 20:30) UNDELETED")
    assert data_line(lines) == b'UID PARTIAL (20:30 NIL)'
    lines = c.ok("SEARCH RETURN (PARTIAL -9:-8) UNDELETED")
    assert data_line(lines) == b'PARTIAL (-9:-8 1,3)'
    # SAVE with PARTIAL keeps that page as $, for a paged FETCH (and still returns it).
    lines = c.ok("UID SEARCH RETURN (SAVE PARTIAL -1:-2) UNDELETED")
    assert data_line(lines) == b"UID PARTIAL (-1:-2 9:10)"
    lines = c.ok("UID FETCH $ (FLAGS)")
    assert sorted(int(m.group(1)) for ln in lines if (m := re.search(rb"UID (\d+)", ln))) == [9, 10]
    # With MIN too, $ is what the options return: the first match and the page (RFC 5182 2.4, RFC 9394 3.2).
    c.ok("UID SEARCH RETURN (SAVE MIN PARTIAL -1:-1) UNDELETED")
    lines = c.ok("UID FETCH $ (FLAGS)")
    assert sorted(int(m.group(1)) for ln in lines if (m := re.search(rb"UID (\d+)", ln))) == [1, 10]
    _, tagged = c.command("UID SEARCH RETURN (PARTIAL 0:5) ALL")
    assert b" BAD " in tagged
    c.close()


def test_fetch_partial_modifier_rfc9394_3_3(server: RunningServer) -> None:
    fill(server, "PagedFetch", [f"f{i}" for i in range(8)])
    c = login(server, "PagedFetch")
    lines = c.ok("UID FETCH 1:* (FLAGS) (PARTIAL -1:-3)")
    assert [int(re.search(rb"UID (\d+)", ln).group(1)) for ln in lines] == [6, 7, 8]  # type: ignore[union-attr]
    lines = c.ok("UID FETCH 2:7 (UID FLAGS) (PARTIAL 1:2)")
    assert [int(re.search(rb"UID (\d+)", ln).group(1)) for ln in lines] == [2, 3]  # type: ignore[union-attr]
    lines = c.ok("FETCH 1:* (UID) (PARTIAL 7:50)")
    assert [ln.split()[1] for ln in lines] == [b"7", b"8"]
    # RFC 9394 3.4: CHANGEDSINCE filters the range (the last two: 7 and 8), not the other way round.
    modseq = int(re.search(rb"HIGHESTMODSEQ (\d+)", b"".join(c.ok("STATUS PagedFetch (HIGHESTMODSEQ)"))).group(1))  # type: ignore[union-attr]
    c.ok("UID STORE 3,8 +FLAGS.SILENT (\\Flagged)")
    lines = c.ok(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {modseq} PARTIAL -1:-2)")
    assert [int(re.search(rb"UID (\d+)", ln).group(1)) for ln in lines if b"FETCH" in ln] == [8]  # type: ignore[union-attr]
    c.close()


def test_context_search_rfc5267_4_3(server: RunningServer) -> None:
    fill(server, "Ctx", [f"c{i}" for i in range(6)])
    c = login(server, "Ctx")
    other = imap(server, "Ctx")
    other.uid("STORE", "1", "+FLAGS", "(\\Deleted $Junk)")
    untagged, tagged = c.command("UID SEARCH RETURN (UPDATE COUNT) DELETED KEYWORD $Junk", tag="B01")
    assert b'* ESEARCH (TAG "B01") UID COUNT 1' in untagged and b"will notify" in tagged
    # Tag reuse with UPDATE is BAD and has no effect.
    _, tagged = c.command("SORT RETURN (UPDATE) (DATE) UTF-8 FLAGGED", tag="B01")
    assert tagged.startswith(b"B01 BAD")
    # RFC 5267 4.3.3: flags change elsewhere; the ADDTO follows the FETCH that caused it, only ADDTO.
    other.uid("STORE", "3:4", "+FLAGS", "(\\Deleted $Junk)")
    lines = c.ok("NOOP")
    assert re.match(rb"\* 3 FETCH \(FLAGS", lines[0]) and re.match(rb"\* 4 FETCH \(FLAGS", lines[1])
    assert lines[2:] == [b'* ESEARCH (TAG "B01") UID ADDTO (0 3:4)']
    # RFC 5267 4.3.4: an expunged member; REMOVEFROM comes before the EXPUNGE.
    other.expunge()
    lines = c.ok("NOOP")
    assert lines == [b'* ESEARCH (TAG "B01") UID REMOVEFROM (0 1,3:4)', b"* 4 EXPUNGE", b"* 3 EXPUNGE", b"* 1 EXPUNGE"]
    # This session's own STORE changes membership too, and new mail is tested as it arrives.
    other.append("Ctx", "(\\Deleted $Junk)", None, message("new one"))
    lines = c.ok("UID STORE 2 +FLAGS (\\Deleted $Junk)")
    assert lines[-1] == b'* ESEARCH (TAG "B01") UID ADDTO (0 2,7)'
    assert any(ln == b"* 4 EXISTS" for ln in lines)
    assert lines.index(b"* 4 EXISTS") < len(lines) - 1
    # A message-number context numbers as the client does (after the EXISTS).
    untagged, _ = c.command("SEARCH RETURN (UPDATE) UNSEEN", tag="B02")
    assert untagged[-1] == b'* ESEARCH (TAG "B02") ALL 1:4'
    other.uid("STORE", "5", "+FLAGS", "(\\Seen)")
    assert c.ok("NOOP")[-1] == b'* ESEARCH (TAG "B02") REMOVEFROM (0 2)'
    # The limit: a third context is refused with NOUPDATE, its other return options still honoured.
    untagged, tagged = c.command("UID SORT RETURN (UPDATE COUNT) (DATE) UTF-8 KEYWORD $Junk", tag="B03")
    assert untagged[-2:] == [b'* ESEARCH (TAG "B03") UID COUNT 2', b'* NO [NOUPDATE "B03"] Too many contexts']
    assert tagged.startswith(b"B03 OK") and b"will not notify" in tagged
    # CANCELUPDATE: no further updates for B01; B02 still updates.
    _, tagged = c.command('CANCELUPDATE "B01"', tag="B04")
    assert tagged == b"B04 OK No further updates"
    other.uid("STORE", "2", "-FLAGS", "(\\Deleted)")
    other.uid("STORE", "6", "+FLAGS", "(\\Seen)")
    lines = c.ok("NOOP")
    assert not esearch(lines, "B01") and esearch(lines, "B02")
    other.logout()
    c.close()


def test_context_sort_positions_follow_sort_order(server: RunningServer) -> None:
    fill(server, "CtxSort", ["delta", "bravo", "foxtrot", "alpha"])
    c = login(server, "CtxSort")
    other = imap(server, "CtxSort")
    untagged, _ = c.command("UID SORT RETURN (UPDATE ALL) (SUBJECT) UTF-8 UNSEEN", tag="S1")
    result = [int(x) for x in untagged[-1].split()[-1].decode().split(",")]
    assert result == [4, 2, 1, 3]
    updates: list[r.EsearchResponse] = []
    for subject in ("charlie", "echo", "aardvark"):
        other.append("CtxSort", None, None, message(subject))
    lines = c.ok("NOOP")
    added = esearch(lines, "S1")
    assert added == [r.EsearchResponse("S1", True, (("ADDTO", data(added[0], "ADDTO")),))]
    assert [(pos, str(seqset)) for pos, seqset in data(added[0], "ADDTO").pairs] == [  # type: ignore[attr-defined]
        (3, "5"), (5, "6"), (1, "7")]  # charlie after bravo, echo after delta, aardvark first, in that order
    updates += added
    other.uid("STORE", "2,5", "+FLAGS", "(\\Seen)")
    lines = c.ok("NOOP")
    updates += esearch(lines, "S1")
    other.uid("STORE", "5", "-FLAGS", "(\\Seen)")
    updates += esearch(c.ok("NOOP"), "S1")
    assert replay(result, updates) == uid_sort(c, "UNSEEN") == [7, 4, 5, 1, 6, 3]
    other.logout()
    c.close()


def test_context_updates_during_idle(server: RunningServer) -> None:
    fill(server, "CtxIdle", ["one", "two"])
    c = login(server, "CtxIdle")
    other = imap(server, "CtxIdle")
    c.command("UID SEARCH RETURN (UPDATE) FLAGGED", tag="I1")
    c.sock.sendall(b"i2 IDLE\r\n")
    assert c.readline().startswith(b"+ ")
    other.uid("STORE", "2", "+FLAGS", "(\\Flagged)")
    seen = []
    c.sock.settimeout(5)
    while not seen or not seen[-1].startswith(b"* ESEARCH"):
        seen.append(c.readline().rstrip(b"\r\n"))
    assert seen[-1] == b'* ESEARCH (TAG "I1") UID ADDTO (0 2)'
    c.sock.sendall(b"DONE\r\n")
    assert c.readline().startswith(b"i2 OK")
    other.logout()
    c.close()


def test_live_results_match_a_fresh_search_under_random_changes(server: RunningServer) -> None:
    rng = random.Random(5267)
    fill(server, "CtxRandom", [f"s{rng.randrange(30):02d}" for _ in range(30)])
    c = login(server, "CtxRandom")
    other = imap(server, "CtxRandom")
    c.command("UID SEARCH RETURN (UPDATE) FLAGGED", tag="R1")
    search_result: list[int] = []
    untagged2, _ = c.command("UID SORT RETURN (UPDATE) (SUBJECT) UTF-8 UNSEEN", tag="R2")
    sort_result = [int(x) for part in untagged2[-1].split()[-1].decode().split(",") for x in _expand(part)]
    search_updates: list[r.EsearchResponse] = []
    sort_updates: list[r.EsearchResponse] = []
    for _ in range(25):
        action = rng.random()
        uids = uid_search(c, "ALL")
        if action < 0.5 and uids:
            picked = ",".join(str(u) for u in rng.sample(uids, min(len(uids), rng.randrange(1, 4))))
            other.uid("STORE", picked, rng.choice(["+FLAGS", "-FLAGS"]), rng.choice(["(\\Flagged)", "(\\Seen)"]))
        elif action < 0.8:
            other.append("CtxRandom", rng.choice([None, "(\\Flagged)", "(\\Seen)"]), None,
                         message(f"s{rng.randrange(30):02d}"))
        elif uids:
            other.uid("STORE", str(rng.choice(uids)), "+FLAGS", "(\\Deleted)")
            other.expunge()
        lines = c.ok("NOOP")
        search_updates += esearch(lines, "R1")
        sort_updates += esearch(lines, "R2")
    assert len(search_updates) > 3 and len(sort_updates) > 3  # the changes did reach the contexts
    assert replay(search_result, search_updates) == uid_search(c, "FLAGGED")
    assert replay(sort_result, sort_updates) == uid_sort(c, "UNSEEN")
    other.logout()
    c.close()


def _expand(part: str) -> list[int]:
    lo, _, hi = part.partition(":")
    return list(range(int(lo), int(hi or lo) + 1)) if lo else []


def test_contexts_end_with_the_mailbox(server: RunningServer) -> None:
    fill(server, "CtxEnd", ["x"])
    c = login(server, "CtxEnd")
    other = imap(server, "CtxEnd")
    c.command("UID SEARCH RETURN (UPDATE) FLAGGED", tag="E1")
    c.ok("UNSELECT")
    c.ok("SELECT CtxEnd")
    other.uid("STORE", "1", "+FLAGS", "(\\Flagged)")
    assert not esearch(c.ok("NOOP"), "E1")
    other.logout()
    c.close()

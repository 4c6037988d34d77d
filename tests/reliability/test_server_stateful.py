"""Stateful property test against a real server process: several clients, one user, one mailbox.

Each example connects three clients to the same INBOX (one with QRESYNC enabled, so it gets VANISHED
instead of EXPUNGE) and runs random APPEND / STORE / EXPUNGE / COPY / MOVE / FETCH / SEARCH / NOOP /
garbage commands from random clients. Every client keeps a model of its view built only from the untagged
EXISTS / EXPUNGE / VANISHED / FETCH it received (``imapmodel.ViewModel``); after every step each model must be
consistent (sequence numbers in range, UIDs ascending and never changing), no EXPUNGE/VANISHED may come
during a plain FETCH/STORE/SEARCH (RFC 3501 7.4.1), and at the end, after a NOOP, every model must equal the
server's state read on a fresh connection (UID SEARCH ALL + UID FETCH FLAGS).

``IMAPD_SOAK=1`` runs many more examples.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule

from tests.conftest import RunningServer, imapd_cli, start_server, stop_server
from tests.reliability.imapmodel import Client, server_state

SOAK = os.environ.get("IMAPD_SOAK") == "1"
USER = "multi"
NCLIENTS = 3
FLAGS = ["\\Seen", "\\Flagged", "\\Deleted", "\\Answered", "$Work", "$x"]

_server: RunningServer | None = None


@pytest.fixture(scope="module", autouse=True)
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    global _server
    data = tmp_path_factory.mktemp("stateful") / "data"
    data.mkdir()
    imapd_cli("user", "add", USER, "--password-stdin", "--data-dir", str(data), stdin="pw")
    srv = start_server(data, "-o", "limits.max_bad_commands=100000")
    srv.users[USER] = "pw"
    _server = srv
    c = Client(srv, USER)
    c.run('CREATE Other')
    c.close()
    yield srv
    _server = None
    stop_server(srv)


def _seqset(n: int, picks: list[int], star: bool) -> str:
    if n == 0 or star:
        return "1:*"
    return ",".join(str(p % n + 1) for p in picks)


class ServerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        assert _server is not None
        self.server = _server
        first = Client(self.server, USER)
        if len(first.model.uids) > 40:  # keep the mailbox small across examples
            first.run("STORE 1:* +FLAGS.SILENT (\\Deleted)")
            first.run("EXPUNGE")
        first.close()
        self.clients = [Client(self.server, USER, qresync=(i == NCLIENTS - 1)) for i in range(NCLIENTS)]
        self.n = 0

    def _c(self, i: int) -> Client:
        return self.clients[i % NCLIENTS]

    def _after(self, c: Client) -> None:
        c.fill()

    @rule(i=st.integers(0, NCLIENTS - 1), body=st.binary(max_size=300), flags=st.lists(st.sampled_from(FLAGS), max_size=2),
          where=st.sampled_from(["INBOX", "INBOX", "Other"]))
    def append(self, i: int, body: bytes, flags: list[str], where: str) -> None:
        c = self._c(i)
        self.n += 1
        msg = b"Subject: m%d\r\n\r\n" % self.n + body.replace(b"\x00", b"")
        _untagged, tagged = c.run(f"APPEND {where} ({' '.join(flags)}) {{{len(msg)}+}}\r\n".encode() + msg)
        assert b" OK" in tagged, tagged
        self._after(c)

    @rule(i=st.integers(0, NCLIENTS - 1), picks=st.lists(st.integers(0, 100), min_size=1, max_size=3),
          star=st.booleans(), op=st.sampled_from(["+FLAGS", "-FLAGS", "FLAGS"]),
          flags=st.lists(st.sampled_from(FLAGS), max_size=3), uid=st.booleans())
    def store(self, i: int, picks: list[int], star: bool, op: str, flags: list[str], uid: bool) -> None:
        c = self._c(i)
        if uid:
            known = [u for u in c.model.uids if u is not None]
            target = ",".join(str(known[p % len(known)]) for p in picks) if known and not star else "1:*"
            c.run(f"UID STORE {target} {op} ({' '.join(flags)})")
        else:
            c.run(f"STORE {_seqset(len(c.model.uids), picks, star)} {op} ({' '.join(flags)})")
        self._after(c)

    @rule(i=st.integers(0, NCLIENTS - 1), uid=st.booleans())
    def expunge(self, i: int, uid: bool) -> None:
        c = self._c(i)
        c.run("UID EXPUNGE 1:*" if uid else "EXPUNGE")
        self._after(c)

    @rule(i=st.integers(0, NCLIENTS - 1), picks=st.lists(st.integers(0, 100), min_size=1, max_size=3),
          star=st.booleans(), cmd=st.sampled_from(["COPY", "MOVE", "UID COPY", "UID MOVE"]),
          dest=st.sampled_from(["INBOX", "Other"]))
    def copy_move(self, i: int, picks: list[int], star: bool, cmd: str, dest: str) -> None:
        c = self._c(i)
        if not c.model.uids:
            return
        if cmd.startswith("UID"):
            known = [u for u in c.model.uids if u is not None]
            target = ",".join(str(known[p % len(known)]) for p in picks)
        else:
            target = _seqset(len(c.model.uids), picks, star=False)
        c.run(f"{cmd} {target} {dest}")
        self._after(c)

    @rule(i=st.integers(0, NCLIENTS - 1), cmd=st.sampled_from([
        "FETCH 1:* (FLAGS)", "FETCH 1:* (UID FLAGS)", "UID FETCH 1:* (FLAGS)", "SEARCH ALL", "SEARCH DELETED",
        "UID SEARCH UNSEEN", "NOOP", "CHECK", "STATUS Other (MESSAGES)", "FETCH 1 (RFC822.SIZE)"]))
    def read(self, i: int, cmd: str) -> None:
        c = self._c(i)
        if cmd.startswith("FETCH") and not c.model.uids:
            cmd = "NOOP"
        c.run(cmd)
        self._after(c)

    @rule(i=st.integers(0, NCLIENTS - 1), junk=st.binary(min_size=1, max_size=80))
    def garbage(self, i: int, junk: bytes) -> None:
        c = self._c(i)
        line = b"XYZZY " + junk.replace(b"\n", b" ").replace(b"\r", b" ").replace(b"\x00", b" ").rstrip(b"}")
        _untagged, tagged = c.run(line)
        assert b" BAD" in tagged[:20] or b" NO" in tagged[:20], tagged

    def teardown(self) -> None:
        try:
            for c in self.clients:
                c.run("NOOP")
                c.fill()
            truth = server_state(self.server, USER)
            for k, c in enumerate(self.clients):
                mine = list(zip(c.model.uids, c.model.flags, strict=True))
                assert mine == truth, f"client {k} (qresync={c.qresync}) view differs:\n{mine}\n!=\n{truth}"
        finally:
            for c in self.clients:
                c.close()


ServerMachine.TestCase.settings = settings(
    max_examples=1000 if SOAK else 120,
    stateful_step_count=50 if SOAK else 30,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
TestServerStateful = ServerMachine.TestCase


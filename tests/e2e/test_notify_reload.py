"""A NOTIFY registration survives ``imapd reload``: the session moves to a new worker generation with it,
is told the STATUS of its watched mailboxes again, and keeps getting events, with and without IDLE."""

from __future__ import annotations

import imaplib
import re
import time

from tests.conftest import RunningServer, imapd_cli
from tests.e2e.test_notify import mail
from tests.e2e.test_workers import USERS, _login, cluster  # noqa: F401 - the fixture
from tests.rawimap import RawIMAP


def test_reload_keeps_notify(cluster: tuple[RunningServer, int]) -> None:  # noqa: F811
    srv, _ = cluster
    users = ("alice", "bob")  # owned by different workers in this two-slot setup, or not: both must work
    conns: dict[str, RawIMAP] = {}
    for user in users:
        c = imaplib.IMAP4(srv.host, srv.port)
        c.login(user, USERS[user])
        c.create("Side")
        c.logout()
        r = RawIMAP(srv.host, srv.port)
        _login(r, user)
        r.ok("SELECT Side")
        r.ok("NOTIFY SET (SELECTED (MessageNew (UID) MessageExpunge)) (INBOXES (MessageNew MessageExpunge))")
        conns[user] = r
    imapd_cli("reload", "--data-dir", str(srv.data_dir))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and "finished its hand-over" not in srv.log():
        time.sleep(0.05)
    assert "finished its hand-over" in srv.log(), srv.log()
    for user, r in conns.items():
        # the resumed session repeats the STATUS of its watched INBOX (it cannot know what the client saw)
        untagged = r.ok("NOOP")
        assert any(re.match(rb'\* STATUS "?INBOX"? \(MESSAGES 0 ', ln) for ln in untagged), (user, untagged)
        imapd_cli("deliver", user, "--data-dir", str(srv.data_dir), stdin=mail(f"after reload {user}"))
        line = r.read_until(rb'^\* STATUS "?INBOX"? ')[-1]
        assert b"MESSAGES 1 " in line
        c = imaplib.IMAP4(srv.host, srv.port)
        c.login(user, USERS[user])
        c.append("Side", None, None, mail("side"))
        c.logout()
        lines = r.read_until(rb"^\* 1 FETCH \(UID 1\)")
        assert b"* 1 EXISTS" in lines
        r.ok("LOGOUT")

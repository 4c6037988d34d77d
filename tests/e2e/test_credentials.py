"""Credentials die when the passwd entry changes, on a running server, at once (issue 16, finding 1):
``user del`` + ``user add``, or any edit of the entry by another tool, revokes every earlier X-STATE token
(``NO [X-STATE-EXPIRED]``) and the cached password (LOGIN fails although the credential cache is on)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import RunningServer, imapd_cli, start_server, stop_server
from tests.rawimap import RawIMAP


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data = tmp_path_factory.mktemp("creds") / "data"
    data.mkdir()
    s = start_server(data, "-o", "cache.ttl=300")  # the credential cache is on: the old bug's trigger
    yield s
    stop_server(s)


def _login_and_save(srv: RunningServer, user: str, password: str) -> str:
    c = RawIMAP(srv.host, srv.port)
    _, tagged = c.command(f"LOGIN {user} {password}")
    assert tagged.startswith(b"t1 OK [CAPABILITY "), tagged
    c.ok("SELECT INBOX")
    untagged = c.ok("X-STATE SAVE")
    c.command("LOGOUT")
    c.close()
    return next(line.split()[2].decode() for line in untagged if line.startswith(b"* X-STATE "))


def _restore(srv: RunningServer, token: str) -> bytes:
    c = RawIMAP(srv.host, srv.port)
    _, tagged = c.command(f"X-STATE RESTORE {token}", tag="r1")
    c.close()
    return tagged


def _login(srv: RunningServer, user: str, password: str) -> bytes:
    c = RawIMAP(srv.host, srv.port)
    _, tagged = c.command(f"LOGIN {user} {password}", tag="l1")
    c.close()
    return tagged


def test_delete_and_re_add_revokes_old_token_and_old_password(srv: RunningServer) -> None:
    srv.add_user("carol", "old-pw")
    token = _login_and_save(srv, "carol", "old-pw")
    assert _login(srv, "carol", "old-pw").startswith(b"l1 OK")  # now in the credential cache
    assert _restore(srv, token) == b"r1 OK [READ-WRITE] X-STATE restored"
    imapd_cli("user", "del", "carol", "--data-dir", str(srv.data_dir))
    imapd_cli("user", "add", "carol", "--password-stdin", "--data-dir", str(srv.data_dir), stdin="new-pw")
    assert _restore(srv, token) == (b"r1 NO [X-STATE-EXPIRED] State token was revoked "
                                    b"(password changed or user removed)")
    assert _login(srv, "carol", "old-pw") == b"l1 NO [AUTHENTICATIONFAILED] Invalid credentials"
    assert _login(srv, "carol", "new-pw").startswith(b"l1 OK [CAPABILITY ")


def test_re_adding_with_the_same_password_still_revokes_tokens(srv: RunningServer) -> None:
    srv.add_user("dora", "same-pw")
    token = _login_and_save(srv, "dora", "same-pw")
    imapd_cli("user", "del", "dora", "--data-dir", str(srv.data_dir))
    imapd_cli("user", "add", "dora", "--password-stdin", "--data-dir", str(srv.data_dir), stdin="same-pw")
    assert _restore(srv, token).startswith(b"r1 NO [X-STATE-EXPIRED] ")
    assert _login(srv, "dora", "same-pw").startswith(b"l1 OK [CAPABILITY ")  # the password itself is fine


def test_outside_edit_of_the_hash_line_revokes_token_and_cached_password(srv: RunningServer) -> None:
    srv.add_user("erik", "erik-pw")
    token = _login_and_save(srv, "erik", "erik-pw")
    assert _login(srv, "erik", "erik-pw").startswith(b"l1 OK")  # cached
    passwd = srv.data_dir / "passwd"
    lines = passwd.read_text().splitlines()
    # What doveadm + an editor (or a provisioning script) does: replace the hash, keep xstate_gen as it was.
    edited = [":".join([f[0], "{PLAIN}edited-pw", *f[2:]]) if (f := ln.split(":"))[0] == "erik" else ln
              for ln in lines]
    passwd.write_text("\n".join(edited) + "\n")
    assert _restore(srv, token).startswith(b"r1 NO [X-STATE-EXPIRED] ")
    assert _login(srv, "erik", "erik-pw") == b"l1 NO [AUTHENTICATIONFAILED] Invalid credentials"
    assert _login(srv, "erik", "edited-pw").startswith(b"l1 OK [CAPABILITY ")
    token = _login_and_save(srv, "erik", "edited-pw")
    # An edit of another field of the entry (say a flag another tool adds) revokes too.
    text = passwd.read_text()
    passwd.write_text(text.replace("erik:{PLAIN}edited-pw::::::", "erik:{PLAIN}edited-pw:::Erik K:::"))
    assert _restore(srv, token).startswith(b"r1 NO [X-STATE-EXPIRED] ")

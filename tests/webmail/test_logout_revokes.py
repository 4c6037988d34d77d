"""Logging out of the webmail revokes its X-STATE lineage on the IMAP server (X-STATE REVOKE)."""

from __future__ import annotations

from typing import Any

from tests.conftest import RunningServer
from tests.rawimap import RawIMAP
from tests.webmail.conftest import Account
from tests.webmail.test_handlers import login, make_client, post
from webmail_demo.app import STORE


async def test_logout_revokes_every_token_of_the_web_session(aiohttp_client: Any, mailserver: RunningServer,
                                                             shared: Account) -> None:
    client = await make_client(aiohttp_client, mailserver, "xstate")
    page = await login(client, shared)
    first = next(s for s in client.app[STORE].all() if s.logged_in).token
    page = await (await client.get("/mail?box=INBOX")).text()  # the next request refreshes the token
    latest = next(s for s in client.app[STORE].all() if s.logged_in).token
    assert first and latest
    imap = RawIMAP(mailserver.host, mailserver.port)
    _, tagged = imap.command(f"X-STATE RESTORE {first}")
    assert tagged.startswith(b"t1 OK"), tagged  # a copy of the cookie's token works until logout...
    imap.close()

    status, page = await post(client, "/logout", {}, page)
    assert status == 200 and "You have logged out" in page
    for token in (first, latest):  # ...and no token of that web session works after it
        imap = RawIMAP(mailserver.host, mailserver.port)
        _, tagged = imap.command(f"X-STATE RESTORE {token}")
        assert tagged == b"t1 NO [X-STATE-EXPIRED] State token was revoked (X-STATE REVOKE)"
        imap.close()
    page = await login(client, shared)  # logging in again starts a new lineage that works
    assert "Plain message 05" in page

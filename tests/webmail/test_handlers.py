"""The webmail's handlers against a real imapd process, in both reattach modes."""

from __future__ import annotations

import asyncio
import html
import re
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.conftest import RunningServer, start_server, stop_server
from tests.webmail.conftest import ATTACHMENT, REMOTE_IMG, Account, new_account, text_mail
from webmail_demo.app import STORE, Config, make_app

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]


def csrf_of(page: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', page)
    assert m, page[:500]
    return m.group(1)


async def make_client(aiohttp_client: Any, server: RunningServer | tuple[str, int], mode: str = "xstate") -> Client:
    host, port = (server.host, server.port) if isinstance(server, RunningServer) else server
    app = make_app(Config(imap_host=host, imap_port=port, reattach=mode, idle_keepalive=0.5))
    client: Client = await aiohttp_client(app)
    return client


async def login(client: Client, acct: Account, password: str | None = None) -> str:
    page = await (await client.get("/login")).text()
    resp = await client.post("/login", data={"csrf": csrf_of(page), "user": acct.user,
                                             "password": password or acct.password})
    return await resp.text()


async def post(client: Client, path: str, data: dict[str, Any], page: str | None = None) -> tuple[int, str]:
    if page is None:
        page = await (await client.get("/mail?box=INBOX")).text()
    resp = await client.post(path, data={"csrf": csrf_of(page), **data})
    return resp.status, await resp.text()


def row_uids(page: str) -> list[int]:
    return [int(x) for x in re.findall(r'<tr class="[^"]*" data-uid="(\d+)"', page)]


def subjects(page: str) -> list[str]:
    return [html.unescape(s) for s in re.findall(r'uid=\d+&amp;back=[^"]*">(?:<span class="indent">↳</span> )?([^<]*)</a>', page)]


@pytest.fixture(params=["xstate", "login"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_login_logout(aiohttp_client: Any, mailserver: RunningServer, shared: Account, mode: str) -> None:
    client = await make_client(aiohttp_client, mailserver, mode)
    resp = await client.get("/mail?box=INBOX")
    assert resp.url.path == "/login"
    cookie = resp.headers.get("Set-Cookie", "") or str(resp.history[0].headers.get("Set-Cookie", ""))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    page = await login(client, shared, password="wrong")
    assert "Login failed" in page
    page = await login(client, shared)
    assert "Plain message 05" in page and "Lunch plans" in page
    footer = re.search(r"IMAP ([\d.]+) ms via ([^(<]+)", page)
    assert footer, page[-800:]
    assert footer.group(2).strip() == ("X-STATE RESTORE" if mode == "xstate" else "LOGIN + SELECT")
    sessions = [s for s in client.app[STORE].all() if s.logged_in]
    assert len(sessions) == 1
    if mode == "xstate":
        assert sessions[0].password is None and sessions[0].token  # no password kept anywhere
    else:
        assert sessions[0].password == shared.password
    status, page = await post(client, "/logout", {}, page)
    assert status == 200 and "You have logged out" in page
    assert (await client.get("/mail?box=INBOX")).url.path == "/login"


async def test_list_sort_threads_search_paging(aiohttp_client: Any, mailserver: RunningServer, shared: Account,
                                               mode: str) -> None:
    acct, bulk = shared, 52
    client = await make_client(aiohttp_client, mailserver, mode)
    page = await login(client, acct)
    # folder list with unread counts from one LIST ... RETURN (SPECIAL-USE STATUS ...)
    unseen = len(acct.uids("INBOX", "UNSEEN"))
    assert re.search(rf'data-folder="INBOX">.*?<span class="badge">{unseen}</span>', page, re.S), page
    for name in ("Trash", "Drafts", "Archive"):
        assert f'data-folder="{name}"' in page
    first = subjects(page)
    assert first[:3] == ["Re: Lunch plans", "Re: Lunch plans", "Lunch plans"]  # newest first
    if bulk:
        assert len(row_uids(page)) == 50 and "Page 1 of 2" in page
        page2 = await (await client.get("/mail?box=INBOX&page=2")).text()
        assert len(row_uids(page2)) == 12 and not set(row_uids(page2)) & set(row_uids(page))
    by_subject = subjects(await (await client.get("/mail?box=INBOX&sort=subject")).text())
    assert by_subject[0] == ("Bulk 000" if bulk else "Lunch plans")
    by_from = await (await client.get("/mail?box=INBOX&sort=from&order=desc")).text()
    assert subjects(by_from)[0] == "Plain message 05"  # DISPLAYFROM "Sender 05" sorts last
    by_size = subjects(await (await client.get("/mail?box=INBOX&sort=size")).text())
    assert by_size[0] in ("Quarterly report", "Newsletter")
    threads = await (await client.get("/mail?box=INBOX&view=threads")).text()
    assert threads.count('<span class="indent">↳</span>') >= 2
    lunch = [s for s in subjects(threads) if "Lunch" in s]
    assert lunch == ["Lunch plans", "Re: Lunch plans", "Re: Lunch plans"]
    found = await (await client.get("/mail?box=INBOX&q=Lunch&field=subject")).text()
    assert len(row_uids(found)) == 3
    found = await (await client.get("/mail?box=INBOX&q=carol&field=from")).text()
    assert len(row_uids(found)) == 2
    found = await (await client.get("/mail?box=INBOX&q=number 3 body&field=body")).text()
    assert subjects(found) == ["Plain message 03"]
    found = await (await client.get("/mail?box=INBOX&q=%3Cscript%3E&field=subject")).text()
    assert "No message matches “&lt;script&gt;”" in found  # escaped, not executed
    partial = await (await client.get("/mail?box=INBOX&partial=1")).text()
    assert "<html" not in partial and len(re.findall(r"data-uid=", partial)) == min(50, 10 + bulk)


async def test_message_view_sanitizes_html(aiohttp_client: Any, mailserver: RunningServer, shared: Account) -> None:
    client = await make_client(aiohttp_client, mailserver)
    page = await login(client, shared)
    uid = next(u for u, s in zip(row_uids(page), subjects(page), strict=True) if s == "Newsletter")
    view = await client.get(f"/message?box=INBOX&uid={uid}")
    text = await view.text()
    assert "script-src 'self'" in view.headers["Content-Security-Policy"]
    assert "1 remote image blocked" in text or "2 remote images blocked" in text
    assert 'sandbox="allow-popups allow-popups-to-escape-sandbox"' in text
    assert "allow-scripts" not in text and "allow-same-origin" not in text
    assert "\\Seen" in shared.flags("INBOX", uid)  # opening marks read
    body = await client.get(f"/message/body?box=INBOX&uid={uid}")
    doc = await body.text()
    csp = body.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "sandbox" in csp and "script-src" not in csp and "http" not in csp
    assert "Big news" in doc and 'href="https://example.com/x"' in doc
    for bad in ("<script", "alert(", "onclick", REMOTE_IMG, "<iframe", "javascript:", "steal()"):
        assert bad not in doc, bad
    shown = await client.get(f"/message/body?box=INBOX&uid={uid}&images=1")
    assert REMOTE_IMG in await shown.text() and "https:" in shown.headers["Content-Security-Policy"]
    assert "<script" not in await shown.text()


async def test_attachment_download(aiohttp_client: Any, mailserver: RunningServer, shared: Account) -> None:
    client = await make_client(aiohttp_client, mailserver)
    page = await login(client, shared)
    uid = next(u for u, s in zip(row_uids(page), subjects(page), strict=True) if s == "Quarterly report")
    view = await (await client.get(f"/message?box=INBOX&uid={uid}")).text()
    assert "See the attached file." in view
    link = re.search(r'href="(/message/part\?[^"]+)"[^>]*>⤓ report Q3.bin', view)
    assert link, view
    resp = await client.get(html.unescape(link.group(1)))
    assert resp.status == 200
    assert await resp.read() == ATTACHMENT
    assert resp.headers["Content-Disposition"].startswith("attachment;")
    assert "report%20Q3.bin" in resp.headers["Content-Disposition"]
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


async def test_flag_move_delete_and_trash(aiohttp_client: Any, mailserver: RunningServer, account: Account,
                                          mode: str) -> None:
    client = await make_client(aiohttp_client, mailserver, mode)
    page = await login(client, account)
    uids = dict(zip(subjects(page), row_uids(page), strict=False))
    p1, p2, p3 = uids["Plain message 01"], uids["Plain message 02"], uids["Plain message 03"]
    status, page = await post(client, "/message/action", {"box": "INBOX", "op": "flag", "uid": str(p1)}, page)
    assert status == 200 and "\\Flagged" in account.flags("INBOX", p1)
    assert re.search(rf'class="[^"]*flagged[^"]*" data-uid="{p1}"', page)
    await post(client, "/message/action", {"box": "INBOX", "op": "seen", "uid": str(p1)}, page)
    assert "\\Seen" in account.flags("INBOX", p1)
    await post(client, "/message/action", {"box": "INBOX", "op": "unseen", "uid": str(p1)}, page)
    assert "\\Seen" not in account.flags("INBOX", p1)
    status, page = await post(client, "/message/action",
                              {"box": "INBOX", "op": "move", "target": "Archive", "uid": str(p2)}, page)
    assert "Moved to Archive" in page and p2 not in account.uids("INBOX")
    assert len(account.uids("Archive")) == 1
    status, page = await post(client, "/message/action", {"box": "INBOX", "op": "delete", "uid": str(p3)}, page)
    assert "Moved to Trash" in page and len(account.uids("Trash")) == 1
    trash = await (await client.get("/mail?box=Trash")).text()
    assert "Empty Trash" in trash and "Delete forever" in trash
    [t_uid] = row_uids(trash)
    status, trash = await post(client, "/message/action", {"box": "Trash", "op": "delete", "uid": str(t_uid)}, trash)
    assert "Deleted for good" in trash and account.uids("Trash") == []
    account.append("Trash", text_mail("junk 1"), text_mail("junk 2"))
    trash = await (await client.get("/mail?box=Trash")).text()
    assert len(row_uids(trash)) == 2
    status, trash = await post(client, "/trash/empty", {}, trash)
    assert "Trash is empty" in trash and account.uids("Trash") == []


async def test_folders_and_draft(aiohttp_client: Any, mailserver: RunningServer, account: Account) -> None:
    client = await make_client(aiohttp_client, mailserver)
    page = await login(client, account)
    page = await (await client.get("/folders")).text()
    _, page = await post(client, "/folders", {"op": "create", "name": "Projects/Ünïcode"}, page)
    assert "Created Projects/Ünïcode" in page and 'data-folder="Projects/Ünïcode"' in page
    _, page = await post(client, "/folders", {"op": "rename", "name": "Projects/Ünïcode", "new": "Renamed"}, page)
    assert "Renamed Projects/Ünïcode to Renamed" in page and 'data-folder="Renamed"' in page
    _, page = await post(client, "/folders", {"op": "delete", "name": "Renamed"}, page)
    assert "Deleted Renamed" in page and 'data-folder="Renamed"' not in page
    _, page = await post(client, "/folders", {"op": "delete", "name": "INBOX"}, page)
    assert "INBOX cannot be deleted" in page
    compose = await (await client.get("/compose")).text()
    _, page = await post(client, "/compose", {"to": "x@example.org", "subject": "Draft <b>one</b> ✓",
                                               "body": "unfinished…"}, compose)
    assert "Draft saved in Drafts" in page and "Draft &lt;b&gt;one&lt;/b&gt; ✓" in page
    [uid] = account.uids("Drafts")
    assert "\\Draft" in account.flags("Drafts", uid)


async def test_csrf_is_checked_on_every_post(aiohttp_client: Any, mailserver: RunningServer, shared: Account) -> None:
    client = await make_client(aiohttp_client, mailserver)
    resp = await client.post("/login", data={"user": shared.user, "password": shared.password})
    assert resp.status == 403 and "CSRF" in await resp.text()
    page = await login(client, shared)
    uid = row_uids(page)[0]
    for path, data in (("/message/action", {"box": "INBOX", "op": "flag", "uid": str(uid)}),
                       ("/folders", {"op": "create", "name": "Evil"}), ("/trash/empty", {}),
                       ("/compose", {"subject": "x"}), ("/logout", {})):
        for token in (None, "forged-token"):
            form = dict(data) if token is None else {**data, "csrf": token}
            resp = await client.post(path, data=form)
            assert resp.status == 403, (path, token)
    assert "\\Flagged" not in shared.flags("INBOX", uid) and "Evil" not in shared.folders()
    assert (await client.get("/mail?box=INBOX")).url.path == "/mail"  # still logged in


async def test_stale_state_reselects(aiohttp_client: Any, mailserver: RunningServer, account: Account,
                                     mode: str) -> None:
    account.append("Archive", text_mail("kept in archive"))
    client = await make_client(aiohttp_client, mailserver, mode)
    await login(client, account)
    page = await (await client.get("/mail?box=Archive")).text()  # the saved state now has Archive selected
    assert "kept in archive" in page
    c = account.imap()
    c.delete("Archive")  # another client deletes the selected folder between two requests
    c.logout()
    resp = await client.get("/mail?box=INBOX")
    page = await resp.text()
    assert resp.status == 200 and "Plain message 01" in page
    if mode == "xstate":
        assert "via X-STATE RESTORE [STALE] + SELECT" in page
    resp = await client.get("/mail?box=Archive")  # the folder itself is gone: back to INBOX, told why
    page = await resp.text()
    assert resp.url.query.get("box") == "INBOX" and "no longer exists" in page
    page = await (await client.get("/mail?box=INBOX")).text()
    assert "Plain message 01" in page and "STALE" not in page


async def test_password_change_expires_the_session(aiohttp_client: Any, mailserver: RunningServer, mode: str) -> None:
    acct = new_account(mailserver, seed=False)
    client = await make_client(aiohttp_client, mailserver, mode)
    page = await login(client, acct)
    assert "No messages here" in page
    acct.passwd("changed-pw")
    resp = await client.get("/mail?box=INBOX")
    page = await resp.text()
    assert resp.url.path == "/login" and "Please log in again" in page
    assert "expired" in page
    page = await login(client, acct)
    assert "No messages here" in page


async def test_server_down_shows_an_error_page(aiohttp_client: Any, tmp_path: Any) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens here
    client = await make_client(aiohttp_client, ("127.0.0.1", port))
    page = await (await client.get("/login")).text()
    resp = await client.post("/login", data={"csrf": csrf_of(page), "user": "a", "password": "b"})
    text = await resp.text()
    assert resp.status == 503 and "Mail server unavailable" in text and "Traceback" not in text
    # A logged-in session whose server goes away.
    srv = start_server(tmp_path / "data")
    try:
        acct = new_account(srv, seed=False)
        client = await make_client(aiohttp_client, srv)
        await login(client, acct)
    finally:
        stop_server(srv)
    resp = await client.get("/mail?box=INBOX")
    text = await resp.text()
    assert resp.status == 503 and "cannot be reached" in text and "Traceback" not in text


async def test_live_events_on_delivery(aiohttp_client: Any, mailserver: RunningServer, account: Account,
                                       mode: str) -> None:
    client = await make_client(aiohttp_client, mailserver, mode)
    await login(client, account)
    resp = await client.get("/events?box=INBOX")
    assert resp.headers["Content-Type"].startswith("text/event-stream")

    async def read_until(marker: bytes) -> bytes:
        got = b""
        while marker not in got:
            got += await resp.content.readany()
        return got

    await asyncio.wait_for(read_until(b"event: ready"), 10)
    account.deliver(text_mail("Live one"))
    got = await asyncio.wait_for(read_until(b"event: exists"), 10)
    assert b'"kind": "exists"' in got
    live = client.app[STORE]
    [ws] = [s for s in live.all() if s.logged_in]
    assert ws.idle is not None
    resp.close()  # the browser goes away: the IDLE connection is closed
    for _ in range(50):
        if ws.idle is None:
            break
        await asyncio.sleep(0.1)
    assert ws.idle is None

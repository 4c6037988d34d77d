"""The aiohttp application: pages, actions, live updates.

Every request that touches mail opens a fresh IMAP connection, reattaches (X-STATE RESTORE, or
LOGIN+SELECT in ``login`` mode), does its work, saves the new state and logs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.policy
import hashlib
import hmac
import json
import logging
import re
import secrets
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from imapd.protocol import responses as r
from imapd.protocol.values import Literal8

from . import filters as flt
from .imap import (
    Connection,
    ImapDown,
    ImapError,
    LoginFailed,
    SessionGone,
    astring,
    mailbox_arg,
    open_connection,
)
from .mail import (
    ListRow,
    decode_words,
    find_section,
    human_size,
    parse_message,
    row_from_fetch,
    sanitize_html,
)
from .managesieve import SieveClient, SieveDown, SieveError, sieve_connection
from .sessions import COOKIE, SessionStore, WebSession

__all__ = ["Config", "make_app"]

log = logging.getLogger("webmail_demo")
HERE = Path(__file__).resolve().parent
PAGE_SIZE = 50
SORT_KEYS = {"date": "DATE", "from": "DISPLAYFROM", "subject": "SUBJECT", "size": "SIZE"}
SEARCH_KEYS = {"subject": "SUBJECT", "from": "FROM", "body": "BODY", "text": "TEXT"}
SPECIAL_ORDER = ["\\Drafts", "\\Sent", "\\Archive", "\\Junk", "\\Trash"]

PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
            "frame-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
MAIL_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:{remote}; font-src 'none'; "
            "form-action 'none'; base-uri 'none'; frame-ancestors 'self'; "
            "sandbox allow-popups allow-popups-to-escape-sandbox")


@dataclass
class Config:
    imap_host: str = "127.0.0.1"
    imap_port: int = 1143
    reattach: str = "xstate"  # or "login"
    max_idle: int = 20
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    idle_keepalive: float = 10.0
    sieve_host: str = "127.0.0.1"  # ManageSieve, for Settings > Filters
    sieve_port: int = 4190


CONFIG = web.AppKey("config", Config)
STORE = web.AppKey("sessions", SessionStore)
@dataclass
class Live:
    """The running IDLE (server-sent events) handlers, capped by ``Config.max_idle``."""

    tasks: set[asyncio.Task[Any]] = field(default_factory=set)


LIVE = web.AppKey("live", Live)


@dataclass
class Timing:
    ms: float
    path: str
    reattach_ms: float = 0.0


@dataclass
class RequestState:
    ws: WebSession | None = None
    timing: Timing | None = None


# Per-request state, by request identity, for the life of the request (see session_middleware).
_STATE: dict[int, RequestState] = {}


def _state(request: web.Request) -> RequestState:
    st = _STATE.get(id(request))
    if st is None:
        st = _STATE[id(request)] = RequestState()
    return st


# -- helpers --------------------------------------------------------------------------------------------------
def _session(request: web.Request) -> WebSession | None:
    return _state(request).ws


def _require(request: web.Request) -> WebSession:
    ws = _session(request)
    if ws is None or not ws.logged_in:
        raise web.HTTPSeeOther("/login")
    return ws


def _safe_next(value: str | None, default: str) -> str:
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return default


def _mail_url(box: str, **params: Any) -> str:
    q = {"box": box, **{k: v for k, v in params.items() if v not in (None, "")}}
    return "/mail?" + urllib.parse.urlencode(q)


def _uid_set(values: list[str]) -> str:
    uids = sorted({int(v) for v in values if v.isdigit() and int(v) > 0})
    if not uids:
        raise web.HTTPBadRequest(text="no message selected")
    return ",".join(str(u) for u in uids)


def _folder_name(value: str) -> str:
    name = value.strip().strip("/")
    if not name or any(ord(c) < 32 or c in "%*" for c in name) or len(name) > 200:
        raise ImapError(f"invalid folder name {value!r}")
    return name


@contextlib.asynccontextmanager
async def imap(request: web.Request, ws: WebSession, mailbox: str | None) -> AsyncIterator[Connection]:
    """A fresh, reattached IMAP connection for one request; saves the state and logs out afterwards."""
    cfg = request.app[CONFIG]
    conn = await open_connection(cfg.imap_host, cfg.imap_port)
    try:
        if cfg.reattach == "xstate":
            if ws.token is None:
                raise SessionGone("no saved session state", "X-STATE-INVALID")
            restored = await conn.restore(ws.token)
            conn.selected = ws.mailbox if restored else None
            conn.path = "X-STATE RESTORE"
            if "X-STATE-STALE" in conn.notes:
                conn.path += " [STALE] + SELECT"
        else:
            assert ws.user is not None and ws.password is not None
            await conn.login(ws.user, ws.password)
            conn.path = "LOGIN + SELECT"
        if mailbox is not None and conn.selected != mailbox:
            try:
                await conn.select(mailbox)
            except ImapError:
                if mailbox == "INBOX":
                    raise
                ws.flash = f"The folder “{mailbox}” no longer exists."
                raise web.HTTPSeeOther(_mail_url("INBOX")) from None
            if cfg.reattach == "xstate" and "SELECT" not in conn.path:
                conn.path += " + SELECT"
        reattach_ms = conn.elapsed_ms
        yield conn
        if cfg.reattach == "xstate":
            ws.token = await conn.save()
        if conn.selected is not None:
            ws.mailbox = conn.selected
        _state(request).timing = Timing(conn.elapsed_ms, conn.path, reattach_ms)
    finally:
        await conn.logout()


def render(template: str, request: web.Request, context: dict[str, Any], status: int = 200) -> web.Response:
    ws = _session(request)
    ctx = {
        "ws": ws,
        "csrf": ws.csrf if ws else "",
        "timing": _state(request).timing,
        "mode": request.app[CONFIG].reattach,
        "flash": None,
        **context,
    }
    if ws is not None and ws.flash and template != "_rows.html":
        ctx["flash"], ws.flash = ws.flash, None
    return aiohttp_jinja2.render_template(template, request, ctx, status=status)


# -- folders --------------------------------------------------------------------------------------------------
@dataclass
class Folder:
    name: str
    label: str
    depth: int
    special: str | None
    messages: int
    unseen: int
    selectable: bool


async def list_folders(conn: Connection) -> list[Folder]:
    res = await conn.command('LIST "" "*" RETURN (SPECIAL-USE STATUS (MESSAGES UNSEEN))')
    status = {s.mailbox: dict(s.items) for s in res.of(r.StatusResponse)}
    folders: list[Folder] = []
    for lst in res.of(r.ListResponse):
        attrs = {a.lower() for a in lst.attributes}
        special = next((s for s in SPECIAL_ORDER if s.lower() in attrs), None)
        st = status.get(lst.mailbox, {})
        sep = lst.delimiter or "/"
        parts = lst.mailbox.split(sep)
        folders.append(Folder(lst.mailbox, parts[-1], len(parts) - 1, special, st.get("MESSAGES", 0),
                              st.get("UNSEEN", 0), "\\noselect" not in attrs and "\\nonexistent" not in attrs))

    def key(f: Folder) -> tuple[int, int, str]:
        if f.name.upper() == "INBOX":
            return (0, 0, "")
        if f.special is not None and f.depth == 0:
            return (1, SPECIAL_ORDER.index(f.special), f.name)
        return (2, 0, f.name.lower())

    return sorted(folders, key=key)


def special_folder(folders: list[Folder], use: str, default: str) -> str:
    return next((f.name for f in folders if f.special == use), default)


# -- auth -----------------------------------------------------------------------------------------------------
async def login_page(request: web.Request) -> web.Response:
    ws = _session(request)
    if ws is not None and ws.logged_in:
        raise web.HTTPSeeOther(_mail_url(ws.mailbox))
    return render("login.html", request, {"user": ""})


async def login_post(request: web.Request) -> web.Response:
    ws = _session(request)
    assert ws is not None  # the CSRF middleware made sure
    form = await request.post()
    user = str(form.get("user", "")).strip()
    password = str(form.get("password", ""))
    cfg = request.app[CONFIG]
    if not user or not password:
        return render("login.html", request, {"user": user, "error": "Enter your user name and password."}, 400)
    try:
        conn = await open_connection(cfg.imap_host, cfg.imap_port)
    except ImapDown as exc:
        return render("error.html", request, {"title": "Mail server unavailable", "message": str(exc)}, 503)
    try:
        try:
            await conn.login(user, password)
        except LoginFailed as exc:
            return render("login.html", request,
                          {"user": user, "error": f"Login failed: {exc}"}, 401)
        await conn.select("INBOX")
        conn.path = "LOGIN + SELECT"
        token = await conn.save() if cfg.reattach == "xstate" else None
    finally:
        await conn.logout()
    # A fresh session id after login (no fixation); the password is kept only in `login` mode.
    store = request.app[STORE]
    store.drop(ws)
    fresh = store.new()
    fresh.user, fresh.token, fresh.mailbox = user, token, "INBOX"
    if cfg.reattach == "login":
        fresh.password = password
    _state(request).ws = fresh
    log.info("login %s via %s in %.1f ms", user, conn.path, conn.elapsed_ms)
    raise web.HTTPSeeOther(_mail_url("INBOX"))


async def logout_post(request: web.Request) -> web.Response:
    ws = _session(request)
    if ws is not None:
        if ws.token is not None:
            await _revoke(request, ws.token)
        request.app[STORE].drop(ws)
        fresh = request.app[STORE].new()
        fresh.flash = "You have logged out."
        _state(request).ws = fresh
    raise web.HTTPSeeOther("/login")


async def _revoke(request: web.Request, token: str) -> None:
    """Kill the X-STATE lineage of this web session at logout: one round trip, no LOGIN (the token says
    whose it is). If the server cannot be reached the logout still completes; the token then dies at
    the server's ``xstate.max_age``."""
    cfg = request.app[CONFIG]
    try:
        conn = await open_connection(cfg.imap_host, cfg.imap_port)
    except ImapDown as exc:
        log.warning("logout: X-STATE REVOKE not sent: %s", exc)
        return
    try:
        await conn.revoke(token)
    except (ImapDown, ImapError) as exc:
        log.warning("logout: X-STATE REVOKE failed: %s", exc)
    finally:
        await conn.logout()


# -- mailbox --------------------------------------------------------------------------------------------------
def _flatten_thread(thread: tuple[Any, ...], depth: int, out: list[tuple[int, int]]) -> None:
    for item in thread:
        if isinstance(item, int):
            out.append((item, depth))
            depth += 1
        else:
            _flatten_thread(item, depth, out)


async def fetch_rows(conn: Connection, uids: list[int]) -> dict[int, ListRow]:
    if not uids:
        return {}
    res = await conn.command(f"UID FETCH {','.join(map(str, uids))} (UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE)")
    rows: dict[int, ListRow] = {}
    for f in res.of(r.FetchResponse):
        row = row_from_fetch(dict(f.items))
        rows[row.uid] = row
    return rows


async def mailbox_page(request: web.Request) -> web.Response:
    ws = _require(request)
    q = request.query
    box = q.get("box", "INBOX") or "INBOX"
    view = "threads" if q.get("view") == "threads" else "list"
    sort = q.get("sort", "date") if q.get("sort") in SORT_KEYS else "date"
    default_order = "desc" if sort in ("date", "size") else "asc"
    order = q.get("order") if q.get("order") in ("asc", "desc") else default_order
    term = q.get("q", "").strip()
    fieldname = q.get("field", "subject") if q.get("field") in SEARCH_KEYS else "subject"
    page = max(1, int(q["page"])) if q.get("page", "").isdigit() else 1
    partial = q.get("partial") == "1"
    depth: dict[int, int] = {}
    async with imap(request, ws, box) as conn:
        folders = [] if partial else await list_folders(conn)
        if term:
            res = await conn.command(f"UID SEARCH CHARSET UTF-8 {SEARCH_KEYS[fieldname]} {astring(term)}")
            ordered = sorted((n for s in res.of(r.SearchResponse) for n in s.numbers), reverse=True)
        elif view == "threads":
            res = await conn.command("UID THREAD REFS UTF-8 ALL")
            flat: list[tuple[int, int]] = []
            for t in res.of(r.ThreadResponse):
                for thread in reversed(t.threads):
                    _flatten_thread(thread, 0, flat)
            ordered = [u for u, _ in flat]
            depth = dict(flat)
        else:
            key = SORT_KEYS[sort]
            crit = f"REVERSE {key}" if order == "desc" else key
            res = await conn.command(f"UID SORT ({crit}) UTF-8 ALL")
            ordered = [n for s in res.of(r.SortResponse) for n in s.numbers]
        total = len(ordered)
        pages = max(1, (total + PAGE_SIZE - 1) // PAGE_SIZE)
        page = min(page, pages)
        shown = ordered[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
        by_uid = await fetch_rows(conn, shown)
    rows = []
    for uid in shown:
        if uid in by_uid:
            row = by_uid[uid]
            row.depth = depth.get(uid, 0)
            rows.append(row)
    params = {"view": view if view != "list" else None, "sort": sort if sort != "date" else None,
              "order": order if order != default_order else None, "q": term or None,
              "field": fieldname if term else None}
    ctx = {
        "box": box, "rows": rows, "total": total, "page": page, "pages": pages, "view": view, "sort": sort,
        "order": order, "q": term, "field": fieldname, "folders": folders,
        "trash": special_folder(folders, "\\Trash", "Trash"),
        "page_url": lambda p: _mail_url(box, page=p if p > 1 else None, **params),
        "sort_url": lambda s: _mail_url(box, sort=s if s != "date" else None,
                                        order=("asc" if order == "desc" else "desc") if s == sort else None),
        "self_url": _mail_url(box, page=page if page > 1 else None, **params),
        "human_size": human_size,
    }
    ctx["is_trash"] = box == ctx["trash"]
    return render("_rows.html" if partial else "mailbox.html", request, ctx)


# -- message --------------------------------------------------------------------------------------------------
def _box_uid(request: web.Request) -> tuple[str, int]:
    box = request.query.get("box", "INBOX") or "INBOX"
    uid = request.query.get("uid", "")
    if not uid.isdigit():
        raise web.HTTPBadRequest(text="bad uid")
    return box, int(uid)


async def _fetch_raw(conn: Connection, uid: int, extra: str = "") -> tuple[bytes, set[str]] | None:
    res = await conn.command(f"UID FETCH {uid} (UID FLAGS{extra} BODY.PEEK[])")
    for f in res.of(r.FetchResponse):
        items = dict(f.items)
        if items.get("UID") == uid and isinstance(items.get("BODY[]"), bytes):
            flags = {x.text if hasattr(x, "text") else str(x) for x in items.get("FLAGS") or ()}
            return items["BODY[]"], flags
    return None


async def message_page(request: web.Request) -> web.Response:
    ws = _require(request)
    box, uid = _box_uid(request)
    async with imap(request, ws, box) as conn:
        folders = await list_folders(conn)
        got = await _fetch_raw(conn, uid)
        if got is not None and "\\Seen" not in got[1]:
            await conn.command(f"UID STORE {uid} +FLAGS.SILENT (\\Seen)")
            got[1].add("\\Seen")
    if got is None:
        ws.flash = "That message is gone (moved or deleted)."
        raise web.HTTPSeeOther(_mail_url(box))
    msg = parse_message(uid, got[0], got[1])
    blocked = sanitize_html(msg.html).blocked if msg.html else 0
    trash = special_folder(folders, "\\Trash", "Trash")
    return render("message.html", request, {
        "box": box, "msg": msg, "folders": folders, "blocked": blocked, "trash": trash,
        "is_trash": box == trash, "human_size": human_size,
        "images": request.query.get("images") == "1",
        "back": _safe_next(request.query.get("back"), _mail_url(box)),
    })


_MAIL_DOC = """<!doctype html><html><head><meta charset="utf-8"><base target="_blank">
<style>body{{font:15px/1.5 system-ui,sans-serif;color:#1f2328;margin:12px;word-wrap:break-word}}
img{{max-width:100%;height:auto}}table{{max-width:100%}}pre{{white-space:pre-wrap}}</style></head>
<body>{body}</body></html>"""


async def message_body(request: web.Request) -> web.Response:
    """The HTML part, sanitized, as its own document for a sandboxed iframe with a strict CSP."""
    ws = _require(request)
    box, uid = _box_uid(request)
    images = request.query.get("images") == "1"
    async with imap(request, ws, box) as conn:
        got = await _fetch_raw(conn, uid)
    if got is None:
        raise web.HTTPNotFound(text="no such message")
    msg = parse_message(uid, got[0], got[1])
    body = sanitize_html(msg.html or "", allow_remote=images).html
    resp = web.Response(text=_MAIL_DOC.format(body=body), content_type="text/html", charset="utf-8")
    resp.headers["Content-Security-Policy"] = MAIL_CSP.format(remote=" https: http:" if images else "")
    resp.headers["X-Frame-Options"] = "SAMEORIGIN"
    resp.headers["Referrer-Policy"] = "no-referrer"
    return resp


async def attachment(request: web.Request) -> web.StreamResponse:
    ws = _require(request)
    box, uid = _box_uid(request)
    section = request.query.get("section", "")
    if not section or not all(p.isdigit() for p in section.split(".")):
        raise web.HTTPBadRequest(text="bad section")
    data: bytes | None = None
    filename = f"part-{section}"
    ctype = "application/octet-stream"
    async with imap(request, ws, box) as conn:
        res = await conn.command(f"UID FETCH {uid} (UID BINARY.PEEK[{section}] BODY.PEEK[{section}.MIME])",
                                 check=False)
        for f in res.of(r.FetchResponse):
            items = dict(f.items)
            value = items.get(f"BINARY[{section}]")
            if isinstance(value, Literal8):
                data = value.data
            elif isinstance(value, bytes):
                data = value
            mime = items.get(f"BODY[{section}.MIME]")
            if isinstance(mime, bytes):
                hdrs = email.message_from_bytes(mime + b"\r\n", policy=email.policy.default)
                filename = decode_words(hdrs.get_filename() or filename)
                ctype = hdrs.get_content_type() or ctype
        if data is None:  # no BINARY for this part: fetch the whole message and decode it here
            got = await _fetch_raw(conn, uid)
            found = find_section(got[0], section) if got else None
            if found is not None:
                part, filename = found
                payload = part.get_payload(decode=True)
                data = payload if isinstance(payload, bytes) else b""
                ctype = part.get_content_type()
    if data is None:
        raise web.HTTPNotFound(text="no such attachment")
    quoted = urllib.parse.quote(filename)
    ascii_name = filename.encode("ascii", "replace").decode().replace('"', "_").replace("\\", "_")
    return web.Response(body=data, headers={
        "Content-Type": ctype if "/" in ctype and ";" not in ctype else "application/octet-stream",
        "Content-Disposition": f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quoted}",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
    })


# -- actions --------------------------------------------------------------------------------------------------
async def message_action(request: web.Request) -> web.Response:
    ws = _require(request)
    form = await request.post()
    box = str(form.get("box", "INBOX")) or "INBOX"
    op = str(form.get("op", ""))
    uids = _uid_set([str(v) for v in form.getall("uid", [])])
    nxt = _safe_next(str(form.get("next", "")), _mail_url(box))
    async with imap(request, ws, box) as conn:
        folders = await list_folders(conn) if op in ("delete", "move") else []
        trash = special_folder(folders, "\\Trash", "Trash")
        if op in ("seen", "unseen", "flag", "unflag"):
            sign = "+" if op in ("seen", "flag") else "-"
            flag = "\\Seen" if op in ("seen", "unseen") else "\\Flagged"
            await conn.command(f"UID STORE {uids} {sign}FLAGS.SILENT ({flag})")
        elif op == "move":
            target = str(form.get("target", ""))
            if not any(f.name == target for f in folders) or target == box:
                ws.flash = "Choose another folder to move to."
            else:
                await conn.command(f"UID MOVE {uids} {mailbox_arg(target)}")
                ws.flash = f"Moved to {target}."
                if nxt.startswith("/message"):
                    nxt = _mail_url(box)
        elif op == "delete":
            if box == trash:
                await conn.command(f"UID STORE {uids} +FLAGS.SILENT (\\Deleted)")
                await conn.command(f"UID EXPUNGE {uids}")
                ws.flash = "Deleted for good."
            else:
                if not any(f.name == trash for f in folders):
                    await conn.command(f"CREATE {mailbox_arg(trash)} (USE (\\Trash))", check=False)
                await conn.command(f"UID MOVE {uids} {mailbox_arg(trash)}")
                ws.flash = f"Moved to {trash}."
            if nxt.startswith("/message"):
                nxt = _mail_url(box)
        else:
            raise web.HTTPBadRequest(text="unknown action")
    raise web.HTTPSeeOther(nxt)


async def empty_trash(request: web.Request) -> web.Response:
    ws = _require(request)
    async with imap(request, ws, None) as conn:
        trash = special_folder(await list_folders(conn), "\\Trash", "Trash")
        res = await conn.select(trash)
        exists = next((e.count for e in res.of(r.ExistsResponse)), 0)
        if exists:
            await conn.command("STORE 1:* +FLAGS.SILENT (\\Deleted)")
            await conn.command("EXPUNGE")
    ws.flash = f"{trash} is empty." if exists else f"{trash} was already empty."
    raise web.HTTPSeeOther(_mail_url(trash))


async def folders_page(request: web.Request) -> web.Response:
    ws = _require(request)
    async with imap(request, ws, None) as conn:
        folders = await list_folders(conn)
    return render("folders.html", request, {"folders": folders, "box": "", "trash": ""})


async def folders_post(request: web.Request) -> web.Response:
    ws = _require(request)
    form = await request.post()
    op = str(form.get("op", ""))
    async with imap(request, ws, None) as conn:
        try:
            if op == "create":
                name = _folder_name(str(form.get("name", "")))
                await conn.command(f"CREATE {mailbox_arg(name)}")
                ws.flash = f"Created {name}."
            elif op == "rename":
                old = _folder_name(str(form.get("name", "")))
                new = _folder_name(str(form.get("new", "")))
                await conn.command(f"RENAME {mailbox_arg(old)} {mailbox_arg(new)}")
                ws.flash = f"Renamed {old} to {new}."
            elif op == "delete":
                name = _folder_name(str(form.get("name", "")))
                if name.upper() == "INBOX":
                    raise ImapError("INBOX cannot be deleted")
                if conn.selected == name:
                    await conn.command("UNSELECT")
                    conn.selected = None
                    ws.mailbox = "INBOX"
                await conn.command(f"DELETE {mailbox_arg(name)}")
                ws.flash = f"Deleted {name}."
            else:
                raise web.HTTPBadRequest(text="unknown folder action")
        except ImapError as exc:
            ws.flash = f"Could not do that: {exc}"
    raise web.HTTPSeeOther("/folders")


async def compose_page(request: web.Request) -> web.Response:
    ws = _require(request)
    async with imap(request, ws, None) as conn:
        folders = await list_folders(conn)
    return render("compose.html", request, {"folders": folders, "box": "", "trash": ""})


async def compose_post(request: web.Request) -> web.Response:
    ws = _require(request)
    form = await request.post()
    msg = EmailMessage(policy=email.policy.SMTP.clone(cte_type="7bit"))
    msg["From"] = ws.user if ws.user and "@" in ws.user else f"{ws.user}@localhost"
    to = str(form.get("to", "")).strip()
    if to:
        msg["To"] = to
    msg["Subject"] = str(form.get("subject", ""))
    msg["Date"] = email.utils.formatdate(localtime=True)
    msg["Message-ID"] = email.utils.make_msgid(domain="webmail.invalid")
    msg.set_content(str(form.get("body", "")).replace("\r\n", "\n"))
    data = msg.as_bytes()
    async with imap(request, ws, None) as conn:
        drafts = special_folder(await list_folders(conn), "\\Drafts", "Drafts")
        res = await conn.command(f"APPEND {mailbox_arg(drafts)} (\\Draft \\Seen) {{{len(data)}+}}\r\n"
                                 + data.decode("ascii"), check=False)
        if res.status != "OK" and res.code == "TRYCREATE":
            await conn.command(f"CREATE {mailbox_arg(drafts)} (USE (\\Drafts))", check=False)
            res = await conn.command(f"APPEND {mailbox_arg(drafts)} (\\Draft \\Seen) {{{len(data)}+}}\r\n"
                                     + data.decode("ascii"))
        elif res.status != "OK":
            raise ImapError(f"could not save the draft: {res.text}", res.code)
    ws.flash = f"Draft saved in {drafts}."
    raise web.HTTPSeeOther(_mail_url(drafts))


# -- settings: filters and vacation, through ManageSieve ------------------------------------------------------
@contextlib.asynccontextmanager
async def sieve(request: web.Request, ws: WebSession) -> AsyncIterator[SieveClient]:
    """A ManageSieve connection authenticated as the web session's user: SASL X-STATE with the session's
    token (xstate mode: still no password kept), or PLAIN with the kept password (login mode)."""
    cfg = request.app[CONFIG]
    async with sieve_connection(cfg.sieve_host, cfg.sieve_port) as client:
        try:
            if cfg.reattach == "xstate":
                if ws.token is None:
                    raise SessionGone("no saved session state", "X-STATE-INVALID")
                await client.login_xstate(ws.token)
            else:
                assert ws.user is not None and ws.password is not None
                await client.login_plain(ws.user, ws.password)
        except SieveError as exc:
            if exc.code == "AUTH-FAILED":  # revoked or expired token, changed password: as for IMAP
                raise SessionGone(exc.text, "X-STATE-EXPIRED") from None
            raise
        yield client


@dataclass
class SieveView:
    """What the settings page shows: the webmail's filters, or a foreign script read-only."""

    filters: flt.FilterSet
    active: str | None  # the active script's name
    foreign: str | None = None  # the text of a script the webmail did not write (or that was edited)
    foreign_name: str | None = None
    rev: str = ""  # a digest of the script as read: a form from an older read saves nothing


def _rev(text: str) -> str:
    return hashlib.sha256(text.replace("\r\n", "\n").encode()).hexdigest()[:20]


async def _load_filters(client: SieveClient) -> SieveView:
    listing = await client.listscripts()
    names = {n for n, _ in listing}
    active = next((n for n, a in listing if a), None)
    if active is not None and active != flt.SCRIPT_NAME:
        text = await client.getscript(active)
        return SieveView(flt.FilterSet(), active, text, active, _rev(text))
    if flt.SCRIPT_NAME not in names:
        return SieveView(flt.FilterSet(), active)
    text = await client.getscript(flt.SCRIPT_NAME)
    parsed = flt.parse_script(text)
    if parsed is None:
        return SieveView(flt.FilterSet(), active, text, flt.SCRIPT_NAME, _rev(text))
    return SieveView(parsed, active, rev=_rev(text))


async def settings_page(request: web.Request) -> web.Response:
    ws = _require(request)
    async with imap(request, ws, None) as conn:
        folders = await list_folders(conn)
    async with sieve(request, ws) as client:
        view = await _load_filters(client)
    edit = request.query.get("edit", "")
    rule = None
    if edit.isdigit() and int(edit) < len(view.filters.rules):
        rule = view.filters.rules[int(edit)]
    return render("settings.html", request, {
        "folders": folders, "box": "", "trash": "", "view": view, "fs": view.filters,
        "edit": int(edit) if rule is not None else None, "rule": rule or flt.Rule(""),
        "FIELDS": flt.FIELDS, "MATCHES": flt.MATCHES, "ACTIONS": flt.ACTIONS,
        "script_name": flt.SCRIPT_NAME})


def _text(form: Any, name: str, limit: int = 4000) -> str:
    value = str(form.get(name, ""))
    if len(value) > limit:
        raise flt.FilterError(f"{name} is too long")
    return value.replace("\r\n", "\n").replace("\r", "\n")


def _apply(fs: flt.FilterSet, op: str, form: Any) -> str:
    """Change ``fs`` as the form says; returns the flash message."""
    idx_s = str(form.get("index", ""))
    idx = int(idx_s) if idx_s.isdigit() else None
    if idx is not None and idx >= len(fs.rules):
        raise flt.FilterError("That filter no longer exists (changed meanwhile?).")
    if op == "rule":
        rule = flt.Rule(_text(form, "name", 200).strip(), str(form.get("field", "")), str(form.get("match", "")),
                        _text(form, "value", 500).strip(), str(form.get("action", "")),
                        _text(form, "folder", 200).strip().strip("/"), form.get("enabled") == "on")
        if rule.action != "move":
            rule.folder = ""
        rule.check()
        if idx is None:
            fs.rules.append(rule)
            return f"Filter “{rule.name or rule.value}” added."
        fs.rules[idx] = rule
        return f"Filter “{rule.name or rule.value}” saved."
    if op in ("delete", "toggle") and idx is None:
        raise flt.FilterError("No filter chosen.")
    if op == "delete":
        assert idx is not None
        gone = fs.rules.pop(idx)
        return f"Filter “{gone.name or gone.value}” deleted."
    if op == "toggle":
        assert idx is not None
        fs.rules[idx].enabled = not fs.rules[idx].enabled
        return f"Filter “{fs.rules[idx].name or fs.rules[idx].value}” " + (
            "enabled." if fs.rules[idx].enabled else "disabled.")
    if op == "vacation":
        days = str(form.get("days", "7")).strip()
        if not days.isdigit():
            raise flt.FilterError("Days must be a number.")
        addresses = [a for a in re.split(r"[\s,;]+", _text(form, "addresses", 2000)) if a]
        fs.vacation = flt.Vacation(form.get("enabled") == "on", _text(form, "subject", 300).strip(),
                                   _text(form, "body", 8000), int(days), addresses)
        fs.vacation.check()
        return "Vacation reply " + ("on." if fs.vacation.enabled else "off.")
    if op == "reset":
        return "The webmail's filters replace the previous script."
    raise web.HTTPBadRequest(text="unknown settings action")


async def settings_post(request: web.Request) -> web.Response:
    """Read the script back, change it, CHECKSCRIPT + PUTSCRIPT + SETACTIVE; the server's refusal is shown
    as it is. A foreign active script is only replaced on an explicit ``reset``."""
    ws = _require(request)
    form = await request.post()
    op = str(form.get("op", ""))
    async with sieve(request, ws) as client:
        view = await _load_filters(client)
        if not hmac.compare_digest(str(form.get("rev", "")), view.rev):  # indexes refer to what the form showed
            ws.flash = "Nothing saved: the filters were changed meanwhile (in another window?). Here they are now."
            raise web.HTTPSeeOther("/settings")
        if view.foreign is not None and op != "reset":
            ws.flash = ("Nothing saved: the active filter script was not written by the webmail. "
                        "Use “Replace with webmail filters” first.")
            raise web.HTTPSeeOther("/settings")
        try:
            message = _apply(view.filters, op, form)
            text = flt.compile_script(view.filters)
        except flt.FilterError as exc:
            ws.flash = f"Not saved: {exc}"
            raise web.HTTPSeeOther("/settings") from None
        try:
            await client.checkscript(text)
            await client.putscript(flt.SCRIPT_NAME, text)
            if view.active != flt.SCRIPT_NAME:
                await client.setactive(flt.SCRIPT_NAME)
        except SieveError as exc:
            ws.flash = f"The server refused the filters: {exc.text}"
            raise web.HTTPSeeOther("/settings") from None
    ws.flash = message
    raise web.HTTPSeeOther("/settings")


# -- live updates ---------------------------------------------------------------------------------------------
async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events from one IMAP IDLE connection per browser session."""
    ws = _require(request)
    cfg = request.app[CONFIG]
    box = request.query.get("box", "INBOX") or "INBOX"
    tasks = request.app[LIVE].tasks
    if ws.idle is not None and not ws.idle.done():
        ws.idle.cancel()  # one IDLE connection per browser session: the newest page wins
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await ws.idle
    if len(tasks) >= cfg.max_idle:
        return web.Response(status=503, text="retry: 60000\n\n", content_type="text/event-stream")
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                       "X-Accel-Buffering": "no"})
    await resp.prepare(request)
    task = asyncio.current_task()
    assert task is not None
    ws.idle = task
    tasks.add(task)
    conn: Connection | None = None
    try:
        await resp.write(b"retry: 5000\n\n")
        conn = await open_connection(cfg.imap_host, cfg.imap_port)
        if cfg.reattach == "xstate":
            assert ws.token is not None
            await conn.restore(ws.token)
        else:
            assert ws.user is not None and ws.password is not None
            await conn.login(ws.user, ws.password)
        await conn.select(box)
        client = conn.client
        idle = await client.idle_start(timeout=20 * 60)
        await resp.write(b"event: ready\ndata: {}\n\n")
        while True:
            try:
                push = await client.wait_server_push(timeout=cfg.idle_keepalive)
            except TimeoutError:
                if request.transport is None or request.transport.is_closing():
                    break
                await resp.write(b": keepalive\n\n")
                continue
            if push == "stop_wait_server_push":  # aioimaplib's IDLE timer: renew the IDLE
                client.idle_done()
                await asyncio.wait_for(idle, 10)
                idle = await client.idle_start(timeout=20 * 60)
                continue
            lines = push if isinstance(push, list) else [push]
            for line in lines:
                text = bytes(line).decode("ascii", "replace") if isinstance(line, bytes | bytearray) else str(line)
                parts = text.split()
                if len(parts) == 2 and parts[0].isdigit() and parts[1] in ("EXISTS", "EXPUNGE"):
                    event = {"kind": parts[1].lower(), "n": int(parts[0])}
                    await resp.write(f"event: {parts[1].lower()}\ndata: {json.dumps(event)}\n\n".encode())
                elif len(parts) >= 3 and parts[1] == "FETCH":
                    await resp.write(b"event: flags\ndata: {}\n\n")
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    except (ImapDown, ImapError) as exc:
        with contextlib.suppress(Exception):
            await resp.write(f"event: error\ndata: {json.dumps(str(exc))}\n\n".encode())
    finally:
        tasks.discard(task)
        if ws.idle is task:
            ws.idle = None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.client.idle_done()
            await conn.logout()
    return resp


# -- middlewares ----------------------------------------------------------------------------------------------
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def session_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await _with_session(request, handler)
    finally:
        _STATE.pop(id(request), None)


async def _with_session(request: web.Request, handler: Handler) -> web.StreamResponse:
    store = request.app[STORE]
    ws = store.get(request.cookies.get(COOKIE))
    if ws is None and not request.path.startswith("/static/"):
        ws = store.new()
    _state(request).ws = ws
    try:
        resp = await handler(request)
    except web.HTTPException as exc:
        resp = exc
    cur = _session(request)
    if cur is not None and request.cookies.get(COOKIE) != store.cookie_value(cur) and not resp.prepared:
        resp.set_cookie(COOKIE, store.cookie_value(cur), httponly=True, samesite="Strict", path="/")
    if isinstance(resp, web.HTTPException):
        raise resp
    return resp


@web.middleware
async def csrf_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method == "POST":
        ws = _session(request)
        form = await request.post()
        token = str(form.get("csrf", ""))
        if ws is None or not token or not hmac.compare_digest(token, ws.csrf):
            return render("error.html", request, {
                "title": "Form expired", "message": "This form is no longer valid (missing or wrong CSRF "
                "token). Go back, reload the page and try again."}, 403)
    return await handler(request)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except SessionGone as exc:
        ws = _session(request)
        why = ("Your session has expired or was revoked (for example, the password changed)"
               if exc.code == "X-STATE-EXPIRED" else "Your session is no longer valid")
        if ws is not None:
            ws.logout(f"{why}. Please log in again.")
        raise web.HTTPSeeOther("/login") from None
    except LoginFailed as exc:  # login mode: the password changed under us
        ws = _session(request)
        if ws is not None:
            ws.logout(f"Your session has expired: the server refused the stored login ({exc}). Please log in again.")
        raise web.HTTPSeeOther("/login") from None
    except SieveDown as exc:
        log.warning("ManageSieve server down: %s", exc)
        return render("error.html", request, {
            "title": "Filters unavailable",
            "message": "The filter server (ManageSieve) cannot be reached right now. Mail is not affected.",
            "detail": str(exc)}, 503)
    except SieveError as exc:
        log.warning("ManageSieve error: %s", exc)
        return render("error.html", request, {"title": "The filter server refused that",
                                               "message": exc.text}, 502)
    except ImapDown as exc:
        log.warning("IMAP server down: %s", exc)
        return render("error.html", request, {
            "title": "Mail server unavailable",
            "message": "The mail server cannot be reached right now. Please try again in a moment.",
            "detail": str(exc)}, 503)
    except ImapError as exc:
        log.warning("IMAP error: %s", exc)
        return render("error.html", request, {"title": "The mail server refused that",
                                               "message": str(exc)}, 502)
    except Exception:
        log.exception("unexpected error on %s", request.path)
        return render("error.html", request, {"title": "Something went wrong",
                                               "message": "An unexpected error happened; it was logged."}, 500)


@web.middleware
async def headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    resp = await handler(request)
    if not resp.prepared:
        resp.headers.setdefault("Content-Security-Policy", PAGE_CSP)
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "no-referrer")
        if request.path != "/static/style.css" and not request.path.startswith("/static/"):
            resp.headers.setdefault("Cache-Control", "no-store")
    return resp


async def index(request: web.Request) -> web.Response:
    ws = _session(request)
    raise web.HTTPSeeOther(_mail_url(ws.mailbox) if ws is not None and ws.logged_in else "/login")


async def _on_shutdown(app: web.Application) -> None:
    for task in list(app[LIVE].tasks):
        task.cancel()


def make_app(config: Config | None = None) -> web.Application:
    cfg = config or Config()
    if cfg.reattach not in ("xstate", "login"):
        raise ValueError("reattach must be 'xstate' or 'login'")
    app = web.Application(middlewares=[headers_middleware, session_middleware, error_middleware, csrf_middleware])
    app[CONFIG] = cfg
    app[STORE] = SessionStore(cfg.secret)
    app[LIVE] = Live()
    aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(str(HERE / "templates")), autoescape=True)
    app.router.add_get("/", index)
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login_post)
    app.router.add_post("/logout", logout_post)
    app.router.add_get("/mail", mailbox_page)
    app.router.add_get("/message", message_page)
    app.router.add_get("/message/body", message_body)
    app.router.add_get("/message/part", attachment)
    app.router.add_post("/message/action", message_action)
    app.router.add_post("/trash/empty", empty_trash)
    app.router.add_get("/folders", folders_page)
    app.router.add_post("/folders", folders_post)
    app.router.add_get("/compose", compose_page)
    app.router.add_post("/compose", compose_post)
    app.router.add_get("/settings", settings_page)
    app.router.add_post("/settings", settings_post)
    app.router.add_get("/events", events)
    app.router.add_static("/static/", HERE / "static")
    app.on_shutdown.append(_on_shutdown)
    return app


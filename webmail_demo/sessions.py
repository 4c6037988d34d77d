"""Server-side web sessions: an in-memory store keyed by a random id carried in a signed cookie.

In ``xstate`` mode a session holds the user name and the X-STATE token only: no password, ever. In
``login`` mode it must also hold the password, because every request logs in again.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field

from itsdangerous import BadSignature, Signer

__all__ = ["COOKIE", "SessionStore", "WebSession"]

COOKIE = "webmail_sid"


@dataclass
class WebSession:
    sid: str
    csrf: str
    user: str | None = None
    token: str | None = None  # X-STATE token (xstate mode)
    password: str | None = None  # login mode only
    mailbox: str = "INBOX"  # the mailbox the token has selected
    flash: str | None = None
    last_seen: float = field(default_factory=time.monotonic)
    idle: asyncio.Task[None] | None = None

    @property
    def logged_in(self) -> bool:
        return self.user is not None

    def logout(self, flash: str | None = None) -> None:
        self.user = self.token = self.password = None
        self.mailbox = "INBOX"
        self.flash = flash
        self.csrf = secrets.token_urlsafe(24)
        if self.idle is not None:
            self.idle.cancel()
            self.idle = None


class SessionStore:
    def __init__(self, secret: bytes, max_age: float = 12 * 3600, max_sessions: int = 10_000) -> None:
        self._signer = Signer(secret, salt="webmail-demo.session")
        self._sessions: dict[str, WebSession] = {}
        self.max_age = max_age
        self.max_sessions = max_sessions

    def cookie_value(self, ws: WebSession) -> str:
        return self._signer.sign(ws.sid.encode()).decode()

    def get(self, cookie: str | None) -> WebSession | None:
        if not cookie:
            return None
        try:
            sid = self._signer.unsign(cookie.encode()).decode()
        except (BadSignature, UnicodeError):
            return None
        ws = self._sessions.get(sid)
        now = time.monotonic()
        if ws is None or now - ws.last_seen > self.max_age:
            self._sessions.pop(sid, None)
            return None
        ws.last_seen = now
        return ws

    def new(self) -> WebSession:
        if len(self._sessions) >= self.max_sessions:
            self._expire()
            if len(self._sessions) >= self.max_sessions:  # drop the oldest
                oldest = min(self._sessions.values(), key=lambda s: s.last_seen)
                self.drop(oldest)
        ws = WebSession(secrets.token_urlsafe(32), secrets.token_urlsafe(24))
        self._sessions[ws.sid] = ws
        return ws

    def drop(self, ws: WebSession) -> None:
        ws.logout()
        self._sessions.pop(ws.sid, None)

    def _expire(self) -> None:
        now = time.monotonic()
        for ws in [s for s in self._sessions.values() if now - s.last_seen > self.max_age]:
            self.drop(ws)

    def all(self) -> list[WebSession]:
        return list(self._sessions.values())

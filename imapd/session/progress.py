"""RFC 9585 INPROGRESS: ``* OK [INPROGRESS ("tag" done total)]`` while a long command runs.

The work that takes long (a SEARCH reading message bodies, a COPY/MOVE linking files, an EXPUNGE
unlinking them) happens in synchronous loops on the user's lane, in the search evaluator and the store.
They call a plain ``progress(done, total)`` callback (the store knows nothing of IMAP); a
:class:`Progress` decides whether a line is due: the first one only when the command has run for
``server.progress_interval`` seconds (a quick command sends none), then at most once per interval, with
``done`` never going backwards. A due line is written and flushed at once (output of a command on a lane
is otherwise held until it ends). Back-pressure: when the client has stopped reading (the transport paused
writing), the line is skipped rather than queued: progress is advisory, and the next one says more.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from imapd.protocol.response_codes import InProgressCode
from imapd.protocol.responses import UntaggedStatus

if TYPE_CHECKING:
    from imapd.session.session import Session

__all__ = ["Progress"]


class Progress:
    """The progress reporter of one command (a callable ``(done, total)``)."""

    __slots__ = ("_done", "_due", "_interval", "_session", "_tag", "_text", "sent")

    def __init__(self, s: Session, tag: str, text: str, *, interval: float | None = None) -> None:
        self._session = s
        self._tag = tag
        self._text = text
        self._interval = s.ctx.settings.server.progress_interval if interval is None else interval
        self._due = time.monotonic() + self._interval
        self._done = 0
        self.sent = 0

    def __call__(self, done: int, total: int | None) -> None:
        self._done = max(self._done, done)
        if self._interval <= 0:
            return
        now = time.monotonic()
        if now < self._due:
            return
        self._due = now + self._interval
        conn = self._session.conn
        if conn.output_paused:
            return
        self._session.send(UntaggedStatus("OK", self._text, InProgressCode(self._tag, self._done, total)))
        conn.flush()
        self.sent += 1

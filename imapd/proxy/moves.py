"""Taking a live session off its backend and putting it on one again: what hibernation, drain and backend
loss share.

:func:`detach` (the session is quiet: between commands, or in IDLE): end the backend's IDLE with DONE while
the client stays in IDLE (the backend's tagged OK is not passed on), ``X-STATE SAVE``, close the backend
connection. The untagged updates the backend sends meanwhile are passed on when the client is in IDLE
(where any update may come).

:func:`reattach`: RESTORE the token on the user's backend now (another one if the old is gone or drained),
pass the catch-up on (in IDLE, as untagged responses; between commands there is none, see
:func:`may_detach`), and when the client was in IDLE send IDLE again under a tag of ours that the relay
maps back to the client's own when the backend ends it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from imapd.proxy.backend_link import BackendClosed
from imapd.proxy.backends import NoBackend
from imapd.proxy.tracker import SessionTracker

if TYPE_CHECKING:
    from imapd.proxy.session import ProxySession

log = logging.getLogger(__name__)

__all__ = ["DetachFailed", "NotQuiet", "detach", "may_detach", "move", "reattach"]


class DetachFailed(Exception):
    pass


def may_detach(session: ProxySession) -> bool:
    """Quiet (between commands, or in IDLE), followed (not COMPRESS), and not under NOTIFY (its pushes for
    other mailboxes would stop while it sleeps)."""
    t = session.tracker
    if session.opaque or session.saving or session.user is None or session.link is None or not t.quiet:
        return False
    return not t.notify


class NotQuiet(Exception):
    """``X-STATE SAVE QUIET`` found updates pending (RFC 3501 7.4.1: they may not be sent between commands):
    the session stays attached, its backend connection untouched."""


async def detach(session: ProxySession) -> str:
    """SAVE the session on its backend and close that connection; the token. The caller set the phase so
    that client input waits. In IDLE: DONE, then SAVE (updates may go to the client); between commands:
    SAVE QUIET, which saves only a session with nothing pending (else :class:`NotQuiet`)."""
    link = session.link
    tracker = session.tracker
    assert link is not None
    link.on_lost = None
    link.control()
    idle_tag = tracker.idle_tag if tracker.idling else None
    keep = False
    try:
        if idle_tag is not None:
            link.write(b"DONE\r\n")
            untagged, done = await link.until_tagged(idle_tag, timeout=10)
            _pass_on(session, untagged)
        untagged, done = await link.command("X-STATE SAVE" if idle_tag is not None else "X-STATE SAVE QUIET",
                                            timeout=10)
        if idle_tag is None and b"[X-STATE-PENDING]" in done[:40]:
            keep = True
            raise NotQuiet(session.user)
    except BackendClosed as exc:
        raise DetachFailed(str(exc)) from None
    finally:
        if not keep:
            link.close()
            session.link = None
        else:
            link.on_lost = session.backend_lost_cb
    token = None
    others = []
    for response in untagged:
        if response.startswith(b"* X-STATE "):
            token = response[10:].strip().decode("ascii")
        else:
            others.append(response)
    if idle_tag is not None:
        _pass_on(session, others)
    if token is None or b" OK" not in done[:16]:
        raise DetachFailed(f"X-STATE SAVE answered {done[:80]!r}")
    session.token = token
    session.token_fresh = True
    return token


def _pass_on(session: ProxySession, responses: list[bytes]) -> None:
    for response in responses:
        session.write_client(response)


async def reattach(session: ProxySession, token: str, *, idle_tag: str | None, exclude: str | None = None) -> None:
    """Put the session back on a backend from ``token``; raises NoBackend / BackendClosed / DetachFailed."""
    # Between commands the catch-up stays pending in the backend session (X-STATE RESTORE ... PENDING),
    # delivered by the client's next commands under the usual rules; in IDLE it is passed on now.
    untagged, done = await session.attach(token, exclude=exclude,
                                          restore_args=" PENDING" if idle_tag is None else "")
    link = session.link
    assert link is not None
    if b" OK" not in done[:16]:
        link.close()
        session.link = None
        raise DetachFailed(f"X-STATE RESTORE answered {done[:100]!r}")
    selected = b"[READ-" in done[:40]
    tracker = SessionTracker(selected=selected)
    if idle_tag is not None:
        _pass_on(session, [r for r in untagged if not r.startswith(b"* CAPABILITY ")])
        ours = link.next_tag()
        link.write(f"{ours} IDLE\r\n".encode())
        while True:
            response = await link.response(10)
            if response.startswith(b"+"):
                break
            if response.startswith(ours.encode() + b" "):
                raise DetachFailed(f"IDLE refused: {response[:80]!r}")
            session.write_client(response)
        tracker.in_flight[ours] = "IDLE"
        tracker.idle_tag = ours
        tracker.idling = True
        tracker.tag_map[ours] = idle_tag
    session.tracker = tracker
    session.token = token
    session.token_fresh = True


async def move(session: ProxySession, *, exclude: str | None) -> bool:
    """Detach from the current backend and reattach on another (drain). True when the session relays
    again (moved, or left where it is for now because updates were pending); False if it was closed."""
    idle_tag = session.tracker.client_idle_tag()
    try:
        token = await detach(session)
        await reattach(session, token, idle_tag=idle_tag, exclude=exclude)
    except NotQuiet:
        return True
    except (DetachFailed, BackendClosed, NoBackend) as exc:
        log.warning("cannot move the session of %s off backend %s: %s", session.user, exclude, exc)
        session.bye("Backend unavailable, please reconnect")
        return False
    return True

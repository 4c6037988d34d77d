"""One ``watchfiles`` watcher over the whole mail root, run as an asyncio task by the server.

A change under ``mail/<user>/<folder>/{cur,new}`` of a mailbox that is open in this process triggers its
``sync()`` (once per batch: watchfiles already debounces, ``debounce_ms``); the sync publishes what changed.
Our own writes show up here too, but they are already in the index, so their sync finds nothing new and
publishes nothing: no duplicate events. The index files and ``tmp/`` are filtered out.
The session also calls ``sync()`` on SELECT/NOOP/IDLE, so nothing depends on inotify alone.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from typing import TYPE_CHECKING, Any

from imapd.store.errors import StoreError

if TYPE_CHECKING:
    from imapd.store.mailbox import Mailbox
    from imapd.store.store import Store

__all__ = ["mailboxes_for_paths", "watch"]

log = logging.getLogger(__name__)


def _interesting(_change: Any, path: str) -> bool:
    parent = os.path.basename(os.path.dirname(path))
    return parent in ("cur", "new") or os.path.basename(path) in ("cur", "new")


def mailboxes_for_paths(store: Store, paths: set[str]) -> list[Mailbox]:
    """The open mailboxes whose cur/ or new/ contains one of ``paths``."""
    dirs: set[str] = set()
    for p in paths:
        d = os.path.dirname(p) if os.path.basename(os.path.dirname(p)) in ("cur", "new") else p
        dirs.add(os.path.dirname(os.path.normpath(d)))
    out = []
    for mb in store.open_mailboxes():
        if os.path.normpath(mb.path) in dirs:
            out.append(mb)
    return out


async def watch(store: Store, *, stop_event: object | None = None, debounce_ms: int = 50) -> None:
    import watchfiles

    os.makedirs(store.mail_root, exist_ok=True)
    async for changes in watchfiles.awatch(store.mail_root, watch_filter=_interesting, stop_event=stop_event,
                                           debounce=debounce_ms, step=max(10, debounce_ms // 2),
                                           recursive=True):
        paths = {os.path.realpath(p) if False else p for _, p in changes}
        for mb in mailboxes_for_paths(store, paths):
            if not mb.deleted:
                store.run_for_user(mb.user, "sync after a Maildir change", functools.partial(_sync, mb))
        await asyncio.sleep(0)


def watch_blocking(store: Store, *, stop_event: Any, debounce_ms: int = 50) -> None:
    """:func:`watch` as a blocking loop, for a thread of its own (``stop_event``: a ``threading.Event``).

    A big change (an expunge of 100k messages is 100k inotify events) costs Python work per path; done
    here it never holds up the server's network loop. ``store.run_for_user`` must be thread-safe."""
    import watchfiles

    os.makedirs(store.mail_root, exist_ok=True)
    for changes in watchfiles.watch(store.mail_root, watch_filter=_interesting, stop_event=stop_event,
                                    debounce=debounce_ms, step=max(10, debounce_ms // 2), recursive=True,
                                    raise_interrupt=False, rust_timeout=250):  # (notices stop_event in time)
        paths = {p for _, p in changes}
        for mb in mailboxes_for_paths(store, paths):
            if not mb.deleted:
                store.run_for_user(mb.user, "sync after a Maildir change", functools.partial(_sync, mb))


def _sync(mb: Mailbox) -> None:
    if mb.deleted:
        return
    try:
        mb.sync()
    except StoreError as exc:
        log.warning("sync of %s/%s after a Maildir change failed: %s", mb.user, mb.name, exc)

"""One ``watchfiles`` watcher over the whole mail root, run as an asyncio task by the server.

A change under ``mail/<user>/<folder>/{cur,new}`` of a mailbox that is open in this process triggers its
``sync()`` (once per batch: watchfiles already debounces, ``debounce_ms``); the sync publishes what changed.
Our own writes show up here too, but they are already in the index, so their sync finds nothing new and
publishes nothing: no duplicate events. A change of a user's index WAL (``imapd-index.sqlite-wal``) makes
the store check ``PRAGMA data_version`` and, if another process committed, catch up that user's open
mailboxes: changes stored only in the index reach IDLE clients too. ``tmp/`` is filtered out.
The session also calls ``sync()`` on SELECT/NOOP/IDLE, so nothing depends on inotify alone.
watchfiles' per-batch "N changes detected" line is logged at DEBUG, not INFO.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING, Any

from imapd.store.errors import StoreError

if TYPE_CHECKING:
    from imapd.store.mailbox import Mailbox
    from imapd.store.store import Store

__all__ = ["mailboxes_for_paths", "watch"]

log = logging.getLogger(__name__)


_WAL = "imapd-index.sqlite-wal"


def _interesting(_change: Any, path: str) -> bool:
    parent = os.path.basename(os.path.dirname(path))
    name = os.path.basename(path)
    return parent in ("cur", "new") or name in ("cur", "new") or name == _WAL


class _ChangesDetectedToDebug(logging.Filter):
    """watchfiles logs every batch at INFO; for a mail server that is noise: demote it to DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO and "detected" in str(record.msg):
            if not logging.getLogger().isEnabledFor(logging.DEBUG):
                return False
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


_DEMOTE = _ChangesDetectedToDebug()


def users_for_paths(paths: set[str]) -> set[str]:
    """Users whose index WAL is among ``paths`` (``mail/<user>/imapd-index.sqlite-wal``)."""
    return {os.path.basename(os.path.dirname(p)) for p in paths if os.path.basename(p) == _WAL}


def cur_names_for(mailbox: Mailbox, paths: set[str]) -> set[str]:
    """File names under ``mailbox``'s ``cur/`` among ``paths`` (the directory itself counts as a name
    no index row has, so it forces a scan)."""
    cur = os.path.normpath(os.path.join(mailbox.path, "cur"))
    out = set()
    for p in paths:
        p = os.path.normpath(p)
        if p == cur:
            out.add("")
        elif os.path.dirname(p) == cur:
            out.add(os.path.basename(p))
    return out


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
    wf_log = logging.getLogger("watchfiles.main")
    if _DEMOTE not in wf_log.filters:
        wf_log.addFilter(_DEMOTE)
    try:
        await _watch_loop(store, watchfiles, stop_event, debounce_ms)
    finally:
        store.stopped_watching()


async def _watch_loop(store: Store, watchfiles: Any, stop_event: object | None, debounce_ms: int) -> None:
    started = False
    async for changes in watchfiles.awatch(store.mail_root, watch_filter=_interesting, stop_event=stop_event,
                                           debounce=debounce_ms, step=max(10, debounce_ms // 2),
                                           recursive=True, yield_on_timeout=True, rust_timeout=200):
        if not started:
            # From the first (possibly empty) batch on, every change below the mail root reaches us; what
            # was recorded before needs no look: unwatched records are negated while racy.
            started = store.watching = True
        if not changes:
            continue  # the empty batches of yield_on_timeout (every rust_timeout ms)
        paths = {p for _, p in changes}
        for user in users_for_paths(paths):
            try:
                store.index_changed(user)
            except StoreError as exc:
                log.warning("catch-up of %s after an index change failed: %s", user, exc)
            except Exception:
                log.exception("catch-up of %s after an index change failed", user)
        for mb in mailboxes_for_paths(store, {p for p in paths if os.path.basename(p) != _WAL}):
            if not mb.deleted:
                new = os.path.normpath(os.path.join(mb.path, "new"))
                _sync(mb, cur_names_for(mb, paths),
                      any(os.path.normpath(p) == new or os.path.dirname(os.path.normpath(p)) == new for p in paths))
        await asyncio.sleep(0)


def _sync(mb: Mailbox, names: set[str], new_changed: bool) -> None:
    try:
        mb.sync_names(names, new_changed)
    except StoreError as exc:
        log.warning("sync of %s/%s after a Maildir change failed: %s", mb.user, mb.name, exc)
    except Exception:
        log.exception("sync of %s/%s failed", mb.user, mb.name)

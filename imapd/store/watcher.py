"""One ``watchfiles`` watcher over the whole mail root: in a thread of its own in the server
(:func:`watch_blocking`), or as an asyncio task (:func:`watch`, tests).

A change under ``mail/<user>/<folder>/{cur,new}`` of a mailbox that is open in this process triggers its
``sync()`` (once per batch: watchfiles already debounces, ``debounce_ms``); the sync publishes what changed.
Our own writes show up here too, but they are already in the index, so their sync finds nothing new and
publishes nothing: no duplicate events. A change of a user's index WAL (``imapd-index.sqlite-wal``) makes
the store check ``PRAGMA data_version`` and, if another process committed, catch up that user's open
mailboxes: changes stored only in the index reach IDLE clients too. ``tmp/`` is filtered out.
The session also calls ``sync()`` on SELECT/NOOP/IDLE, so nothing depends on inotify alone (while the
watcher runs it also vouches for directory mtimes in their first tick: ``Store.watching``).
The syncs run through ``store.run_for_user`` (the server: the user's lane, off its event loop).
watchfiles' per-batch "N changes detected" line is logged at DEBUG, not INFO.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from imapd.store.errors import StoreError

if TYPE_CHECKING:
    from imapd.store.mailbox import Mailbox
    from imapd.store.store import Store

__all__ = ["mailboxes_for_paths", "watch", "watch_blocking"]

log = logging.getLogger(__name__)


_WAL = "imapd-index.sqlite-wal"


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


def users_with_new_mail(mail_root: str, paths: set[str]) -> set[str]:
    """Users with a change in some mailbox's ``new/`` (``mail/<user>/new/...``, ``mail/<user>/.Box/new/...``)."""
    out = set()
    for p in paths:
        parts = os.path.relpath(p, mail_root).split(os.sep)
        if len(parts) >= 2 and "new" in parts[1:] and parts[0] not in ("..", "."):
            out.add(parts[0])
    return out


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


def _prepare(store: Store) -> None:
    os.makedirs(store.mail_root, exist_ok=True)
    wf_log = logging.getLogger("watchfiles.main")
    if _DEMOTE not in wf_log.filters:
        wf_log.addFilter(_DEMOTE)


def _handle(store: Store, changes: set[tuple[Any, str]]) -> None:
    """One batch: set ``store.watching`` on the first (possibly empty) one, then queue the syncs.

    From the first batch on, every change below the mail root reaches us; what was recorded before needs
    no look, since unwatched records are negated while racy.
    """
    store.watching = True
    if not changes:
        return  # the empty batches of yield_on_timeout (every rust_timeout ms)
    dirs = _by_dir(p for _, p in changes)
    # One path per directory stands for its files below (every test but the names in cur/ looks only at
    # the directory): an expunge of 100k of our own files is then a few directories of work, not 100k
    # paths of os.path calls holding the GIL the lanes and the network loop want.
    if not dirs:
        return
    paths = {os.path.join(d, name) for d, names in dirs.items()
             for name in (names if len(names) <= 3 else _special(names))}
    for user in users_for_paths(paths):
        store.run_for_user(user, "catch-up after an index change", functools.partial(_index_changed, store, user))
    for user in users_with_new_mail(store.mail_root, paths):
        # Mail for a mailbox nobody has open: only NOTIFY sessions watching the user's other mailboxes care.
        if store.feed.has_user_message_subscribers(user):
            store.run_for_user(user, "notify after a delivery", functools.partial(store.feed.publish_user_touched, user))
    for mb in mailboxes_for_paths(store, {p for p in paths if os.path.basename(p) != _WAL}):
        if not mb.deleted:
            folder = os.path.normpath(mb.path)
            new_changed = os.path.join(folder, "new") in dirs or "new" in dirs.get(folder, ())
            names = set(dirs.get(os.path.join(folder, "cur"), ()))
            if "cur" in dirs.get(folder, ()):
                names.add("")  # the directory itself: a name no index row has, so it forces a scan
            _queue_sync(store, mb, names, new_changed)


def _by_dir(paths: Iterable[str]) -> dict[str, set[str]]:
    """``{normalized parent directory: {names}}`` of the ``paths`` that matter (files in a ``cur/`` or
    ``new/``, those directories themselves, the index WAL), filtered per directory here rather than by
    a watchfiles filter called per path."""
    raw: dict[str, set[str]] = {}
    for p in paths:
        d, _, name = p.rpartition(os.sep)
        names = raw.get(d)
        if names is None:
            names = raw[d] = set()
        names.add(name)
    out: dict[str, set[str]] = {}
    for d, names in raw.items():
        if os.path.basename(d) not in ("cur", "new"):
            names = names & _NAMED
            if not names:
                continue
        out.setdefault(os.path.normpath(d) if d else ".", set()).update(names)
    return out


_NAMED = frozenset({"cur", "new", _WAL})


def _special(names: set[str]) -> list[str]:
    """One name of a big batch of files in one directory, plus those the tests look at by name."""
    keep = [n for n in ("cur", "new", _WAL) if n in names]
    keep.append(next(n for n in names if n not in keep))
    return keep


async def watch(store: Store, *, stop_event: object | None = None, debounce_ms: int = 50) -> None:
    import watchfiles

    _prepare(store)
    try:
        async for changes in watchfiles.awatch(store.mail_root, watch_filter=None, stop_event=stop_event,
                                               debounce=debounce_ms, step=max(10, debounce_ms // 2),
                                               recursive=True, yield_on_timeout=True, rust_timeout=200):
            _handle(store, changes)
            await asyncio.sleep(0)
    finally:
        store.stopped_watching()


def watch_blocking(store: Store, *, stop_event: Any, debounce_ms: int = 50) -> None:
    """:func:`watch` as a blocking loop, for a thread of its own (``stop_event``: a ``threading.Event``).

    A big change (an expunge of 100k messages is 100k inotify events) costs Python work per path; done
    here it never holds up the server's network loop. ``store.run_for_user`` must be thread-safe."""
    import watchfiles

    _prepare(store)
    try:
        for changes in watchfiles.watch(store.mail_root, watch_filter=None, stop_event=stop_event,
                                        debounce=debounce_ms, step=max(10, debounce_ms // 2), recursive=True,
                                        raise_interrupt=False, rust_timeout=250,  # (notices stop_event in time)
                                        yield_on_timeout=True):
            _handle(store, changes)
    finally:
        store.stopped_watching()


def _index_changed(store: Store, user: str) -> None:
    try:
        store.index_changed(user)
    except StoreError as exc:
        log.warning("catch-up of %s after an index change failed: %s", user, exc)
    except Exception:
        log.exception("catch-up of %s after an index change failed", user)


def _queue_sync(store: Store, mb: Mailbox, names: set[str], new_changed: bool) -> None:
    """Queue one sync of ``mb`` on its user's lane, or add to the one already queued and not started.

    While the lane is busy (our own expunge of 100k files is hundreds of batches), the batches merge
    into one sync instead of one directory scan each."""
    key = id(mb)
    with store.pending_lock:
        queued = store.pending_syncs.get(key)
        if queued is not None:
            queued[1].update(names)
            queued[2] = queued[2] or new_changed
            return
        store.pending_syncs[key] = [mb, set(names), new_changed]
    store.run_for_user(mb.user, "sync after a Maildir change", functools.partial(_run_queued, store, key))


def _run_queued(store: Store, key: int) -> None:
    with store.pending_lock:
        queued = store.pending_syncs.pop(key, None)
    if queued is not None:
        _sync(queued[0], queued[1], queued[2])


def _sync(mb: Mailbox, names: set[str], new_changed: bool) -> None:
    if mb.deleted:
        return
    try:
        mb.sync_names(names, new_changed)
    except StoreError as exc:
        log.warning("sync of %s/%s after a Maildir change failed: %s", mb.user, mb.name, exc)
    except Exception:
        log.exception("sync of %s/%s failed", mb.user, mb.name)

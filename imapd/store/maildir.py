"""Maildir file operations: unique names, tmp/ -> cur/ delivery with fsync, directory fsync, scans.

Only this module writes message files. Every function raises plain ``OSError``; callers wrap it in
:class:`~imapd.store.errors.StorageIOError` with the user and mailbox they know.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import socket
import time
from collections.abc import Iterator

__all__ = [
    "base_of",
    "ensure_maildir",
    "fsync_dir",
    "info_from_name",
    "link_or_copy",
    "link_unnamed",
    "new_base_name",
    "scan_names",
    "sweep_tmp",
    "write_tmp",
    "write_unnamed",
]

TMP_MAX_AGE = 36 * 3600
"""Files in ``tmp/`` older than this are leftovers of crashed writers (the Maildir convention)."""

_counter = itertools.count(1)
_HOST = socket.gethostname().replace("/", "\\057").replace(":", "\\072").replace(".", "_") or "localhost"


def new_base_name(size: int | None = None) -> str:
    """A unique Maildir base name, ``<sec>.M<usec>P<pid>Q<n>.<host>[,S=<size>]``."""
    now = time.time()
    sec = int(now)
    usec = int((now - sec) * 1_000_000)
    base = f"{sec}.M{usec}P{os.getpid()}Q{next(_counter)}.{_HOST}"
    if size is not None:
        base += f",S={size}"
    return base


def base_of(fname: str) -> str:
    return fname.partition(":")[0]


def info_from_name(base: str) -> tuple[int | None, int | None]:
    """(internaldate seconds, size) encoded in a base name (``<sec>.`` prefix, ``,S=`` field), if any."""
    date: int | None = None
    size: int | None = None
    head = base.partition(".")[0]
    if head.isdigit():
        date = int(head)
    for field in base.split(",")[1:]:
        if field.startswith("S=") and field[2:].isdigit():
            size = int(field[2:])
    return date, size


def ensure_maildir(path: str) -> None:
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(path, sub), mode=0o700, exist_ok=True)


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_tmp(folder: str, data: bytes, mtime: float | None = None, *, fsync: bool = True) -> tuple[str, str]:
    """Write ``data`` to a new file in ``folder/tmp`` and fsync it; return (tmp path, base name).

    ``fsync=False`` skips the fsync (bulk imports that sync once at the end, benchmarks).
    On any error the partial file is removed before the error propagates.
    """
    base = new_base_name(len(data))
    path = os.path.join(folder, "tmp", base)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except FileNotFoundError:
        if not os.path.isdir(folder):
            raise
        ensure_maildir(folder)  # a lost tmp/ is recreated, as Dovecot does
        fd = os.open(path, flags, 0o600)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        if fsync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        _unlink_quiet(path)
        raise
    os.close(fd)
    if mtime is not None:
        with contextlib.suppress(OSError):
            os.utime(path, (mtime, mtime))
    return path, base


_unnamed_works: bool | None = None
"""Whether this process can link an ``O_TMPFILE`` file into a directory (None: not tried yet)."""


def write_unnamed(folder: str, data: bytes, mtime: float | None = None, *,
                  fsync: bool = True) -> tuple[int, str] | None:
    """Like :func:`write_tmp`, but the file gets no name in ``tmp/`` (``O_TMPFILE``): (descriptor, base
    name), to be given its one name by :func:`link_unnamed` and then closed. None where the kernel, the
    filesystem or /proc does not allow it (the caller falls back to :func:`write_tmp`).

    Why: a named ``tmp/`` file costs a directory entry created and removed again (and its journal
    updates) on every delivery; an unnamed one is freed by the kernel if we die before linking it."""
    global _unnamed_works
    if _unnamed_works is None:
        _unnamed_works = _can_link_unnamed(os.path.join(folder, "tmp"))
    if not _unnamed_works:  # (None: undecided, e.g. tmp/ was missing: write_tmp recreates it, the next call decides)
        return None
    try:
        fd = os.open(os.path.join(folder, "tmp"), os.O_WRONLY | os.O_TMPFILE | os.O_CLOEXEC, 0o600)
    except OSError:
        return None  # (a lost tmp/, say: write_tmp recreates it)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if fsync:
            os.fsync(fd)
        if mtime is not None:
            with contextlib.suppress(OSError):
                os.utime(fd, (mtime, mtime))
    except BaseException:
        os.close(fd)
        raise
    return fd, new_base_name(len(data))


def _can_link_unnamed(tmp: str) -> bool | None:
    """Once a process: can an ``O_TMPFILE`` file be linked here (kernel, filesystem, /proc)? The test
    links a file of its own under a probe name. None: undecided (no tmp/, or a passing error such as
    EMFILE or EACCES on this one folder): the next call tries again."""
    if not hasattr(os, "O_TMPFILE"):
        return False
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_TMPFILE | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        return False if exc.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL) else None
    probe = os.path.join(tmp, new_base_name() + ".probe")
    try:
        link_unnamed(fd, probe)
    except OSError:
        return False
    finally:
        os.close(fd)
    _unlink_quiet(probe)
    return True


def link_unnamed(fd: int, dest: str) -> None:
    """Give the file of :func:`write_unnamed`'s ``fd`` the name ``dest`` (never replacing a file there).

    ``linkat`` of ``/proc/self/fd/N`` with ``AT_SYMLINK_FOLLOW``, the way open(2) documents for
    ``O_TMPFILE`` (``os.link`` calls plain link(2) unless a directory descriptor is given, hence the
    dummy ``src_dir_fd``, which an absolute path ignores)."""
    os.link(f"/proc/self/fd/{fd}", dest, src_dir_fd=fd, follow_symlinks=True)


def link_or_copy(src: str, dst: str) -> None:
    """Hard-link ``src`` to ``dst`` (never overwriting); copy+fsync if links are not possible."""
    try:
        os.link(src, dst)
        return
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (18, 1, 95, 38):  # EXDEV, EPERM, EOPNOTSUPP, ENOSYS
            raise
    with open(src, "rb") as f:
        data = f.read()
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        _unlink_quiet(dst)
        raise
    os.close(fd)


def _unlink_quiet(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


unlink_quiet = _unlink_quiet


def scan_names(path: str) -> Iterator[str]:
    """File names in a Maildir subdirectory (no stat, no open); dot files skipped."""
    with os.scandir(path) as it:
        for entry in it:
            if not entry.name.startswith("."):
                yield entry.name


def sweep_tmp(folder: str, max_age: float | None = None) -> int:
    """Remove files in ``folder/tmp`` whose mtime and ctime are both older than ``max_age`` seconds
    (default :data:`TMP_MAX_AGE`); returns how many. An APPEND in progress has a fresh ctime."""
    limit = time.time() - (TMP_MAX_AGE if max_age is None else max_age)
    removed = 0
    if not os.path.isdir(os.path.join(folder, "tmp")) and os.path.isdir(folder):
        with contextlib.suppress(OSError):
            ensure_maildir(folder)
    try:
        with os.scandir(os.path.join(folder, "tmp")) as it:
            for entry in it:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if entry.is_file(follow_symlinks=False) and max(st.st_mtime, st.st_ctime) < limit:
                    _unlink_quiet(entry.path)
                    removed += 1
    except OSError:
        pass
    return removed

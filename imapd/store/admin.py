"""CLI commands of the storage layer: ``user add|passwd|del|list|quota`` and ``index rebuild|rebuild-fts``.

(``imapd deliver`` is in ``imapd/delivery/command.py``: it may talk LMTP to a running server.)

``imapd/cli.py`` calls :func:`register_cli` on its subparsers and then ``args.func(args) -> int``.
Exit codes follow sysexits.h.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sqlite3
import sys
import time
from collections.abc import Callable

from imapd.store.errors import (
    InvalidMailboxName,
    NoSuchMailbox,
    NoSuchUser,
    StorageIOError,
    UserExists,
)
from imapd.store.quota import MESSAGES_FIELD, STORAGE_FIELD, QuotaLimits, passwd_limits
from imapd.store.store import Store, valid_username
from imapd.store.users import PasswdFile

__all__ = ["DEFAULT_DATA_DIR", "EX_CONFIG", "EX_DATAERR", "EX_NOPERM", "EX_NOUSER", "EX_OK", "EX_TEMPFAIL", "EX_USAGE",
           "default_quota", "register_cli", "run_leased", "settings_options"]

EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_NOUSER = 67
EX_NOPERM = 77
EX_SOFTWARE = 70
EX_TEMPFAIL = 75
EX_CONFIG = 78
DEFAULT_DATA_DIR = "./imapd-data"


def _err(msg: str) -> None:
    print(f"imapd: {msg}", file=sys.stderr)


def _read_password(args: argparse.Namespace) -> str | None:
    if args.password_stdin:
        pw = sys.stdin.readline().rstrip("\r\n")
    else:
        pw = getpass.getpass("Password: ")
        if getpass.getpass("Retype password: ") != pw:
            _err("passwords do not match")
            return None
    if not pw:
        _err("empty password")
        return None
    return pw


def _passwd(args: argparse.Namespace) -> PasswdFile:
    return PasswdFile(os.path.join(args.data_dir, "passwd"))


def cmd_user_add(args: argparse.Namespace) -> int:
    if not valid_username(args.name):
        _err(f"invalid user name {args.name!r}")
        return EX_DATAERR
    pw = _read_password(args)
    if pw is None:
        return EX_DATAERR
    try:
        _passwd(args).add(args.name, pw)
    except UserExists as exc:
        _err(str(exc))
        return EX_DATAERR
    except OSError as exc:
        _err(f"cannot write passwd file: {exc}")
        return EX_TEMPFAIL
    store = Store(args.data_dir)
    try:
        store.create_user(args.name)
    except StorageIOError as exc:
        _err(str(exc))
        return EX_TEMPFAIL
    finally:
        store.close()
    return EX_OK


def cmd_user_passwd(args: argparse.Namespace) -> int:
    pf = _passwd(args)
    if pf.get(args.name) is None:
        _err(f"no user {args.name!r}")
        return EX_NOUSER
    pw = _read_password(args)
    if pw is None:
        return EX_DATAERR
    try:
        pf.set_password(args.name, pw)
    except NoSuchUser as exc:
        _err(str(exc))
        return EX_NOUSER
    except OSError as exc:
        _err(f"cannot write passwd file: {exc}")
        return EX_TEMPFAIL
    return EX_OK


def cmd_user_del(args: argparse.Namespace) -> int:
    """Remove the user from passwd; their mail directory is left in place (delete it by hand)."""
    try:
        _passwd(args).delete(args.name)
    except NoSuchUser as exc:
        _err(str(exc))
        return EX_NOUSER
    except OSError as exc:
        _err(f"cannot write passwd file: {exc}")
        return EX_TEMPFAIL
    return EX_OK


def cmd_user_list(args: argparse.Namespace) -> int:
    for name in _passwd(args).list():
        print(name)
    return EX_OK


def default_quota(args: argparse.Namespace) -> QuotaLimits | None:
    """``[quota]`` of the server's settings (``--config``, ``-o``): the limits of users whose passwd entry
    sets none. None (after a message) if the settings cannot be read."""
    from imapd.config import ConfigError, load_settings

    try:
        settings = load_settings(args.config, args.overrides)
    except ConfigError as exc:
        _err(str(exc))
        return None
    return QuotaLimits(settings.quota.storage or None, settings.quota.messages or None)


def _quota_value(text: str | None, field: str) -> str | None:
    """``--storage``/``--messages``: a number (0 = unlimited) or ``default`` (remove the user's own)."""
    if text is None or text == "default":
        return None
    if not text.isdigit():
        raise ValueError(f"{field}: expected a number or 'default', not {text!r}")
    return str(int(text))


def cmd_user_quota(args: argparse.Namespace) -> int:
    """Show a user's limits and usage; with --storage/--messages, set their own limits first.

    The limits are extra fields of the passwd entry that are not part of the credential, so a change
    ends no session and no X-STATE token, and running servers apply it at the next write."""
    pf = _passwd(args)
    if pf.get(args.name) is None:
        _err(f"no user {args.name!r}")
        return EX_NOUSER
    changes: dict[str, str | None] = {}
    try:
        for option, field in ((args.storage, STORAGE_FIELD), (args.messages, MESSAGES_FIELD)):
            if option is not None:
                changes[field] = _quota_value(option, field)
    except ValueError as exc:
        _err(str(exc))
        return EX_USAGE
    if changes:
        try:
            pf.set_fields(args.name, changes)
        except OSError as exc:
            _err(f"cannot write passwd file: {exc}")
            return EX_TEMPFAIL
    default = default_quota(args)
    if default is None:
        return EX_CONFIG
    rec = pf.get(args.name)
    assert rec is not None
    limits = passwd_limits(pf, default)(args.name)
    store = Store(args.data_dir)
    try:
        usage = store.user(args.name).quota_usage()
    except NoSuchUser:
        usage = None
    except (StorageIOError, sqlite3.Error) as exc:
        _err(f"cannot read usage: {exc}")
        return EX_TEMPFAIL
    finally:
        store.close()
    for resource, used, limit, field in (
            ("STORAGE", usage.storage_kib if usage else 0, limits.storage_kib, STORAGE_FIELD),
            ("MESSAGE", usage.messages if usage else 0, limits.messages, MESSAGES_FIELD)):
        source = "user" if field in rec.extra else "default"
        unit = " KiB" if resource == "STORAGE" else ""
        print(f"{resource} {used}{unit} of {'unlimited' if limit is None else f'{limit}{unit}'} ({source})")
    return EX_OK


def _set_aside_index(root: str) -> str | None:
    """Move an index SQLite cannot open out of the way (kept for inspection); its new name, or None."""
    from imapd.store.userstore import INDEX_FILE

    path = os.path.join(root, INDEX_FILE)
    if not os.path.exists(path):
        return None
    aside = f"{path}.broken-{int(time.time())}"
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.replace(path + suffix, aside + suffix)
    return aside


def _rebuild_failed(exc: Exception) -> int:
    """The exit code (and the line on stderr) of an index rebuild that could not be done."""
    if isinstance(exc, NoSuchUser):
        _err(str(exc))
        return EX_NOUSER
    if isinstance(exc, NoSuchMailbox | InvalidMailboxName):
        _err(str(exc))
        return EX_DATAERR
    _err(f"rebuild failed: {exc}")
    return EX_TEMPFAIL


def cmd_index_rebuild(args: argparse.Namespace) -> int:
    """Rebuild a user's index (or one mailbox's rows) from the Maildir, keeping the UIDs and UIDVALIDITY
    that ``dovecot-uidlist`` records. Run it with the server stopped: open sessions would see the
    mailbox vanish and come back under a new id. With ``cluster.redis_url`` (``--config``/``-o``) it holds
    the user's cluster lease while it writes, and refuses a user another node serves
    (imapd/cluster/admin_lease.py)."""
    return run_leased(args, args.user, lambda: _rebuild(args), "index rebuild refused: {}")


def _rebuild(args: argparse.Namespace) -> int:
    store = Store(args.data_dir)
    try:
        try:
            us = store.user(args.user)
        except sqlite3.DatabaseError as exc:
            aside = _set_aside_index(store.user_root(args.user))
            _err(f"the index cannot be opened ({exc}); moved to {aside}, building a new one")
            store.close()
            store = Store(args.data_dir)
            us = store.user(args.user)
        for name, uidvalidity, count in us.rebuild_index(args.mailbox):
            print(f"{name}: UIDVALIDITY {uidvalidity}, {count} messages")
    except (NoSuchUser, NoSuchMailbox, InvalidMailboxName, StorageIOError, OSError, sqlite3.Error) as exc:
        return _rebuild_failed(exc)
    finally:
        store.close()
    return EX_OK


def cmd_index_rebuild_fts(args: argparse.Namespace) -> int:
    """Rebuild the full-text index of a user's mailboxes (or one) from the messages. Safe while the server
    runs: its searches scan what is not indexed yet."""
    store = Store(args.data_dir)
    try:
        us = store.user(args.user)
        infos = [m for m in us.list_mailboxes() if m.mailbox_id is not None]
        if args.mailbox is not None:
            mailbox_id, _ = us.resolve(args.mailbox)
            infos = [m for m in infos if m.mailbox_id == mailbox_id]
        for info in infos:
            assert info.mailbox_id is not None
            started = time.monotonic()
            last = [started]

            def progress(done: int, total: int, name: str = info.name, last: list[float] = last) -> None:
                now = time.monotonic()
                if now - last[0] >= 5.0 or done >= total:
                    last[0] = now
                    print(f"{name}: {done}/{total} messages", flush=True)

            indexed, unreadable = us.texts.rebuild(info.mailbox_id, progress)
            print(f"{info.name}: {indexed} messages indexed, {unreadable} unreadable (scanned), "
                  f"{time.monotonic() - started:.1f} s")
    except (NoSuchUser, NoSuchMailbox, InvalidMailboxName, StorageIOError, OSError, sqlite3.Error) as exc:
        return _rebuild_failed(exc)
    finally:
        store.close()
    return EX_OK


def run_leased(args: argparse.Namespace, user: str, work: Callable[[], int], refused: str) -> int:
    """``work()`` under ``user``'s cluster lease when the settings (``--config``/``-o``) name a Redis
    (imapd/cluster/admin_lease.py); a user another node serves is refused with EX_TEMPFAIL and
    ``refused`` (what was refused, and what to do instead) on stderr, naming the node."""
    from imapd.cluster.admin_lease import LeaseRefused, admin_lease
    from imapd.config import ConfigError, load_settings

    try:
        cluster = load_settings(args.config, args.overrides).cluster
    except ConfigError as exc:
        _err(str(exc))
        return EX_CONFIG
    try:
        with admin_lease(cluster, user):
            return work()
    except LeaseRefused as exc:
        _err(refused.format(exc))
        return EX_TEMPFAIL


def settings_options() -> argparse.ArgumentParser:
    """``--config`` and ``-o``: the server's settings, for commands that need its ``[quota]`` defaults."""
    settings = argparse.ArgumentParser(add_help=False)
    settings.add_argument("--config", metavar="FILE",
                          help="the server's TOML config (the [quota], [sieve] or [cluster] settings the command needs)")
    settings.add_argument("-o", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
                          help="override a setting, as for `imapd serve`")
    return settings


def register_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="data directory (default %(default)s)")

    user = subparsers.add_parser("user", help="manage users in <data-dir>/passwd")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    p = user_sub.add_parser("add", parents=[common], help="add a user and create their Maildir")
    p.add_argument("name")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.set_defaults(func=cmd_user_add)
    p = user_sub.add_parser("passwd", parents=[common], help="change a user's password")
    p.add_argument("name")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.set_defaults(func=cmd_user_passwd)
    p = user_sub.add_parser("del", parents=[common], help="remove a user (mail files are kept)")
    p.add_argument("name")
    p.set_defaults(func=cmd_user_del)
    p = user_sub.add_parser("list", parents=[common], help="list users")
    p.set_defaults(func=cmd_user_list)
    settings = settings_options()
    p = user_sub.add_parser("quota", parents=[common, settings],
                            help="show a user's quota and usage; set their own limits")
    p.add_argument("name")
    p.add_argument("--storage", metavar="KIB", help="STORAGE limit in KiB (0: unlimited; 'default': the setting)")
    p.add_argument("--messages", metavar="N", help="MESSAGE limit (0: unlimited; 'default': the setting)")
    p.set_defaults(func=cmd_user_quota)

    index = subparsers.add_parser("index", help="maintain a user's index (imapd-index.sqlite)")
    index_sub = index.add_subparsers(dest="index_command", required=True)
    p = index_sub.add_parser("rebuild", parents=[common, settings],
                             help="rebuild the index from the Maildir, keeping dovecot-uidlist's UIDs")
    p.add_argument("user")
    p.add_argument("mailbox", nargs="?", default=None, help="only this mailbox (default: all)")
    p.set_defaults(func=cmd_index_rebuild)
    p = index_sub.add_parser("rebuild-fts", parents=[common],
                             help="rebuild the full-text SEARCH index (imapd-fts/) from the messages")
    p.add_argument("user")
    p.add_argument("mailbox", nargs="?", default=None, help="only this mailbox (default: all)")
    p.set_defaults(func=cmd_index_rebuild_fts)

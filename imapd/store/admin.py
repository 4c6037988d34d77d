"""CLI commands of the storage layer: ``user add|passwd|del|list``, ``deliver``, ``index rebuild|rebuild-fts``.

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

from imapd.rendezvous import notify_owner
from imapd.store.errors import InvalidMailboxName, NoSuchMailbox, NoSuchUser, StorageIOError, UserExists
from imapd.store.store import Store, valid_username
from imapd.store.users import PasswdFile

__all__ = ["EX_DATAERR", "EX_NOUSER", "EX_OK", "EX_TEMPFAIL", "EX_USAGE", "register_cli"]

EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_NOUSER = 67
EX_SOFTWARE = 70
EX_TEMPFAIL = 75
DEFAULT_DATA_DIR = "./imapd-data"
MAX_MESSAGE = 64 * 1024 * 1024


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


def to_crlf(data: bytes) -> bytes:
    """MTAs pipe messages with bare LF line ends; IMAP serves CRLF, and sizes must match what is served."""
    if b"\n" not in data.replace(b"\r\n", b""):
        return data
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def cmd_deliver(args: argparse.Namespace) -> int:
    if _passwd(args).get(args.user) is None:
        _err(f"no user {args.user!r}")
        return EX_NOUSER
    data = sys.stdin.buffer.read(MAX_MESSAGE + 1)
    if not data:
        _err("empty message")
        return EX_DATAERR
    if len(data) > MAX_MESSAGE:
        _err("message too large")
        return EX_DATAERR
    data = to_crlf(data)
    store = Store(args.data_dir)
    try:
        try:
            us = store.user(args.user)
        except NoSuchUser:
            us = store.create_user(args.user)
        mb = us.open(args.mailbox)
        try:
            uid = mb.append(data)
        finally:
            mb.release()
    except NoSuchUser as exc:
        _err(str(exc))
        return EX_NOUSER
    except (NoSuchMailbox, InvalidMailboxName) as exc:
        _err(str(exc))
        return EX_DATAERR
    except StorageIOError as exc:
        _err(str(exc))
        return EX_TEMPFAIL
    except OSError as exc:
        _err(f"delivery failed: {exc}")
        return EX_TEMPFAIL
    finally:
        store.close()
    notify_owner(args.data_dir, args.user)  # the running server's owner of the user syncs at once
    if args.verbose:
        print(uid)
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


def cmd_index_rebuild(args: argparse.Namespace) -> int:
    """Rebuild a user's index (or one mailbox's rows) from the Maildir, keeping the UIDs and UIDVALIDITY
    that ``dovecot-uidlist`` records. Run it with the server stopped: open sessions would see the
    mailbox vanish and come back under a new id."""
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
    except NoSuchUser as exc:
        _err(str(exc))
        return EX_NOUSER
    except (NoSuchMailbox, InvalidMailboxName) as exc:
        _err(str(exc))
        return EX_DATAERR
    except (StorageIOError, OSError, sqlite3.Error) as exc:
        _err(f"rebuild failed: {exc}")
        return EX_TEMPFAIL
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
    except NoSuchUser as exc:
        _err(str(exc))
        return EX_NOUSER
    except (NoSuchMailbox, InvalidMailboxName) as exc:
        _err(str(exc))
        return EX_DATAERR
    except (StorageIOError, OSError, sqlite3.Error) as exc:
        _err(f"rebuild failed: {exc}")
        return EX_TEMPFAIL
    finally:
        store.close()
    return EX_OK


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

    p = subparsers.add_parser("deliver", parents=[common], help="deliver one message from stdin")
    p.add_argument("user")
    p.add_argument("--mailbox", default="INBOX")
    p.add_argument("-v", "--verbose", action="store_true", help="print the new UID")
    p.set_defaults(func=cmd_deliver)

    index = subparsers.add_parser("index", help="maintain a user's index (imapd-index.sqlite)")
    index_sub = index.add_subparsers(dest="index_command", required=True)
    p = index_sub.add_parser("rebuild", parents=[common],
                             help="rebuild the index from the Maildir, keeping dovecot-uidlist's UIDs")
    p.add_argument("user")
    p.add_argument("mailbox", nargs="?", default=None, help="only this mailbox (default: all)")
    p.set_defaults(func=cmd_index_rebuild)
    p = index_sub.add_parser("rebuild-fts", parents=[common],
                             help="rebuild the full-text SEARCH index (imapd-fts/) from the messages")
    p.add_argument("user")
    p.add_argument("mailbox", nargs="?", default=None, help="only this mailbox (default: all)")
    p.set_defaults(func=cmd_index_rebuild_fts)

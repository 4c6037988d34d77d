"""``imapd deliver USER [--mailbox NAME] [--from ADDR]``: a local delivery agent for Postfix's pipe(8).

When a server with ``lmtp.listen`` runs on the data directory (it names its LMTP address in
``<data_dir>/run/lmtp``), the message goes to it over LMTP: the user's owner worker stores it, with the
same trace headers, filter and replies as any LMTP delivery. With no server there (or none that
answers before the message is sent), or with ``--mailbox`` other than INBOX, it is written here
directly and the running server's owner of the user, if any, is told (``imapd/rendezvous.py``).
Exit codes follow sysexits.h, as Postfix expects of a pipe command.
"""

from __future__ import annotations

import argparse
import os
import re
import smtplib
import sys
from typing import TYPE_CHECKING

import msgspec

from imapd.delivery.agent import to_crlf
from imapd.rendezvous import notify_owner, run_dir
from imapd.sieve.delivery import deliver
from imapd.sieve.interpreter import Envelope as SieveEnvelope
from imapd.store.admin import (
    DEFAULT_DATA_DIR,
    EX_CONFIG,
    EX_DATAERR,
    EX_NOPERM,
    EX_NOUSER,
    EX_OK,
    EX_TEMPFAIL,
    default_quota,
    run_leased,
    settings_options,
)
from imapd.store.errors import InvalidMailboxName, NoSuchMailbox, NoSuchUser, OverQuota, StorageIOError
from imapd.store.names import INBOX
from imapd.store.quota import passwd_limits
from imapd.store.store import Store
from imapd.store.users import PasswdFile

if TYPE_CHECKING:
    from imapd.config import SieveSettings

__all__ = ["LMTP_ADDRESS_FILE", "cmd_deliver", "lmtp_address", "register_cli"]

MAX_MESSAGE = 64 * 1024 * 1024
LMTP_ADDRESS_FILE = "lmtp"


def _err(msg: str) -> None:
    print(f"imapd: {msg}", file=sys.stderr)


def lmtp_address(data_dir: str | os.PathLike[str]) -> str | None:
    """The LMTP address a running server wrote into ``run/lmtp`` (a socket path or HOST:PORT)."""
    try:
        text = (run_dir(data_dir) / LMTP_ADDRESS_FILE).read_text().strip()
    except OSError:
        return None
    return text or None


def _connect(address: str, timeout: float) -> smtplib.LMTP:
    if "/" in address:
        return smtplib.LMTP(address, timeout=timeout)
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return smtplib.LMTP(host, int(port), timeout=timeout)


def _over_lmtp(address: str, user: str, sender: str, data: bytes, verbose: bool, bounce_over_quota: bool) -> int | None:
    """Deliver over LMTP; None when no server took the message (the caller writes it directly)."""
    try:
        client = _connect(address, timeout=60.0)
    except (OSError, smtplib.SMTPException):
        return None
    try:
        try:
            client.ehlo_or_helo_if_needed()
            code, _ = client.mail(sender)
            if code != 250:
                return None
            code, reply = client.rcpt(user)
        except (OSError, smtplib.SMTPException):
            return None
        text = reply.decode("utf-8", "replace")
        if code != 250:
            _err(f"LMTP RCPT: {code} {text}")
            return EX_NOUSER if code == 550 else (EX_TEMPFAIL if code < 500 else EX_DATAERR)
        try:
            code, reply = client.data(data)
        except smtplib.SMTPDataError as exc:
            code = exc.smtp_code
            reply = exc.smtp_error if isinstance(exc.smtp_error, bytes) else exc.smtp_error.encode()
        except (OSError, smtplib.SMTPException) as exc:
            _err(f"LMTP server gone while it had the message ({exc}); try again later")
            return EX_TEMPFAIL
        text = reply.decode("utf-8", "replace")
        if code == 250:
            match = re.search(r"UID (\d+)", text)
            if verbose and match:
                print(match.group(1))
            return EX_OK
        _err(f"LMTP DATA: {code} {text}")
        if text.startswith("5.7.1"):  # the recipient's Sieve script rejected it: the MTA bounces
            return EX_NOPERM
        if text.startswith(("5.2.2", "4.2.2")):  # over quota: as the direct path, retried unless --over-quota=bounce
            return EX_NOPERM if bounce_over_quota else EX_TEMPFAIL
        return EX_TEMPFAIL if code < 500 else EX_DATAERR
    finally:
        try:
            client.quit()
        except (OSError, smtplib.SMTPException):
            client.close()


def _direct(args: argparse.Namespace, data: bytes) -> int:
    """Write the message here; on a cluster node (``cluster.redis_url``) only while holding the user's lease
    (imapd/cluster/admin_lease.py): a user another node serves is refused with EX_TEMPFAIL, naming it."""
    return run_leased(args, args.user, lambda: _write_here(args, data),
                      "delivery refused: {} (or deliver over that node's LMTP listener)")


def _write_here(args: argparse.Namespace, data: bytes) -> int:
    default = default_quota(args)
    if default is None:
        return EX_CONFIG
    sieve = _sieve_settings(args)
    if sieve is None:
        return EX_CONFIG
    store = Store(args.data_dir)
    store.quota_limits = passwd_limits(PasswdFile(os.path.join(args.data_dir, "passwd")), default)
    try:
        try:
            store.user(args.user)
        except NoSuchUser:
            store.create_user(args.user)
        # The user's active Sieve script decides where keep, fileinto, redirect and vacation go.
        envelope = SieveEnvelope(mail_from=args.sender, rcpt_to=args.recipient or args.user)
        report = deliver(store, args.user, envelope, data, sieve, mailbox=args.mailbox)
    except NoSuchUser as exc:
        _err(str(exc))
        return EX_NOUSER
    except (NoSuchMailbox, InvalidMailboxName) as exc:
        _err(str(exc))
        return EX_DATAERR
    except OverQuota as exc:
        # 75: the MTA keeps the message and retries (Postfix, Exim); 77 with --over-quota=bounce: it bounces.
        _err(f"{args.user}: {exc}")
        return EX_NOPERM if args.over_quota == "bounce" else EX_TEMPFAIL
    except StorageIOError as exc:
        _err(str(exc))
        return EX_TEMPFAIL
    except OSError as exc:
        _err(f"delivery failed: {exc}")
        return EX_TEMPFAIL
    finally:
        store.close()
    if report.stored:
        notify_owner(args.data_dir, args.user)  # the running server's owner of the user syncs at once
    if report.rejected is not None:
        _err(f"rejected by the recipient's Sieve script: {report.rejected}")
        return EX_NOPERM  # the MTA bounces with the text above
    if args.verbose:
        for mailbox, uid in report.stored:
            print(uid if mailbox == args.mailbox else f"{mailbox} {uid}")
    return EX_OK


def _sieve_settings(args: argparse.Namespace) -> SieveSettings | None:
    """``[sieve]`` of the server's config (``--config``/``-o``); ``--no-sieve`` turns it off."""
    from imapd.config import ConfigError, load_settings

    try:
        settings = load_settings(args.config, args.overrides).sieve
    except ConfigError as exc:
        _err(str(exc))
        return None
    return msgspec.structs.replace(settings, enabled=False) if args.no_sieve else settings


def cmd_deliver(args: argparse.Namespace) -> int:
    if PasswdFile(os.path.join(args.data_dir, "passwd")).get(args.user) is None:
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
    direct = args.direct or args.no_sieve or args.mailbox.upper() != INBOX
    address = None if direct else lmtp_address(args.data_dir)
    if address is not None:
        result = _over_lmtp(address, args.user, args.sender, data, args.verbose, args.over_quota == "bounce")
        if result is not None:
            return result
    return _direct(args, data)


def register_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("deliver", parents=[settings_options()],
                              help="deliver one message from stdin (over LMTP when a server runs)")
    p.add_argument("user")
    p.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="data directory (default %(default)s)")
    p.add_argument("--mailbox", default=INBOX, help="folder to deliver into (written directly)")
    p.add_argument("-f", "--from", "--sender", dest="sender", default="", metavar="ADDR",
                   help="envelope sender, for Return-Path and Sieve (Postfix: -f ${sender}); empty = <>")
    p.add_argument("--recipient", "-a", default="", metavar="ADDR",
                   help="envelope recipient for Sieve's envelope test when written here (Postfix: "
                        "${original_recipient}); default: USER. Over LMTP the recipient is USER")
    p.add_argument("--no-sieve", action="store_true",
                   help="store in --mailbox, ignoring any Sieve script (written here, never over LMTP)")
    p.add_argument("--direct", action="store_true", help="write into the Maildir here, never over LMTP")
    p.add_argument("-v", "--verbose", action="store_true", help="print the new UID")
    p.add_argument("--over-quota", choices=["tempfail", "bounce"], default="tempfail",
                   help="exit 75 (EX_TEMPFAIL, the MTA retries; default) or 77 (EX_NOPERM, it bounces)")
    p.set_defaults(func=cmd_deliver)

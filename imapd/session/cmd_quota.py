"""RFC 9208 QUOTA: GETQUOTA, GETQUOTAROOT, SETQUOTA.

A user has one quota root, ``""``, over all their mailboxes, with the resources that have a limit
(STORAGE in KiB, MESSAGE). A user without any limit has no quota root: GETQUOTAROOT lists none and
GETQUOTA ``""`` answers NO. Limits are the administrator's (``imapd user quota``, ``[quota]``), so
SETQUOTA is refused and QUOTASET not advertised, as RFC 9208 4.1.3 allows.
"""

from __future__ import annotations

from imapd.protocol import commands as c
from imapd.protocol.responses import QuotaResponse, QuotaRootResponse
from imapd.session.cmd_mailbox import existing_name
from imapd.session.errors import CommandNo
from imapd.session.session import Done, Session
from imapd.store.errors import NoSuchMailbox
from imapd.store.userstore import UserStore

__all__ = ["QUOTA_ROOT", "getquota", "getquotaroot", "quota_response", "setquota"]

QUOTA_ROOT = ""


def quota_response(user: UserStore) -> QuotaResponse | None:
    """``* QUOTA "" (...)`` with the resources that have a limit, or None when none has."""
    limits = user.quota_limits()
    if limits.unlimited:
        return None
    usage = user.quota_usage()
    resources: list[tuple[str, int, int]] = []
    if limits.storage_kib is not None:
        resources.append(("STORAGE", usage.storage_kib, limits.storage_kib))
    if limits.messages is not None:
        resources.append(("MESSAGE", usage.messages, limits.messages))
    return QuotaResponse(QUOTA_ROOT, tuple(resources))


def _user(s: Session) -> UserStore:
    assert s.user is not None
    return s.user


async def getquota(s: Session, cmd: c.GetQuota) -> Done:
    response = quota_response(_user(s)) if cmd.root == QUOTA_ROOT else None
    if response is None:
        raise CommandNo(f"No such quota root: {cmd.root!r}", "NONEXISTENT")
    s.send(response)
    return Done("GETQUOTA completed")


async def getquotaroot(s: Session, cmd: c.GetQuotaRoot) -> Done:
    user = _user(s)
    try:
        _, name = user.resolve(existing_name(cmd.mailbox))
    except NoSuchMailbox:
        raise CommandNo(f"Mailbox does not exist: {cmd.mailbox}", "NONEXISTENT") from None
    response = quota_response(user)
    s.send(QuotaRootResponse(name, (QUOTA_ROOT,) if response is not None else ()))
    if response is not None:
        s.send(response)
    return Done("GETQUOTAROOT completed")


async def setquota(s: Session, cmd: c.SetQuota) -> Done:
    raise CommandNo("Quota limits are set by the administrator (imapd user quota)", "NOPERM")

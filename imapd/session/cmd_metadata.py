"""RFC 5464 METADATA: GETMETADATA and SETMETADATA on server (``""``) and mailbox entries.

Entries live in the user's index (:mod:`imapd.store.annotate`); ``/private`` and ``/shared`` are kept
apart but both belong to the one user, since a mailbox here has no other reader. Entries that do not
exist are left out of the ``* METADATA`` response (RFC 5464 4.2.2's example), so a GETMETADATA that
finds nothing sends none.
"""

from __future__ import annotations

from imapd.protocol import commands as c
from imapd.protocol.response_codes import Code
from imapd.protocol.responses import MetadataResponse
from imapd.session.cmd_mailbox import existing_name
from imapd.session.errors import CommandBad, CommandNo
from imapd.session.session import Done, Session
from imapd.store.annotate import AnnotationLimits, AnnotationTooLarge, InvalidEntryName, TooManyAnnotations
from imapd.store.errors import NoSuchMailbox
from imapd.store.userstore import UserStore

__all__ = ["getmetadata", "setmetadata"]


def _user(s: Session) -> UserStore:
    assert s.user is not None
    return s.user


def _target(mailbox: str) -> str | None:
    return None if mailbox == "" else existing_name(mailbox)


async def getmetadata(s: Session, cmd: c.GetMetadata) -> Done:
    try:
        found = _user(s).get_annotations(_target(cmd.mailbox), cmd.entries, cmd.depth)
    except NoSuchMailbox:
        raise CommandNo(f"Mailbox does not exist: {cmd.mailbox}", "NONEXISTENT") from None
    except InvalidEntryName as exc:
        raise CommandBad(str(exc)) from None
    longest = 0
    sent: list[tuple[str, bytes | None]] = []
    for name, value in found:
        if cmd.maxsize is not None and len(value) > cmd.maxsize:
            longest = max(longest, len(value))  # RFC 5464 4.2.1: the biggest value left out
        else:
            sent.append((name, value))
    if sent:
        s.send(MetadataResponse(cmd.mailbox, tuple(sent)))
    return Done("GETMETADATA completed", Code("METADATA", f"LONGENTRIES {longest}") if longest else None)


async def setmetadata(s: Session, cmd: c.SetMetadata) -> Done:
    settings = s.ctx.settings.metadata
    limits = AnnotationLimits(settings.max_value_size, settings.max_entries)
    try:
        _user(s).set_annotations(_target(cmd.mailbox), cmd.entries, limits)
    except NoSuchMailbox:
        raise CommandNo(f"Mailbox does not exist: {cmd.mailbox}", "NONEXISTENT") from None
    except InvalidEntryName as exc:
        raise CommandBad(str(exc)) from None
    except AnnotationTooLarge as exc:
        raise CommandNo(str(exc), "METADATA", f"MAXSIZE {exc.max_size}") from None
    except TooManyAnnotations as exc:
        raise CommandNo(str(exc), "METADATA", "TOOMANY") from None
    return Done("SETMETADATA completed")

"""REPLACE and UID REPLACE (RFC 8508): a client saving a draft stores the new version and drops the old
one in one command, instead of APPEND + STORE \\Deleted + UID EXPUNGE, whose failure halfway leaves
two drafts or none.

Order: the old message is checked and the new one assembled (a CATENATE URL may name the old one), the
new one is appended, then the old one expunged; if that expunge fails, the new one is expunged again,
so the command either did both or neither. ``* OK [APPENDUID ...]`` goes in an untagged response before
the EXPUNGE (RFC 8508 3.3, as MOVE does with COPYUID), and the tagged OK carries no code.
"""

from __future__ import annotations

from imapd.protocol import commands as c
from imapd.protocol.response_codes import AppendUidCode
from imapd.protocol.responses import UntaggedStatus
from imapd.protocol.sequence import SequenceSet
from imapd.session.catenate import append_items
from imapd.session.cmd_mailbox import existing_name
from imapd.session.errors import CommandBad, CommandNo
from imapd.session.session import Done, Session
from imapd.session.view import SelectedView
from imapd.store.errors import NoSuchMailbox

__all__ = ["replace"]


async def replace(s: Session, cmd: c.Replace) -> Done:
    view = s.selected
    assert view is not None
    if view.readonly:
        raise CommandNo("Mailbox is read-only", "READ-ONLY")
    old = _old_uid(view, cmd)
    items = append_items(s, (cmd.message,))
    try:
        target = s.ctx.open_mailbox(s, existing_name(cmd.mailbox))
    except NoSuchMailbox:
        raise CommandNo(f"Mailbox does not exist: {cmd.mailbox}", "TRYCREATE") from None
    source = view.mailbox
    try:
        new = target.append_many(items)
        try:
            source.expunge([old])
        except BaseException:
            target.expunge(new)  # the old one stays, so the new one must not
            raise
        uidvalidity = target.uidvalidity
    finally:
        s.ctx.release_mailbox(target)
    s.send(UntaggedStatus("OK", "Replacement Message ready", AppendUidCode(uidvalidity, SequenceSet.of(new))))
    return Done("REPLACE completed")


def _old_uid(view: SelectedView, cmd: c.Replace) -> int:
    """The UID of the message to replace, as the client's view names it."""
    if cmd.uid:
        uid = cmd.number
        if view.seq_of(uid) is None:
            raise CommandNo(f"No message with UID {uid}")
    else:
        if cmd.number > view.exists:
            raise CommandBad("Message sequence number out of range")
        uid = view.uid_of(cmd.number)
    if uid not in view.mailbox or view.is_expunged(uid):
        raise CommandNo("The message to replace has been expunged", "EXPUNGEISSUED")
    return uid

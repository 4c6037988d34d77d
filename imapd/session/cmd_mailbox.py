"""Commands on mailboxes as a whole (AUTHENTICATED and SELECTED states)."""

from __future__ import annotations

from imapd.protocol import commands as c
from imapd.protocol.response_codes import AppendUidCode, Code, NumberCode
from imapd.protocol.responses import (
    ExistsResponse,
    FlagsResponse,
    ListResponse,
    LsubResponse,
    NamespaceResponse,
    ObjectId,
    RecentResponse,
    StatusResponse,
    UntaggedStatus,
)
from imapd.protocol.sequence import SequenceSet
from imapd.protocol.values import UndecodableName
from imapd.session.catenate import append_items
from imapd.session.errors import CommandBad, CommandNo
from imapd.session.list_pattern import MailboxPattern
from imapd.session.resync import plan_qresync_select, send_catch_up
from imapd.session.session import Done, Session, State
from imapd.session.updates import flag_list_responses
from imapd.session.updates import mailbox_flags as mailbox_flags  # cmd_xstate imports it from here
from imapd.session.view import SelectedView
from imapd.store.errors import NoSuchMailbox
from imapd.store.mailbox import Mailbox
from imapd.store.userstore import MailboxInfo, UserStore

SEPARATOR = "/"
_STATUS_ITEMS = frozenset({"MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "HIGHESTMODSEQ", "SIZE",
                           "DELETED", "DELETED-STORAGE", "MAILBOXID"})


def _user(s: Session) -> UserStore:
    assert s.user is not None
    return s.user


def existing_name(name: str) -> str:
    """``name``, unless it is not valid modified UTF-7 (RFC 3501 5.1.3): then no mailbox has it, NO."""
    if isinstance(name, UndecodableName):
        raise CommandNo(f"Mailbox does not exist: {name}", "NONEXISTENT")
    return name


def new_name(name: str) -> str:
    """``name`` for CREATE / RENAME / SUBSCRIBE: a name that is not valid modified UTF-7 cannot be made."""
    if isinstance(name, UndecodableName):
        raise CommandNo(f"Mailbox name is not valid modified UTF-7: {name}", "CANNOT")
    return name


# -- SELECT / EXAMINE ------------------------------------------------------------------------------------
async def select(s: Session, cmd: c.Select | c.Examine) -> Done:
    readonly = isinstance(cmd, c.Examine)
    if cmd.qresync is not None and "QRESYNC" not in s.enabled:
        raise CommandBad("The QRESYNC parameter needs ENABLE QRESYNC first")
    if cmd.condstore:
        s.enabled = s.enabled | {"CONDSTORE"}  # its HIGHESTMODSEQ comes with the SELECT responses
    if s.selected is not None:
        s.close_selected()
        s.send(UntaggedStatus("OK", "Previous mailbox closed", Code("CLOSED")))
    existing_name(cmd.mailbox)  # after deselecting: a failed SELECT leaves none selected (RFC 3501 6.3.1)
    try:
        mailbox = s.ctx.open_mailbox(s, cmd.mailbox)
    except NoSuchMailbox:
        raise CommandNo(f"Mailbox does not exist: {cmd.mailbox}", "NONEXISTENT") from None
    try:
        mailbox.sync()
    except Exception:
        s.ctx.release_mailbox(mailbox)
        raise
    view = attach_view(s, mailbox, readonly=readonly)
    view.learn_recent(1, mailbox.uidnext - 1)  # RFC 3501 2.3.2; EXAMINE only looks (6.3.2)
    send_select_untagged(s, view)
    if cmd.qresync is not None and cmd.qresync.uidvalidity == mailbox.uidvalidity:
        await send_catch_up(s, plan_qresync_select(mailbox, cmd.qresync.modseq, cmd.qresync.known_uids))
    return Done("SELECT completed" if not readonly else "EXAMINE completed",
                Code("READ-ONLY" if readonly else "READ-WRITE"))


def attach_view(s: Session, mailbox: Mailbox, *, readonly: bool) -> SelectedView:
    """Make ``mailbox`` the selected one, listening to its change feed. Nothing is \\Recent for the view
    yet: SELECT claims with :meth:`SelectedView.learn_recent`, a restore brings the session's own. An
    IMAP4rev2 session has no \\Recent (RFC 9051 2.3.2) and claims nothing, leaving it to IMAP4rev1 ones."""
    claims = None if s.rev2 else s.ctx.recent
    return select_view(s, SelectedView(mailbox, readonly=readonly, claims=claims, user=s.user))


def select_view(s: Session, view: SelectedView) -> SelectedView:
    """Make a view built beforehand the selected one, listening to its mailbox's change feed (no I/O:
    X-STATE RESTORE prepares its view, \\Recent claims included, before it changes the session)."""
    view.set_listener(view.mailbox.subscribe(view.on_event), None)
    if s.notify is not None:
        s.notify.attach(view)  # RFC 5465: pushed between commands
    s.selected = view
    s.state = State.SELECTED
    return view


def send_select_untagged(s: Session, view: SelectedView) -> None:
    mailbox = view.mailbox
    flags = view.flags_sent
    s.send(FlagsResponse(flags))
    s.send(ExistsResponse(view.exists))
    if s.rev2:  # RFC 9051 6.3.2: no RECENT and no [UNSEEN], but the mailbox's LIST response
        s.send(_select_list_response(s, mailbox))
    else:
        _send_recent_and_unseen(s, view)
    s.send(flag_list_responses(flags, readonly=view.readonly)[1])
    s.send(UntaggedStatus("OK", "UIDs valid", NumberCode("UIDVALIDITY", mailbox.uidvalidity)))
    s.send(UntaggedStatus("OK", "Predicted next UID", NumberCode("UIDNEXT", mailbox.uidnext)))
    s.send(UntaggedStatus("OK", "Highest", NumberCode("HIGHESTMODSEQ", mailbox.highestmodseq)))
    s.send(UntaggedStatus("OK", "Ok", mailboxid_code(mailbox.mailboxid)))


def mailboxid_code(mailboxid: str) -> Code:
    """``[MAILBOXID (id)]`` (RFC 8474 4.1): the id survives RENAME, a re-created name gets a new one."""
    return Code("MAILBOXID", f"({mailboxid})")


def _send_recent_and_unseen(s: Session, view: SelectedView) -> None:
    """What an IMAP4rev1 SELECT says and an IMAP4rev2 one does not (RFC 3501 6.3.1)."""
    s.send(RecentResponse(view.recent_count()))
    first_unseen = view.mailbox.first_unseen_uid()
    if first_unseen is not None:
        seq = view.seq_of(first_unseen)
        if seq is not None:
            s.send(UntaggedStatus("OK", f"Message {seq} is first unseen", NumberCode("UNSEEN", seq)))


def _select_list_response(s: Session, mailbox: Mailbox) -> ListResponse:
    """RFC 9051 6.3.2: the selected mailbox's LIST response, so the client learns its name as the server
    spells it (``inbox`` selects ``INBOX``) and its attributes, which must be accurate: the same ones
    LIST gives (from the open mailbox and one directory scan, not a listing of every mailbox)."""
    info = MailboxInfo(mailbox.name, mailbox.mailbox_id, mailbox.special_use, False,
                       _user(s).has_children(mailbox.name), False)
    return ListResponse(_attributes(info, subscribed=False), SEPARATOR, mailbox.name)


def _refuse_recent(s: Session, items: tuple[str, ...]) -> None:
    """RFC 9051 removes STATUS RECENT (Appendix E): BAD in an IMAP4rev2 session, as any unknown item."""
    if s.rev2 and "RECENT" in items:
        raise CommandBad("STATUS RECENT is not part of IMAP4rev2 (RFC 9051)")


# -- CREATE / DELETE / RENAME / SUBSCRIBE ----------------------------------------------------------------
async def create(s: Session, cmd: c.Create) -> Done:
    name = new_name(cmd.mailbox).rstrip(SEPARATOR)
    if name.upper() == "INBOX":
        raise CommandNo("INBOX always exists", "ALREADYEXISTS")
    if len(cmd.special_use) > 1:
        raise CommandNo("Only one special-use attribute per mailbox", "USEATTR")
    use = cmd.special_use[0] if cmd.special_use else None
    if use is not None and use not in ("\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive", "\\All",
                                       "\\Flagged"):
        raise CommandNo(f"Unsupported special-use attribute {use}", "USEATTR")
    created = _user(s).create_mailbox(name, use)
    return Done("CREATE completed", mailboxid_code(created.mailboxid) if created.mailboxid else None)


async def delete(s: Session, cmd: c.Delete) -> Done:
    if existing_name(cmd.mailbox) == "INBOX":
        raise CommandNo("INBOX cannot be deleted", "CANNOT")
    view = s.selected
    if view is not None and view.mailbox.name == cmd.mailbox:
        s.close_selected()
        s.send(UntaggedStatus("OK", "Selected mailbox is being deleted", Code("CLOSED")))
    try:
        _user(s).delete_mailbox(cmd.mailbox)
    except NoSuchMailbox:
        raise CommandNo(f"Mailbox does not exist: {cmd.mailbox}", "NONEXISTENT") from None
    return Done("DELETE completed")


async def rename(s: Session, cmd: c.Rename) -> Done:
    try:
        _user(s).rename_mailbox(existing_name(cmd.mailbox), new_name(cmd.new_name).rstrip(SEPARATOR))
    except NoSuchMailbox:
        raise CommandNo(f"Mailbox does not exist: {cmd.mailbox}", "NONEXISTENT") from None
    return Done("RENAME completed")


async def subscribe(s: Session, cmd: c.Subscribe) -> Done:
    # RFC 3501 6.3.6 lets the server check existence; like Dovecot we don't, so clients can subscribe
    # ahead of a CREATE or keep a subscription across a DELETE/CREATE.
    _user(s).subscribe(new_name(cmd.mailbox))
    return Done("SUBSCRIBE completed")


async def unsubscribe(s: Session, cmd: c.Unsubscribe) -> Done:
    _user(s).unsubscribe(existing_name(cmd.mailbox))
    return Done("UNSUBSCRIBE completed")


async def namespace(s: Session, cmd: c.Namespace) -> Done:
    s.send(NamespaceResponse(((("", SEPARATOR),)), None, None))
    return Done("NAMESPACE completed")


# -- LIST / LSUB ---------------------------------------------------------------------------------------------
def pattern_regex(reference: str, pattern: str) -> MailboxPattern:
    """RFC 3501 6.3.8: ``*`` matches anything, ``%`` anything but the hierarchy separator (linear time)."""
    return MailboxPattern(reference, pattern, SEPARATOR)


def _attributes(info: MailboxInfo, *, subscribed: bool) -> tuple[str, ...]:
    attrs: list[str] = []
    if info.noselect:
        attrs.append("\\Noselect")
    attrs.append("\\HasChildren" if info.has_children else "\\HasNoChildren")
    if info.special_use:
        attrs.append(info.special_use)
    if subscribed and info.subscribed:
        attrs.append("\\Subscribed")
    return tuple(attrs)


async def list_(s: Session, cmd: c.List) -> Done:
    user = _user(s)
    if len(cmd.patterns) == 1 and cmd.patterns[0] == "" and not cmd.selection:
        s.send(ListResponse(("\\Noselect",), SEPARATOR, ""))
        return Done("LIST completed")
    selection = set(cmd.selection)
    returns = set(cmd.return_options)
    unknown = selection - {"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"}
    if unknown:
        raise CommandBad(f"Unknown LIST selection option {sorted(unknown)[0]}")
    if selection == {"RECURSIVEMATCH"} or selection == {"RECURSIVEMATCH", "REMOTE"}:
        raise CommandBad("RECURSIVEMATCH needs another selection option")  # RFC 5258 3
    if cmd.status_items is not None:
        bad = [i for i in cmd.status_items if i not in _STATUS_ITEMS]
        if bad:
            raise CommandBad(f"Unknown STATUS item {bad[0]}")
        _refuse_recent(s, cmd.status_items)
    only_subscribed = "SUBSCRIBED" in selection
    only_special = "SPECIAL-USE" in selection
    recursive = "RECURSIVEMATCH" in selection
    show_subscribed = only_subscribed or "SUBSCRIBED" in returns
    # A pattern that is not valid modified UTF-7 can match no name: it lists nothing (RFC 3501 6.3.8).
    regexes = [pattern_regex(cmd.reference, p) for p in cmd.patterns
               if not isinstance(p, UndecodableName) and not isinstance(cmd.reference, UndecodableName)]
    infos = user.list_mailboxes()
    subscribed = set(user.subscriptions())
    existing = {info.name for info in infos}

    def matches(name: str) -> bool:
        return any(r.fullmatch(name) for r in regexes)

    def selected_by(name: str, info: MailboxInfo | None) -> bool:
        if only_subscribed and name not in subscribed:
            return False
        return not (only_special and (info is None or not info.special_use))

    for info in infos:
        if not matches(info.name):
            continue
        extended: tuple[tuple[str, tuple[str, ...]], ...] = ()
        selected = selected_by(info.name, info)
        if recursive and only_subscribed and not selected and _has_descendant(info.name, subscribed):
            # RFC 5258 3.5 / 4: CHILDINFO says why a mailbox that does not itself match the selection
            # is listed; a subscribed mailbox is listed for itself and gets none.
            extended = _CHILDINFO_SUBSCRIBED
        if not selected and not extended:
            continue
        s.send(ListResponse(_attributes(info, subscribed=show_subscribed), SEPARATOR, info.name, extended))
        if cmd.status_items and not info.noselect:
            _send_status(s, info.name, cmd.status_items, quiet=True)
    if only_subscribed:
        # Subscriptions to mailboxes that no longer exist (RFC 5258 \NonExistent).
        missing = subscribed - existing
        parents = {p for n in missing for p in _ancestors(n)} - existing - subscribed if recursive else set()
        for name in sorted(missing | parents):
            if not matches(name):
                continue
            if name in parents:  # a parent that does not exist, listed for its subscribed descendants
                s.send(ListResponse(("\\NonExistent",), SEPARATOR, name, _CHILDINFO_SUBSCRIBED))
            else:
                s.send(ListResponse(("\\NonExistent", "\\Subscribed"), SEPARATOR, name))
    return Done("LIST completed")


_CHILDINFO_SUBSCRIBED = (("CHILDINFO", ("SUBSCRIBED",)),)


def _ancestors(name: str) -> list[str]:
    """``a/b/c`` -> ``a``, ``a/b``."""
    parts = name.split(SEPARATOR)
    return [SEPARATOR.join(parts[:i]) for i in range(1, len(parts))]


def _has_descendant(name: str, names: set[str]) -> bool:
    prefix = name + SEPARATOR
    return any(n.startswith(prefix) for n in names)


async def lsub(s: Session, cmd: c.Lsub) -> Done:
    user = _user(s)
    if isinstance(cmd.pattern, UndecodableName) or isinstance(cmd.reference, UndecodableName):
        return Done("LSUB completed")
    regex = pattern_regex(cmd.reference, cmd.pattern)
    existing = {i.name: i for i in user.list_mailboxes()}
    subscribed = user.subscriptions()
    listed = set(subscribed)
    sent: set[str] = set()
    for name in subscribed:
        if regex.fullmatch(name):
            info = existing.get(name)
            attrs: tuple[str, ...] = ("\\Noselect",) if info is None or info.noselect else ()
            s.send(LsubResponse(attrs, SEPARATOR, name))
            continue
        # RFC 3501 6.3.9: with "a/b/c" subscribed, "%" matching "a/b" returns "a/b" as \Noselect.
        for parent in _ancestors(name):
            if parent not in listed and parent not in sent and regex.fullmatch(parent):
                sent.add(parent)
                s.send(LsubResponse(("\\Noselect",), SEPARATOR, parent))
    return Done("LSUB completed")


# -- STATUS --------------------------------------------------------------------------------------------------
async def status(s: Session, cmd: c.Status) -> Done:
    unknown = [i for i in cmd.items if i not in _STATUS_ITEMS]
    if unknown:
        raise CommandBad(f"Unknown STATUS item {unknown[0]}")
    _refuse_recent(s, cmd.items)
    _send_status(s, existing_name(cmd.mailbox), cmd.items, quiet=False)
    return Done("STATUS completed")


def _send_status(s: Session, name: str, items: tuple[str, ...], *, quiet: bool) -> None:
    """One ``* STATUS``; ``quiet`` (LIST-STATUS) skips mailboxes that cannot report instead of failing."""
    user = _user(s)
    if "HIGHESTMODSEQ" in items:
        s.enable_condstore()
    try:
        st = user.status(name)
    except NoSuchMailbox:
        if quiet:
            return
        raise CommandNo(f"Mailbox does not exist: {name}", "NONEXISTENT") from None
    recent = s.ctx.recent.unclaimed_count(user, st.mailbox_id, st.uidvalidity, st.uidnext) if "RECENT" in items else 0
    values: dict[str, int | ObjectId] = {
        "MESSAGES": st.messages,
        "RECENT": recent,
        "UIDNEXT": st.uidnext,
        "UIDVALIDITY": st.uidvalidity,
        "UNSEEN": st.unseen,
        "HIGHESTMODSEQ": st.highestmodseq,
        "SIZE": st.size,
        "DELETED": st.deleted,  # RFC 9051 6.3.11
        "DELETED-STORAGE": -(-st.deleted_size // 1024),  # RFC 9208 4.2: in units of 1024 octets, rounded up
        "MAILBOXID": ObjectId(st.mailboxid),  # RFC 8474 4.2
    }
    s.send(StatusResponse(name, tuple((i, values[i]) for i in items)))


# -- APPEND --------------------------------------------------------------------------------------------------
async def append(s: Session, cmd: c.Append) -> Done:
    items = append_items(s, cmd.messages)  # all resolved first: MULTIAPPEND stores all or none
    try:
        mailbox = s.ctx.open_mailbox(s, existing_name(cmd.mailbox))  # no TRYCREATE: it cannot be created
    except NoSuchMailbox:
        raise CommandNo(f"Mailbox does not exist: {cmd.mailbox}", "TRYCREATE") from None
    try:
        # The full-text index is written after the tagged OK (queued, flushed on the user's lane with other
        # writes; a SEARCH meanwhile scans what the index lacks): it was ~1.5 ms of CPU an APPEND (issue 18).
        uids = mailbox.append_many(items, text_later=True)
        uidvalidity = mailbox.uidvalidity
    finally:
        s.ctx.release_mailbox(mailbox)
    return Done("APPEND completed", AppendUidCode(uidvalidity, SequenceSet.of(uids)))

"""RFC 5465 NOTIFY: which events a session asked for, and sending them without IDLE.

A :class:`NotifyWatch` is one session's ``NOTIFY SET``. It listens to the user's change feed:

- the selected mailbox (filters SELECTED / SELECTED-DELAYED): the view's own pending updates are pushed
  as IDLE pushes them, between commands at once (SELECTED-DELAYED holds EXPUNGE back to the next command
  that may carry it, RFC 5465 6.2), and at the end of a command otherwise (RFC 3501 7.4.1 as ever). New
  messages are followed by a FETCH of the MessageNew attributes.
- other mailboxes (INBOXES, PERSONAL, SUBSCRIBED, SUBTREE, MAILBOXES): the watch keeps the last STATUS it
  sent per mailbox and sends a new one when it differs. It recomputes on any user-level signal: a message
  event of the user's (own writes, other sessions, watcher syncs) names one mailbox; "touched" (another
  process wrote, ``imapd deliver``) means all of them. The recompute is disk work, so it is queued on the
  user's lane, coalesced, never run inside the feed callback.
- mailbox-list events (MailboxName, SubscriptionChange) and METADATA changes are memory only and are
  written from the callback (the RFC allows them between commands and amid a command's responses).

Changes the session makes itself are reported like anyone else's (the RFC does not forbid it, and a
client that watches the mailbox it APPENDs to learns the new UIDNEXT without another STATUS).
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from imapd.mime import UnknownEncoding
from imapd.protocol import commands as c
from imapd.protocol.command_parser import parse_command
from imapd.protocol.notify_parser import write_notify
from imapd.protocol.response_codes import Code
from imapd.protocol.responses import (
    FetchResponse,
    ListResponse,
    MetadataChangedResponse,
    StatusResponse,
    UntaggedStatus,
)
from imapd.session.errors import CommandBad, CommandNo
from imapd.session.fetch import FetchPlan, render
from imapd.session.session import Done, Session
from imapd.store.changefeed import MailboxListChanged, MessageEvent
from imapd.store.errors import NoSuchMailbox, StoreError

if TYPE_CHECKING:
    from imapd.session.view import SelectedView
    from imapd.store.changefeed import Subscription

log = logging.getLogger(__name__)

__all__ = ["SUPPORTED", "NotifyWatch", "notify", "restore_notify"]

SUPPORTED = ("MessageNew", "MessageExpunge", "FlagChange", "MailboxName", "SubscriptionChange",
             "MailboxMetadataChange", "ServerMetadataChange")
"""What BADEVENT lists (AnnotationChange needs ANNOTATE, which we do not have)."""
_MESSAGE_EVENTS = frozenset({"MessageNew", "MessageExpunge", "FlagChange"})
_SELECTED = frozenset({"SELECTED", "SELECTED-DELAYED"})
MAX_STATUS_BURST = 5000
"""More STATUS than this in one go (a user with that many changed mailboxes at once): the client cannot
keep up either; ``* OK [NOTIFICATIONOVERFLOW]`` and notifications end (RFC 5465 5.8)."""
_SEPARATOR = "/"


def _names(group: c.NotifyGroup) -> frozenset[str]:
    return frozenset(e.name for e in group.events)


def validate(cmd: c.Notify) -> None:
    """The RFC's rules: unsupported events are ``NO [BADEVENT]`` (3.1), broken combinations ``BAD`` (5)."""
    supported = frozenset(SUPPORTED)
    for group in cmd.groups:
        for event in group.events:
            if event.name not in supported:
                raise CommandNo(f"Unsupported event {event.name}", "BADEVENT", "(" + " ".join(SUPPORTED) + ")")
    filters = [g.filter for g in cmd.groups]
    if len([f for f in filters if f in _SELECTED]) > 1:
        raise CommandBad("Only one of SELECTED and SELECTED-DELAYED may be given")
    for group in cmd.groups:
        names = _names(group)
        if ("MessageNew" in names) != ("MessageExpunge" in names):
            raise CommandBad("MessageNew and MessageExpunge go together (RFC 5465 5.2, 5.3)")
        if "FlagChange" in names and "MessageNew" not in names:
            raise CommandBad("FlagChange needs MessageNew and MessageExpunge (RFC 5465 5.4)")
        for event in group.events:
            if event.fetch:
                if group.filter not in _SELECTED:
                    raise CommandBad("MessageNew fetch attributes are for SELECTED and SELECTED-DELAYED only")
                try:
                    FetchPlan(event.fetch)
                except ValueError as exc:
                    raise CommandBad(f"Invalid MessageNew fetch attributes: {exc}") from None


class NotifyWatch:
    """One session's NOTIFY SET (see the module docstring). Lives on the user's lane like the session."""

    __slots__ = ("_dirty", "_list_sub", "_msg_sub", "_scheduled", "command", "delayed", "last_status",
                 "new_plan", "other_groups", "selected_events", "session", "subscribed")

    def __init__(self, session: Session, command: c.Notify) -> None:
        self.session = session
        self.command = command
        sel = next((g for g in command.groups if g.filter in _SELECTED), None)
        self.selected_events: frozenset[str] = _names(sel) if sel is not None else frozenset()
        self.delayed = sel is not None and sel.filter == "SELECTED-DELAYED"
        fetch = next((e.fetch for e in sel.events if e.fetch), ()) if sel is not None else ()
        self.new_plan: FetchPlan | None = FetchPlan(fetch) if fetch else None
        self.other_groups = tuple(g for g in command.groups if g.filter not in _SELECTED)
        self.last_status: dict[str, tuple[tuple[str, int], ...]] = {}
        self.subscribed: set[str] = set()
        self._dirty: set[int] | None = set()  # None: every mailbox
        self._scheduled = False
        self._list_sub: Subscription | None = None
        self._msg_sub: Subscription | None = None

    # -- life cycle ---------------------------------------------------------------------------------------
    def start(self, *, send_status: bool) -> None:
        """Subscribe, and learn (``send_status``: send) the STATUS of every watched mailbox. On the lane."""
        s = self.session
        assert s.user is not None and s.user_name is not None
        feed = s.ctx.store.feed
        self.subscribed = set(s.user.subscriptions())
        self._list_sub = feed.subscribe_user(s.user_name, self.on_list_event)
        if any(_names(g) & _MESSAGE_EVENTS for g in self.other_groups):
            self._msg_sub = feed.subscribe_user_messages(s.user_name, self.on_message_event)
        self.refresh(send=send_status, everything=True)
        self.attach(s.selected)

    def stop(self) -> None:
        for sub in (self._list_sub, self._msg_sub):
            if sub is not None:
                sub.cancel()
        self._list_sub = self._msg_sub = None
        view = self.session.selected
        if view is not None and self.session.idle_tag is None:
            view.set_notify(None)

    def attach(self, view: SelectedView | None) -> None:
        """Make ``view`` (the newly selected mailbox) push its updates between commands."""
        if view is not None and self.session.idle_tag is None:
            view.set_notify(self.resting_push())

    def resting_push(self) -> Callable[[], None] | None:
        """The view's change callback outside IDLE, or None when the selected mailbox is not watched."""
        return self.on_selected_change if self.selected_events & _MESSAGE_EVENTS else None

    @property
    def text(self) -> str:
        """The registration as X-STATE and the hand-off keep it."""
        return write_notify(self.command, True).decode("utf-8")

    # -- the selected mailbox -----------------------------------------------------------------------------
    def on_selected_change(self) -> None:
        self._schedule()

    def push_selected(self) -> None:
        """Between commands: what the view has pending, at once (not EXPUNGE for SELECTED-DELAYED)."""
        s = self.session
        view = s.selected
        if view is None or s.in_command or s.idle_tag is not None or not view.has_pending:
            return
        wanted = self.selected_events
        if "FlagChange" not in wanted and not view.pending_expunged and len(view.mailbox.uid_array) == view.exists:
            return  # only flag changes, not asked for: they wait for the next command (RFC 3501)
        s.send_selected_updates(view, allow_expunge=not self.delayed)

    def announce_new(self, view: SelectedView, top: int) -> None:
        """``* n FETCH`` with the MessageNew attributes for the messages above UID ``top`` just announced."""
        plan = self.new_plan
        if plan is None:
            return
        s = self.session
        mailbox = view.mailbox
        start = bisect.bisect_right(view.uids, top, 0, view.exists)
        pairs = [(i + 1, view.uids[i]) for i in range(start, view.exists)]
        batch = plan.prefetch(mailbox, [u for _, u in pairs], utf8=s.utf8)
        for seq, uid in pairs:
            flags = mailbox.flags(uid)
            if flags is None:
                continue
            if uid in view.recent:
                flags = (*flags, "\\Recent")
            try:
                items = render(plan, mailbox, uid, info=None, flags=flags, modseq=mailbox.modseq(uid), batch=batch)
            except (KeyError, FileNotFoundError, UnknownEncoding):
                continue
            s.send(FetchResponse(seq, items))

    # -- other mailboxes ----------------------------------------------------------------------------------
    def on_message_event(self, event: MessageEvent | None) -> None:
        """User-level feed callback (any thread that changed the user's mail): mark, queue, return."""
        if event is None:
            self._dirty = None
        else:
            view = self.session.selected
            if view is not None and view.mailbox.mailbox_id == event.mailbox_id:
                return  # the selected mailbox: its view has it (no STATUS for it, RFC 5465 5.1)
            if self._dirty is not None:
                self._dirty.add(event.mailbox_id)
        self._schedule()

    def _schedule(self) -> None:
        if self._scheduled:
            return
        self._scheduled = True
        s = self.session
        if s.user_name is not None:
            s.ctx.store.run_for_user(s.user_name, "NOTIFY", self._run)

    def _run(self) -> None:
        self._scheduled = False
        if self.session.notify is not self:
            return
        try:
            self.push_selected()
            if self._dirty is None or self._dirty:
                self.refresh(send=True, everything=False)
        except StoreError as exc:
            log.info("NOTIFY of %s: %s", self.session.user_name, exc)

    def group_for(self, name: str) -> c.NotifyGroup | None:
        """The first non-SELECTED group whose filter takes mailbox ``name``."""
        for group in self.other_groups:
            f = group.filter
            if (f == "PERSONAL" or (f == "INBOXES" and name == "INBOX")
                    or (f == "SUBSCRIBED" and name in self.subscribed)
                    or (f == "MAILBOXES" and name in group.mailboxes)
                    or (f == "SUBTREE" and any(name == m or name.startswith(m + _SEPARATOR)
                                               for m in group.mailboxes))):
                return group
        return None

    def refresh(self, *, send: bool, everything: bool) -> None:
        """Recompute the STATUS of the watched mailboxes marked dirty (all with ``everything``) and send
        those that changed. On the user's lane."""
        s = self.session
        user = s.user
        if user is None:
            return
        dirty, self._dirty = self._dirty, set()
        if everything:
            dirty = None
        selected_id = s.selected.mailbox.mailbox_id if s.selected is not None else None
        condstore = s.condstore
        out: list[StatusResponse] = []
        live: set[str] = set()
        for info in user.list_mailboxes():
            if info.mailbox_id is None or info.noselect:
                continue
            group = self.group_for(info.name)
            if group is None:
                continue
            events = _names(group) & _MESSAGE_EVENTS
            if not events:
                continue
            live.add(info.name)
            if info.mailbox_id == selected_id or (dirty is not None and info.mailbox_id not in dirty):
                continue
            try:
                st = user.status(info.name)
            except NoSuchMailbox:
                continue
            items: list[tuple[str, int]] = [("MESSAGES", st.messages), ("UIDNEXT", st.uidnext),
                                            ("UIDVALIDITY", st.uidvalidity)]
            if "FlagChange" in events:
                items.append(("UNSEEN", st.unseen))
            if condstore:
                items.append(("HIGHESTMODSEQ", st.highestmodseq))
            values = tuple(items)
            if self.last_status.get(info.name) != values:
                self.last_status[info.name] = values
                if send:
                    out.append(StatusResponse(info.name, values))
        for name in [n for n in self.last_status if n not in live]:
            del self.last_status[name]
        if len(out) > MAX_STATUS_BURST:
            self.overflow()
            return
        for response in out:
            s.send(response)

    def overflow(self) -> None:
        s = self.session
        s.send(UntaggedStatus("OK", "Too many notifications; NOTIFY is off, resynchronize",
                              Code("NOTIFICATIONOVERFLOW")))
        self.stop()
        s.notify = None

    # -- mailbox list and metadata ------------------------------------------------------------------------
    def on_list_event(self, event: MailboxListChanged) -> None:
        """User-level list callback: memory only, so the responses are written here."""
        kind = event.kind
        if kind == "subscribed":
            self.subscribed.add(event.name)
        elif kind == "unsubscribed":
            self.subscribed.discard(event.name)
        elif kind == "renamed" and event.old_name is not None:
            if event.old_name in self.subscribed:
                self.subscribed.add(event.name)
            status = self.last_status.pop(event.old_name, None)
            if status is not None:
                self.last_status[event.name] = status
        response = self._list_response(event)
        if response is not None:
            self.session.send(response)
        if kind in ("created", "renamed") and self._msg_sub is not None:
            self.on_message_event(None)  # a mailbox may have come into a filter

    def _wants(self, name: str, event: str) -> bool:
        group = self.group_for(name)
        if group is None:
            view = self.session.selected
            sel = view is not None and view.mailbox.name == name
            return sel and event in self.selected_events
        return event in _names(group)

    def _list_response(self, event: MailboxListChanged) -> ListResponse | MetadataChangedResponse | None:
        kind, name = event.kind, event.name
        if kind == "metadata":
            if name == "":
                if any("ServerMetadataChange" in _names(g) for g in self.command.groups):
                    return MetadataChangedResponse("", event.entries)
                return None
            return MetadataChangedResponse(name, event.entries) if self._wants(name, "MailboxMetadataChange") else None
        if kind in ("subscribed", "unsubscribed"):
            if not self._wants(name, "SubscriptionChange"):
                return None
            return ListResponse(("\\Subscribed",) if kind == "subscribed" else (), _SEPARATOR, name)
        if not (self._wants(name, "MailboxName") or (event.old_name and self._wants(event.old_name, "MailboxName"))):
            return None
        if kind == "created":
            return ListResponse((), _SEPARATOR, name)
        if kind == "deleted":
            return ListResponse(("\\NonExistent",), _SEPARATOR, name)
        if kind == "renamed" and event.old_name is not None:
            return ListResponse((), _SEPARATOR, name, (("OLDNAME", (event.old_name,)),))
        return None


# -- the command ----------------------------------------------------------------------------------------------
async def notify(s: Session, cmd: c.Notify) -> Done:
    validate(cmd)
    install(s, cmd, send_status=cmd.status)
    return Done("NOTIFY completed")


def install(s: Session, cmd: c.Notify, *, send_status: bool) -> None:
    """Replace the session's registration by ``cmd`` (NOTIFY NONE: none)."""
    old = s.notify
    if old is not None:
        old.stop()
        s.notify = None
    if not cmd.groups:
        return
    watch = NotifyWatch(s, cmd)
    s.notify = watch
    watch.start(send_status=send_status)


def restore_notify(s: Session, text: str) -> None:
    """X-STATE RESTORE or a hand-off: register again what the saved session had. The token cannot carry
    every watched mailbox's last STATUS, so a STATUS of each watched mailbox is sent now: the client then
    holds the present state, whatever changed while it was away."""
    if not text:
        return
    try:
        cmd = parse_command([b"x " + text.encode("utf-8")], utf8=True)
    except Exception:
        log.warning("ignoring an unreadable saved NOTIFY registration")
        return
    if not isinstance(cmd, c.Notify):
        return
    try:
        install(s, cmd, send_status=True)
    except StoreError as exc:  # the session is restored already: it goes on, with what could be read
        log.warning("NOTIFY of %s restored without its first STATUS: %s", s.user_name, exc)

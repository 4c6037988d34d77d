"""NOTIFY (RFC 5465) on the wire: the command parsed and written, with the RFC's examples (as corrected by
its verified errata), and the unsolicited METADATA it sends."""

from __future__ import annotations

import pytest

from imapd.protocol import commands as c
from imapd.protocol import responses as r
from imapd.protocol.command_writer import write_command
from imapd.protocol.events import ProtocolError
from imapd.protocol.fetch_items import BodySection, FetchAttr, FetchBody
from imapd.protocol.response_writer import ResponseWriter

from .helpers import events_of, parse_one

NEW = c.NotifyEvent("MessageNew")
EXP = c.NotifyEvent("MessageExpunge")
FLAGS = c.NotifyEvent("FlagChange")
HEADERS = FetchBody(BodySection((), "HEADER.FIELDS", ("from", "to", "subject")), None, True)

EXAMPLES: list[tuple[bytes, c.Command]] = [
    # RFC 5465 3.1 / 8
    (b"a notify none", c.Notify("a")),
    (b"a NOTIFY SET STATUS (selected (MessageNew (uid body.peek[header.fields (from to subject)]) "
     b"MessageExpunge)) (subtree Lists (MessageNew MessageExpunge))",
     c.Notify("a", (c.NotifyGroup("SELECTED", (c.NotifyEvent("MessageNew", (FetchAttr("UID"), HEADERS)), EXP)),
                    c.NotifyGroup("SUBTREE", (NEW, EXP), ("Lists",))), status=True)),
    (b"a NOTIFY SET (selected (MessageNew (uid body.peek[header.fields (from to subject)]) MessageExpunge)) "
     b"(mailboxes misc (MessageNew MessageExpunge))",
     c.Notify("a", (c.NotifyGroup("SELECTED", (c.NotifyEvent("MessageNew", (FetchAttr("UID"), HEADERS)), EXP)),
                    c.NotifyGroup("MAILBOXES", (NEW, EXP), ("misc",))))),
    (b"a notify set (personal (MessageNew MessageExpunge FlagChange)) (inboxes none)",
     c.Notify("a", (c.NotifyGroup("PERSONAL", (NEW, EXP, FLAGS)), c.NotifyGroup("INBOXES")))),
    (b'b NOTIFY SET (SELECTED-DELAYED (messagenew messageexpunge)) (SUBTREE ("a b" inbox) (MailboxName))',
     c.Notify("b", (c.NotifyGroup("SELECTED-DELAYED", (NEW, EXP)),
                    c.NotifyGroup("SUBTREE", (c.NotifyEvent("MailboxName"),), ("a b", "INBOX"))))),
    (b"c NOTIFY SET (subscribed (SubscriptionChange MailboxMetadataChange ServerMetadataChange))",
     c.Notify("c", (c.NotifyGroup("SUBSCRIBED", (c.NotifyEvent("SubscriptionChange"),
                                                 c.NotifyEvent("MailboxMetadataChange"),
                                                 c.NotifyEvent("ServerMetadataChange"))),))),
    # an event of an extension this parser does not know is an atom; the session answers BADEVENT
    (b"d NOTIFY SET (personal (AnnotationChange x-other))",
     c.Notify("d", (c.NotifyGroup("PERSONAL", (c.NotifyEvent("AnnotationChange"), c.NotifyEvent("X-OTHER"))),))),
]


@pytest.mark.parametrize(("line", "expected"), EXAMPLES)
def test_parse_and_round_trip(line: bytes, expected: c.Command) -> None:
    assert parse_one(line) == expected
    assert parse_one(write_command(expected)[:-2]) == expected


@pytest.mark.parametrize("line", [
    b"a NOTIFY", b"a NOTIFY SET", b"a NOTIFY SET STATUS", b"a NOTIFY ALL", b"a NOTIFY NONE extra",
    b"a NOTIFY SET (bogus (MessageNew))", b"a NOTIFY SET (selected)", b"a NOTIFY SET (selected ())",
    b"a NOTIFY SET (subtree (MessageNew))", b"a NOTIFY SET (mailboxes () (MessageNew))",
    b"a NOTIFY SET (selected (MessageNew (nosuchattr) MessageExpunge))", b"a NOTIFY SET (selected NONE",
    b"a NOTIFY SET (selected (MessageNew MessageExpunge))(personal NONE)",
])
def test_syntax_errors_are_bad(line: bytes) -> None:
    events = events_of(line + b"\r\n")
    assert len(events) == 1 and isinstance(events[0], ProtocolError) and events[0].tag == "a", events


def test_unsolicited_metadata_names_only() -> None:
    w = ResponseWriter()
    assert w.write(r.MetadataChangedResponse("INBOX", ("/shared/comment", "/private/x"))) == \
        b'* METADATA "INBOX" /shared/comment /private/x\r\n'
    assert w.write(r.MetadataChangedResponse("", ("/shared/admin",))) == b'* METADATA "" /shared/admin\r\n'

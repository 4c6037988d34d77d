"""RFC 5465 NOTIFY against a real server: events arrive without IDLE, between commands, from other
sessions and from ``imapd deliver``; the RFC's errors; NOTIFY NONE; the registration survives X-STATE."""

from __future__ import annotations

import hashlib
import imaplib
import re
import socket

import pytest

from tests.conftest import RunningServer, imapd_cli
from tests.e2e.test_xstate import token_of
from tests.rawimap import RawIMAP


def raw(server: RunningServer, user: str = "alice") -> RawIMAP:
    r = RawIMAP(server.host, server.port)
    r.ok(f"LOGIN {user} {server.users[user]}")
    return r


def other(server: RunningServer, user: str = "alice") -> imaplib.IMAP4:
    c = imaplib.IMAP4(server.host, server.port)
    c.login(user, server.users[user])
    return c


def mail(subject: str) -> bytes:
    return f"From: a@example.org\r\nSubject: {subject}\r\n\r\nbody of {subject}\r\n".encode()


def nothing_pending(r: RawIMAP, wait: float = 0.3) -> bool:
    """No unsolicited line arrives within ``wait`` seconds."""
    r.sock.settimeout(wait)
    try:
        data = r.sock.recv(65536, socket.MSG_PEEK)
    except TimeoutError:
        return not r.buf
    finally:
        r.sock.settimeout(10.0)
    return not data and not r.buf


def test_capability_and_errors(server: RunningServer) -> None:
    r = raw(server)
    caps = r.ok("CAPABILITY")
    assert b" NOTIFY" in caps[0]
    _, tagged = r.command("NOTIFY SET (SELECTED (MessageNew MessageExpunge AnnotationChange))")
    assert re.search(rb"NO \[BADEVENT \(MessageNew MessageExpunge FlagChange .*\)\]", tagged), tagged
    _, tagged = r.command("NOTIFY SET (PERSONAL (Frobnicate))")
    assert b"NO [BADEVENT" in tagged
    for bad in ("NOTIFY SET (SELECTED (MessageNew))", "NOTIFY SET (PERSONAL (FlagChange))",
                "NOTIFY SET (PERSONAL (MessageExpunge FlagChange))",
                "NOTIFY SET (INBOXES (MessageNew (UID) MessageExpunge))",
                "NOTIFY SET (SELECTED (MessageNew MessageExpunge)) (SELECTED-DELAYED (MessageNew MessageExpunge))",
                "NOTIFY SET (FOO (MessageNew MessageExpunge))", "NOTIFY FROB"):
        _, tagged = r.command(bad)
        assert b" BAD " in tagged, (bad, tagged)
    r.close()
    unauth = RawIMAP(server.host, server.port)
    _, tagged = unauth.command("NOTIFY NONE")
    assert b" BAD " in tagged
    unauth.close()


def test_new_mail_in_the_selected_mailbox_is_pushed_without_idle(server: RunningServer) -> None:
    o = other(server)
    o.create("Push")
    r = raw(server)
    r.ok("SELECT Push")
    r.ok("NOTIFY SET (SELECTED (MessageNew (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)]) MessageExpunge FlagChange))")
    o.append("Push", None, None, mail("pushed one"))
    lines = r.read_until(rb"FETCH")
    assert lines[0] == b"* 1 EXISTS"
    fetch = b"".join(lines[-1:])
    assert b"* 1 FETCH (UID 1 BODY[HEADER.FIELDS (SUBJECT)]" in fetch and b"Subject: pushed one" in r.buf + fetch
    # flag changes and expunges by another session, between commands, at once
    o.select("Push")
    o.uid("STORE", "1", "+FLAGS", r"(\Flagged)")
    flags = r.read_until(rb"^\* 1 FETCH \(FLAGS")
    assert b"\\Flagged" in flags[-1]
    o.uid("STORE", "1", "+FLAGS", r"(\Deleted)")
    o.expunge()
    assert r.read_until(rb"^\* 1 EXPUNGE")
    r.ok("NOOP")
    o.logout()
    r.close()


def test_selected_delayed_holds_expunge_to_the_next_command(server: RunningServer) -> None:
    o = other(server)
    o.create("Delayed")
    o.append("Delayed", None, None, mail("d1"))
    r = raw(server)
    r.ok("SELECT Delayed")
    r.ok("NOTIFY SET (SELECTED-DELAYED (MessageNew MessageExpunge))")
    o.select("Delayed")
    o.store("1", "+FLAGS", r"(\Deleted)")
    o.expunge()
    o.append("Delayed", None, None, mail("d2"))
    # the new message is announced at once; the expunge waits (the map grows by one meanwhile)
    assert r.read_until(rb"^\* 2 EXISTS")
    untagged, _ = r.command("FETCH 1:* (UID)")
    assert b"EXPUNGE" not in b" ".join(untagged)
    untagged = r.ok("NOOP")
    assert b"* 1 EXPUNGE" in untagged
    o.logout()
    r.close()


def test_status_of_a_watched_inbox_on_imapd_deliver(server: RunningServer) -> None:
    o = other(server, "bob")
    o.create("Elsewhere")
    r = raw(server, "bob")
    r.ok("SELECT Elsewhere")
    untagged = r.ok("NOTIFY SET STATUS (SELECTED (MessageNew MessageExpunge)) (INBOXES (MessageNew MessageExpunge))")
    first = [ln for ln in untagged if re.match(rb'\* STATUS "?INBOX"? ', ln)]
    assert len(first) == 1, untagged  # NOTIFY SET STATUS: at once
    imapd_cli("deliver", "bob", "--data-dir", str(server.data_dir), stdin=mail("delivered"))
    line = r.read_until(rb'^\* STATUS "?INBOX"? ')[-1]
    count = int(re.search(rb"MESSAGES (\d+)", first[0]).group(1))  # type: ignore[union-attr]
    assert f"MESSAGES {count + 1}".encode() in line and b"UIDNEXT" in line
    # APPEND by another session also reaches it
    o.append("INBOX", None, None, mail("appended"))
    line = r.read_until(rb'^\* STATUS "?INBOX"? ')[-1]
    assert f"MESSAGES {count + 2}".encode() in line
    o.logout()
    r.close()


def test_mailbox_name_and_subscription_change(server: RunningServer) -> None:
    r = raw(server)
    r.ok("NOTIFY SET (PERSONAL (MailboxName SubscriptionChange))")
    o = other(server)
    o.create("Fresh")
    assert r.read_until(rb'^\* LIST \(\) "/" "?Fresh"?$')
    o.rename("Fresh", "Renamed")
    line = r.read_until(rb"OLDNAME")[-1]
    assert re.match(rb'\* LIST \(\) "/" "?Renamed"? \("OLDNAME" \("Fresh"\)\)', line), line
    o.subscribe("Renamed")
    assert r.read_until(rb'^\* LIST \(\\Subscribed\) "/" "?Renamed"?$')
    o.unsubscribe("Renamed")
    assert r.read_until(rb'^\* LIST \(\) "/" "?Renamed"?$')
    o.delete("Renamed")
    assert r.read_until(rb'^\* LIST \(\\NonExistent\) "/" "?Renamed"?$')
    # NOTIFY NONE stops it all
    r.ok("NOTIFY NONE")
    o.create("Unseen")
    assert nothing_pending(r)
    untagged = r.ok("NOOP")
    assert not any(b"LIST" in ln for ln in untagged)
    o.delete("Unseen")
    o.logout()
    r.close()


def test_metadata_change(server: RunningServer) -> None:
    r = raw(server)
    r.ok("NOTIFY SET (PERSONAL (MailboxMetadataChange ServerMetadataChange))")
    o = raw(server)
    o.ok('SETMETADATA INBOX (/private/comment "hello")')
    assert r.read_until(rb"^\* METADATA \"?INBOX\"? /private/comment$")
    o.ok('SETMETADATA "" (/private/comment "server")')
    assert r.read_until(rb'^\* METADATA "" /private/comment$')
    o.close()
    r.close()


def test_notify_survives_x_state(server: RunningServer) -> None:
    o = other(server)
    o.create("Watched")
    r = raw(server)
    r.ok("NOTIFY SET (MAILBOXES Watched (MessageNew MessageExpunge FlagChange))")
    token = token_of(r.ok("X-STATE SAVE"))
    r.close()
    o.append("Watched", None, None, mail("while away"))
    b = RawIMAP(server.host, server.port)
    untagged, tagged = b.command(f"X-STATE RESTORE {token}")
    assert b"OK" in tagged
    status = [ln for ln in untagged if re.match(rb'\* STATUS "?Watched"? ', ln)]
    assert status and b"MESSAGES 1 " in status[0] and b"UNSEEN 1" in status[0], untagged
    o.append("Watched", None, None, mail("after"))
    line = b.read_until(rb'^\* STATUS "?Watched"? ')[-1]
    assert b"MESSAGES 2 " in line
    # and a token of a session without NOTIFY turns it off
    b.ok("NOTIFY NONE")
    plain = token_of(b.ok("X-STATE SAVE"))
    b.ok("NOTIFY SET (MAILBOXES Watched (MessageNew MessageExpunge))")
    b.ok(f"X-STATE RESTORE {plain}")
    o.append("Watched", None, None, mail("unseen by b"))
    assert nothing_pending(b)
    o.logout()
    b.close()


@pytest.mark.parametrize("filter_", ["SUBTREE Lists", "SUBSCRIBED"])
def test_subtree_and_subscribed_filters(server: RunningServer, filter_: str) -> None:
    o = other(server)
    name = "Lists/" + ("a" if filter_.startswith("SUBTREE") else "b")
    o.create(name)
    o.subscribe(name)
    r = raw(server)
    r.ok(f"NOTIFY SET ({filter_} (MessageNew MessageExpunge))")
    o.append(name, None, None, mail("list mail"))
    line = r.read_until(rb"^\* STATUS")[-1]
    assert name.encode() in line and b"MESSAGES 1 " in line
    o.logout()
    r.close()


def test_status_when_an_mda_writes_into_new_directly(server: RunningServer) -> None:
    """A delivery no imapd process makes (Postfix's own Maildir delivery) is seen by the watcher."""
    o = other(server, "bob")
    o.create("Direct")
    o.logout()
    r = raw(server, "bob")
    r.ok("NOTIFY SET STATUS (MAILBOXES Direct (MessageNew MessageExpunge))")
    new = server.data_dir / "mail" / "bob" / ".Direct" / "new"
    assert new.is_dir(), sorted(p.name for p in new.parent.parent.iterdir())
    tmp = new.parent / "tmp" / "1700000000.M1P1.mda"
    tmp.write_bytes(mail("straight into new"))
    tmp.rename(new / tmp.name)
    line = r.read_until(rb'^\* STATUS "?Direct"? \(MESSAGES 1 ')[-1]
    assert b"UIDNEXT 2" in line
    r.close()


def test_notify_with_idle_and_after_it(server: RunningServer) -> None:
    o = other(server)
    o.create("IdleBox")
    r = raw(server)
    r.ok("SELECT IdleBox")
    r.ok("NOTIFY SET (SELECTED (MessageNew (UID) MessageExpunge)) (INBOXES (MessageNew MessageExpunge))")
    r.sock.sendall(b"i1 IDLE\r\n")
    assert r.readline().startswith(b"+ ")
    o.append("IdleBox", None, None, mail("during idle"))
    lines = r.read_until(rb"^\* 1 FETCH \(UID 1\)$")
    assert b"* 1 EXISTS" in lines
    o.append("INBOX", None, None, mail("inbox during idle"))
    assert r.read_until(rb'^\* STATUS "?INBOX"? ')
    r.sock.sendall(b"DONE\r\n")
    assert r.read_until(rb"^i1 OK")
    # after DONE the selected mailbox is pushed without IDLE again
    o.append("IdleBox", None, None, mail("after idle"))
    lines = r.read_until(rb"^\* 2 FETCH \(UID 2\)$")
    assert b"* 2 EXISTS" in lines
    o.logout()
    r.close()


def test_a_registration_too_large_for_a_token(server: RunningServer) -> None:
    r = raw(server)
    # names that do not compress: the token is deflated when that makes it shorter
    names = " ".join(hashlib.sha512(b"%d" % i).hexdigest()[:120] for i in range(300))
    r.ok(f"NOTIFY SET (MAILBOXES ({names}) (MessageNew MessageExpunge))")
    _, tagged = r.command("X-STATE SAVE")
    assert b"NO [LIMIT]" in tagged, tagged
    r.ok("NOTIFY NONE")
    assert token_of(r.ok("X-STATE SAVE"))
    r.close()

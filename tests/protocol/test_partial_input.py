"""ServerConnection.holds_partial_command: whether unconsumed input may be an unfinished command (the
server then ACKs at once, TCP_QUICKACK, so a client that sends a literal and its CRLF apart does not wait
out a delayed ACK), and no such syscall for input of whole commands."""

from __future__ import annotations

from imapd.protocol.connection import ServerConnection
from imapd.protocol.events import CommandReceived


def test_whole_commands_are_not_partial() -> None:
    conn = ServerConnection()
    assert not conn.holds_partial_command
    conn.receive_data(b"a1 NOOP\r\na2 UID FETCH 1:5 (ENVELOPE FLAGS)\r\n")
    assert not conn.holds_partial_command  # two whole commands, not consumed yet
    assert isinstance(conn.next_event(), CommandReceived)
    assert isinstance(conn.next_event(), CommandReceived)
    assert not conn.holds_partial_command


def test_unfinished_line_and_literals_are_partial() -> None:
    conn = ServerConnection()
    conn.receive_data(b"a1 NOO")
    assert conn.holds_partial_command
    conn.receive_data(b"P\r\n")
    assert not conn.holds_partial_command
    conn.next_event()
    # LITERAL+ whose octets end in CRLF: it looks like whole lines, but a "{" means it may not be
    conn.receive_data(b"a2 APPEND INBOX {8+}\r\nab\r\n")
    assert conn.holds_partial_command
    conn.receive_data(b"cd\r\n")
    assert conn.holds_partial_command
    conn.receive_data(b"\r\n")
    assert conn.holds_partial_command  # (conservative while the "{" is unconsumed)
    assert isinstance(conn.next_event(), CommandReceived)
    assert not conn.holds_partial_command


def test_inside_a_literal_is_partial() -> None:
    conn = ServerConnection()
    conn.receive_data(b"a3 APPEND INBOX {6}\r\n")
    conn.next_event()  # the continuation request is due: the framer now waits for 6 octets
    conn.receive_data(b"abc\r\n")
    assert conn.holds_partial_command

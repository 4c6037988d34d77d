"""Shared helpers: run bytes through a ServerConnection and collect events."""

from __future__ import annotations

from imapd.protocol import NEED_DATA, ServerConnection
from imapd.protocol.commands import Command
from imapd.protocol.events import CommandReceived, Event


def events_of(data: bytes | list[bytes], *, eof: bool = False, **limits: int) -> list[Event]:
    """All events produced by feeding ``data`` (one chunk or many) to a fresh connection."""
    conn = ServerConnection(**limits)
    chunks = [data] if isinstance(data, bytes) else [d for d in data if d]  # b"" would mean EOF
    out: list[Event] = []
    for chunk in [*chunks, *([b""] if eof else [])]:
        conn.receive_data(chunk)
        while True:
            event = conn.next_event()
            if event is NEED_DATA:
                break
            assert not isinstance(event, type)
            out.append(event)
            if type(event).__name__ == "ConnectionClosed":
                return out
    return out


def parse_one(line: bytes, *, utf8: bool = False) -> Command:
    """Parse one command (literals may be ``{n+}`` or ``{n}``: continuations are skipped)."""
    conn = ServerConnection()
    conn.utf8 = utf8
    conn.receive_data(line if line.endswith(b"\n") else line + b"\r\n")
    while True:
        event = conn.next_event()
        assert event is not NEED_DATA, "incomplete command"
        if isinstance(event, CommandReceived):
            return event.command
        assert type(event).__name__ == "ContinuationRequest", event

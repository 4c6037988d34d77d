"""What the relay knows of a session without parsing it: line and literal framing of both byte streams.

The relay passes bytes through untouched, but it must know where it is: which tagged commands are in
flight, whether the session is in IDLE, whether a mailbox is selected, so that it can hibernate only
between commands and tell a crash in the middle of a command from one between commands. That needs only
the framing (where a line ends, which line announces a literal of how many octets), not the grammar, so
this module reuses the protocol layer's pieces (:func:`imapd.protocol.framing.literal_marker`,
:func:`~imapd.protocol.framing.extract_tag`) and looks at the first line of each command and response
only. Literal octets are counted off, never buffered, so a 50 MB APPEND or FETCH costs a few ``find``s.

:class:`LineScanner` is sans-IO (bytes in, lines out); :class:`SessionTracker` turns the first lines of
both directions into the session's state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from imapd.protocol.framing import extract_tag, literal_marker

__all__ = ["LineScanner", "SessionTracker", "TrackerError"]

_MAX_PARTIAL = 1 << 20  # a line longer than this in the relay is not IMAP we can follow


class TrackerError(ValueError):
    """A stream the relay cannot follow (an endless line); the session is closed."""


class LineScanner:
    """Splits a stream into lines (CRLF stripped), skipping literal octets; says which line starts a
    command/response (the others continue one after a literal)."""

    __slots__ = ("_continued", "_continued_first", "_literal", "_partial")

    def __init__(self) -> None:
        self._partial = b""
        self._literal = 0
        self._continued = False
        self._continued_first = False

    @property
    def between(self) -> bool:
        """True when the stream is at a command/response boundary (nothing half-received)."""
        return not self._partial and not self._literal and not self._continued

    def cancel_literal(self) -> None:
        """A synchronizing literal was refused by the server: the client will not send it."""
        self._literal = 0
        self._continued = False

    def feed(self, data: bytes) -> list[tuple[bytes, bool]]:
        """The lines completed by ``data``, each with True when it starts a new command/response."""
        lines = self._split(data)
        if lines is None:
            return self._feed_slow(data)
        out = [(line[:-1] if line.endswith(b"\r") else line, True) for line in lines]
        if out and self._continued_first:
            out[0] = (out[0][0], False)
        return out

    def heads(self, data: bytes) -> list[tuple[bytes, bool]]:
        """Like :meth:`feed`, but only the first lines of responses, and of the untagged ones only those
        that may be ``BYE`` or ``OK [...]``: what the relay looks at. The many ``* n FETCH`` lines of a big
        answer are split off in C (one ``split``) and never looked at one by one in Python."""
        lines = self._split(data)
        if lines is None:
            return [(line, first) for line, first in self._feed_slow(data) if first and _head(line)]
        if lines and self._continued_first:
            del lines[0]
        return [(line[:-1] if line.endswith(b"\r") else line, True) for line in lines
                if line[:2] != b"* " or line[2:3] in b"BbOo"]

    def _split(self, data: bytes) -> list[bytes] | None:
        """Whole lines of ``data`` (CR kept) when no literal can be involved, else None (the slow path).

        No literal octets pending, no partial line (which might end in ``{n}``), and no line of ``data``
        announcing one: then every line is whole, each starts a command/response except perhaps the first
        (a continuation after a literal that ended the last chunk), and what follows the last LF is the new
        partial line. Sets :attr:`_continued_first` for the caller."""
        if self._literal or self._partial or b"}\n" in data or b"}\r\n" in data:
            return None
        lines = data.split(b"\n")
        tail = lines.pop()
        if len(tail) > _MAX_PARTIAL:
            raise TrackerError("line too long to follow")
        self._partial = tail
        self._continued_first = self._continued and bool(lines)
        if lines:
            self._continued = False
        return lines

    def _feed_slow(self, data: bytes) -> list[tuple[bytes, bool]]:
        out: list[tuple[bytes, bool]] = []
        pos, n = 0, len(data)
        while pos < n:
            if self._literal:
                take = min(self._literal, n - pos)
                self._literal -= take
                pos += take
                continue
            end = data.find(b"\n", pos)
            if end < 0:
                self._partial += data[pos:]
                if len(self._partial) > _MAX_PARTIAL:
                    raise TrackerError("line too long to follow")
                break
            if self._partial:
                line = self._partial + data[pos:end]
                self._partial = b""
            else:
                line = data[pos:end]
            pos = end + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            first = not self._continued
            marker = literal_marker(line)
            if marker is not None:
                self._literal = marker[0]
                self._continued = True
            else:
                self._continued = False
            out.append((line, first))
        return out


def _head(line: bytes) -> bool:
    """A response's first line the relay must look at (tagged, continuation, ``* BYE``, ``* OK``)."""
    return line[:2] != b"* " or line[2:3] in b"BbOo"


def command_name(line: bytes) -> tuple[str | None, str]:
    """(tag, upper-cased command name; "UID FETCH" for the UID forms) of a command's first line."""
    tag = extract_tag(line)
    rest = line[len(tag) + 1:] if tag is not None else b""
    words = rest.split(b" ", 2)
    name = words[0].upper().decode("ascii", "replace")
    if name == "UID" and len(words) > 1:
        name = "UID " + words[1].upper().decode("ascii", "replace")
    return tag, name


@dataclass(slots=True)
class SessionTracker:
    """The session's state as the relay sees it, from both streams' first lines."""

    client: LineScanner = field(default_factory=LineScanner)
    backend: LineScanner = field(default_factory=LineScanner)
    in_flight: dict[str, str] = field(default_factory=dict)
    """Tags of commands sent to the backend and not answered yet, with their names."""
    idle_tag: str | None = None
    """The tag of the IDLE command in progress (set when it is sent)."""
    idling: bool = False
    """The backend accepted the IDLE (sent its continuation): the session waits for DONE."""
    selected: bool = False
    logout: bool = False
    bye: bool = False
    notify: bool = False
    """NOTIFY SET was sent: the backend pushes updates between commands, so the session stays attached."""
    authenticated: bool = True
    """False after UNAUTHENTICATE: the proxy cannot save such a session."""
    tag_map: dict[str, str] = field(default_factory=dict)
    """Backend tags the proxy used for a command the client sent under another tag (a re-entered IDLE)."""

    @property
    def quiet(self) -> bool:
        """Between commands or in IDLE, with both streams at a boundary: the session may be detached."""
        if not (self.client.between and self.backend.between) or not self.authenticated or self.logout:
            return False
        if not self.in_flight:
            return True
        return self.idling and len(self.in_flight) == 1

    def from_client(self, data: bytes) -> int:
        """Follow client bytes; the number of commands they start (DONE not counted)."""
        started = 0
        for line, first in self.client.feed(data):
            if not first:
                continue
            if self.idle_tag is not None and line.upper() == b"DONE":
                continue  # the tagged OK of the IDLE ends it
            tag, name = command_name(line)
            if tag is None:
                continue  # the backend answers BAD; nothing in flight to track
            self.in_flight[tag] = name
            started += 1
            if name == "IDLE":
                self.idle_tag = tag
            elif name == "LOGOUT":
                self.logout = True
            elif name == "NOTIFY":
                self.notify = True
        return started

    def from_backend(self, lines: list[tuple[bytes, bool]]) -> None:
        for line, first in lines:
            if not first:
                continue
            head = line[:2]
            if head == b"* ":
                if line[2:6].upper() == b"BYE ":
                    self.bye = True
                elif line.startswith(b"* OK [CLOSED]"):
                    self.selected = False
                continue
            if head == b"+ " or line == b"+":
                if self.idle_tag is not None:
                    self.idling = True
                continue
            tag, status = _tag_status(line)
            if tag is None:
                continue
            name = self.in_flight.pop(tag, None)
            if name is None:
                continue
            self._completed(tag, name, status)

    def _completed(self, tag: str, name: str, status: bytes) -> None:
        if tag == self.idle_tag:
            self.idle_tag = None
            self.idling = False
        ok = status == b"OK"
        if name in ("SELECT", "EXAMINE"):
            self.selected = ok
        elif name in ("CLOSE", "UNSELECT") and ok:
            self.selected = False
        elif name == "UNAUTHENTICATE" and ok:
            self.authenticated = False
            self.selected = False
        elif name == "X-STATE" and ok:
            pass  # RESTORE after login: its OK [READ-WRITE] says selected; handled by the caller's code check
        if status in (b"NO", b"BAD") and not self.client.between and self.client_waits_literal():
            self.client.cancel_literal()

    def client_idle_tag(self) -> str | None:
        """The tag the client gave its IDLE (ours may stand in for it after a re-attach), if idling."""
        if not self.idling or self.idle_tag is None:
            return None
        return self.tag_map.get(self.idle_tag, self.idle_tag)

    def client_waits_literal(self) -> bool:
        return self.client._literal > 0

    def rewrite(self, data: bytes) -> bytes:
        """``data`` with the tags of :attr:`tag_map` put back to the client's (only when the map is set)."""
        out = []
        for line in data.split(b"\r\n"):
            tag, _, rest = line.partition(b" ")
            client_tag = self.tag_map.get(tag.decode("ascii", "replace")) if rest else None
            if client_tag is not None:
                del self.tag_map[tag.decode("ascii")]
                line = client_tag.encode("ascii") + b" " + rest
            out.append(line)
        return b"\r\n".join(out)


def _tag_status(line: bytes) -> tuple[str | None, bytes]:
    tag = extract_tag(line)
    if tag is None:
        return None, b""
    status = line[len(tag) + 1: len(tag) + 4].upper()
    if status == b"BAD":
        return tag, b"BAD"
    return tag, status[:2] if status[:2] in (b"OK", b"NO") else status

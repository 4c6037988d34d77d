"""Stateful property test of the sans-IO protocol layer (``imapd.protocol.ServerConnection``).

A client model writes a stream of "units" (valid commands, commands with synchronizing and
non-synchronizing literals, garbage lines, over-long lines, refused literals, IDLE/DONE, AUTHENTICATE
continuations, a fatal huge literal, EOF) and knows which events each unit must produce. The stream is fed
to the connection cut at random points, events are drained after every chunk, and we check:

- ``next_event`` never raises and reaches ``NEED_DATA`` within a bounded number of calls (no loop);
- the sequence of events is exactly the expected one: every command gets exactly one final event
  (``CommandReceived`` or ``ProtocolError``), plus one ``ContinuationRequest`` per accepted synchronizing
  literal, plus one ``IdleDone``/``SaslResponse``/``ProtocolError`` per IDLE/SASL line;
- no event is an internal parser error (``SERVERBUG``: an exception caught by ``next_event``);
- buffers stay bounded: ``pending_bytes`` never exceeds one literal plus one line.

``IMAPD_SOAK=1`` runs many more examples.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from imapd.protocol import NEED_DATA, ServerConnection
from imapd.protocol import commands as c
from imapd.protocol.events import (
    CommandReceived,
    ConnectionClosed,
    ContinuationRequest,
    IdleDone,
    ProtocolError,
    SaslResponse,
)

SOAK = os.environ.get("IMAPD_SOAK") == "1"
MAX_LINE = 300
MAX_LITERAL = 2000
MAX_EVENTS_PER_CHUNK = 10_000

Check = Callable[[object], bool]


def is_cmd(kind: type | None = None) -> Check:
    return lambda e: isinstance(e, CommandReceived) and (kind is None or isinstance(e.command, kind))


def is_error(code: str | None = "*", fatal: bool = False) -> Check:
    return lambda e: (isinstance(e, ProtocolError) and (code == "*" or e.code == code)
                      and e.fatal == fatal)


def is_final() -> Check:
    """Garbage may happen to be a valid command: either final event is fine, but exactly one."""
    return lambda e: isinstance(e, CommandReceived) or (isinstance(e, ProtocolError) and not e.fatal)


IS_CONT: Check = lambda e: isinstance(e, ContinuationRequest)  # noqa: E731

# --- generators of command text -------------------------------------------------------------------------
tags = st.from_regex(r"\A[A-Za-z0-9.]{1,8}\Z")
literal_data = st.binary(max_size=200) | st.sampled_from(
    [b"", b"\r\n", b"a1 NOOP\r\n", b"{5}\r\n", b"x {3+}\r\nabc\r\n", b"\x00\xff\r", b"DONE\r\n"]
)
atoms = st.from_regex(r"\A[A-Za-z0-9]{1,12}\Z")
quoted = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20).map(
    lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
)
simple_commands = st.sampled_from([
    ("NOOP", c.Noop), ("CAPABILITY", c.Capability), ("LOGOUT", c.Logout), ("CHECK", c.Check),
    ("SELECT INBOX", c.Select), ('EXAMINE "Sent Items"', c.Examine), ("CREATE a/b", c.Create),
    ('LIST "" *', c.List), ('LIST (SUBSCRIBED) "" % RETURN (CHILDREN)', c.List),
    ("STATUS INBOX (MESSAGES UIDNEXT UNSEEN)", c.Status), ("FETCH 1:* (FLAGS UID)", c.Fetch),
    ("UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)]<0.100>)", c.Fetch),
    ("FETCH 2,4:6 (ENVELOPE BODYSTRUCTURE RFC822.SIZE INTERNALDATE)", c.Fetch),
    ("STORE 1:3 +FLAGS.SILENT (\\Seen $Label1)", c.Store), ("UID STORE 5 -FLAGS (\\Deleted)", c.Store),
    ("SEARCH UNSEEN FROM alice NOT (DELETED OR SEEN FLAGGED)", c.Search),
    ("UID SEARCH RETURN (MIN MAX COUNT) SINCE 1-Jan-2020", c.Search), ("COPY 1:2 Trash", c.Copy),
    ("UID MOVE 1:* Archive", c.Move), ("EXPUNGE", c.Expunge), ("UID EXPUNGE 1:3", c.Expunge),
    ("ENABLE QRESYNC CONDSTORE", c.Enable), ("ID NIL", c.Id), ('ID ("name" "x")', c.Id),
    ("NAMESPACE", c.Namespace), ("UNSELECT", c.Unselect), ("CLOSE", c.Close),
    ("X-STATE SAVE", c.XStateSave), ("X-STATE RESTORE AAAA.bbb-_.ccc", c.XStateRestore),
    ("SORT (REVERSE DATE) UTF-8 ALL", c.Sort), ("THREAD REFERENCES UTF-8 ALL", c.Thread),
])
garbage_bytes = st.binary(max_size=120).map(
    lambda b: b.replace(b"\n", b" ").rstrip(b"}") or b"x"
) | st.sampled_from([
    b"", b" ", b"*", b"a1", b"a1 ", b"a1 FETCH", b"a1 FETCH 1:* (FLAGS", b"a1 LOGIN", b"a1 SELECT (",
    b"a1 SEARCH " + b"(" * 100, b"a1 SEARCH " + b"NOT " * 70 + b"ALL", b"a1 APPEND INBOX {abc}",
    b'a1 LOGIN "unterminated', b"a1 UID", b"a1 UID NOOP", b"a1 STORE 1 FLAGS (\\Bogus)", b"a1 X-STATE",
    b"a1 FETCH 0 FLAGS", b"a1 FETCH 4294967296 FLAGS", b"a1 FETCH 1:* BODY[1.2.3.HEADER.FIELDS ()]",
    b"a1 AUTHENTICATE PLAIN !!!", b"\x00a1 NOOP", b"a1 NOOP\x00", b'a1 LOGIN "a\\x" b',
])


@dataclass
class Unit:
    data: bytes
    expect: list[Check] = field(default_factory=list)
    fatal: bool = False


class ProtocolMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.conn = ServerConnection(max_line=MAX_LINE, max_literal=MAX_LITERAL)
        self.stream = bytearray()  # written by the client, not yet fed
        self.expected: list[Check] = []
        self.seen: list[object] = []
        self.closed = False  # a fatal unit or EOF was written: nothing after it may be expected
        self.fed_eof = False
        self.last_chunk = 0

    # -- the client writes ---------------------------------------------------------------------------------
    def _write(self, unit: Unit) -> None:
        if self.closed:
            return
        self.stream += unit.data
        self.expected += unit.expect
        if unit.fatal:
            self.closed = True

    @rule(tag=tags, cmd=simple_commands)
    def valid_command(self, tag: str, cmd: tuple[str, type]) -> None:
        self._write(Unit(f"{tag} {cmd[0]}\r\n".encode(), [is_cmd(cmd[1])]))

    @rule(tag=tags, user=literal_data, password=literal_data, sync=st.booleans(), q=quoted)
    def login_literals(self, tag: str, user: bytes, password: bytes, sync: bool, q: str) -> None:
        plus = b"" if sync else b"+"
        data = (tag.encode() + b" LOGIN {%d%s}\r\n" % (len(user), plus) + user
                + b" {%d%s}\r\n" % (len(password), plus) + password + b"\r\n")
        # NUL or invalid UTF-8 in a literal is refused (BAD): either way, exactly one final event
        final = is_final()
        self._write(Unit(data, [IS_CONT, IS_CONT, final] if sync else [final]))
        self._write(Unit(f"{tag} LOGIN {q} {q}\r\n".encode(), [is_cmd(c.Login)]))

    @rule(tag=tags, msgs=st.lists(st.tuples(literal_data, st.booleans(), st.booleans()), min_size=1, max_size=3))
    def append(self, tag: str, msgs: list[tuple[bytes, bool, bool]]) -> None:
        data = tag.encode() + b" APPEND INBOX"
        expect: list[Check] = []
        for body, sync, flags in msgs:
            data += b" (\\Seen $x) " if flags else b" "
            data += b"{%d%s}\r\n" % (len(body), b"" if sync else b"+") + body
            if sync:
                expect.append(IS_CONT)
        final = is_final() if any(b"\x00" in m[0] for m in msgs) else is_cmd(c.Append)
        self._write(Unit(data + b"\r\n", [*expect, final]))

    @rule(line=garbage_bytes)
    def garbage(self, line: bytes) -> None:
        self._write(Unit(line + b"\r\n", [is_final()]))

    @rule(tag=tags, n=st.integers(MAX_LINE + 1, 4 * MAX_LINE), lf_only=st.booleans())
    def long_line(self, tag: str, n: int, lf_only: bool) -> None:
        self._write(Unit(tag.encode() + b" NOOP " + b"x" * n + (b"\n" if lf_only else b"\r\n"),
                         [is_error("TOOBIG")]))

    @rule(tag=tags, extra=st.integers(1, 10_000_000))
    def refused_sync_literal(self, tag: str, extra: int) -> None:
        # no continuation comes, so the client does not send the literal; its next line is a new command
        self._write(Unit(tag.encode() + b" APPEND INBOX {%d}\r\n" % (MAX_LITERAL + extra), [is_error("TOOBIG")]))

    @rule(tag=tags, extra=st.integers(1, 3 * MAX_LITERAL))
    def refused_nonsync_literal(self, tag: str, extra: int) -> None:
        size = MAX_LITERAL + extra
        self._write(Unit(tag.encode() + b" APPEND INBOX {%d+}\r\n" % size + b"z" * size + b" {3+}\r\nabc\r\n",
                         [is_error("TOOBIG")]))

    @rule(tag=tags, done=st.sampled_from([b"DONE", b"done", b"DoNe"]) | garbage_bytes)
    def idle(self, tag: str, done: bytes) -> None:
        ok = done.upper() == b"DONE"
        self._write(Unit(tag.encode() + b" IDLE\r\n" + done + b"\r\n",
                         [is_cmd(c.Idle), (lambda e: isinstance(e, IdleDone)) if ok else is_error()]))

    @rule(tag=tags, payload=st.binary(max_size=60), how=st.sampled_from(["b64", "cancel", "bad", "ir"]))
    def authenticate(self, tag: str, payload: bytes, how: str) -> None:
        b64 = base64.b64encode(payload)
        if how == "ir":
            self._write(Unit(tag.encode() + b" AUTHENTICATE PLAIN " + (b64 or b"=") + b"\r\n",
                             [is_cmd(c.Authenticate)]))
            return
        line = {"b64": b64, "cancel": b"*", "bad": b"!!" + b64}[how]
        check: Check
        if how == "b64":
            check = lambda e: isinstance(e, SaslResponse) and e.data == payload and not e.cancelled  # noqa: E731
        elif how == "cancel":
            check = lambda e: isinstance(e, SaslResponse) and e.cancelled  # noqa: E731
        else:
            check = is_error(None)
        self._write(Unit(tag.encode() + b" AUTHENTICATE PLAIN\r\n" + line + b"\r\n", [is_cmd(c.Authenticate), check]))

    @precondition(lambda self: not self.closed)
    @rule(tag=tags)
    def fatal_literal(self, tag: str) -> None:
        self._write(Unit(tag.encode() + b" APPEND INBOX {%d+}\r\n" % (4 * MAX_LITERAL + 1) + b"junk\r\n",
                         [is_error("TOOBIG", fatal=True)], fatal=True))

    # -- the network delivers --------------------------------------------------------------------------------
    @rule(cut=st.integers(0, 5000))
    def deliver_some(self, cut: int) -> None:
        self._feed(bytes(self.stream[:cut]))
        del self.stream[:cut]

    @rule(size=st.integers(1, 7))
    def deliver_trickle(self, size: int) -> None:
        for _ in range(20):
            if not self.stream:
                break
            self._feed(bytes(self.stream[:size]))
            del self.stream[:size]

    @precondition(lambda self: not self.fed_eof)
    @rule()
    def deliver_all_and_eof(self) -> None:
        self._feed(bytes(self.stream))
        self.stream.clear()
        self._check_complete()
        self.conn.receive_data(b"")
        self.fed_eof = True
        self.closed = True
        self._drain()
        assert isinstance(self.conn.next_event(), ConnectionClosed)

    def _feed(self, data: bytes) -> None:
        if not data or self.fed_eof:
            return
        self.last_chunk = len(data)
        self.conn.receive_data(data)
        self._drain()

    def _drain(self) -> None:
        for _ in range(MAX_EVENTS_PER_CHUNK):
            event = self.conn.next_event()  # must never raise
            if event is NEED_DATA:
                return
            if isinstance(event, ConnectionClosed):
                assert self.closed, f"unexpected close after {self.seen[-3:]!r}"
                # closed: it keeps answering ConnectionClosed, so stop here
                return
            assert not (isinstance(event, ProtocolError) and event.code == "SERVERBUG"), event
            i = len(self.seen)
            assert i < len(self.expected), f"unexpected extra event {event!r}"
            assert self.expected[i](event), f"event {i} {event!r} unexpected; previous {self.seen[-3:]!r}"
            self.seen.append(event)
            if isinstance(event, CommandReceived):
                if isinstance(event.command, c.Idle):
                    self.conn.expect_idle_done()
                elif isinstance(event.command, c.Authenticate) and event.command.initial_response is None:
                    self.conn.expect_sasl_response()
        raise AssertionError("next_event did not reach NEED_DATA: a loop")

    def _check_complete(self) -> None:
        assert len(self.seen) == len(self.expected), (
            f"{len(self.expected) - len(self.seen)} events missing after all data was delivered; "
            f"last seen {self.seen[-3:]!r}")

    @invariant()
    def buffers_bounded(self) -> None:
        assert self.conn.pending_bytes <= MAX_LITERAL + MAX_LINE + 2, self.conn.pending_bytes

    def teardown(self) -> None:
        if not self.fed_eof:
            self._feed(bytes(self.stream))
            self.stream.clear()
            self._check_complete()


ProtocolMachine.TestCase.settings = settings(
    max_examples=5000 if SOAK else 300,
    stateful_step_count=60 if SOAK else 30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestProtocolStateful = ProtocolMachine.TestCase

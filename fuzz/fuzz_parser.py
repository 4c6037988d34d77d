"""Coverage-guided fuzzing of the protocol layer with atheris (``pip install atheris``).

Run time-bounded (libFuzzer flags pass through)::

    .venv/bin/python fuzz/fuzz_parser.py -max_total_time=60 fuzz/corpus

Each input is split into: a one-byte mode selector, and the rest. The harness

- feeds the bytes to a fresh ``ServerConnection`` (small limits so TOOBIG paths are reached) cut into
  chunks at positions taken from the input, drains ``next_event()`` after each chunk, switches to IDLE/SASL
  mode when the command asks for it, and finally feeds EOF;
- checks: ``next_event`` never raises, never loops (bounded events per chunk), never reports an internal
  parser error (``SERVERBUG``), every event is a known type, ``pending_bytes`` stays bounded, and after EOF
  it answers ``ConnectionClosed``;
- also calls ``parse_command`` directly on the input split into a token stream ``[line, literal, line ...]``
  (only ``CommandParseError`` may come out), and serializes every parsed command's tag in a response.

A crash is written by libFuzzer as ``crash-<sha1>`` in the current directory; turn it into a regression test
in ``tests/reliability/test_fuzz_regressions.py``.
"""

from __future__ import annotations

import contextlib
import os
import sys

import atheris

with atheris.instrument_imports():
    from imapd.protocol import NEED_DATA, ServerConnection
    from imapd.protocol import commands as c
    from imapd.protocol.command_parser import CommandParseError, parse_command
    from imapd.protocol.events import (
        CommandReceived,
        ConnectionClosed,
        ContinuationRequest,
        IdleDone,
        ProtocolError,
        SaslResponse,
    )

MAX_LINE = 512
MAX_LITERAL = 4096
_KNOWN = (CommandReceived, ContinuationRequest, IdleDone, SaslResponse, ProtocolError, ConnectionClosed)


class FuzzFailure(AssertionError):
    pass


def drain(conn: ServerConnection) -> list[object]:
    out: list[object] = []
    for _ in range(100_000):
        event = conn.next_event()
        if event is NEED_DATA:
            return out
        if not isinstance(event, _KNOWN):
            raise FuzzFailure(f"unknown event {event!r}")
        if isinstance(event, ProtocolError) and event.code == "SERVERBUG":
            raise FuzzFailure(f"internal parser error: {event!r}")
        out.append(event)
        if isinstance(event, ConnectionClosed):
            return out
        if isinstance(event, CommandReceived):
            if isinstance(event.command, c.Idle):
                conn.expect_idle_done()
            elif isinstance(event.command, c.Authenticate) and event.command.initial_response is None:
                conn.expect_sasl_response()
    raise FuzzFailure("next_event did not reach NEED_DATA")


def check_connection(data: bytes, cuts: bytes, utf8: bool) -> None:
    conn = ServerConnection(max_line=MAX_LINE, max_literal=MAX_LITERAL, max_nesting=16)
    conn.utf8 = utf8
    pos = 0
    closed = False
    for cut in cuts or b"\xff":
        chunk = data[pos : pos + cut + 1]
        if not chunk:
            break
        pos += len(chunk)
        conn.receive_data(chunk)
        events = drain(conn)
        closed = closed or any(isinstance(e, ConnectionClosed) for e in events)
        if conn.pending_bytes > MAX_LITERAL + MAX_LINE + 2:
            raise FuzzFailure(f"pending_bytes {conn.pending_bytes} over the bound")
    if pos < len(data):
        conn.receive_data(data[pos:])
        drain(conn)
    conn.receive_data(b"")
    drain(conn)
    if not isinstance(conn.next_event(), ConnectionClosed):
        raise FuzzFailure("no ConnectionClosed after EOF")


def check_parse_command(data: bytes, utf8: bool) -> None:
    # a token stream: line {n}\r\n <n bytes> line ... as the framer would produce (literals not checked)
    parts = data.split(b"\x00\x01")
    if len(parts) % 2 == 0:
        parts.append(b"")
    with contextlib.suppress(CommandParseError):
        parse_command(parts, utf8=utf8, max_nesting=16)


def TestOneInput(data: bytes) -> None:
    if len(data) < 2:
        return
    mode = data[0]
    ncuts = data[1] % 16
    cuts, body = data[2 : 2 + ncuts], data[2 + ncuts :]
    utf8 = bool(mode & 1)
    if mode & 2:
        check_parse_command(body, utf8)
    else:
        check_connection(body, cuts, utf8)


SEEDS = [
    b"a1 LOGIN alice secret\r\n",
    b"a1 LOGIN {5}\r\nalice {6+}\r\nsecret\r\n",
    b"a2 SELECT INBOX (QRESYNC (1 2 1:5 (1:3 1:3)))\r\n",
    b"a3 UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)]<0.100> BINARY[1.2] MODSEQ) (CHANGEDSINCE 4 VANISHED)\r\n",
    b"a4 STORE 1:3,5 +FLAGS.SILENT (\\Seen $x) \r\n",
    b"a5 UID SEARCH RETURN (MIN MAX SAVE) CHARSET UTF-8 OR FROM {3}\r\nbob NOT (SINCE 1-Jan-2020 LARGER 5) $\r\n",
    b"a6 APPEND INBOX (\\Seen) \"01-Jan-2020 00:00:00 +0000\" {10+}\r\nFrom: x\r\n\r\n CATENATE\r\n",
    b"a7 APPEND INBOX ~{3+}\r\n\x00\x01\x02\r\n",
    b"a8 IDLE\r\nDONE\r\n",
    b"a9 AUTHENTICATE PLAIN\r\nAGFsaWNlAHNlY3JldA==\r\n",
    b"b1 AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n",
    b"b2 X-STATE RESTORE AAA.bbb.ccc\r\nb3 X-STATE SAVE\r\n",
    b"b4 LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (\"INBOX\" \"%\") RETURN (CHILDREN STATUS (MESSAGES))\r\n",
    b"b5 SORT (REVERSE ARRIVAL) UTF-8 ALL\r\nb6 THREAD REFERENCES UTF-8 SUBJECT {1+}\r\nx\r\n",
    b"b7 ENABLE UTF8=ACCEPT QRESYNC\r\nb8 CREATE \"&AOk-t&AOk-\" (USE (\\Drafts))\r\n",
    b"b9 ID (\"name\" \"x\" \"version\" NIL)\r\nc1 STATUS INBOX (MESSAGES UIDNEXT SIZE)\r\n",
    b"c2 MOVE 1:* \"Trash\"\r\nc3 UID EXPUNGE 1:3\r\nc4 RENAME a b\r\n",
    b"c5 APPEND INBOX {99999999}\r\nc6 NOOP\r\n",
    b"c7 APPEND Drafts (\\Draft) CATENATE (URL \"/Drafts;UIDVALIDITY=3/;UID=20/;section=1.MIME/;PARTIAL=0.9\" "
    b"TEXT {2}\r\nhi UTF8 (~{1+}\r\n\x00)) {1+}\r\nx\r\n",
    b"c8 UID REPLACE 7 Sent CATENATE (URL imap://u@h/INBOX/;UID=1 TEXT {1+}\r\n!)\r\nc9 REPLACE 1 a {1}\r\nb\r\n",
    b"d1 UID SEARCH OR YOUNGER 3600 OLDER 86400 NOT EMAILID M1a_b-2 THREADID T9 SAVEDON 1-Jan-2024\r\n",
    b"d2 FETCH 1:* (SAVEDATE EMAILID THREADID)\r\nd3 SEARCH SAVEDATESUPPORTED SAVEDSINCE 2-Feb-2020\r\n",
    b"d4 STATUS INBOX (DELETED DELETED-STORAGE MAILBOXID)\r\nd5 UNAUTHENTICATE\r\n",
]


def main() -> None:
    corpus = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
    os.makedirs(corpus, exist_ok=True)
    for i, seed in enumerate(SEEDS):
        for mode in (0, 1, 2):
            path = os.path.join(corpus, f"seed-{i:02d}-{mode}")
            if not os.path.exists(path):
                with open(path, "wb") as f:
                    f.write(bytes([mode, 3, 7, 1, 40]) + seed)
    argv = list(sys.argv)
    if not any(a.startswith("-max_total_time") for a in argv):
        argv.append(f"-max_total_time={os.environ.get('FUZZ_SECONDS', '60')}")
    if not any(not a.startswith("-") for a in argv[1:]):
        argv.append(corpus)
    atheris.Setup(argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

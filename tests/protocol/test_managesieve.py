"""The ManageSieve command reader and response writer, without a socket (table-driven)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imapd.protocol.managesieve import (
    CommandReader,
    ManageSieveCommand,
    ManageSieveSyntaxError,
    response,
    string,
)


@pytest.mark.parametrize(("wire", "expected"), [
    (b"CAPABILITY\r\n", ManageSieveCommand("CAPABILITY", ())),
    (b"noop\r\n", ManageSieveCommand("NOOP", ())),
    (b'Authenticate "PLAIN" "AGEAYg=="\r\n', ManageSieveCommand("AUTHENTICATE", ("PLAIN", "AGEAYg=="))),
    (b'HAVESPACE "my script" 1024\r\n', ManageSieveCommand("HAVESPACE", ("my script", 1024))),
    (b'PUTSCRIPT "a" {6+}\r\nkeep;\n\r\n', ManageSieveCommand("PUTSCRIPT", ("a", "keep;\n"))),
    (b'PUTSCRIPT {1}\r\na {0+}\r\n\r\n', ManageSieveCommand("PUTSCRIPT", ("a", ""))),
    (b'SETACTIVE ""\r\n', ManageSieveCommand("SETACTIVE", ("",))),
    (b'GETSCRIPT "q\\"uo\\\\te"\r\n', ManageSieveCommand("GETSCRIPT", ('q"uo\\te',))),
    ('PUTSCRIPT "caf\u00e9" {2+}\r\n\u00e9\r\n'.encode(), ManageSieveCommand("PUTSCRIPT", ("caf\u00e9", "\u00e9"))),
])
def test_commands(wire: bytes, expected: ManageSieveCommand) -> None:
    reader = CommandReader()
    reader.feed(wire)
    assert reader.next_command() == expected
    assert reader.next_command() is None and reader.buffered == 0


@pytest.mark.parametrize(("wire", "fatal"), [
    (b"\r\n", False),
    (b'"PLAIN"\r\n', False),
    (b"PUTSCRIPT 'x'\r\n", False),
    (b'GETSCRIPT "\xff"\r\n', False),
    (b"PUTSCRIPT {99999999+}\r\n", True),
    (b"X" * 200, True),
])
def test_errors(wire: bytes, fatal: bool) -> None:
    reader = CommandReader(max_line=100, max_literal=1000)
    reader.feed(wire)
    with pytest.raises(ManageSieveSyntaxError) as err:
        reader.next_command()
    assert err.value.fatal is fatal


def test_a_bad_line_is_consumed_and_the_next_one_read() -> None:
    reader = CommandReader()
    reader.feed(b"PUTSCRIPT 'x'\r\nNOOP\r\n")
    with pytest.raises(ManageSieveSyntaxError):
        reader.next_command()
    assert reader.next_command() == ManageSieveCommand("NOOP", ())


def test_sasl_response_line() -> None:
    reader = CommandReader()
    reader.sasl_response = True
    reader.feed(b'"AGEAYg=="\r\n')
    assert reader.next_command() == ManageSieveCommand("", ("AGEAYg==",))


@given(st.binary(max_size=300), st.integers(min_value=1, max_value=50))
def test_any_input_fed_in_pieces_only_raises_syntax_errors(data: bytes, step: int) -> None:
    reader = CommandReader(max_line=200, max_literal=200)
    for i in range(0, len(data), step):
        reader.feed(data[i:i + step])
        while True:
            try:
                if reader.next_command() is None:
                    break
            except ManageSieveSyntaxError as exc:
                if exc.fatal:
                    return


def test_split_literal_waits_for_its_octets() -> None:
    reader = CommandReader()
    wire = b'PUTSCRIPT "a" {5+}\r\nkeep;\r\n'
    for i in range(len(wire) - 1):
        reader.feed(wire[i:i + 1])
        assert reader.next_command() is None
    reader.feed(wire[-1:])
    assert reader.next_command() == ManageSieveCommand("PUTSCRIPT", ("a", "keep;"))


@pytest.mark.parametrize(("args", "wire"), [
    (("OK",), b"OK\r\n"),
    (("NO", "No such script", "NONEXISTENT"), b'NO (NONEXISTENT) "No such script"\r\n'),
    (("NO", 'line 1: "x"'), b'NO "line 1: \\"x\\""\r\n'),
    (("NO", "two\r\nlines"), b"NO {10}\r\ntwo\r\nlines\r\n"),
    (("BYE", "Bye"), b'BYE "Bye"\r\n'),
])
def test_responses(args: tuple[str, ...], wire: bytes) -> None:
    assert response(*args) == wire


def test_long_strings_become_literals() -> None:
    assert string("x" * 2000).startswith(b"{2000}\r\n")

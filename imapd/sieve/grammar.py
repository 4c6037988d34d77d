"""Parsing Sieve scripts with sievelib, and the extensions we add to its grammar.

sievelib knows RFC 5228 and most of the extensions we run, but not ``duplicate`` (RFC 7352),
``mailboxexists`` (RFC 5490), the variables ``string`` test (RFC 5229), ``:user``/``:detail``
(RFC 5233) or the ``i;ascii-numeric`` comparator; they are registered here, once, at import. sievelib
also accepts any name in ``require``: :func:`parse_script` refuses the ones we do not implement, as
RFC 5228 section 3.2 asks. The tree it returns is sievelib's; ``interpreter.py`` runs it.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from sievelib import commands as sc
from sievelib.parser import Parser

__all__ = ["EXTENSIONS", "SieveSyntaxError", "decode_list", "decode_number", "decode_string", "parse_script"]

# What ``require`` may name, and what ManageSieve advertises in its SIEVE capability.
EXTENSIONS: tuple[str, ...] = (
    "fileinto", "reject", "envelope", "imap4flags", "body", "variables", "relational",
    "comparator-i;ascii-numeric", "subaddress", "date", "vacation", "vacation-seconds", "duplicate",
    "copy", "mailbox",
)


_IMPLICIT = ("comparator-i;octet", "comparator-i;ascii-casemap")


class SieveSyntaxError(Exception):
    """A script that does not parse, or requires what we do not implement; the message says where."""


def _register() -> None:
    """Teach sievelib the arguments and commands it lacks (idempotent)."""
    comparators = sc.comparator["extra_arg"].setdefault("values", [])
    if '"i;ascii-numeric"' not in comparators:
        comparators.append('"i;ascii-numeric"')
    sc.address_part.setdefault("extension_values", {}).update({":user": "subaddress", ":detail": "subaddress"})
    sc.add_commands([DuplicateCommand, MailboxexistsCommand, StringCommand])


class DuplicateCommand(sc.TestCommand):
    """RFC 7352: ``duplicate [:handle s] [:header s / :uniqueid s] [:seconds n] [:last]``.

    Every argument is optional, which sievelib's tests cannot express (a test with no required argument
    is complete at once); as a "non-deterministic" command it is complete when the parser meets the
    ``{``, ``,`` or ``)`` after it and calls :meth:`reassign_arguments`.
    """

    extension = "duplicate"
    non_deterministic_args = True
    _arguments_done = False

    def reassign_arguments(self) -> None:
        self._arguments_done = True

    def iscomplete(self, atype: str | None = None, avalue: str | None = None) -> bool:
        return self._arguments_done and bool(super().iscomplete(atype, avalue))

    args_definition = [
        {"name": "handle", "type": ["tag"], "values": [":handle"], "extra_arg": {"type": "string"},
         "required": False},
        {"name": "id", "type": ["tag"], "values": [":header", ":uniqueid"], "extra_arg": {"type": "string"},
         "required": False},
        {"name": "seconds", "type": ["tag"], "values": [":seconds"], "extra_arg": {"type": "number"},
         "required": False},
        {"name": "last", "type": ["tag"], "values": [":last"], "required": False},
    ]


class MailboxexistsCommand(sc.TestCommand):
    """RFC 5490: ``mailboxexists <mailbox-names>``."""

    extension = "mailbox"
    args_definition = [{"name": "mailbox-names", "type": ["string", "stringlist"], "required": True}]


class StringCommand(sc.TestCommand):
    """RFC 5229 section 5: ``string [COMPARATOR] [MATCH-TYPE] <source> <key-list>``."""

    extension = "variables"
    args_definition = [
        sc.comparator,
        sc.match_type,
        {"name": "source", "type": ["string", "stringlist"], "required": True},
        {"name": "key-list", "type": ["string", "stringlist"], "required": True},
    ]


_register()


def parse_script(text: str | bytes) -> list[sc.Command]:
    """The command tree of ``text``; raises :class:`SieveSyntaxError` with sievelib's message."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    parser = Parser()
    if not parser.parse(data):
        raise SieveSyntaxError(str(parser.error))
    for command in parser.result:
        for node in command.walk():
            if node.name != "require":
                continue
            names = node.arguments["capabilities"]
            for name in names if isinstance(names, list) else [names]:
                ext = decode_string(name)
                if ext not in EXTENSIONS and ext not in _IMPLICIT:
                    raise SieveSyntaxError(f"require: extension {ext!r} is not supported")
    _check_placement(parser.result, top=True)
    return list(parser.result)


def _check_placement(nodes: list[sc.Command], *, top: bool) -> None:
    """``require`` only at the start of the script (RFC 5228 section 3.2)."""
    seen_other = False
    for node in nodes:
        if node.name == "require":
            if not top or seen_other:
                raise SieveSyntaxError("require must come before any other command")
        else:
            seen_other = True
        _check_placement(node.children, top=False)


_MULTILINE_HEAD = re.compile(r"text:[ \t]*(?:#[^\n]*)?\r?\n")


def decode_string(value: Any) -> str:
    """A string argument as sievelib keeps it (quoted, or a raw ``text:`` block) to its value."""
    return _decode(str(value))


@functools.lru_cache(maxsize=4096)
def _decode(text: str) -> str:
    """(Cached: the same script's strings are decoded at every delivery.)"""
    if text.startswith("text:"):
        head = _MULTILINE_HEAD.match(text)
        body = text[head.end():] if head else text[5:]
        body = body.rstrip("\r")
        if body.endswith("."):
            body = body[:-1]
        lines = body.split("\n")
        return "\n".join(line[1:] if line.startswith("..") else line for line in lines)
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        inner = text[1:-1]
        return re.sub(r"\\(.)", r"\1", inner, flags=re.DOTALL) if "\\" in inner else inner
    return text


def decode_list(value: Any) -> list[str]:
    """A string-list argument (or a single string) to its values."""
    if isinstance(value, list):
        return [decode_string(v) for v in value]
    return [decode_string(value)]


_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def decode_number(value: Any) -> int:
    """``100K`` -> 102400 (RFC 5228 section 2.4.1)."""
    text = str(value)
    unit = _UNITS.get(text[-1:].upper())
    return int(text[:-1]) * unit if unit else int(text)

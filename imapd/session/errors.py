"""Errors as values: raised where the problem is known, turned into ``NO``/``BAD`` in one place."""

from __future__ import annotations

__all__ = ["CommandBad", "CommandError", "CommandNo"]


class CommandError(Exception):
    """A command that ends with a tagged ``NO`` or ``BAD``; ``code`` is the bare response-code atom.

    ``code_args`` is the response code's argument text, already in wire form (rarely needed).
    """

    status = "NO"

    def __init__(self, text: str, code: str | None = None, code_args: str | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.code = code
        self.code_args = code_args


class CommandNo(CommandError):
    status = "NO"


class CommandBad(CommandError):
    status = "BAD"

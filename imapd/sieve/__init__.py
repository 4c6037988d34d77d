"""Sieve mail filtering (RFC 5228 and extensions): parse, evaluate, apply; per-user scripts.

The one call the delivery path makes is :func:`imapd.sieve.delivery.deliver` (``evaluate`` then
``apply``); :func:`evaluate` alone is pure and is what the tests drive.
"""

from imapd.sieve.actions import Discard, FileInto, Keep, Memo, Redirect, Reject, SieveResult, VacationReply
from imapd.sieve.grammar import EXTENSIONS, SieveSyntaxError, parse_script
from imapd.sieve.interpreter import Envelope, SieveLimits, evaluate

__all__ = [
    "EXTENSIONS", "Discard", "Envelope", "FileInto", "Keep", "Memo", "Redirect", "Reject", "SieveLimits",
    "SieveResult", "SieveSyntaxError", "VacationReply", "evaluate", "parse_script",
]

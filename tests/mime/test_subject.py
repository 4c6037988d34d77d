"""RFC 5256 base subject (section 2.1) and RFC 2047 decoding."""

from __future__ import annotations

import pytest

from imapd.mime import base_subject, decode_words, parse_message

BASE_SUBJECT_CASES = [
    ("Re: [fwd: Re: Subject] (fwd)", "subject", True),
    ("Subject", "subject", False),
    ("Re: Subject", "subject", True),
    ("RE:   Subject", "subject", True),
    ("Fw: Subject", "subject", True),
    ("Fwd: Re: FWD: subject", "subject", True),
    ("Re[2]: Subject", "subject", True),
    ("Re [list]: Subject", "subject", True),
    ("[list] Re: Subject", "subject", True),
    ("[list] Subject", "subject", False),
    ("[only a blob]", "[only a blob]", False),
    ("Subject (fwd) (FWD)", "subject", True),
    ("  Lots \t of\r\n   space  ", "lots of space", False),
    ("[fwd: Subject]", "subject", True),
    ("Rebecca: not a reply", "rebecca: not a reply", False),
    ("Re:", "", True),
    ("", "", False),
    ("=?utf-8?q?Re=3A_caf=C3=A9?=", "café", True),
    ("Re: =?iso-8859-1?q?caf=E9?= =?iso-8859-1?q?_cr=E8me?=", "café crème", True),
]


@pytest.mark.parametrize(("subject", "base", "is_reply"), BASE_SUBJECT_CASES)
def test_base_subject(subject: str, base: str, is_reply: bool) -> None:
    assert base_subject(subject) == (base, is_reply)


def test_message_carries_base_subject() -> None:
    meta = parse_message(b"Subject: Re: [fwd: Re: Subject] (fwd)\r\n\r\n")
    assert (meta.base_subject, meta.is_reply) == ("subject", True)
    assert meta.envelope.subject == "Re: [fwd: Re: Subject] (fwd)"


# RFC 2047 section 8 examples, plus tolerance cases.
ENCODED_WORD_CASES = [
    ("=?ISO-8859-1?Q?a?=", "a"),
    ("=?ISO-8859-1?Q?a?= b", "a b"),
    ("=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=", "ab"),
    ("=?ISO-8859-1?Q?a?=  =?ISO-8859-1?Q?b?=", "ab"),
    ("=?ISO-8859-1?Q?a?=\r\n    =?ISO-8859-1?Q?b?=", "ab"),
    ("=?ISO-8859-1?Q?a_b?=", "a b"),
    ("=?ISO-8859-1?Q?a?= =?ISO-8859-2?Q?_b?=", "a b"),
    ("=?US-ASCII?Q?Keith_Moore?=", "Keith Moore"),
    ("=?ISO-8859-1?Q?Keld_J=F8rn_Simonsen?=", "Keld Jørn Simonsen"),
    ("=?ISO-8859-1?Q?Andr=E9?= Pirard", "André Pirard"),
    ("=?ISO-8859-1?B?SWYgeW91IGNhbiByZWFkIHRoaXMgeW8=?=", "If you can read this yo"),
    ("=?utf-8?b?4pyT?= done", "✓ done"),
    ("=?utf-8?B?4g==?= =?utf-8?B?nJM=?=", "✓"),  # a character split across two words
    ("=?utf-8*en?q?lang?=", "lang"),  # RFC 2231 language suffix
    ("=?x-unknown-charset?q?caf=E9?=", "café"),  # unknown charset: utf-8, else latin-1
    ("plain text", "plain text"),
    ("=?broken", "=?broken"),
]


@pytest.mark.parametrize(("value", "decoded"), ENCODED_WORD_CASES)
def test_decode_words(value: str, decoded: str) -> None:
    assert decode_words(value) == decoded


@pytest.mark.parametrize("value", ["=?utf-8?b?not base64!!?=", "=?utf-8?q?=ZZ=?=", "=?zlib?q?x?=", "=?utf-7?q?+AGE-?="])
def test_decode_words_never_raises_on_garbage(value: str) -> None:
    assert isinstance(decode_words(value), str)

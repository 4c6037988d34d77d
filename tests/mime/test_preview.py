"""RFC 8970 preview text: which part is used, decoding, markup, whitespace, length, hostile markup."""

from __future__ import annotations

import time
from email import policy
from email.message import EmailMessage

import pytest

from imapd.mime.preview import MAX_PREVIEW_CHARS, PREVIEW_CHARS, html_to_text, preview_text


def _plain(body: str, cte: str = "7bit", charset: str = "utf-8") -> bytes:
    m = EmailMessage(policy=policy.SMTP)
    m["Subject"] = "subject words are not in the preview"
    m.set_content(body, cte=cte, charset=charset)
    return m.as_bytes()


def _alternative(plain: str | None, markup: str) -> bytes:
    m = EmailMessage(policy=policy.SMTP)
    m["Subject"] = "alt"
    if plain is not None:
        m.set_content(plain)
        m.add_alternative(markup, subtype="html")
    else:
        m.set_content(markup, subtype="html")
    return m.as_bytes()


@pytest.mark.parametrize(("raw", "expected"), [
    (_plain("Hello   there,\n\nsee you\ttomorrow.\n"), "Hello there, see you tomorrow."),
    (_plain("Un café, s'il vous plaît — merci\n", cte="quoted-printable"), "Un café, s'il vous plaît — merci"),
    (_plain("Grüße aus Köln\n", cte="base64"), "Grüße aus Köln"),
    (_plain("Grüße\n", cte="8bit", charset="iso-8859-1"), "Grüße"),
    (_plain("On Monday Bob wrote:\n> old text\n>> older\nMy answer\n"), "On Monday Bob wrote: My answer"),
    (_alternative("the plain half", "<p>the <b>html</b> half</p>"), "the plain half"),
    (_alternative(None, "<html><head><title>T</title><style>p{color:red}</style></head><body><p>Tom &amp; "
                        "Jerry</p><script>alert(1)</script><div>second&nbsp;line</div><!-- hidden --></body></html>"),
     "Tom & Jerry second line"),  # &nbsp; is whitespace too
    (b"Subject: no body\r\n\r\n", ""),
    (b"Subject: x\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n", ""),
    (b"Subject: x\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: x-unknown\r\n\r\nraw text\r\n", "raw text"),
    (b"Subject: x\r\nContent-Type: text/plain; charset=no-such-charset\r\n\r\nplain ascii\r\n", "plain ascii"),
])
def test_preview_text(raw: bytes, expected: str) -> None:
    assert preview_text(raw) == expected


def test_garbage_does_not_raise() -> None:
    for raw in (b"\x00\xff garbage without a header", b"", b"\r\n\r\n", b"Content-Type: multipart/mixed\r\n\r\n--"):
        assert len(preview_text(raw)) <= PREVIEW_CHARS


def test_attachment_is_not_the_preview() -> None:
    m = EmailMessage(policy=policy.SMTP)
    m["Subject"] = "files"
    m.set_content("Body text first")
    m.add_attachment("attached notes", filename="notes.txt")
    assert preview_text(m.as_bytes()) == "Body text first"
    only = EmailMessage(policy=policy.SMTP)
    only["Subject"] = "just a file"
    only.make_mixed()
    only.add_attachment("attached notes", filename="notes.txt")
    assert preview_text(only.as_bytes()) == ""


def test_encapsulated_message_is_not_the_preview() -> None:
    inner = _plain("inner text")
    raw = (b"Subject: fwd\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
           b"Content-Type: message/rfc822\r\n\r\n" + inner + b"\r\n--b--\r\n")
    assert preview_text(raw) == ""


def test_length_limits() -> None:
    words = " ".join(f"word{i}" for i in range(200))
    text = preview_text(_plain(words))
    assert 160 <= len(text) <= PREVIEW_CHARS and words.startswith(text) and not text.endswith(" ")
    assert text.split(" ")[-1] in words.split(" ")  # cut at a word boundary
    unbroken = "x" * 1000
    assert preview_text(_plain(unbroken)) == "x" * PREVIEW_CHARS
    assert len(preview_text(_plain(words), limit=10_000)) <= MAX_PREVIEW_CHARS
    wide = "\U0001f600" * 300  # characters, not octets
    assert preview_text(_plain(wide, cte="base64")) == "\U0001f600" * PREVIEW_CHARS


def test_html_to_text_keeps_order_and_drops_hidden() -> None:
    assert html_to_text("a<br>b<SCRIPT type=x>c</Script >d<style/>e").split() == ["a", "b", "d", "e"]
    assert html_to_text("<p>unterminated <b").split() == ["unterminated"]


@pytest.mark.parametrize("markup", [b"<script>" * 9000, b"<a " * 30000, b"<!--" * 30000, b"<p>" * 30000,
                                    b"<script></script>" * 5000])
def test_hostile_markup_is_linear(markup: bytes) -> None:
    raw = b"Content-Type: text/html\r\n\r\n" + markup
    start = time.process_time()
    preview_text(raw)
    assert time.process_time() - start < 0.5

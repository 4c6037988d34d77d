"""FETCH item rendering against a real Store with real messages (no mocks)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from imapd.mime import UnknownEncoding, section_bytes
from imapd.protocol.fetch_items import BinarySize, BodySection, FetchAttr, FetchBody, FetchItem
from imapd.protocol.response_writer import ResponseWriter
from imapd.protocol.responses import FetchResponse
from imapd.protocol.values import Atom, Literal8, Value
from imapd.session.fetch import FetchPlan, render
from imapd.store import Mailbox, Store

INTERNALDATE = 1_700_000_000  # 14-Nov-2023 22:13:20 UTC
PAYLOAD = bytes(range(256))


def smtp_message() -> EmailMessage:
    return EmailMessage(policy=policy.SMTP)  # CRLF line endings


def nested_message() -> bytes:
    """multipart/mixed: alternative (QP text, 8bit html), message/rfc822, base64 attachment."""
    m = smtp_message()
    m["From"] = "=?utf-8?q?Caf=C3=A9?= <cafe@example.org>"
    m["To"] = "friends: b@example.org, c@example.org;, d@example.net"
    m["Cc"] = "\"Doe, J.\" <jd@example.com>"
    m["Subject"] = "=?utf-8?q?h=C3=A9llo?= world"
    m["Date"] = "Mon, 01 Jan 2024 10:00:00 +0100"
    m["Message-ID"] = "<outer@example.org>"
    m["In-Reply-To"] = "<parent@example.org>"
    m.set_content("café\n", cte="quoted-printable")
    m.add_alternative("<p>café</p>\n", subtype="html", cte="8bit")
    m.set_boundary("alt")
    inner = smtp_message()
    inner["From"] = "inner@example.org"
    inner["Subject"] = "inner"
    inner.set_content("x\n", cte="7bit")
    m.add_attachment(inner)
    m.add_attachment(PAYLOAD, maintype="application", subtype="octet-stream", filename="b.bin")
    m.set_boundary("mixed")
    return m.as_bytes()


def plain_message() -> bytes:
    m = smtp_message()
    m["From"] = "Alice <alice@example.com>"
    m["Sender"] = "secretary@example.com"
    m["Reply-To"] = "list@example.com"
    m["Subject"] = "plain"
    m.set_content("line one\nline two\n", cte="7bit", disposition="inline")
    m["Content-Language"] = "en"  # set_content drops content headers set before it
    m["Content-Location"] = "http://example.com/a"
    return m.as_bytes()


def bare_message() -> bytes:
    """No MIME headers at all, no Date, no To."""
    return b"Subject: bare\r\n\r\nbody\r\n"


def unknown_cte_message() -> bytes:
    return (b"Subject: odd\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n"
            b"Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 a\r\n")


@pytest.fixture(scope="module")
def mailbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mailbox]:
    store = Store(Path(tmp_path_factory.mktemp("fetch")) / "data", durability="normal")
    mb = store.create_user("alice").open("INBOX")
    assert mb.append(nested_message(), ["\\Seen", "$Work"], INTERNALDATE) == 1
    assert mb.append(plain_message(), [], INTERNALDATE) == 2
    assert mb.append(bare_message(), ["\\Flagged"], INTERNALDATE) == 3
    assert mb.append(unknown_cte_message(), [], INTERNALDATE) == 4
    yield mb
    mb.release()
    store.close()


def fetch(mb: Mailbox, uid: int, *items: FetchItem) -> list[tuple[str, Value]]:
    flags = mb.flags(uid)
    assert flags is not None
    return render(FetchPlan(items), mb, uid, info=None, flags=flags, modseq=None)


def one(mb: Mailbox, uid: int, item: FetchItem) -> Value:
    [(key, value)] = fetch(mb, uid, item)
    assert key == item.response_key()
    return value


def body(*part: int, text: str | None = None, fields: tuple[str, ...] = (),
         partial: tuple[int, int] | None = None, peek: bool = False, binary: bool = False) -> FetchBody:
    return FetchBody(BodySection(part, text, fields), partial, peek, binary)


def between(raw: bytes, start_marker: bytes, end_marker: bytes) -> bytes:
    start = raw.index(start_marker)
    return raw[start : raw.index(end_marker, start)]


# ------------------------------------------------------------------------------------------------ plan


@pytest.mark.parametrize(
    ("items", "info", "meta", "raw", "seen"),
    [
        ((FetchAttr("FLAGS"), FetchAttr("UID")), False, False, False, False),
        ((FetchAttr("MODSEQ"),), False, False, False, False),
        ((FetchAttr("RFC822.SIZE"),), True, False, False, False),
        ((FetchAttr("INTERNALDATE"),), True, False, False, False),
        ((FetchAttr("ENVELOPE"),), False, True, False, False),
        ((FetchAttr("BODY"),), False, True, False, False),
        ((FetchAttr("BODYSTRUCTURE"),), False, True, False, False),
        ((FetchAttr("RFC822"),), False, False, True, True),
        ((FetchAttr("RFC822.TEXT"),), False, True, True, True),
        ((FetchAttr("RFC822.HEADER"),), False, True, True, False),
        ((body(),), False, False, True, True),
        ((body(peek=True),), False, False, True, False),
        ((body(text="HEADER", peek=True),), False, True, True, False),
        ((body(text="TEXT"),), False, True, True, True),
        ((body(1, text="MIME", peek=True),), False, False, True, False),
        ((body(1, 2),), False, False, True, True),
        ((body(1, binary=True),), False, False, True, True),
        ((body(1, binary=True, peek=True),), False, False, True, False),
        ((BinarySize((1,)),), False, False, True, False),
        ((FetchAttr("FLAGS"), body(peek=True), body(2, text="HEADER")), False, False, True, True),
    ],
)
def test_plan_knows_what_items_need(items: tuple[FetchItem, ...], info: bool, meta: bool, raw: bool,
                                    seen: bool) -> None:
    plan = FetchPlan(items)
    assert (plan.needs_info, plan.needs_metadata, plan.needs_raw, plan.sets_seen) == (info, meta, raw, seen)


def test_plan_records_explicit_flags_uid_modseq() -> None:
    plan = FetchPlan((FetchAttr("UID"), FetchAttr("FLAGS")))
    assert (plan.wants_uid, plan.wants_flags, plan.wants_modseq) == (True, True, False)
    assert FetchPlan((FetchAttr("MODSEQ"),)).wants_modseq


def test_plan_rejects_unknown_attribute() -> None:
    with pytest.raises(ValueError):
        FetchPlan((FetchAttr("X-GM-MSGID"),))


# ------------------------------------------------------------------------------------- simple attributes


def test_simple_attributes_in_request_order(mailbox: Mailbox) -> None:
    raw = mailbox.read_message(1)
    items = (FetchAttr("UID"), FetchAttr("RFC822.SIZE"), FetchAttr("FLAGS"), FetchAttr("INTERNALDATE"),
             FetchAttr("MODSEQ"))
    assert fetch(mailbox, 1, *items) == [
        ("UID", 1),
        ("RFC822.SIZE", len(raw)),
        ("FLAGS", [Atom("\\Seen"), Atom("$Work")]),
        ("INTERNALDATE", "14-Nov-2023 22:13:20 +0000"),
        ("MODSEQ", [mailbox.modseq(1)]),
    ]


def test_batched_info_and_explicit_values_are_used(mailbox: Mailbox) -> None:
    plan = FetchPlan((FetchAttr("RFC822.SIZE"), FetchAttr("FLAGS"), FetchAttr("MODSEQ")))
    infos = mailbox.message_info([1, 2, 3])
    out = [plan.render(mailbox, i.uid, info=i, flags=(*i.flags, "\\Recent"), modseq=77) for i in infos]
    assert out[2] == [("RFC822.SIZE", len(bare_message())), ("FLAGS", [Atom("\\Flagged"), Atom("\\Recent")]),
                      ("MODSEQ", [77])]
    assert [o[0][1] for o in out] == [len(mailbox.read_message(u)) for u in (1, 2, 3)]


def test_empty_flags(mailbox: Mailbox) -> None:
    assert one(mailbox, 2, FetchAttr("FLAGS")) == []


def test_missing_message_raises_key_error(mailbox: Mailbox) -> None:
    with pytest.raises(KeyError):
        render(FetchPlan((body(peek=True),)), mailbox, 99, info=None, flags=(), modseq=None)
    with pytest.raises(KeyError):
        render(FetchPlan((FetchAttr("RFC822.SIZE"),)), mailbox, 99, info=None, flags=(), modseq=None)


# -------------------------------------------------------------------------------------------- envelope


def test_envelope_keeps_encoded_words_and_groups(mailbox: Mailbox) -> None:
    cafe = [["=?utf-8?q?Caf=C3=A9?=", None, "cafe", "example.org"]]
    assert one(mailbox, 1, FetchAttr("ENVELOPE")) == [
        "Mon, 01 Jan 2024 10:00:00 +0100",
        "=?utf-8?q?h=C3=A9llo?= world",
        cafe,
        cafe,  # sender defaults to from
        cafe,  # reply-to defaults to from
        [[None, None, "friends", None], [None, None, "b", "example.org"], [None, None, "c", "example.org"],
         [None, None, None, None], [None, None, "d", "example.net"]],
        [["Doe, J.", None, "jd", "example.com"]],
        None,
        "<parent@example.org>",
        "<outer@example.org>",
    ]


def test_envelope_sender_and_reply_to(mailbox: Mailbox) -> None:
    env = one(mailbox, 2, FetchAttr("ENVELOPE"))
    assert isinstance(env, list)
    assert env[2:6] == [[["Alice", None, "alice", "example.com"]],
                        [[None, None, "secretary", "example.com"]],
                        [[None, None, "list", "example.com"]],
                        None]


def test_envelope_of_bare_message_is_mostly_nil(mailbox: Mailbox) -> None:
    assert one(mailbox, 3, FetchAttr("ENVELOPE")) == [None, "bare", None, None, None, None, None, None, None, None]


# --------------------------------------------------------------------------------------- bodystructure


def nested_sizes(raw: bytes) -> dict[str, int]:
    inner = between(raw, b"From: inner@", b"\r\n--mixed")
    attachment = between(raw, base64.b64encode(PAYLOAD)[:20], b"\r\n--mixed")
    return {"inner": len(inner), "inner_lines": inner.count(b"\n") + (not inner.endswith(b"\n")),
            "attachment": len(attachment)}


def test_bodystructure_of_nested_multipart(mailbox: Mailbox) -> None:
    raw = mailbox.read_message(1)
    sizes = nested_sizes(raw)
    inner_env = [None, "inner", [[None, None, "inner", "example.org"]], [[None, None, "inner", "example.org"]],
                 [[None, None, "inner", "example.org"]], None, None, None, None, None]
    assert one(mailbox, 1, FetchAttr("BODYSTRUCTURE")) == [
        [
            ["TEXT", "PLAIN", ["CHARSET", "utf-8"], None, None, "QUOTED-PRINTABLE", len(b"caf=C3=A9\r\n"), 1,
             None, None, None, None],
            ["TEXT", "HTML", ["CHARSET", "utf-8"], None, None, "8BIT", len("<p>café</p>\r\n".encode()), 1,
             None, None, None, None],
            "ALTERNATIVE", ["BOUNDARY", "alt"], None, None, None,
        ],
        ["MESSAGE", "RFC822", None, None, None, "8BIT", sizes["inner"], inner_env,
         ["TEXT", "PLAIN", ["CHARSET", "utf-8"], None, None, "7BIT", 3, 1, None, None, None, None],
         sizes["inner_lines"], None, ["ATTACHMENT", None], None, None],
        ["APPLICATION", "OCTET-STREAM", None, None, None, "BASE64", sizes["attachment"], None,
         ["ATTACHMENT", ["FILENAME", "b.bin"]], None, None],
        "MIXED", ["BOUNDARY", "mixed"], None, None, None,
    ]


def test_body_is_the_non_extensible_form(mailbox: Mailbox) -> None:
    raw = mailbox.read_message(1)
    sizes = nested_sizes(raw)
    bs = one(mailbox, 1, FetchAttr("BODY"))
    assert isinstance(bs, list)
    assert bs[0] == [["TEXT", "PLAIN", ["CHARSET", "utf-8"], None, None, "QUOTED-PRINTABLE", 11, 1],
                     ["TEXT", "HTML", ["CHARSET", "utf-8"], None, None, "8BIT", 14, 1], "ALTERNATIVE"]
    message = bs[1]
    assert isinstance(message, list) and len(message) == 10
    assert message[8] == ["TEXT", "PLAIN", ["CHARSET", "utf-8"], None, None, "7BIT", 3, 1]
    assert message[9] == sizes["inner_lines"]
    assert bs[2] == ["APPLICATION", "OCTET-STREAM", None, None, None, "BASE64", sizes["attachment"]]
    assert bs[3] == "MIXED"


def test_single_part_extension_data(mailbox: Mailbox) -> None:
    assert one(mailbox, 2, FetchAttr("BODYSTRUCTURE")) == [
        "TEXT", "PLAIN", ["CHARSET", "utf-8"], None, None, "7BIT", len(b"line one\r\nline two\r\n"), 2,
        None, ["INLINE", None], ["en"], "http://example.com/a",
    ]
    assert one(mailbox, 2, FetchAttr("BODY")) == ["TEXT", "PLAIN", ["CHARSET", "utf-8"], None, None, "7BIT",
                                                  20, 2]


def test_defaults_for_message_without_mime_headers(mailbox: Mailbox) -> None:
    assert one(mailbox, 3, FetchAttr("BODYSTRUCTURE")) == [
        "TEXT", "PLAIN", ["CHARSET", "US-ASCII"], None, None, "7BIT", 6, 1, None, None, None, None]


# -------------------------------------------------------------------------------------------- sections


def test_body_sections(mailbox: Mailbox) -> None:
    raw = mailbox.read_message(1)
    header_end = raw.index(b"\r\n\r\n") + 4
    inner = between(raw, b"From: inner@", b"\r\n--mixed")
    inner_header_end = inner.index(b"\r\n\r\n") + 4
    cases: list[tuple[FetchBody, Value]] = [
        (body(), raw),
        (body(text="HEADER"), raw[:header_end]),
        (body(text="TEXT"), raw[header_end:]),
        (body(1, 1), b"caf=C3=A9\r\n"),
        (body(1, 2), "<p>café</p>\r\n".encode()),
        (body(1, 1, text="MIME"), between(raw, b"Content-Type: text/plain", b"caf=")),
        (body(2), inner),
        (body(2, text="HEADER"), inner[:inner_header_end]),
        (body(2, text="TEXT"), inner[inner_header_end:]),
        (body(2, 1), b"x\r\n"),
        (body(text="HEADER.FIELDS", fields=("SUBJECT", "message-id")),
         b"Subject: =?utf-8?q?h=C3=A9llo?= world\r\nMessage-ID: <outer@example.org>\r\n\r\n"),
        (body(2, text="HEADER.FIELDS.NOT", fields=("CONTENT-TYPE", "Content-Transfer-Encoding", "MIME-Version")),
         b"From: inner@example.org\r\nSubject: inner\r\n\r\n"),
        (body(text="HEADER.FIELDS", fields=("X-NOT-THERE",)), b"\r\n"),
    ]
    for item, expected in cases:
        assert fetch(mailbox, 1, item) == [(item.response_key(), expected)], item


@pytest.mark.parametrize("item", [body(9), body(1, 3), body(1, 1, 1, 1), body(3, text="HEADER"),
                                  body(text="MIME"), body(9, binary=True)])
def test_nonexistent_section_is_empty_string(mailbox: Mailbox, item: FetchBody) -> None:
    assert one(mailbox, 1, item) == ""


def test_part_one_of_single_part_message(mailbox: Mailbox) -> None:
    assert one(mailbox, 2, body(1)) == b"line one\r\nline two\r\n"
    assert one(mailbox, 2, body(2)) == ""


def test_partials(mailbox: Mailbox) -> None:
    raw = mailbox.read_message(1)
    assert fetch(mailbox, 1, body(partial=(0, 10), peek=True)) == [("BODY[]<0>", raw[:10])]
    assert fetch(mailbox, 1, body(1, 1, partial=(3, 4))) == [("BODY[1.1]<3>", b"=C3=")]
    assert fetch(mailbox, 1, body(1, 1, partial=(5, 100))) == [("BODY[1.1]<5>", b"3=A9\r\n")]
    assert fetch(mailbox, 1, body(1, 1, partial=(500, 10))) == [("BODY[1.1]<500>", "")]
    assert fetch(mailbox, 1, body(text="HEADER", partial=(0, 5))) == [("BODY[HEADER]<0>", b"From:")]
    assert fetch(mailbox, 1, body(text="HEADER.FIELDS", fields=("SUBJECT",), partial=(0, 8))) == [
        ("BODY[HEADER.FIELDS (SUBJECT)]<0>", b"Subject:")]


def test_rfc822_items(mailbox: Mailbox) -> None:
    raw = mailbox.read_message(2)
    header_end = raw.index(b"\r\n\r\n") + 4
    assert fetch(mailbox, 2, FetchAttr("RFC822.HEADER"), FetchAttr("RFC822.TEXT"), FetchAttr("RFC822")) == [
        ("RFC822.HEADER", raw[:header_end]), ("RFC822.TEXT", raw[header_end:]), ("RFC822", raw)]


# ---------------------------------------------------------------------------------------------- binary


def test_binary_decodes_base64_and_quoted_printable(mailbox: Mailbox) -> None:
    assert fetch(mailbox, 1, body(3, binary=True), body(1, 1, binary=True, peek=True)) == [
        ("BINARY[3]", Literal8(PAYLOAD)), ("BINARY[1.1]", Literal8("café\r\n".encode()))]
    assert one(mailbox, 1, body(3, binary=True, partial=(250, 100))) == Literal8(PAYLOAD[250:])
    assert one(mailbox, 1, body(3, binary=True, partial=(256, 1))) == ""
    assert fetch(mailbox, 1, BinarySize((3,)), BinarySize((1, 1)), BinarySize((9,))) == [
        ("BINARY.SIZE[3]", 256), ("BINARY.SIZE[1.1]", len("café\r\n".encode())), ("BINARY.SIZE[9]", 0)]


def test_binary_of_7bit_part_and_whole_message(mailbox: Mailbox) -> None:
    assert one(mailbox, 2, body(1, binary=True)) == Literal8(b"line one\r\nline two\r\n")
    assert one(mailbox, 3, body(binary=True)) == Literal8(bare_message())


def test_binary_unknown_encoding_propagates(mailbox: Mailbox) -> None:
    with pytest.raises(UnknownEncoding):
        fetch(mailbox, 4, body(1, binary=True))
    with pytest.raises(UnknownEncoding):
        fetch(mailbox, 4, BinarySize((1,)))
    assert one(mailbox, 4, body(1)) == b"begin 644 a\r\n"  # BODY[] never decodes


def test_qp_sanity() -> None:
    assert binascii.a2b_qp(b"caf=C3=A9\r\n") == "café\r\n".encode()


# ------------------------------------------------------------------------------------------ serializing


def test_everything_serializes(mailbox: Mailbox) -> None:
    items = (FetchAttr("UID"), FetchAttr("FLAGS"), FetchAttr("INTERNALDATE"), FetchAttr("RFC822.SIZE"),
             FetchAttr("ENVELOPE"), FetchAttr("BODYSTRUCTURE"), FetchAttr("BODY"), FetchAttr("MODSEQ"),
             body(1, 1, partial=(0, 3), peek=True), body(3, binary=True), BinarySize((3,)))
    out = ResponseWriter().write(FetchResponse(1, fetch(mailbox, 1, *items)))
    assert out.startswith(b"* 1 FETCH (UID 1 FLAGS (\\Seen $Work) INTERNALDATE \"14-Nov-2023 22:13:20 +0000\" ")
    assert b" BODY[1.1]<0> {3}\r\ncaf BINARY[3] ~{256}\r\n" + PAYLOAD + b" BINARY.SIZE[3] 256)\r\n" in out
    assert b'("MESSAGE" "RFC822" NIL NIL NIL "8BIT" ' in out
    assert b'(("=?utf-8?q?Caf=C3=A9?=" NIL "cafe" "example.org"))' in out


def test_eight_bit_headers_are_str(tmp_path: Path) -> None:
    store = Store(tmp_path / "data", durability="normal")
    mb = store.create_user("bob").open("INBOX")
    raw = "From: José <jose@exämple.org>\r\nSubject: café ☕\r\n\r\nhi\r\n".encode()
    uid = mb.append(raw)
    env = render(FetchPlan((FetchAttr("ENVELOPE"),)), mb, uid, info=None, flags=(), modseq=None)[0][1]
    assert isinstance(env, list)
    assert env[1] == "café ☕"
    assert env[2] == [["José", None, "jose", "exämple.org"]]
    mb.release()
    store.close()


@pytest.mark.parametrize("raw", [b"Subject: x\r\n", b"Subject: x", b"Subject: x\n\nbody\n", b"\r\nbody",
                                 b"Subject: x\r\n\r\n"])
def test_top_level_header_and_text_agree_with_sections(tmp_path: Path, raw: bytes) -> None:
    """BODY[HEADER]/BODY[TEXT] slice at the cached header size; it must match the MIME walker."""
    store = Store(tmp_path / "data", durability="normal")
    mb = store.create_user("bob").open("INBOX")
    uid = mb.append(raw)
    stored = mb.read_message(uid)
    out = render(FetchPlan((body(text="HEADER"), body(text="TEXT"))), mb, uid, info=None, flags=(), modseq=None)
    header, text = (v if isinstance(v, bytes) else b"" for _, v in out)
    assert header + text == stored
    assert header == section_bytes(stored, (), "HEADER")
    mb.release()
    store.close()

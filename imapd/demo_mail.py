"""Realistic demo mail for ``make demo``: threads, attachments, non-ASCII headers, HTML, several folders.

Generated deterministically (a seeded RNG) with the standard library's email package so the
messages are well-formed MIME that any client renders.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

__all__ = ["DEMO_USERS", "DemoMessage", "demo_messages"]

# (user, password): the README and `make demo` print these.
DEMO_USERS: list[tuple[str, str]] = [("demo", "demo"), ("alice", "alice")]


@dataclass(frozen=True, slots=True)
class DemoMessage:
    folder: str
    raw: bytes
    flags: tuple[str, ...]
    internaldate: datetime


_PEOPLE = [
    ("Alice Martin", "alice@example.org"),
    ("Bob Ødegård", "bob@example.net"),
    ("Chloé Durand", "chloe@example.fr"),
    ("Dmitri Ivanov", "dmitri@example.com"),
    ("李小龙", "li@example.cn"),
    ("Eve Schäfer", "eve@example.de"),
    ("GitHub", "notifications@github.example"),
    ("Weekly Digest", "digest@news.example"),
]

_TOPICS = [
    "Quarterly planning",
    "Lunch on Friday?",
    "Release 2.4 checklist",
    "Überprüfung der Rechnung",
    "Déjeuner d'équipe",
    "Trip to Kyoto — 京都の旅行",
    "Server migration window",
    "Re: Budget numbers",
    "Design review notes",
    "Your invoice #4471",
    "Welcome aboard!",
    "Photos from the weekend",
]

_LINES = [
    "Thanks for the update, this looks good to me.",
    "Could we move the meeting to Thursday afternoon?",
    "I attached the document we talked about.",
    "Let me know if anything is unclear.",
    "The numbers for Q3 are in the spreadsheet.",
    "Grüße aus Berlin, und danke für die schnelle Antwort!",
    "On se voit demain à 10h, ça te va ?",
    "I think we should ship it on Monday.",
    "Here is the summary of what we decided.",
    "Please review before the end of the week.",
]


def _addr(person: tuple[str, str]) -> Address:
    name, email = person
    user, _, domain = email.partition("@")
    return Address(display_name=name, username=user, domain=domain)


def _body(rng: random.Random, paragraphs: int) -> str:
    return "\n\n".join(" ".join(rng.sample(_LINES, 3)) for _ in range(paragraphs)) + "\n\n-- \nSent from the demo\n"


def _pdf_bytes(rng: random.Random) -> bytes:
    filler = bytes(rng.getrandbits(8) for _ in range(2048))
    return b"%PDF-1.4\n% demo attachment\n" + filler + b"\n%%EOF\n"


def _png_bytes() -> bytes:
    # A valid 1x1 PNG.
    return bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
    )


def _message(
    rng: random.Random,
    me: tuple[str, str],
    sender: tuple[str, str],
    subject: str,
    when: datetime,
    *,
    reply_to: EmailMessage | None = None,
    kind: str = "plain",
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = _addr(sender)
    msg["To"] = _addr(me)
    if rng.random() < 0.3:
        msg["Cc"] = _addr(rng.choice(_PEOPLE[:6]))
    msg["Subject"] = subject
    msg["Date"] = format_datetime(when)
    msg["Message-ID"] = make_msgid(domain=sender[1].partition("@")[2])
    if reply_to is not None:
        parent_id = reply_to["Message-ID"]
        refs = (reply_to.get("References", "") + " " + parent_id).strip()
        msg["In-Reply-To"] = parent_id
        msg["References"] = refs
    text = _body(rng, rng.randint(1, 4))
    if kind == "html":
        msg.set_content(text)
        paragraphs = "".join(f"<p>{line}</p>" for line in text.split("\n\n"))
        msg.add_alternative(
            f"<html><body><h2 style=\"color:#235\">{subject}</h2>{paragraphs}"
            '<p><img src="https://tracker.example/pixel.gif" alt="remote image"></p>'
            "<script>alert('this must never run')</script></body></html>",
            subtype="html",
        )
    elif kind == "attachment":
        msg.set_content(text)
        msg.add_attachment(_pdf_bytes(rng), maintype="application", subtype="pdf", filename="report-Q3.pdf")
        if rng.random() < 0.5:
            msg.add_attachment(_png_bytes(), maintype="image", subtype="png", filename="pixel.png")
    else:
        msg.set_content(text)
    return msg


def demo_messages(user: str, *, count: int = 120, seed: int = 1) -> Iterator[DemoMessage]:
    """Yield a mailbox's worth of messages for ``user`` (INBOX mostly, some Sent, Archive, Drafts, Junk)."""
    rng = random.Random(f"{seed}:{user}")
    me = (user.capitalize(), f"{user}@example.org")
    now = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    threads: list[EmailMessage] = []
    for i in range(count):
        when = now - timedelta(hours=(count - i) * 7, minutes=rng.randint(0, 59))
        sender = rng.choice(_PEOPLE)
        kind = rng.choices(["plain", "html", "attachment"], weights=[6, 3, 2])[0]
        parent = rng.choice(threads) if threads and rng.random() < 0.35 else None
        if parent is not None:
            subject = "Re: " + str(parent["Subject"]).removeprefix("Re: ")
        else:
            subject = rng.choice(_TOPICS)
        msg = _message(rng, me, sender, subject, when, reply_to=parent, kind=kind)
        threads.append(msg)
        if rng.random() < 0.1:
            folder = "Archive"
        elif rng.random() < 0.05:
            folder = "Junk"
        else:
            folder = "INBOX"
        flags: list[str] = []
        if i < count - 15 or rng.random() < 0.3:
            flags.append("\\Seen")
        if rng.random() < 0.08:
            flags.append("\\Flagged")
        yield DemoMessage(folder, msg.as_bytes(policy=SMTP), tuple(flags), when)
        if parent is not None and rng.random() < 0.5:
            reply = _message(rng, sender, me, "Re: " + subject.removeprefix("Re: "), when + timedelta(minutes=40),
                             reply_to=msg)
            del reply["From"], reply["To"]
            reply["From"] = _addr(me)
            reply["To"] = _addr(sender)
            threads.append(reply)
            yield DemoMessage("Sent", reply.as_bytes(policy=SMTP), ("\\Seen",), when + timedelta(minutes=40))
    draft = _message(rng, me, me, "Draft: notes for next week", now, kind="plain")
    yield DemoMessage("Drafts", draft.as_bytes(policy=SMTP), ("\\Draft", "\\Seen"), now)

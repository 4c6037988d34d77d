"""The vacation action (RFC 5230, RFC 6131 ``:seconds``): whether to answer, and the reply itself.

Never answered: the null return path and MAILER-DAEMON, list mail (List-Id and other List-* fields,
Precedence bulk/list/junk), automatic mail (Auto-Submitted other than "no"), our own addresses, and mail
that does not name one of the user's addresses in To/Cc/Bcc (RFC 5230 4.5, 4.6). Each sender gets at most
one reply per ``:days`` for each handle: the decision reads the user's memory, and the reply comes with a
memo to record once it is sent.
"""

from __future__ import annotations

import email.policy
import email.utils
import hashlib
from email.message import EmailMessage
from email.parser import Parser
from typing import TYPE_CHECKING

from imapd.sieve.actions import Memo, VacationReply
from imapd.sieve.grammar import decode_number
from imapd.sieve.message import split_address

if TYPE_CHECKING:
    from sievelib import commands as sc

    from imapd.sieve.interpreter import _Run

__all__ = ["should_answer", "vacation_action"]

_DAY = 24 * 3600


def _bare(address: str) -> str:
    return address.strip().strip("<>").lower()


def _plain(address: str) -> str:
    """``Alice+lists@Example.org`` -> ``alice@example.org``: the user, whatever subaddress (RFC 5233)."""
    local, domain = split_address(_bare(address))
    return f"{local.split('+', 1)[0]}@{domain}"


def should_answer(run: _Run, sender: str, mine: list[str]) -> str | None:
    """None when a reply may be sent; else why not (for the debug log)."""
    msg = run.message
    if not sender:
        return "null return path"
    local = split_address(sender)[0].lower()
    if local in ("mailer-daemon", "postmaster") or local.startswith("owner-") or local.endswith(
            ("-request", "-owner")):
        return "sender is a mail system or list address"
    if _plain(sender) in {_plain(a) for a in mine}:
        return "sender is one of the user's own addresses"
    for value in msg.values("Auto-Submitted"):
        if value.split(";")[0].strip().lower() != "no":
            return "Auto-Submitted"
    for value in msg.values("Precedence"):
        if value.strip().lower() in ("bulk", "list", "junk"):
            return "Precedence " + value.strip().lower()
    for name in ("List-Id", "List-Post", "List-Unsubscribe", "List-Help", "X-Auto-Response-Suppress"):
        if msg.exists(name):
            return name
    named = {_plain(f"{local}@{domain}") for h in ("To", "Cc", "Bcc", "Resent-To", "Resent-Cc", "Resent-Bcc")
             for local, domain in msg.addresses(h)}
    if not named & {_plain(a) for a in mine}:
        return "none of the user's addresses is in To/Cc/Bcc"
    return None


def vacation_action(run: _Run, node: sc.Command) -> None:
    from imapd.sieve.interpreter import _str, _tag_value

    reason = _str(run, node.arguments["reason"])
    subject = _tag_value(run, node, "subject")
    from_ = _tag_value(run, node, "from")
    addresses: list[str] = []
    if "addresses" in node.extra_arguments:
        from imapd.sieve.interpreter import _list

        addresses = _list(run, node.extra_arguments["addresses"])
    handle = _tag_value(run, node, "handle")
    if "seconds" in node.extra_arguments:
        period = max(run.limits.min_vacation_seconds, decode_number(node.extra_arguments["seconds"]))
    else:
        days = decode_number(node.extra_arguments.get("days", "7"))
        period = max(1, min(days, run.limits.max_vacation_days)) * _DAY
    period = min(period, run.limits.max_vacation_days * _DAY)
    mine = [_bare(a) for a in (run.envelope.rcpt_to, *run.own_addresses, *addresses) if a]
    reply_to = run.envelope.mail_from.strip().strip("<>")
    sender = reply_to.lower()
    if should_answer(run, sender, mine) is not None:
        return
    if handle is None:  # RFC 5230 4.2: the same reply text is the same handle
        handle = "\0".join([reason, subject or "", from_ or "", "mime" if "mime" in node.arguments else ""])
    key = hashlib.sha256(f"{handle}\0{sender}".encode()).hexdigest()
    if run.memory.seen("vacation", key, run.now):
        return
    reply = build_reply(run, reason, subject, from_ or run.envelope.rcpt_to, reply_to, "mime" in node.arguments)
    run.actions.append(VacationReply(reply_to, reply))
    run.memos.append(Memo("vacation", key, run.now + period))


def build_reply(run: _Run, reason: str, subject: str | None, from_: str, to: str, mime: bool) -> bytes:
    original = run.message
    if subject is None:
        old = (original.values("Subject") or [""])[0]
        subject = old if old.lower().startswith("auto:") else f"Auto: {old}".rstrip()
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = from_
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = email.utils.formatdate(run.now, usegmt=True)
    msg["Message-ID"] = email.utils.make_msgid(domain=split_address(from_)[1] or None)
    msg["Auto-Submitted"] = "auto-replied (vacation)"
    message_id = (original.values("Message-ID") or [""])[0]
    if message_id:
        msg["In-Reply-To"] = message_id
        refs = " ".join([*(original.values("References") or [])[:1], message_id]).strip()
        msg["References"] = refs
    if mime:
        part = Parser(policy=email.policy.SMTP).parsestr(reason.lstrip("\r\n"))
        for name, value in part.items():
            msg[name] = value
        payload = part.get_payload()
        msg.set_payload(payload)
        if "MIME-Version" not in msg:
            msg["MIME-Version"] = "1.0"
    else:
        msg.set_content(reason)
    return msg.as_bytes()

"""evaluate() on the RFCs' own example scripts and on edge cases of each extension."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from imapd.sieve import (
    Discard,
    Envelope,
    FileInto,
    Keep,
    Redirect,
    Reject,
    SieveLimits,
    SieveSyntaxError,
    VacationReply,
    evaluate,
    parse_script,
)
from imapd.sieve.scripts import SieveState

ENV = Envelope("coyote@desert.example.org", "roadrunner@acme.example.com")


def msg(*headers: str, body: str = "Hello\r\n") -> bytes:
    return ("\r\n".join(headers) + "\r\n\r\n" + body).encode()


# RFC 5228 section 9, verbatim.
RFC5228_EXAMPLE = r'''#
# Example Sieve Filter
# Declare any optional features or extension used by the script
#
require ["fileinto"];

#
# Handle messages from known mailing lists
# Move messages from IETF filter discussion list to filter mailbox
#
if header :is "Sender" "owner-ietf-mta-filters@imc.org"
        {
        fileinto "filter";  # move to "filter" mailbox
        }
#
# Keep all messages to or from people in my company
#
elsif address :DOMAIN :is ["From", "To"] "example.com"
        {
        keep;               # keep in "In" mailbox
        }

#
# Try and catch unsolicited email.  If a message is not to me,
# or it contains a subject known to be spam, file it away.
#
elsif anyof (NOT address :all :contains
               ["To", "Cc", "Bcc"] "me@example.com",
             header :matches "subject"
               ["*make*money*fast*", "*university*dipl*mas*"])
        {
        fileinto "spam";   # move to "spam" mailbox
        }
else
        {
        # Move all other (non-company) mail to "personal"
        # mailbox.
        fileinto "personal";
        }
'''


@pytest.mark.parametrize(("headers", "expected"), [
    (("Sender: owner-ietf-mta-filters@imc.org", "To: me@example.com"), [FileInto("filter")]),
    (("From: boss@example.com", "To: me@example.com"), [Keep()]),
    (("From: x@elsewhere.org", "To: someone@else.org"), [FileInto("spam")]),
    (("From: x@elsewhere.org", "To: a@else.org", "Cc: me@example.com", "Subject: MAKE your money FAST now"),
     [FileInto("spam")]),
    (("From: x@elsewhere.org", "To: a@else.org", "Cc: Me <me@example.com>", "Subject: lunch"),
     [FileInto("personal")]),
])
def test_rfc5228_section9_example(headers: tuple[str, ...], expected: list[object]) -> None:
    assert evaluate(RFC5228_EXAMPLE, ENV, msg(*headers)).actions == expected


def test_implicit_keep_and_stop() -> None:
    assert evaluate("", ENV, msg("Subject: x")).actions == [Keep()]
    script = 'require "fileinto"; fileinto "A"; stop; fileinto "B";'
    assert evaluate(script, ENV, msg("Subject: x")).actions == [FileInto("A")]


def test_discard_and_duplicate_actions_merge() -> None:
    assert evaluate("discard;", ENV, msg("Subject: x")).actions == [Discard()]
    script = 'require "fileinto"; keep; fileinto "INBOX"; fileinto "A"; fileinto "A"; keep;'
    assert evaluate(script, ENV, msg("Subject: x")).actions == [Keep(), FileInto("A")]


def test_exists_size_true_false_allof() -> None:
    script = '''require "fileinto";
    if allof (exists ["From", "Date"], size :under 1K, not false, true) { fileinto "small"; }
    elsif size :over 1K { fileinto "big"; }'''
    small = msg("From: a@b.c", "Date: Mon, 7 Dec 2026 10:00:00 +0000")
    assert evaluate(script, ENV, small).actions == [FileInto("small")]
    big = msg("From: a@b.c", body="x" * 2000)
    assert evaluate(script, ENV, big).actions == [FileInto("big")]
    assert evaluate(script, ENV, msg("From: a@b.c")).actions == [Keep()]


def test_comparators_octet_and_casemap() -> None:
    script = '''require "fileinto";
    if header :is :comparator "i;octet" "Subject" "Hello" { fileinto "exact"; }
    elsif header :is "Subject" "hello" { fileinto "casemap"; }'''
    assert evaluate(script, ENV, msg("Subject: Hello")).actions == [FileInto("exact")]
    assert evaluate(script, ENV, msg("Subject: HELLO")).actions == [FileInto("casemap")]


def test_header_decodes_encoded_words() -> None:
    script = 'require "fileinto"; if header :contains "Subject" "café" { fileinto "fr"; }'
    assert evaluate(script, ENV, msg("Subject: =?utf-8?q?un_caf=C3=A9?=")).actions == [FileInto("fr")]


def test_envelope_and_subaddress() -> None:
    script = '''require ["envelope", "subaddress", "fileinto"];
    if envelope :detail "to" "lists" { fileinto "lists"; }
    elsif envelope :user "to" "ken" { fileinto "ken"; }
    elsif envelope :domain :is "from" "desert.example.org" { fileinto "desert"; }'''
    m = msg("Subject: x")
    assert evaluate(script, Envelope("a@b.c", "ken+lists@x.org"), m).actions == [FileInto("lists")]
    assert evaluate(script, Envelope("a@b.c", "ken@x.org"), m).actions == [FileInto("ken")]
    assert evaluate(script, ENV, m).actions == [FileInto("desert")]
    detail_empty = 'require ["subaddress", "fileinto"]; if address :detail "To" "" { fileinto "empty"; }'
    assert evaluate(detail_empty, ENV, msg("To: ken+@x.org")).actions == [FileInto("empty")]
    assert evaluate(detail_empty, ENV, msg("To: ken@x.org")).actions == [Keep()]


def test_envelope_null_sender() -> None:
    script = 'require ["envelope", "fileinto"]; if envelope :is "from" "" { fileinto "bounces"; }'
    assert evaluate(script, Envelope("", "me@x.org"), msg("Subject: x")).actions == [FileInto("bounces")]


def test_reject() -> None:
    script = 'require "reject"; if header :contains "Subject" "spam" { reject "Go away"; }'
    assert evaluate(script, ENV, msg("Subject: spam!")).actions == [Reject("Go away")]
    assert evaluate(script, ENV, msg("Subject: ham")).actions == [Keep()]


def test_redirect_and_copy() -> None:
    assert evaluate('redirect "x@y.org";', ENV, msg("Subject: a")).actions == [Redirect("x@y.org")]
    script = 'require ["copy", "fileinto"]; redirect :copy "x@y.org"; fileinto :copy "Copies";'
    assert evaluate(script, ENV, msg("Subject: a")).actions == [Redirect("x@y.org"), FileInto("Copies"), Keep()]


def test_fileinto_create() -> None:
    script = 'require ["fileinto", "mailbox"]; if not mailboxexists "Lists" { fileinto :create "Lists"; }'
    assert evaluate(script, ENV, msg("Subject: a")).actions == [FileInto("Lists", create=True)]
    assert evaluate(script, ENV, msg("Subject: a"), mailbox_exists=lambda n: n == "Lists").actions == [Keep()]


def test_imap4flags() -> None:
    script = r'''require ["imap4flags", "fileinto"];
    addflag "\\Seen";
    addflag ["\\Flagged", "Junk \\Seen"];
    removeflag "Junk";
    if hasflag :is "\\flagged" { fileinto "flagged"; }
    fileinto :flags "\\Answered" "other";
    setflag "\\Deleted";
    keep;
    '''
    result = evaluate(script, ENV, msg("Subject: a"))
    assert result.actions == [FileInto("flagged", ("\\Seen", "\\Flagged")), FileInto("other", ("\\Answered",)),
                              Keep(("\\Deleted",))]


def test_imap4flags_rfc5232_example_with_variables() -> None:
    # RFC 5232 section 6 (the flags kept in a variable, then used by fileinto :flags)
    script = r'''require ["imap4flags", "fileinto", "variables"];
    if header :contains "from" "boss@frobnitzm.example.edu" {
        setflag "flagvar" "\\Flagged";
        fileinto :flags "${flagvar}" "INBOX.From Boss";
    }
    if hasflag "flagvar" "\\Flagged" { addflag "seen-boss"; keep; }'''
    result = evaluate(script, ENV, msg("From: boss@frobnitzm.example.edu"))
    assert result.actions == [FileInto("INBOX.From Boss", ("\\Flagged",)), Keep(("seen-boss",))]


RFC5229_EXAMPLE = '''require ["fileinto", "variables"];
if header :matches "List-ID" "*<*@*" {
    fileinto "INBOX.lists.${2}"; stop;
}
# Imagine the header
# Subject: [acme-users] [fwd] version 1.0 is out
if header :matches "Subject" "[*] *" {
    # ${1} will hold "acme-users",
    # ${2} will hold "[fwd] version 1.0 is out"
    fileinto "INBOX.lists.${1}"; stop;
}
# Imagine the header
# To: coyote@ACME.Example.COM
if address :matches ["To", "Cc"] ["coyote@**.com",
        "wile@**.com"] {
    # ${0} is the matching address
    # ${1} is always the empty string
    # ${2} is part of the domain name ("ACME.Example")
    fileinto "INBOX.business.${2}"; stop;
} else {
    # Control wouldn't reach this block if any match was
    # successful, so no match variables are set at this
    # point.
}
if anyof (true, address :domain :matches "To" "*.com") {
    # The second test is never evaluated, so there are
    # still no match variables set.
    stop;
}
'''


@pytest.mark.parametrize(("headers", "expected"), [
    (("List-ID: Sieve list <sieve@ietf.org>",), [FileInto("INBOX.lists.sieve")]),
    (("Subject: [acme-users] [fwd] version 1.0 is out",), [FileInto("INBOX.lists.acme-users")]),
    (("To: coyote@ACME.Example.COM",), [FileInto("INBOX.business.ACME.Example")]),
    (("To: someone@else.org",), [Keep()]),
])
def test_rfc5229_match_variables(headers: tuple[str, ...], expected: list[object]) -> None:
    assert evaluate(RFC5229_EXAMPLE, ENV, msg(*headers)).actions == expected


@pytest.mark.parametrize(("modifiers", "value", "expected"), [
    # RFC 5229 section 4
    ("", "${a}", "juMBlEd lETteRS"),
    (":length", "${a}", "15"),
    (":lower", "${a}", "jumbled letters"),
    (":upperfirst", "${a}", "JuMBlEd lETteRS"),
    (":upperfirst :lower", "${a}", "Jumbled letters"),
    (":quotewildcard", "Rock*", "Rock\\\\*"),
])
def test_rfc5229_set_modifiers(modifiers: str, value: str, expected: str) -> None:
    script = f'''require ["variables", "fileinto"];
    set "a" "juMBlEd lETteRS";
    set {modifiers} "b" "{value}";
    if string :is :comparator "i;octet" "${{b}}" "{expected}" {{ fileinto "ok"; }}'''
    assert evaluate(script, ENV, msg("Subject: a")).actions == [FileInto("ok")]


def test_relational_count_and_value() -> None:
    script = '''require ["relational", "comparator-i;ascii-numeric", "fileinto"];
    if header :count "ge" :comparator "i;ascii-numeric" "Received" "3" { fileinto "hops"; }
    elsif header :value "gt" :comparator "i;ascii-numeric" "X-Priority" "3" { fileinto "low"; }
    elsif address :count "eq" :comparator "i;ascii-numeric" ["To", "Cc"] "2" { fileinto "two"; }'''
    many = msg("Received: a", "Received: b", "Received: c")
    assert evaluate(script, ENV, many).actions == [FileInto("hops")]
    assert evaluate(script, ENV, msg("X-Priority: 5 (lowest)")).actions == [FileInto("low")]
    assert evaluate(script, ENV, msg("X-Priority: 1")).actions == [Keep()]
    assert evaluate(script, ENV, msg("To: a@b.c, d@e.f")).actions == [FileInto("two")]


def test_body() -> None:
    script = '''require ["body", "fileinto"];
    if body :contains "viagra" { fileinto "spam"; }
    elsif body :content "text/html" :contains "<b>" { fileinto "html"; }
    elsif body :raw :contains "=C3=A9" { fileinto "raw"; }'''
    assert evaluate(script, ENV, msg("Subject: a", body="Buy VIAGRA now\r\n")).actions == [FileInto("spam")]
    multipart = msg("Content-Type: multipart/alternative; boundary=b",
                    body="--b\r\nContent-Type: text/plain\r\n\r\nplain\r\n--b\r\nContent-Type: text/html\r\n\r\n"
                         "<b>bold</b>\r\n--b--\r\n")
    assert evaluate(script, ENV, multipart).actions == [FileInto("html")]
    qp = msg("Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: quoted-printable",
             body="caf=C3=A9\r\n")
    assert evaluate(script, ENV, qp).actions == [FileInto("raw")]
    decoded = 'require ["body", "fileinto"]; if body :text :contains "café" { fileinto "decoded"; }'
    assert evaluate(decoded, ENV, qp).actions == [FileInto("decoded")]


def test_date_and_currentdate() -> None:
    script = '''require ["date", "relational", "fileinto"];
    if date :originalzone :is "date" "hour" "23" { fileinto "late-there"; }
    if date :zone "+0000" :is "date" "date" "2026-12-08" { fileinto "utc-next-day"; }
    if currentdate :zone "+0000" :value "ge" "date" "2026-12-01" { fileinto "december"; }
    if currentdate :zone "+0000" :is "weekday" "0" { fileinto "sunday"; }'''
    m = msg("Date: Mon, 7 Dec 2026 23:30:00 -0500")
    now = 1796601600.0  # 2026-12-07T00:00:00Z, a Monday
    assert evaluate(script, ENV, m, now=now).actions == [
        FileInto("late-there"), FileInto("utc-next-day"), FileInto("december")]
    assert evaluate(script, ENV, m, now=now - 24 * 3600).actions == [
        FileInto("late-there"), FileInto("utc-next-day"), FileInto("december"), FileInto("sunday")]
    assert evaluate(script, ENV, m, now=now - 7 * 24 * 3600).actions == [
        FileInto("late-there"), FileInto("utc-next-day")]


def test_duplicate_is_remembered_with_expiry(tmp_path: Path) -> None:
    state = SieveState(str(tmp_path))
    script = 'require ["duplicate", "fileinto"]; if duplicate { fileinto "dups"; }'
    m = msg("Message-ID: <abc@x>")
    first = evaluate(script, ENV, m, memory=state, now=1000.0)
    assert first.actions == [Keep()]
    state.record(first.memos, now=1000.0)
    assert evaluate(script, ENV, m, memory=state, now=2000.0).actions == [FileInto("dups")]
    assert evaluate(script, ENV, msg("Message-ID: <other@x>"), memory=state, now=2000.0).actions == [Keep()]
    # past the default 7 days it is new again
    assert evaluate(script, ENV, m, memory=state, now=1000.0 + 8 * 24 * 3600).actions == [Keep()]
    handle = 'require ["duplicate", "fileinto"]; if duplicate :uniqueid "k" :seconds 60 { discard; }'
    r = evaluate(handle, ENV, m, memory=state, now=5000.0)
    state.record(r.memos, now=5000.0)
    assert evaluate(handle, ENV, m, memory=state, now=5030.0).actions == [Discard()]
    assert evaluate(handle, ENV, m, memory=state, now=5090.0).actions == [Keep()]
    state.close()


def test_runtime_error_is_implicit_keep_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    script = "redirect \"a@b.c\"; redirect \"d@e.f\"; redirect \"g@h.i\";"
    with caplog.at_level(logging.ERROR, "imapd.sieve"):
        result = evaluate(script, ENV, msg("Subject: a"), limits=SieveLimits(max_redirects=2), user="alice",
                          script_name="main")
    assert result.actions == [Keep()]
    assert result.error and "redirects" in result.error
    assert "'main'" in caplog.text and "'alice'" in caplog.text
    many = 'require "fileinto";' + "".join(f'fileinto "f{i}";' for i in range(10))
    assert evaluate(many, ENV, msg("Subject: a"), limits=SieveLimits(max_actions=5)).actions == [Keep()]
    assert evaluate('require "reject"; keep; reject "no";', ENV, msg("Subject: a")).actions == [Keep()]


@pytest.mark.parametrize(("script", "message"), [
    ('require "nosuchext";', "not supported"),
    ('fileinto "x";', "extension 'fileinto' not loaded"),
    ('if header :is "a" { keep; }', "line 1"),
    ('keep; require "fileinto";', "require must come before"),
    ('if true { keep; ', "expected"),
])
def test_syntax_errors_say_why(script: str, message: str) -> None:
    with pytest.raises(SieveSyntaxError, match=message):
        parse_script(script)


# -- vacation (RFC 5230) -----------------------------------------------------------------------------------
ME = Envelope("coyote@desert.example.org", "roadrunner@acme.example.com")
TO_ME = ("From: coyote@desert.example.org", "To: roadrunner@acme.example.com", "Subject: Lunch?",
         "Message-ID: <m1@desert.example.org>")


def _replies(result: object) -> list[VacationReply]:
    return [a for a in result.actions if isinstance(a, VacationReply)]  # type: ignore[attr-defined]


def test_rfc5230_examples() -> None:
    script = '''require "vacation";
    if header :contains "subject" "cyrus" {
        vacation "I'm out -- send mail to cyrus-bugs";
    } else {
        vacation "I'm out -- call me at +1 304 555 0123";
    }'''
    result = evaluate(script, ME, msg(*TO_ME))
    (reply,) = _replies(result)
    assert reply.recipient == "coyote@desert.example.org"
    text = reply.message.decode()
    assert "call me at +1 304 555 0123" in text
    assert "Subject: Auto: Lunch?" in text and "Auto-Submitted: auto-replied" in text
    assert "In-Reply-To: <m1@desert.example.org>" in text and "To: coyote@desert.example.org" in text
    assert Keep() in result.actions and result.memos[0].kind == "vacation"

    with_vars = '''require ["vacation", "variables"];
    if header :matches "subject" "*" { vacation :subject "Automatic response to: ${1}" "I'm away"; }'''
    (reply,) = _replies(evaluate(with_vars, ME, msg(*TO_ME)))
    assert "Subject: Automatic response to: Lunch?" in reply.message.decode()

    addresses = '''require "vacation";
    vacation :days 23 :addresses ["tjs@example.edu", "ts4z@landru.example.edu"]
        "I'm away until October 19.  If it's an emergency, call 911, I guess." ;'''
    to_alias = ("From: coyote@desert.example.org", "To: ts4z@landru.example.edu", "Subject: hi")
    result = evaluate(addresses, ME, msg(*to_alias), now=0.0)
    assert len(_replies(result)) == 1 and result.memos[0].expires == 23 * 24 * 3600


def test_rfc5230_mime_and_from() -> None:
    script = '''require "vacation";
vacation :mime :from "rr@acme.example.com" text:
Content-Type: multipart/alternative; boundary=foo

--foo

I'm at the beach relaxing.  Mmmm, surf...

--foo
Content-Type: text/html; charset=us-ascii

<HTML><BODY><P>I'm at the <A HREF="beach.gif">beach</A> relaxing.
</BODY></HTML>

--foo--
.
;'''
    (reply,) = _replies(evaluate(script, ME, msg(*TO_ME)))
    text = reply.message.decode()
    assert "From: rr@acme.example.com" in text
    assert "Content-Type: multipart/alternative" in text and "boundary" in text
    assert "beach.gif" in text and "--foo--" in text


VACATION = 'require "vacation"; vacation :days 2 "away";'


@pytest.mark.parametrize(("envelope_from", "extra"), [
    ("", ()),
    ("MAILER-DAEMON@desert.example.org", ()),
    ("owner-list@desert.example.org", ()),
    ("roadrunner@acme.example.com", ()),
    ("coyote@desert.example.org", ("List-Id: <road.example.org>",)),
    ("coyote@desert.example.org", ("Precedence: bulk",)),
    ("coyote@desert.example.org", ("Precedence: junk",)),
    ("coyote@desert.example.org", ("Auto-Submitted: auto-replied",)),
])
def test_vacation_never_answers_lists_robots_or_self(envelope_from: str, extra: tuple[str, ...]) -> None:
    result = evaluate(VACATION, Envelope(envelope_from, ME.rcpt_to), msg(*TO_ME, *extra))
    assert _replies(result) == [] and result.actions == [Keep()] and result.memos == []


def test_vacation_answers_auto_submitted_no_but_not_when_not_addressed() -> None:
    assert len(_replies(evaluate(VACATION, ME, msg(*TO_ME, "Auto-Submitted: no")))) == 1
    bcc_list = ("From: coyote@desert.example.org", "To: everyone@desert.example.org", "Subject: x")
    assert _replies(evaluate(VACATION, ME, msg(*bcc_list))) == []


def test_vacation_once_per_sender_per_period(tmp_path: Path) -> None:
    state = SieveState(str(tmp_path))
    day = 24 * 3600.0

    def run(sender: str, now: float, script: str = VACATION) -> int:
        result = evaluate(script, Envelope(sender, ME.rcpt_to), msg(*TO_ME), memory=state, now=now)
        state.record(result.memos, now=now)
        return len(_replies(result))

    assert run("coyote@desert.example.org", 0.0) == 1
    assert run("coyote@desert.example.org", 100.0) == 0
    assert run("Coyote@Desert.Example.org", 200.0) == 0  # the same sender, however spelled
    assert run("wile@desert.example.org", 300.0) == 1
    assert run("coyote@desert.example.org", 2 * day + 1) == 1  # :days 2 are over
    # another reply text is another handle: answered again at once
    assert run("coyote@desert.example.org", 2 * day + 2, 'require "vacation"; vacation "back soon";') == 1
    state.close()


def test_redirect_loop_is_cut() -> None:
    looped = msg("X-Sieve-Redirected-To: x@y.org", "Subject: a")
    assert evaluate('redirect "x@y.org";', ENV, looped).actions == [Keep()]
    assert evaluate('redirect "other@y.org";', ENV, looped).actions == [Redirect("other@y.org")]


def test_vacation_knows_the_user_under_a_subaddress() -> None:
    to_plain = ("From: coyote@desert.example.org", "To: RoadRunner@acme.example.com", "Subject: x")
    env = Envelope("coyote@desert.example.org", "roadrunner+lists@acme.example.com")
    assert len(_replies(evaluate(VACATION, env, msg(*to_plain)))) == 1
    from_self = Envelope("roadrunner+out@acme.example.com", "roadrunner@acme.example.com")
    assert _replies(evaluate(VACATION, from_self, msg(*TO_ME))) == []

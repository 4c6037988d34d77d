"""Sample messages shared by the mime tests (built in code so every byte is visible)."""

from __future__ import annotations

import base64

CRLF = b"\r\n"


def lines(*parts: bytes | str) -> bytes:
    """Join lines with CRLF (each line gets one, including the last)."""
    return b"".join((p.encode() if isinstance(p, str) else p) + CRLF for p in parts)


RFC3501_HEADER = lines(
    "Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)",
    "From: Terry Gray <gray@cac.washington.edu>",
    "Subject: IMAP4rev1 WG mtg summary and minutes",
    "To: imap@cac.washington.edu",
    "cc: minutes@CNRI.Reston.VA.US,",
    " John Klensin <KLENSIN@MIT.EDU>",
    "Message-Id: <B27397-0100000@cac.washington.edu>",
    "MIME-Version: 1.0",
    "Content-Type: TEXT/PLAIN; CHARSET=US-ASCII",
    "",
)

INNER_MESSAGE = lines(
    "From: Inner Sender <inner@example.org>",
    "To: someone@example.com",
    "Subject: =?utf-8?q?caf=C3=A9?= inside",
    "Message-ID: <inner@example.org>",
    "Content-Type: multipart/alternative; boundary=inner",
    "",
    "--inner",
    "Content-Type: text/plain; charset=utf-8",
    "",
    "inner plain",
    "--inner",
    "Content-Type: text/html; charset=utf-8",
    "",
    "<p>inner html</p>",
    "--inner--",
)

ATTACHMENT = base64.encodebytes(bytes(range(256)) * 4).replace(b"\n", CRLF)

NESTED = lines(
    "From: \"Alice A.\" <alice@example.com>",
    "To: Bob <bob@example.net>, undisclosed: ;",
    "Subject: Re: nested",
    "Date: Mon, 1 Jan 2024 10:00:00 +0000",
    "Message-ID: <outer@example.com>",
    "In-Reply-To: <parent@example.com>",
    "References: <root@example.com>",
    "  <parent@example.com>",
    "MIME-Version: 1.0",
    "Content-Type: multipart/mixed; boundary=\"outer==\"",
    "",
    "This is the preamble.",
    "--outer==",
    "Content-Type: multipart/alternative; boundary=alt",
    "",
    "--alt",
    "Content-Type: text/plain; charset=iso-8859-1",
    "Content-Transfer-Encoding: quoted-printable",
    "",
    "Un caf=E9 s'il vous pla=EEt",
    "second line",
    "--alt",
    "Content-Type: text/html; charset=utf-8",
    "Content-Transfer-Encoding: base64",
    "",
    base64.b64encode("<p>Un café</p>".encode()).decode(),
    "--alt--",
    "",
    "--outer==",
    "Content-Type: message/rfc822",
    "Content-Disposition: inline",
    "",
) + INNER_MESSAGE + lines(
    "--outer==",
    "Content-Type: application/octet-stream; name=\"data.bin\"",
    "Content-Transfer-Encoding: base64",
    "Content-Disposition: attachment; filename=\"data.bin\"",
    "Content-ID: <att1@example.com>",
    "Content-Description: some bytes",
    "Content-Language: en, fr",
    "Content-Location: http://example.com/ data.bin",
    "",
) + ATTACHMENT + lines(
    "--outer==--",
    "epilogue",
)


def multipart_10k() -> bytes:
    """A typical ~10 KB webmail message: 20 header lines, text + html alternatives and an attachment."""
    header = lines(
        "Return-Path: <alice@example.com>",
        "Received: from mx.example.com (mx.example.com [192.0.2.1])",
        "\tby mail.example.net with ESMTPS id abc123",
        "\tfor <bob@example.net>; Mon, 1 Jan 2024 10:00:01 +0000",
        "Received: from client (unknown [198.51.100.7]) by mx.example.com",
        "\twith ESMTPSA id def456; Mon, 1 Jan 2024 10:00:00 +0000",
        "DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=sel; h=from:to:subject;",
        "\tbh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=dGhpcyBpcyBub3QgYSByZWFs",
        "From: \"Alice Example\" <alice@example.com>",
        "To: Bob Example <bob@example.net>, carol@example.org",
        "Cc: =?utf-8?q?Dani=C3=A8le?= <daniele@example.fr>",
        "Subject: Re: [team] Fwd: quarterly =?utf-8?q?r=C3=A9sum=C3=A9?=",
        "Date: Mon, 1 Jan 2024 10:00:00 +0000",
        "Message-ID: <msg-10k@example.com>",
        "In-Reply-To: <msg-9k@example.net>",
        "References: <root@example.com> <msg-9k@example.net>",
        "MIME-Version: 1.0",
        "Content-Type: multipart/mixed; boundary=\"b1_mixed\"",
        "",
    )
    text = lines(*["Some text of a typical mail body line, reasonably long. " * 1 for _ in range(40)])
    html = lines(*["<p>Some text of a typical mail body line, reasonably long.</p>" for _ in range(40)])
    attach = base64.encodebytes(bytes(range(256)) * 12).replace(b"\n", CRLF)
    body = (
        lines("--b1_mixed", "Content-Type: multipart/alternative; boundary=\"b2_alt\"", "", "--b2_alt",
              "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 7bit", "")
        + text
        + lines("--b2_alt", "Content-Type: text/html; charset=utf-8", "Content-Transfer-Encoding: 7bit", "")
        + html
        + lines("--b2_alt--", "", "--b1_mixed",
                "Content-Type: application/pdf; name=\"report.pdf\"",
                "Content-Disposition: attachment; filename=\"report.pdf\"",
                "Content-Transfer-Encoding: base64", "")
        + attach
        + lines("--b1_mixed--")
    )
    return header + body

"""What we advertise. Only what is implemented: a capability here is a promise to clients."""

from __future__ import annotations

__all__ = ["capabilities"]

# Advertised in every state.
_ALWAYS = (
    "IMAP4rev1",
    "IMAP4rev2",  # RFC 9051, per session after ENABLE IMAP4rev2 (session.Session.rev2)
    "LITERAL+",
    "SASL-IR",
    "ID",
    "ENABLE",
    "IDLE",
    "NAMESPACE",
    "UNSELECT",
    "UIDPLUS",
    "MULTIAPPEND", "CATENATE", "URL-PARTIAL", "REPLACE",  # the APPEND family: session/catenate.py, cmd_replace.py
    "MOVE",
    "CHILDREN",
    "SPECIAL-USE",
    "CREATE-SPECIAL-USE",
    "CONDSTORE",
    "QRESYNC",
    "ESEARCH",
    "SEARCHRES",
    "SORT",
    "SORT=DISPLAY",
    "ESORT",
    "CONTEXT=SEARCH",
    "CONTEXT=SORT",
    "PARTIAL",
    "THREAD=ORDEREDSUBJECT",
    "THREAD=REFERENCES",
    "THREAD=REFS",
    "LIST-EXTENDED",
    "LIST-STATUS",
    "STATUS=SIZE",
    "BINARY",
    "UTF8=ACCEPT",
    "COMPRESS=DEFLATE",
    "QUOTA",
    "QUOTA=RES-STORAGE",
    "QUOTA=RES-MESSAGE",
    "METADATA",
    "METADATA-SERVER",
    "PREVIEW",  # RFC 8970: imapd/mime/preview.py, cached in imapd/store/previews.py
    "UIDONLY",  # RFC 9586: imapd/session/uidonly.py
    "WITHIN",
    "OBJECTID",
    "SAVEDATE",
    "NOTIFY",
)


def capabilities(
    *,
    authenticated: bool,
    tls_active: bool,
    starttls_available: bool,
    plaintext_auth_allowed: bool,
    append_limit: int,
    xstate: bool = True,
) -> list[str]:
    caps = list(_ALWAYS)
    if xstate:
        caps.append("X-STATE")
    if authenticated:
        caps.append("UNAUTHENTICATE")  # RFC 8437: only valid once authenticated
    if not authenticated:
        if starttls_available and not tls_active:
            caps.append("STARTTLS")
        if plaintext_auth_allowed:
            caps.append("AUTH=PLAIN")
        else:
            caps.append("LOGINDISABLED")
    caps.append(f"APPENDLIMIT={append_limit}")
    return caps

"""What we advertise. Only what is implemented: a capability here is a promise to clients."""

from __future__ import annotations

__all__ = ["capabilities"]

# Advertised in every state.
_ALWAYS = (
    "IMAP4rev1",
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
    if not authenticated:
        if starttls_available and not tls_active:
            caps.append("STARTTLS")
        if plaintext_auth_allowed:
            caps.append("AUTH=PLAIN")
        else:
            caps.append("LOGINDISABLED")
    caps.append(f"APPENDLIMIT={append_limit}")
    return caps

"""RFC 5256 section 2.1: the base subject used by SORT SUBJECT and THREAD=ORDEREDSUBJECT/REFERENCES."""

from __future__ import annotations

import re

from imapd.mime.encoded_words import decode_words

_WSP_RUN = re.compile(r"\s+")
_BLOB = r"\[[^\[\]]*\][ \t]*"
# subj-leader: (*subj-blob subj-refwd) / WSP, with subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"
_LEADER = re.compile(rf"(?:{_BLOB})*(?:re|fwd?)[ \t]*(?:{_BLOB})?:|[ \t]+", re.I)
_LEADING_BLOB = re.compile(_BLOB)


MAX_SUBJECT = 2048  # longer subjects are cut before extraction: keeps hostile input linear


def base_subject(subject: str | None) -> tuple[str, bool]:
    """``(base subject, is_reply)`` of a raw Subject value.

    The base subject is case-folded so callers can compare it directly (i;unicode-casemap);
    ``is_reply`` is true when a ``Re:``/``Fwd:`` leader, a ``(fwd)`` trailer or a ``[fwd: ...]``
    wrapper was removed.
    """
    if not subject:
        return "", False
    # (1) decode encoded-words, turn tabs and folding into spaces, collapse runs of whitespace.
    text = _WSP_RUN.sub(" ", decode_words(subject[: MAX_SUBJECT * 4]))[:MAX_SUBJECT]
    is_reply = False
    while True:
        # (2) remove trailing "(fwd)" and whitespace, repeatedly.
        while True:
            text = text.rstrip(" ")
            if text[-5:].lower() != "(fwd)":
                break
            text = text[:-5]
            is_reply = True
        # (3)/(4) remove leaders and, when something stays, a leading blob; repeat until stable.
        pos = 0
        while True:
            m = _LEADER.match(text, pos)
            if m is not None:
                if m.group().strip():
                    is_reply = True
                pos = m.end()
                continue
            m = _LEADING_BLOB.match(text, pos)
            if m is not None and m.end() < len(text):
                pos = m.end()
                continue
            break
        text = text[pos:]
        # (5) "[fwd: ... ]" wrapper: unwrap and start again at (2).
        if len(text) >= 6 and text[:5].lower() == "[fwd:" and text.endswith("]"):
            text = text[5:-1]
            is_reply = True
            continue
        return text.casefold(), is_reply

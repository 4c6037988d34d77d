"""RFC 9586 UIDONLY: once a client enables it, message sequence numbers leave the conversation.

- A command that would use one (FETCH, STORE, SEARCH, SORT, THREAD, COPY, MOVE, REPLACE without UID, a
  sequence-set search key inside a UID command, QRESYNC's sequence match data on SELECT/EXAMINE) is
  answered ``BAD [UIDREQUIRED]`` before it runs (:func:`sequence_number_use`, checked in ``dispatch``).
- Every FETCH response the session sends, solicited or not, goes out as ``* uid UIDFETCH (...)``
  (:func:`as_uidfetch`, :func:`uidfetch_batch`, applied by ``Session.message_data``: in ``Session.send``,
  the one door of session output, and on the file path of whole messages), without the UID item, which
  would repeat the number in front of it (unless it is the only item: msg-att may not be empty).
- Expunges are reported as ``VANISHED`` (as under QRESYNC), whatever else is enabled; EXISTS stays (it is
  a count, not a sequence number).

The server still keeps the sequence map of the selected mailbox in memory (other sessions of the same
mailbox share its arrays anyway); what UIDONLY saves is on the wire and in X-STATE tokens, which carry no
known-UID map for such a session (``cmd_xstate``: RESTORE catches up from HIGHESTMODSEQ instead).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from imapd.protocol import commands as c
from imapd.protocol.responses import FetchFlagsBatch, FetchResponse, UidFetchResponse
from imapd.protocol.search_keys import SearchAnd, SearchKey, SearchNot, SearchOr, SearchSequence

if TYPE_CHECKING:
    from imapd.session.view import SelectedView

__all__ = ["UIDREQUIRED", "as_uidfetch", "sequence_number_use", "uidfetch_batch"]

UIDREQUIRED = "UIDREQUIRED"

_NUMBERED = (c.Fetch, c.Store, c.Copy, c.Move, c.Search, c.Sort, c.Thread, c.Replace)


def _has_sequence_key(key: SearchKey) -> bool:
    if isinstance(key, SearchSequence):
        return not key.uid and not key.sequence.saved
    if isinstance(key, SearchNot):
        return _has_sequence_key(key.key)
    if isinstance(key, SearchOr):
        return _has_sequence_key(key.left) or _has_sequence_key(key.right)
    if isinstance(key, SearchAnd):
        return any(_has_sequence_key(k) for k in key.keys)
    return False


def sequence_number_use(command: c.Command) -> str | None:
    """Why ``command`` uses message sequence numbers (the text of the BAD), or None if it does not."""
    name = type(command).__name__.upper()
    if isinstance(command, _NUMBERED) and not command.uid:
        return f"{name} with message numbers is not allowed once UIDONLY is enabled; use UID {name}"
    criteria = getattr(command, "criteria", None)
    if criteria is not None and _has_sequence_key(criteria):
        return "A message number set as a search key is not allowed once UIDONLY is enabled; use UID set"
    if isinstance(command, (c.Select, c.Examine)) and command.qresync is not None and command.qresync.seq_match:
        return "QRESYNC sequence match data uses message numbers, not allowed once UIDONLY is enabled"
    return None


def as_uidfetch(view: SelectedView | None, response: FetchResponse) -> UidFetchResponse:
    """The UIDFETCH form of a FETCH response of the selected mailbox (its UID item, or the view's map)."""
    uid = None
    items = []
    for key, value in response.items:
        if key == "UID" and isinstance(value, int):
            uid = value
        else:
            items.append((key, value))
    if uid is None:
        assert view is not None, "an untagged FETCH without a selected mailbox"
        uid = view.uid_of(response.seq)
    if not items:  # FETCH (UID) alone: msg-att may not be empty, so the UID stays
        items = [("UID", uid)]
    return UidFetchResponse(uid, items)


def uidfetch_batch(batch: FetchFlagsBatch) -> FetchFlagsBatch:
    """The UIDFETCH form of a batch of flag-only FETCH responses (same rules as :func:`as_uidfetch`)."""
    keys = tuple(k for k in batch.keys if k != "UID") or ("UID",)
    return msgspec.structs.replace(batch, keys=keys, uidfetch=True)

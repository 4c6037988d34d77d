"""Sample states shared by the signing and size tests."""

from __future__ import annotations

import random
from array import array

from statecodec import MailboxView, SessionState, compact_uids

USER = "alice.smith@example.o"[:20]
MAILBOX = "Archive/Projects/Q3x"  # 20 chars


def mailbox_session(messages: int, gaps: int = 5, *, seed: int = 1, bound_address: bytes = b"") -> SessionState:
    """A SELECTED session on a mailbox of ``messages`` messages with ``gaps`` single-UID holes."""
    rng = random.Random(seed)
    top = messages + gaps
    holes = set(rng.sample(range(2, top), gaps))
    uids = array("I", (u for u in range(1, top + 1) if u not in holes))
    uidnext = top + 1
    view = MailboxView(
        name=MAILBOX,
        mailbox_id=rng.randbytes(16),  # e.g. a UUID, incompressible
        uidvalidity=rng.randrange(1_600_000_000, 1_800_000_000),
        read_only=False,
        uidnext=uidnext,
        message_count=len(uids),
        highest_modseq=rng.randrange(10**9, 10**12),
        known_uids=compact_uids(uids, uidnext=uidnext),
    )
    return SessionState.create(USER, 12, enabled=["CONDSTORE", "QRESYNC", "UTF8=ACCEPT"], mailbox=view,
                               lineage=rng.randbytes(16), bound_address=bound_address)

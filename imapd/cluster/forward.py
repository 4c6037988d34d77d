"""A delivery for a user another cluster node serves goes to that node's LMTP listener, so that the user's
Sieve script runs where the user's index and Sieve state are written (the owner).

Why route rather than run the script here: Sieve reads and writes more than the message. ``fileinto``
resolves the mailbox (and ``:create`` makes one) in the user's index; ``vacation`` and ``duplicate``
remember what they did in the user's ``sieve/state.sqlite``. Both are SQLite files on the shared storage
that only the lease holder may write; a non-owner running the script would have to skip those (a vacation
reply sent twice, a ``:create`` lost) or write them beside the owner. Forwarding costs one LMTP hop on
the backends' network, only for the copies that arrive at the wrong node.

The owner's LMTP address is in its registry hash (``lmtp``). A forwarded transaction says so in its LHLO
name (``cluster-forward.<node id>``); a node never forwards such a copy again (ownership moving between
the hops would otherwise bounce it back and forth): it stores the file alone, as when the owner cannot be
reached (connection refused, time-out): the file in INBOX ``new/`` and a ``delivery`` notice, Sieve
skipped, logged as a warning.
"""

from __future__ import annotations

import smtplib

from imapd.delivery.agent import Envelope, Outcome
from imapd.store.names import INBOX

__all__ = ["FORWARD_HELO", "forward_copy", "forwarded"]

FORWARD_HELO = "cluster-forward."


def forwarded(envelope: Envelope) -> bool:
    """This copy came from another node's forward: do not forward it again."""
    return envelope.helo.startswith(FORWARD_HELO)


def forward_copy(address: str, node_id: str, envelope: Envelope, message: bytes, timeout: float) -> Outcome | None:
    """One recipient's copy over LMTP to ``address`` (HOST:PORT or a socket path); its outcome by the owner's
    reply, or None when the owner could not be reached or its reply did not come (the caller stores the
    file alone). Blocking: run it in a thread."""
    host, _, port = address.rpartition(":")
    try:
        client = smtplib.LMTP(address, timeout=timeout) if "/" in address else smtplib.LMTP(host, int(port),
                                                                                             timeout=timeout)
    except (OSError, ValueError, smtplib.SMTPException):
        return None
    try:
        code, _ = client.ehlo(FORWARD_HELO + node_id)  # LMTP sends it as LHLO
        if code != 250:
            return None
        code, text = client.mail(envelope.mail_from)
        if code == 250:
            code, text = client.rcpt(envelope.recipient.address)
        if code == 250:
            code, text = client.data(message)
    except (OSError, smtplib.SMTPException):
        return None
    finally:
        try:
            client.quit()
        except (OSError, smtplib.SMTPException):
            client.close()
    reason = text.decode(errors="replace")
    if 200 <= code < 300:
        return Outcome(kind="stored", stored=((INBOX, 0),), reason=reason)
    if 500 <= code < 600:
        return Outcome(kind="rejected", reason=reason)
    return Outcome(kind="failed", failure="tempfail", reason=reason)

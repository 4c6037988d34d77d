"""Local delivery: which user an address names, the trace headers, the user's filter, the store write.

Nothing here speaks SMTP or LMTP: ``imapd/server/lmtp.py`` turns the outcomes into replies, and
``imapd deliver`` into exit codes. Everything that touches the disk (the users file, the Maildir) is
called on a lane or a thread, never on a network event loop.
"""

from imapd.delivery.agent import Envelope, Outcome, deliver
from imapd.delivery.filters import Discard, FileInto, FilterAction, Reject, run_user_filter
from imapd.delivery.recipients import Recipient, RecipientResolver

__all__ = ["Discard", "Envelope", "FileInto", "FilterAction", "Outcome", "Recipient", "RecipientResolver",
           "Reject", "deliver", "run_user_filter"]

"""Pre-authentication in the proxy: the password is verified here, and the backend session is opened with a
token the proxy signs (the "verify" choice of docs/cluster.md).

The proxy reads the same passwd file and X-STATE keys as the backends (``server.data_dir`` on the shared
storage) and uses the server's own throttle and hash slots (:func:`imapd.session.auth.check_password`),
so bad logins and guessing storms end here and never reach a backend, and the backend pays no second
password hash: a fresh token (user, credential generation, a new lineage, nothing selected) is restored
on it in one round trip. A client's own ``X-STATE RESTORE`` token is verified here only to learn its
user (which backend); the backend checks it fully (revocation, binding) when it is forwarded.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, cast

from imapd.cache import CredentialCache
from imapd.config import Settings
from imapd.metrics import Metrics
from imapd.session.auth import AuthThrottle, HashSlots, check_password
from imapd.store.users import PasswdFile
from statecodec import KeyRing, SessionState, TokenError, TokenExpired, new_lineage
from statecodec import decode as decode_token
from statecodec import encode as encode_token

if TYPE_CHECKING:
    from imapd.cluster.node import ClusterNode
    from imapd.session.context import ServerContext

__all__ = ["ProxyCredentials", "TokenRefused"]


class TokenRefused(Exception):
    """A client's token the proxy cannot use; ``code`` is X-STATE-INVALID or X-STATE-EXPIRED."""

    def __init__(self, text: str, code: str) -> None:
        super().__init__(text)
        self.text = text
        self.code = code


class ProxyCredentials:
    """The parts of a server context :func:`check_password` needs, plus the signing keys."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        auth = settings.auth
        self.users = PasswdFile(os.path.join(settings.server.data_dir, "passwd"))
        self.throttle = AuthThrottle(failure_delay=auth.failure_delay, max_failures=auth.max_failures,
                                     penalty_delay=auth.penalty_delay, window=auth.failure_window,
                                     max_user_failures=auth.max_user_failures)
        self.hash_slots = HashSlots(auth.max_concurrent_hashes or (os.cpu_count() or 1), auth.max_queued_hashes)
        self.credentials = CredentialCache(ttl=settings.cache.ttl, metrics=Metrics())
        self.keys = KeyRing.load(settings.xstate_key_path)
        # check_password also consults the cluster-wide throttle of a backend's ClusterNode; the proxy owns
        # no users and runs no node, so its throttle is this process's (docs/cluster.md).
        self.cluster: ClusterNode | None = None

    def reload_keys(self) -> None:
        self.keys = KeyRing.load(self.settings.xstate_key_path)

    async def check_password(self, address: str, user: str, password: str) -> str:
        """The user's name, or :class:`imapd.session.auth.LoginRefused` / ``HashesBusy``."""
        return await check_password(cast("ServerContext", self), address, user, password)

    def mint(self, user: str) -> str:
        """A token that logs ``user`` in on any backend: current credential generation, fresh lineage."""
        record = self.users.get(user)
        if record is None:
            raise TokenRefused(f"user {user} no longer exists", "X-STATE-EXPIRED")
        state = SessionState.create(record.name, record.generation, lineage=new_lineage())
        return encode_token(state, self.keys)

    def token_user(self, token: str) -> str:
        """The user a client's token names, if this cluster signed it and it is current."""
        xs = self.settings.xstate
        try:
            state = decode_token(token, self.keys, max_age=xs.max_age, clock_skew=xs.clock_skew)
        except TokenExpired:
            raise TokenRefused("State token has expired; log in again", "X-STATE-EXPIRED") from None
        except TokenError:
            raise TokenRefused("Not a state token of this server", "X-STATE-INVALID") from None
        record = self.users.get(state.user)
        if record is None or record.generation != state.credential_generation:
            raise TokenRefused("State token was revoked (password changed or user removed)", "X-STATE-EXPIRED")
        return state.user

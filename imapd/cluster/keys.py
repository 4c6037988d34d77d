"""Every Redis key and channel of a cluster, and the change message: the contract between backends,
proxies and ``imapd kick``. All names start with ``cluster.key_prefix``.

- ``{prefix}node:{node_id}``: hash ``imap`` (HOST:PORT proxies connect to), ``started`` (Unix time),
  ``epoch`` (which process holds the name), ``pid``; a TTL of ``cluster.lease_ttl`` renewed by the node's
  heartbeat. Absent: the node is dead, and its users may be taken over. A ``draining`` field "1" (set by
  a drain, left alone by the heartbeat) makes the node take no new user and hand back its idle ones.
- ``{prefix}owner:{user}``: the node_id that may write the user's index; it counts only while that node's
  key exists.
- ``{prefix}changes:{user}``: a pub/sub channel of :class:`ChangeMessage` JSON.
- ``{prefix}revoked:{lineage hex}``: an X-STATE lineage revoked anywhere, until its tokens expired anyway.
- ``{prefix}authfail:addr:{address}``, ``...:user:{user}``, ``...:pair:{address}:{user}``: failed logins in
  the current ``auth.failure_window`` (INCR, then EXPIRE on the first).
- ``{prefix}throttle``: a pub/sub channel on which the failure script announces a counter that reached
  its limit (``{"kind": "address"|"user", "key", "ttl"}`` ms) or what a success left
  (``{"kind": "clear", "address", "user", "address_count", "user_count"}``).
- ``{prefix}since``: Redis's time (ms) when the first node met this Redis's keyspace; after a Redis
  restart it is new, and takeovers wait ``cluster.reassert_grace`` from it.
"""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = ["ChangeKind", "ChangeMessage", "ClusterKeys", "decode_change", "encode_change"]

ChangeKind = Literal["append", "expunge", "flags", "mailbox", "delivery", "kick"]


class ChangeMessage(msgspec.Struct, frozen=True, kw_only=True):
    """One committed change of a user's mail (or a kick), as published on ``{prefix}changes:{user}``."""

    node: str
    user: str
    mailbox: str = ""
    uidvalidity: int = 0
    modseq: int = 0
    kind: ChangeKind = "append"


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(ChangeMessage)


def encode_change(message: ChangeMessage) -> bytes:
    return _ENCODER.encode(message)


def decode_change(data: bytes | str) -> ChangeMessage:
    """Raises msgspec.DecodeError / ValidationError on anything else."""
    return _DECODER.decode(data)


class ClusterKeys:
    """Key and channel names under one prefix."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def node(self, node_id: str) -> str:
        return f"{self.prefix}node:{node_id}"

    def owner(self, user: str) -> str:
        return f"{self.prefix}owner:{user}"

    def changes(self, user: str) -> str:
        return f"{self.prefix}changes:{user}"

    @property
    def changes_pattern(self) -> str:
        return f"{self.prefix}changes:*"

    def revoked(self, lineage: bytes) -> str:
        return f"{self.prefix}revoked:{lineage.hex()}"

    def failures(self, address: str, user: str | None) -> tuple[str, str, str]:
        """The address's, the user's and the (address, user) pair's failure counters."""
        return (f"{self.prefix}authfail:addr:{address}", f"{self.prefix}authfail:user:{user or ''}",
                f"{self.prefix}authfail:pair:{address}:{user or ''}")

    @property
    def throttle(self) -> str:
        return f"{self.prefix}throttle"

    @property
    def since(self) -> str:
        return f"{self.prefix}since"

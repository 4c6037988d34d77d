"""Where a user's owner process is, for everything that needs to reach it.

A running server keeps ``<data_dir>/run/generation`` (which generation of workers serves, and how many)
and one UNIX ``SOCK_SEQPACKET`` socket per worker, ``run/g<generation>-w<slot>.sock`` (a single-process
server is generation 0, slot 0). The owner of a user is rendezvous hashing of the name over the slots.

Besides connection hand-offs (``imapd/server/handoff.py``), the sockets take a *change notice*: a packet
without a file descriptor naming a user whose mail another process just changed (``imapd deliver``, the
admin commands). The owner then re-reads that user's open mailboxes at once, so our own writes never
depend on inotify; the mail-root watcher stays for programs that are not ours. Workers of one generation
also tell each other of login outcomes (:class:`AuthEvent`), so the failure throttle of a client address
counts its attempts against every worker's users, not only one worker's.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
from pathlib import Path

import msgspec

log = logging.getLogger(__name__)

__all__ = ["AuthEvent", "ChangeNotice", "ConnectionCount", "Generation", "Notice", "notify_owner", "owner_slot", "read_generation", "run_dir",
           "socket_path", "write_generation"]


class Generation(msgspec.Struct, frozen=True):
    """``<run_dir>/generation``: the workers that serve now."""

    generation: int
    workers: int


class ChangeNotice(msgspec.Struct, frozen=True, tag="changed"):
    user: str


class AuthEvent(msgspec.Struct, frozen=True, tag="auth"):
    """A login outcome at a peer worker: ``failed`` counts one failure for ``address`` (and ``user`` when
    named); otherwise a success clears that user's failures from that address."""

    address: str
    user: str | None = None
    failed: bool = True


class ConnectionCount(msgspec.Struct, frozen=True, tag="conns"):
    """How many connections from ``address`` the worker in ``slot`` holds now (see ConnectionRegistry)."""

    address: str
    slot: int
    count: int


Notice = ChangeNotice | AuthEvent | ConnectionCount


def run_dir(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / "run"


def owner_slot(user: str, slots: int) -> int:
    """Rendezvous (highest random weight) hashing of ``user`` over ``range(slots)``: stable while the
    number of workers is, and moving only ``1/n`` of the users when it changes."""
    if slots <= 1:
        return 0
    key = user.encode("utf-8", "surrogatepass")
    best, best_slot = b"", 0
    for slot in range(slots):
        weight = hashlib.blake2b(key, digest_size=8, salt=slot.to_bytes(8, "little")).digest()
        if weight > best:
            best, best_slot = weight, slot
    return best_slot


def socket_path(directory: Path, generation: int, slot: int) -> Path:
    return directory / f"g{generation}-w{slot}.sock"


def write_generation(directory: Path, gen: Generation) -> None:
    tmp = directory / "generation.tmp"
    tmp.write_bytes(msgspec.json.encode(gen))
    os.replace(tmp, directory / "generation")


def read_generation(directory: Path) -> Generation | None:
    try:
        return msgspec.json.decode((directory / "generation").read_bytes(), type=Generation)
    except (OSError, msgspec.DecodeError):
        return None


def notify_owner(data_dir: str | os.PathLike[str], user: str) -> bool:
    """Tell the server process that owns ``user`` that its mail changed; False if none could be told
    (no server running: nothing to tell; the watcher and the next SELECT find the change anyway)."""
    directory = run_dir(data_dir)
    gen = read_generation(directory)
    if gen is None:
        return False
    path = socket_path(directory, gen.generation, owner_slot(user, gen.workers))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sock.settimeout(1.0)
    try:
        sock.connect(str(path))
        sock.send(msgspec.msgpack.encode(ChangeNotice(user)))
    except OSError as exc:
        log.debug("could not notify the owner of %s at %s: %s", user, path, exc)
        return False
    finally:
        sock.close()
    return True

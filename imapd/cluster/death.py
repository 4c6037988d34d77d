"""Proof that a cluster node is dead, for a peer on the same host: ends the wait for its lease early.

A killed node's users are free only once its liveness key expires (``cluster.lease_ttl`` after its last
renewal): a node that merely stopped answering may still be running (SIGSTOP, a VM pause, a starved loop)
and would write again when it resumes, so silence is never proof. What is proof: every process that
renewed the node's key is gone, seen by the kernel that ran them. Each renewing process records its pid
and the host's identity (:func:`host_identity`: the boot id, which changes at every boot, and the pid
namespace, so a container's pid 7 is not the host's pid 7) in the key. A peer with the same identity asks
the kernel about each pid (:func:`all_gone`); when none exists (or only as a zombie, which has closed its
files and runs no code), no write of that node can ever happen again, and the peer ends the key at once
(the FENCE script, which checks that no process registered meanwhile).

What is not proof, and is therefore not used: a connection refused on the node's port (the listener may be
closed while workers still finish writes, e.g. during a shutdown or a reload), a reset connection (a
network device can send one), a missing heartbeat. A pid that exists is taken as alive even when it may be
a reused pid of another program: the peer then simply waits for the TTL, as before. On different hosts the
identities differ and nothing changes: the TTL decides (docs/cluster.md, "A backend is killed").
"""

from __future__ import annotations

import functools
import os

__all__ = ["all_gone", "host_identity"]


@functools.cache
def host_identity() -> str:
    """``boot_id/pid-namespace inode``, or "" where /proc cannot tell (then no node is ever proven dead)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return ""
    return f"{boot}/{namespace}" if boot else ""


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # exists, another user's
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state == b"Z"  # a zombie: exited, not reaped yet


def all_gone(host: str, pids: str, mine: str) -> bool:
    """True only if ``host`` is this host (``mine``, from :func:`host_identity`) and every pid of ``pids``
    ("N,N,...") is gone here."""
    if not mine or host != mine or not pids:
        return False
    try:
        numbers = [int(p) for p in pids.split(",")]
    except ValueError:
        return False
    own = os.getpid()
    return all(p > 0 and p != own and _gone(p) for p in numbers)

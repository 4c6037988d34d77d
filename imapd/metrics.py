"""The server's metrics, kept by prometheus_client.

One process (``server.workers = 1``) serves its own registry on ``metrics.listen``. With workers, the
supervisor points ``PROMETHEUS_MULTIPROC_DIR`` at ``<data_dir>/run/metrics`` before it starts them, so each
worker's values live in memory-mapped files there, and the supervisor's endpoint sums them
(prometheus_client's multiprocess mode): counters and histograms over every worker that ever ran since
the server started, gauges over the live ones.

Callers name a metric by its exposition name; :data:`_KINDS` says what each is.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

__all__ = ["MULTIPROC_ENV", "Metrics", "prepare_multiprocess_dir", "render_multiprocess", "worker_exited"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# The *_created series say nothing an operator needs.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

# Latency buckets in seconds, for reconnect paths (LOGIN, SELECT, X-STATE RESTORE).
_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

_KINDS: dict[str, tuple[str, str]] = {
    "imapd_cache_hits_total": ("counter", "SELECT/RESTORE that found the mailbox warm in memory"),
    "imapd_cache_misses_total": ("counter", "SELECT/RESTORE that loaded the mailbox from the index"),
    "imapd_cache_evictions_total": ("counter", "warm mailboxes dropped by TTL or size"),
    "imapd_cache_bytes": ("gauge", "measured bytes of warm mailboxes"),
    "imapd_cache_mailboxes": ("gauge", "warm mailboxes"),
    "imapd_credential_cache_hits_total": ("counter", "logins that skipped the password hash"),
    "imapd_connections": ("gauge", "open client connections"),
    "imapd_inline_commands_total": ("counter", "commands of logged-in users answered from memory on the network "
                                    "loop, without the round trip to the user's lane"),
    "imapd_lane_jobs_total": ("counter", "commands and session events run on a user's lane (each a round trip "
                              "from the network loop to the lane's thread and back)"),
    "imapd_handoffs_total": ("counter", "connections this worker moved to the worker that owns their user"),
    "imapd_users": ("gauge", "users with a session or a warm mailbox in a worker"),
    "imapd_command_seconds": ("histogram", "time to execute reconnect-path commands, by command"),
    "imapd_loop_lag_seconds": ("histogram", "how late the network loop and the user lanes ran a due callback"),
    "imapd_cluster_redis_up": ("gauge", "1 while the cluster's Redis answers, 0 in outage mode"),
    "imapd_cluster_outages_total": ("counter", "times the cluster's Redis became unreachable"),
    "imapd_cluster_reconnects_total": ("counter", "times the cluster's Redis answered again after an outage"),
    "imapd_cluster_outage_writes_total": ("counter", "writes allowed in outage mode, their lease unconfirmed"),
    "imapd_cluster_claims_total": ("counter", "users this node started to serve (a lease taken)"),
    "imapd_cluster_claims_refused_total": ("counter", "logins refused: another live node serves the user"),
    "imapd_cluster_leases_lost_total": ("counter", "users this node found taken over (writes refused, BYE)"),
    "imapd_cluster_changes_published_total": ("counter", "change messages published to the cluster"),
    "imapd_cluster_changes_dropped_total": ("counter", "change messages dropped (queue full or Redis down)"),
    "imapd_cluster_throttles_total": ("counter", "login throttles the cluster announced (an address or user at its limit)"),
    "imapd_cluster_changes_received_total": ("counter", "change messages of other nodes for users served here"),
}


class Metrics:
    """One server's metrics. Thread-safe (prometheus_client locks each value): the network loop and every
    user lane record into one instance. Each instance has a registry of its own, so several servers in one
    test process do not collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._counters: dict[str, Counter] = {}
        self._gauges: dict[str, Gauge] = {}
        self._histograms: dict[str, Histogram] = {}

    def inc(self, name: str, amount: float = 1) -> None:
        counter = self._counters.get(name)
        if counter is None:
            counter = self._counters[name] = Counter(name, _help(name), registry=self.registry)
        counter.inc(amount)

    def set(self, name: str, value: float) -> None:
        gauge = self._gauges.get(name)
        if gauge is None:
            # livesum: the supervisor's total is over the workers running now, not the dead ones.
            gauge = self._gauges[name] = Gauge(name, _help(name), registry=self.registry,
                                               multiprocess_mode="livesum")
        gauge.set(value)

    def observe(self, name: str, label: str, seconds: float, *, label_name: str = "command") -> None:
        hist = self._histograms.get(name)
        if hist is None:
            hist = self._histograms[name] = Histogram(name, _help(name), (label_name,), registry=self.registry,
                                                      buckets=_BUCKETS)
        hist.labels(label).observe(seconds)

    def render(self) -> str:
        return generate_latest(self.registry).decode()


def _help(name: str) -> str:
    return _KINDS.get(name, ("untyped", name))[1]


def prepare_multiprocess_dir(run_dir: Path) -> Path:
    """An empty ``run/metrics`` for a server starting (prometheus_client wants it wiped at start)."""
    path = run_dir / "metrics"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def render_multiprocess(path: Path) -> str:
    """What the supervisor serves: every worker's values in ``path``, summed."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(path))  # type: ignore[no-untyped-call]
    return generate_latest(registry).decode()


def worker_exited(path: Path, pid: int) -> None:
    """Drop a dead worker's live gauges (its counters and histograms stay in the totals)."""
    multiprocess.mark_process_dead(pid, str(path))  # type: ignore[no-untyped-call]

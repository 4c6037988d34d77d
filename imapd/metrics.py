"""Process metrics in Prometheus' text format: counters, gauges and latency summaries.

Kept deliberately small (no client library): a dict of numbers and a renderer. The server exposes it
on ``metrics.listen`` (off by default) and ``imapd stats`` prints it.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator

__all__ = ["Metrics"]

# Latency buckets in seconds, for reconnect paths (LOGIN, SELECT, X-STATE RESTORE).
_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

_HELP = {
    "imapd_cache_hits_total": ("counter", "SELECT/RESTORE that found the mailbox warm in memory"),
    "imapd_cache_misses_total": ("counter", "SELECT/RESTORE that loaded the mailbox from the index"),
    "imapd_cache_evictions_total": ("counter", "warm mailboxes dropped by TTL or size"),
    "imapd_cache_bytes": ("gauge", "measured bytes of warm mailboxes"),
    "imapd_cache_mailboxes": ("gauge", "warm mailboxes"),
    "imapd_credential_cache_hits_total": ("counter", "logins that skipped the password hash"),
    "imapd_connections": ("gauge", "open client connections"),
    "imapd_command_seconds": ("histogram", "time to execute reconnect-path commands, by command"),
    "imapd_loop_lag_seconds": ("histogram", "how late the network loop and the user lanes ran a due callback"),
}


class Metrics:
    """Thread-safe: the network loop and every user lane record into one instance."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {}
        self._hist: dict[tuple[str, str], list[float]] = {}
        self._labels: dict[str, str] = {}
        self._lock = threading.Lock()

    def inc(self, name: str, amount: float = 1) -> None:
        with self._lock:
            self.values[name] = self.values.get(name, 0) + amount

    def set(self, name: str, value: float) -> None:
        self.values[name] = value

    def observe(self, name: str, label: str, seconds: float, *, label_name: str = "command") -> None:
        """Record one duration: bucket counts, then sum and count at the end of the list."""
        i = bisect.bisect_left(_BUCKETS, seconds)
        with self._lock:
            h = self._hist.get((name, label))
            if h is None:
                h = self._hist[(name, label)] = [0.0] * (len(_BUCKETS) + 3)
                self._labels[name] = label_name
            h[i] += 1
            h[-2] += seconds
            h[-1] += 1

    def render(self) -> str:
        with self._lock:
            return "".join(self._lines())

    def _lines(self) -> Iterator[str]:
        names = sorted(set(self.values) | {n for n, _ in self._hist})
        for name in names:
            kind, text = _HELP.get(name, ("untyped", name))
            yield f"# HELP {name} {text}\n# TYPE {name} {kind}\n"
            if name in self.values:
                yield f"{name} {_num(self.values[name])}\n"
            key = self._labels.get(name, "command")
            for (hname, label), h in sorted(self._hist.items()):
                if hname != name:
                    continue
                cumulative = 0.0
                for bound, count in zip((*_BUCKETS, float("inf")), h[: len(_BUCKETS) + 1], strict=True):
                    cumulative += count
                    le = "+Inf" if bound == float("inf") else _num(bound)
                    yield f'{name}_bucket{{{key}="{label}",le="{le}"}} {_num(cumulative)}\n'
                yield f'{name}_sum{{{key}="{label}"}} {h[-2]:.6f}\n'
                yield f'{name}_count{{{key}="{label}"}} {_num(h[-1])}\n'


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)

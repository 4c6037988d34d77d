"""A coarse guard on parse_message speed (target: well under 1 ms for a typical 10 KB message)."""

from __future__ import annotations

import time

from imapd.mime import parse_message
from tests.mime.messages import multipart_10k


def test_parse_10k_multipart_is_fast() -> None:
    raw = multipart_10k()
    parse_message(raw)
    runs = 200
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(runs):
            parse_message(raw)
        best = min(best, (time.perf_counter() - started) / runs)
    assert best < 0.003, f"{best * 1e6:.0f} us per parse"  # generous: shared CI machines are noisy

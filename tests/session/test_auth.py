"""The failed-login throttle: a sliding window per address."""

from __future__ import annotations

import pytest

from imapd.session import auth
from imapd.session.auth import AuthThrottle


def test_penalty_after_max_failures_in_a_sliding_window(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(auth.time, "monotonic", lambda: now[0])
    t = AuthThrottle(failure_delay=0.1, max_failures=3, penalty_delay=5.0, window=10.0)
    delays = []
    for _ in range(4):
        delays.append(t.record_failure("1.2.3.4"))
        now[0] += 3.0
    assert delays == [0.1, 0.1, 0.1, 5.0]  # 4 failures within 10 s
    now[0] += 1.0  # the first failure (t=1000) is now 13 s old, three remain in the window
    assert t.record_failure("1.2.3.4") == 5.0  # a fixed window would have reset here
    assert t.record_failure("5.6.7.8") == 0.1  # other addresses are not affected
    now[0] += 30.0
    assert t.failures("1.2.3.4") == 0 and t.record_failure("1.2.3.4") == 0.1
    t.record_success("1.2.3.4")
    assert t.failures("1.2.3.4") == 0

"""CPU a failed-login storm and a first-login storm cost the server (docs/reliability.md, "Throttling").

    python -m bench.auth_cpu failed     # 30 failed LOGINs from one address over 10 concurrent connections
    python -m bench.auth_cpu storm      # 100 users' first LOGIN at once (default argon2id parameters)

Starts a real ``imapd serve`` (the test harness's settings: failure_delay=0.05, penalty_delay=0.2, one worker
process, the rest default) and reads the server's utime+stime from /proc/PID/stat before and after.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from pathlib import Path

from tests.conftest import start_server, stop_server
from tests.rawimap import RawIMAP


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _run_threads(n: int, target: object) -> float:
    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]  # type: ignore[arg-type]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.monotonic() - start


def failed_storm(data: Path) -> tuple[float, float, list[str]]:
    """(server CPU seconds, wall seconds, tagged answers) for 30 failed LOGINs over 10 connections."""
    from imapd.store.users import PasswdFile

    PasswdFile(data / "passwd").add("victim", "right password")
    srv = start_server(data, "-o", "server.workers=1")
    answers: list[str] = []
    try:
        def one(i: int) -> None:
            c = RawIMAP(srv.host, srv.port, timeout=120)
            for _ in range(3):
                answers.append(c.command("LOGIN victim wrong")[1].decode())
            c.close()

        before = cpu_seconds(srv.proc.pid)
        wall = _run_threads(10, one)
        time.sleep(0.2)
        return cpu_seconds(srv.proc.pid) - before, wall, answers
    finally:
        stop_server(srv)


def login_storm(data: Path, users: int = 100) -> tuple[float, float, list[str]]:
    """(server CPU seconds, wall seconds, tagged answers) for ``users`` first LOGINs at once."""
    from imapd.store.store import Store
    from imapd.store.users import UserRecord, hash_password

    lines = [UserRecord(f"u{i}", hash_password(f"pw{i}")).to_line() for i in range(users)]
    (data / "passwd").write_text("\n".join(lines) + "\n")
    store = Store(data)
    for i in range(users):
        store.create_user(f"u{i}")
    store.close()
    srv = start_server(data, "-o", "server.workers=1", "-o", f"limits.max_connections_per_address={users + 10}")
    answers: list[str] = []
    try:
        conns = [RawIMAP(srv.host, srv.port, timeout=300) for _ in range(users)]
        barrier = threading.Barrier(users)

        def one(i: int) -> None:
            barrier.wait()
            answers.append(conns[i].command(f"LOGIN u{i} pw{i}")[1].decode())
            conns[i].close()

        before = cpu_seconds(srv.proc.pid)
        wall = _run_threads(users, one)
        return cpu_seconds(srv.proc.pid) - before, wall, answers
    finally:
        stop_server(srv)


def main() -> None:
    what = sys.argv[1] if len(sys.argv) > 1 else "failed"
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        cpu, wall, answers = failed_storm(data) if what == "failed" else login_storm(data)
    kinds: dict[str, int] = {}
    for a in answers:
        key = " ".join(a.split()[1:3])
        kinds[key] = kinds.get(key, 0) + 1
    print(f"{what}: server CPU {cpu:.2f} s, wall {wall:.2f} s, answers {kinds}")


if __name__ == "__main__":
    main()

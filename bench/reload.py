"""T7: `imapd reload` (or kill -9 of one worker) under load: sessions dropped, requests failed, mail pushed.

    reload.py --port 11148 --data-dir DIR --sessions 10000 --users 20 [--kill]

Opens ``--sessions`` IDLE sessions spread over users u0..u{n-1} (password = user name; create them with
``imapd user add``), runs ``bench/concurrency.py``'s webmail request in a loop on 32 connections of user
``bench`` meanwhile, then sends SIGUSR2 to the supervisor (``--kill``: SIGKILL to one worker). It reports
the IDLE sessions that saw BYE or EOF, the webmail requests that failed during the whole run, how long the
reload took (signal to the last old worker's exit), and, after one APPEND per user, how many IDLE sessions
were told ``* n EXISTS`` within 5 s. The server needs limits raised for many sessions from one address:
``-o limits.max_connections_per_address=30000 -o limits.max_connections_per_user=30000``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


class Idle:
    def __init__(self, user: str) -> None:
        self.user = user
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.dropped = False
        self.exists_at: float | None = None
        self.task: asyncio.Task[None] | None = None

    async def open(self, host: str, port: int) -> None:
        self.reader, self.writer = await asyncio.open_connection(host, port)
        await self.reader.readuntil(b"\r\n")
        self.writer.write(f"a LOGIN {self.user} {self.user}\r\nb SELECT INBOX\r\nc IDLE\r\n".encode())
        while True:
            line = await self.reader.readuntil(b"\r\n")
            if line.startswith(b"a NO") or line.startswith(b"b NO"):
                raise RuntimeError(f"{self.user}: {line!r}")
            if line.startswith(b"+ "):
                return

    async def listen(self, armed: asyncio.Event) -> None:
        assert self.reader is not None
        try:
            while True:
                line = await self.reader.readuntil(b"\r\n")
                if line.startswith(b"* BYE"):
                    self.dropped = True
                    return
                if line.endswith(b"EXISTS\r\n") and armed.is_set() and self.exists_at is None:
                    self.exists_at = time.monotonic()
        except (asyncio.IncompleteReadError, ConnectionError):
            self.dropped = True


async def webmail_load(host: str, port: int, stop: asyncio.Event, counts: dict[str, int]) -> None:
    from concurrency import _request

    script = [b"a LOGIN bench bench\r\n", b"b SELECT INBOX\r\n", b"c UID FETCH 1:50 (ENVELOPE FLAGS)\r\n",
              b"d LOGOUT\r\n"]

    async def one() -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(_request(host, port, script), 10)
                counts["ok"] += 1
            except (OSError, asyncio.IncompleteReadError, ConnectionError, TimeoutError):
                counts["failed"] += 1

    await asyncio.gather(*(one() for _ in range(32)))


async def main(args: argparse.Namespace) -> None:
    supervisor = int((Path(args.data_dir) / "run" / "imapd.pid").read_text())
    sessions = [Idle(f"u{i % args.users}") for i in range(args.sessions)]
    t = time.monotonic()
    for i in range(0, len(sessions), 200):
        await asyncio.gather(*(s.open(args.host, args.port) for s in sessions[i:i + 200]))
    print(f"{len(sessions)} IDLE sessions open in {time.monotonic() - t:.1f} s", file=sys.stderr)
    armed = asyncio.Event()
    for s in sessions:
        s.task = asyncio.create_task(s.listen(armed))
    stop = asyncio.Event()
    counts = {"ok": 0, "failed": 0}
    load = asyncio.create_task(webmail_load(args.host, args.port, stop, counts))
    await asyncio.sleep(2)
    from idle_sessions import _children

    old = _children(supervisor)
    t0 = time.monotonic()
    if args.kill:
        os.kill(old[0], signal.SIGKILL)
    else:
        os.kill(supervisor, signal.SIGUSR2)
    while any(os.path.exists(f"/proc/{p}") and "zombie" not in Path(f"/proc/{p}/status").read_text()
              for p in (old if not args.kill else old[:1])):
        if time.monotonic() - t0 > 120:
            break
        await asyncio.sleep(0.05)
    took = time.monotonic() - t0
    await asyncio.sleep(2)
    stop.set()
    await load
    armed.set()
    from imapclient import Client

    appended: dict[str, float] = {}

    def append_all() -> None:  # in a thread: the IDLE sessions must be read meanwhile, not after
        for i in range(args.users):
            c = Client(args.host, args.port)
            c.command(f"LOGIN u{i} u{i}")
            msg = "Subject: after the reload\r\n\r\nbody\r\n"
            appended[f"u{i}"] = time.monotonic()
            c.command(f"APPEND INBOX {{{len(msg)}+}}\r\n{msg}")
            c.command("LOGOUT")

    await asyncio.to_thread(append_all)
    await asyncio.sleep(5)
    live = [s for s in sessions if not s.dropped]
    told = [s for s in live if s.exists_at is not None]
    # from the APPEND of that session's user to its * n EXISTS
    late = max((s.exists_at - appended[s.user] for s in told if s.exists_at is not None), default=0.0)
    row = {"bench": "T7", "mode": "kill -9 one worker" if args.kill else "reload", "sessions": len(sessions),
           "dropped": len(sessions) - len(live), "told_of_new_mail": len(told), "worst_push_s": round(late, 2),
           "webmail_ok": counts["ok"], "webmail_failed": counts["failed"], "seconds": round(took, 2),
           "loadavg": os.getloadavg()[0]}
    print(json.dumps(row))
    for s in sessions:
        if s.writer is not None:
            s.writer.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--sessions", type=int, default=2000)
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--kill", action="store_true")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(main(ap.parse_args()))

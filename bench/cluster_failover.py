"""The cluster measurement of issue 21: kill -9 one backend under 2,000 IDLE clients and webmail load.

    bench/cluster_failover.py [--idle 2000] [--users 100] [--webmail 10] [--dir /tmp/imapd-failover]
                              [--base-port 12500] [--hibernate-after 5] [--kill backend-1]

The cluster is the deploy/ example on loopback, started by scripts/cluster_demo.py (Redis, 3 backends on one
shared mail root, 2 imapd proxies, HAProxy; it needs `imapd proxy` and the [cluster] settings, i.e. the proxy
and redis branches merged). Steps:

1. Seed ``--users`` users with 20 messages each straight into the shared mail root; start the cluster.
2. Record each user's UIDVALIDITY and UIDs (through HAProxy).
3. Open ``--idle`` IDLE sessions through HAProxy (LOGIN, SELECT INBOX, IDLE), spread over the users; wait
   ``--hibernate-after`` + 2 s so that the proxies hibernate them; start ``--webmail`` clients that loop over
   SELECT / UID FETCH (FLAGS ENVELOPE) / UID SEARCH UNSEEN (the webmail's request).
4. kill -9 ``--kill``; at once deliver one message to every user over LMTP to a surviving backend.
5. Wait until every IDLE session is told of its user's new message (``* N EXISTS``), or ``--timeout``.

``--no-kill`` is the control: the same delivery with every backend alive, i.e. what waking all the
hibernated sessions costs by itself. The phases (from the cluster's log lines) and a histogram of when the
clients were told say where the time went.

Figures (one JSON line, then a summary): IDLE sessions that saw a BYE (goal 0) or lost their connection;
seconds from the kill until every IDLE session was told (goal <= 2 s; also median and p99, and from the
delivery); messages lost (goal 0: every delivered message and every earlier UID found afterwards);
UIDVALIDITY changes and UIDs that changed (goal 0); webmail requests served and failed around the kill.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(HERE))

import cluster_demo  # noqa: E402
from seed import messages  # noqa: E402

PASSWORD = "failover-pw"


def seed_users(shared: Path, users: list[str], per_user: int) -> None:
    from imapd.store.mailbox import AppendItem
    from imapd.store.store import Store
    from imapd.store.users import PasswdFile

    shared.mkdir(parents=True, exist_ok=True)
    passwd = PasswdFile(str(shared / "passwd"))
    store = Store(str(shared), durability="normal")
    try:
        for n, user in enumerate(users):
            if passwd.get(user) is not None:
                continue
            passwd.add(user, PASSWORD)
            ustore = store.create_user(user)
            mailbox = ustore.open("INBOX")
            try:
                mailbox.append_many([AppendItem(raw, flags, ts) for raw, flags, ts in messages(per_user, n + 1, user)],
                                    fsync=False)
            finally:
                ustore.release(mailbox)
    finally:
        store.close()
    os.sync()


# -- a small IMAP client over asyncio streams -------------------------------------------------------------
class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.n = 0

    @classmethod
    async def open(cls, port: int, source: str | None = None) -> Conn:
        local = (source, 0) if source else None
        reader, writer = await asyncio.open_connection(cluster_demo.HOST, port, limit=1 << 20, local_addr=local)
        conn = cls(reader, writer)
        greeting = await conn.line()
        if not greeting.startswith(b"* OK"):
            raise ConnectionError(f"greeting {greeting!r}")
        return conn

    async def line(self) -> bytes:
        data = await self.reader.readline()
        if not data:
            raise ConnectionResetError("connection closed")
        if data.endswith(b"}\r\n"):  # a literal: take it and the rest of the line
            size = int(data[data.rindex(b"{") + 1:-3].rstrip(b"+"))
            data += await self.reader.readexactly(size) + await self.reader.readline()
        return data

    async def command(self, text: str) -> tuple[list[bytes], bytes]:
        self.n += 1
        tag = f"c{self.n}".encode()
        self.writer.write(tag + b" " + text.encode() + b"\r\n")
        untagged: list[bytes] = []
        while True:
            line = await self.line()
            if line.startswith(tag + b" "):
                return untagged, line
            if line.startswith(b"* BYE"):
                raise ConnectionResetError(line.decode(errors="replace").strip())
            untagged.append(line)

    async def ok(self, text: str) -> list[bytes]:
        untagged, tagged = await self.command(text)
        if b" OK" not in tagged[:16]:
            raise RuntimeError(f"{text.split()[0]}: {tagged!r}")
        return untagged

    def close(self) -> None:
        self.writer.close()


def _number(untagged: list[bytes], word: bytes) -> int:
    for line in untagged:
        parts = line.split()
        if len(parts) >= 3 and parts[2] == word:
            return int(parts[1])
    return 0


def _uidvalidity(untagged: list[bytes]) -> int:
    for line in untagged:
        if b"[UIDVALIDITY " in line:
            return int(line.split(b"[UIDVALIDITY ", 1)[1].split(b"]", 1)[0])
    return 0


# -- the state of each IDLE session ---------------------------------------------------------------------------
def client_address(n: int) -> str:
    """Client ``n``'s own source address: 127.1.x.y, 8 clients each, so that the cluster, which sees each client's
    address through the PROXY headers, does not count 2,000 clients as one (limits.max_connections_per_address)."""
    k = n // 8
    return f"127.1.{k // 250}.{k % 250 + 1}"


@dataclass
class IdleSession:
    user: str
    source: str
    exists: int = 0
    told_at: float | None = None  # first EXISTS above the baseline after the kill
    bye: bytes | None = None
    lost_at: float | None = None
    ready: bool = False


@dataclass
class Run:
    port: int
    kill_at: float | None = None
    delivered_at: float | None = None
    sessions: list[IdleSession] = field(default_factory=list)
    webmail_ok: list[float] = field(default_factory=list)
    webmail_failed: list[float] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)


async def idle_session(run: Run, s: IdleSession, sem: asyncio.Semaphore) -> None:
    try:
        async with sem:
            conn = await Conn.open(run.port, s.source)
            await conn.ok(f"LOGIN {s.user} {PASSWORD}")
            s.exists = _number(await conn.ok("SELECT INBOX"), b"EXISTS")
            conn.n += 1
            conn.writer.write(f"c{conn.n} IDLE\r\n".encode())
            if not (await conn.line()).startswith(b"+"):
                raise RuntimeError("IDLE refused")
        s.ready = True
        while not run.stop.is_set():
            line = await conn.line()
            if line.startswith(b"* BYE"):
                s.bye = line.strip()
                break
            parts = line.split()
            if len(parts) == 3 and parts[2] == b"EXISTS":
                count = int(parts[1])
                if run.kill_at is not None and count > s.exists and s.told_at is None:
                    s.told_at = time.monotonic()
                s.exists = max(s.exists, count)
        conn.close()
    except (ConnectionError, OSError, asyncio.IncompleteReadError, RuntimeError) as exc:
        if s.ready and not run.stop.is_set():
            s.lost_at = time.monotonic()
        elif not s.ready:
            s.bye = f"setup failed: {exc}".encode()


async def webmail_client(run: Run, user: str, source: str) -> None:
    """The webmail's request in a loop on one connection; reconnects after a failure (and counts it)."""
    conn: Conn | None = None
    while not run.stop.is_set():
        try:
            if conn is None:
                conn = await Conn.open(run.port, source)
                await conn.ok(f"LOGIN {user} {PASSWORD}")
            await conn.ok("SELECT INBOX")
            await conn.ok("UID FETCH 1:* (UID FLAGS ENVELOPE)")
            await conn.ok("UID SEARCH UNSEEN")
            run.webmail_ok.append(time.monotonic())
        except (ConnectionError, OSError, asyncio.IncompleteReadError, RuntimeError):
            run.webmail_failed.append(time.monotonic())
            if conn is not None:
                conn.close()
            conn = None
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.05)
    if conn is not None:
        conn.close()


async def mailbox_state(port: int, user: str) -> tuple[int, list[int], list[bytes]]:
    """(UIDVALIDITY, UIDs, Message-IDs) of the user's INBOX, through the cluster."""
    conn = await Conn.open(port)
    try:
        await conn.ok(f"LOGIN {user} {PASSWORD}")
        validity = _uidvalidity(await conn.ok("EXAMINE INBOX"))
        uids: list[int] = []
        for line in await conn.ok("UID SEARCH ALL"):
            if line.startswith(b"* SEARCH"):
                uids += [int(x) for x in line.split()[2:]]
        ids = [line for line in await conn.ok("UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
               if b"failover-" in line]
        conn.writer.write(b"z LOGOUT\r\n")
        return validity, sorted(uids), ids
    finally:
        conn.close()


def deliver(lmtp_port: int, users: list[str], stamp: str) -> list[bytes]:
    """One LMTP transaction with every user as a recipient (one reply each after the data); the replies."""
    body = (f"From: bench@remote.test\r\nTo: users@example.org\r\nSubject: after the kill\r\n"
            f"Message-ID: <failover-{stamp}@remote.test>\r\n\r\nDelivered after kill -9.\r\n").encode()
    with socket.create_connection((cluster_demo.HOST, lmtp_port), timeout=60) as sock:
        reader = sock.makefile("rb")

        def reply() -> bytes:
            while True:
                line = reader.readline()
                if not line or line[3:4] != b"-":
                    return line

        reply()  # 220
        sock.sendall(b"LHLO bench.example\r\n")
        reply()
        sock.sendall(b"MAIL FROM:<bench@remote.test>\r\n" + b"".join(f"RCPT TO:<{u}>\r\n".encode() for u in users))
        answers = [reply() for _ in range(1 + len(users))]
        accepted = sum(a.startswith(b"250") for a in answers[1:])
        sock.sendall(b"DATA\r\n")
        if not reply().startswith(b"354"):
            raise RuntimeError(f"LMTP DATA refused; RCPT replies {answers[:3]!r}")
        sock.sendall(body + b".\r\n")
        out = [reply() for _ in range(accepted)]
        sock.sendall(b"QUIT\r\n")
        return out


def _log_times(logs: Path, kill_wall: float) -> dict[str, object]:
    """The failover's phases from the cluster's own log lines, in seconds after the kill (log timestamps are
    local wall-clock time to the millisecond): the proxies see the victim down, a survivor proves it dead
    (imapd/cluster/death.py) and ends its lease, users taken over (first, last), and RESTOREs on the
    survivors (X-STATE logins after the kill: first, median, last, how many)."""
    from datetime import datetime

    def at(line: str) -> float | None:
        try:
            return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp() - kill_wall
        except ValueError:
            return None

    found: dict[str, list[float]] = {"proxy_saw_down": [], "lease_ended": [], "taken_over": [], "restores": []}
    for path in sorted(logs.glob("*.log")):
        for line in path.read_text(errors="replace").splitlines():
            kind = None
            if path.name.startswith("proxy") and "backend backend-" in line and "is down" in line:
                kind = "proxy_saw_down"
            elif "is dead (its process" in line:
                kind = "lease_ended"
            elif "taken over from dead node" in line:
                kind = "taken_over"
            elif path.name.startswith("backend") and "mechanism=X-STATE" in line and "imapd.audit: login" in line:
                kind = "restores"
            if kind is None:
                continue
            t = at(line)
            if t is not None and t >= -0.05:
                found[kind].append(t)
    out: dict[str, object] = {}
    for kind, times in found.items():
        times.sort()
        out[kind] = ({"n": len(times), "first": round(times[0], 3), "median": round(times[len(times) // 2], 3),
                      "last": round(times[-1], 3)} if times else None)
    return out


def _histogram(told: list[float], step: float = 0.25) -> dict[str, int]:
    """How many IDLE sessions were first told in each ``step`` seconds after the kill."""
    out: dict[str, int] = {}
    for t in told:
        key = f"{int(t / step) * step:.2f}"
        out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: float(kv[0])))


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 3)


async def measure(args: argparse.Namespace, cluster: cluster_demo.Cluster, users: list[str]) -> dict[str, object]:
    port = cluster.layout.imap_port
    before = {u: await mailbox_state(port, u) for u in users}
    run = Run(port)
    run.sessions = [IdleSession(users[i % len(users)], client_address(i)) for i in range(args.idle)]
    sem = asyncio.Semaphore(args.concurrency)
    started = time.monotonic()
    tasks = [asyncio.create_task(idle_session(run, s, sem)) for s in run.sessions]
    while sum(s.ready for s in run.sessions) + sum(s.bye is not None for s in run.sessions) < args.idle:
        if time.monotonic() - started > args.setup_timeout:
            break
        await asyncio.sleep(0.5)
    ready = sum(s.ready for s in run.sessions)
    setup_s = time.monotonic() - started
    print(f"{ready}/{args.idle} IDLE sessions up in {setup_s:.1f} s", file=sys.stderr, flush=True)
    await asyncio.sleep(args.hibernate_after + 2)
    web = [asyncio.create_task(webmail_client(run, users[i % len(users)], f"127.2.0.{i + 1}"))
           for i in range(args.webmail)]
    await asyncio.sleep(3)
    served_before = len(run.webmail_ok)
    victim = cluster.children[args.kill]
    survivor = next(n for n in (1, 2, 3) if f"backend-{n}" != args.kill)
    run.kill_at = time.monotonic()
    kill_wall = time.time()
    if not args.no_kill:
        victim.kill()
    stamp = f"{int(time.time())}"
    replies = await asyncio.to_thread(deliver, cluster.layout.lmtp(survivor), users, stamp)
    run.delivered_at = time.monotonic()
    refused = [r for r in replies if not r.startswith(b"250")]
    deadline = run.kill_at + args.timeout
    while time.monotonic() < deadline:
        waiting = [s for s in run.sessions if s.ready and s.told_at is None and s.bye is None and s.lost_at is None]
        if not waiting:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(1)
    run.stop.set()
    for task in web:
        await task
    kill_at = run.kill_at
    after = {u: await mailbox_state(port, u) for u in users}
    for task in tasks:
        task.cancel()
    told = [s.told_at - kill_at for s in run.sessions if s.told_at is not None]
    lost_messages = 0
    uid_changes = 0
    validity_changes = 0
    for u in users:
        v0, uids0, _ = before[u]
        v1, uids1, ids1 = after[u]
        validity_changes += v0 != v1
        uid_changes += len(set(uids0) - set(uids1))
        lost_messages += not any(stamp.encode() in line for line in ids1)
    ok_after = [t for t in run.webmail_ok if t >= kill_at]
    failed_after = [t for t in run.webmail_failed if t >= kill_at]
    return {
        "bench": "cluster_failover", "idle_sessions": args.idle, "idle_ready": ready, "users": len(users),
        "webmail_clients": args.webmail, "killed": args.kill, "setup_s": round(setup_s, 1),
        "saw_bye": sum(s.bye is not None and s.ready for s in run.sessions),
        "lost_connection": sum(s.lost_at is not None for s in run.sessions),
        "told": len(told), "not_told": ready - len(told),
        "told_all_s": round(max(told), 3) if len(told) == ready and told else None,
        "told_median_s": _pct(told, 0.5), "told_p99_s": _pct(told, 0.99),
        "delivery_s": round(run.delivered_at - kill_at, 3), "delivery_refused": len(refused),
        "messages_lost": lost_messages, "uidvalidity_changed": validity_changes, "uids_missing": uid_changes,
        "webmail_ok_before": served_before, "webmail_ok_after_kill": len(ok_after),
        "webmail_failed_after_kill": len(failed_after),
        "byes": sorted({s.bye.decode(errors="replace")[:80] for s in run.sessions if s.bye is not None})[:5],
        "load": os.getloadavg()[0],
        "phases": _log_times(cluster.directory / "logs", kill_wall),
        "told_histogram": _histogram(told),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle", type=int, default=2000)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--webmail", type=int, default=10)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/imapd-failover"))
    parser.add_argument("--base-port", type=int, default=12500, help="ports BASE..BASE+99 (cluster_demo.Layout)")
    parser.add_argument("--hibernate-after", type=float, default=5.0)
    parser.add_argument("--kill", default="backend-1", choices=["backend-1", "backend-2", "backend-3"])
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds after the kill to wait for IDLE")
    parser.add_argument("--setup-timeout", type=float, default=300.0)
    parser.add_argument("--concurrency", type=int, default=50, help="IDLE sessions being set up at once")
    parser.add_argument("--quick", action="store_true", help="200 IDLE sessions, 20 users, 4 webmail clients")
    parser.add_argument("--no-kill", action="store_true",
                        help="the control: the same delivery to every user without killing a backend (how long "
                             "waking every hibernated session takes by itself)")
    args = parser.parse_args()
    if args.quick:
        args.idle, args.users, args.webmail = 200, 20, 4
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.idle + 200 > hard:
        print(f"the file limit ({hard}) is too low for {args.idle} sessions", file=sys.stderr)
        return 1
    if not cluster_demo.has_command("proxy"):
        print("bench/cluster_failover.py needs `imapd proxy` (the proxy branch) and [cluster] (the redis branch)",
              file=sys.stderr)
        return int(cluster_demo.EX_MISSING)
    users = [f"fo{n:04d}" for n in range(args.users)]
    layout = cluster_demo.Layout(args.base_port + 43, args.base_port + 93, args.base_port)
    cluster = cluster_demo.Cluster(args.dir.resolve(), layout,
                                   proxy_changes={"proxy": {"hibernate_after": args.hibernate_after}})
    seed_users(cluster.shared, users, 20)
    try:
        cluster.start()
        for warning in cluster.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        result = asyncio.run(measure(args, cluster, users))
    except cluster_demo.DemoError as exc:
        print(f"cluster_failover: {exc}", file=sys.stderr)
        return 1
    finally:
        cluster.stop()
    print(json.dumps(result), flush=True)
    print(f"IDLE sessions {result['idle_ready']}: BYE {result['saw_bye']}, connection lost "
          f"{result['lost_connection']}; all told of the new message {result['told_all_s']} s after kill -9 "
          f"(median {result['told_median_s']} s, p99 {result['told_p99_s']} s; not told {result['not_told']}); "
          f"messages lost {result['messages_lost']}; UIDVALIDITY changed {result['uidvalidity_changed']}, "
          f"UIDs missing {result['uids_missing']}; webmail after the kill: {result['webmail_ok_after_kill']} ok, "
          f"{result['webmail_failed_after_kill']} failed")
    print(f"phases (s after the kill): {result['phases']}")
    print(f"told per 0.25 s: {result['told_histogram']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

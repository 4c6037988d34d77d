"""T6: fresh-connection webmail requests/s and latency at N concurrent clients, against any server.

    concurrency.py --port 1143 --label ours-w2 --clients 8 32 --seconds 10

Each client loops: connect, greeting, LOGIN, SELECT INBOX, UID FETCH <the mailbox's last 50> (ENVELOPE
FLAGS), LOGOUT, close; the same bytes to every server. With ``--users N`` (users USER0..USER(N-1), seeded
alike by ``seed.py --users N``) each request logs in as a user drawn at random, as on a webmail site where
many people's requests arrive at once; without it every request is the one ``--user`` (a single user's
sessions then nearly always find another of its commands in flight). Clients are asyncio coroutines spread over
``--procs`` client processes (default 2: one Python process cannot generate load for a multi-core
server), and read responses without parsing them (a tagged line ends a command) so the client costs as
little as possible. Prints one JSON line per client count (requests/s, p50/p99 latency, server CPU
seconds per request when ``--server-pid`` is given: utime+stime of it and its children from /proc) and a
table. The machine is shared by client and server: the load average is printed with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from imapclient import add_server_arguments


def _uid_set(args: argparse.Namespace, user: str) -> str:
    from imapclient import Client, quote

    c = Client(args.host, args.port)
    c.command(f"LOGIN {quote(user)} {quote(args.password)}")
    untagged, _ = c.command(f"SELECT {quote(args.mailbox)}")
    exists = next(int(p[1]) for p in (line.split() for line in untagged)
                  if len(p) >= 3 and p[2].upper() == b"EXISTS")
    lo = max(1, exists - 49)
    untagged, _ = c.command(f"FETCH {lo}:{exists} (UID)")
    uids = sorted(int(line.split(b"UID ")[1].split(b")")[0]) for line in untagged if b"UID " in line)
    c.command("LOGOUT")
    return f"{uids[0]}:{uids[-1]}"


async def _request(host: str, port: int, script: list[bytes]) -> float:
    start = time.perf_counter()
    reader, writer = await asyncio.open_connection(host, port)
    buf = await reader.readuntil(b"\r\n")
    for i, line in enumerate(script):
        writer.write(line)
        tag = b"\r\n" + line.split(b" ", 1)[0] + b" "
        buf = b"\r\n"
        while tag not in buf:
            chunk = await reader.read(65536)
            if not chunk:
                raise ConnectionError(f"closed during command {i}")
            buf = buf[-64:] + chunk
    writer.close()
    return time.perf_counter() - start


async def _client_proc(host: str, port: int, scripts: list[list[bytes]], clients: int, seconds: float,
                       out: multiprocessing.queues.Queue[tuple[list[float], int]]) -> None:
    import random

    rng = random.Random(os.getpid())
    latencies: list[float] = []
    errors = 0
    stop_at = time.monotonic() + seconds

    async def one() -> None:
        nonlocal errors
        while time.monotonic() < stop_at:
            try:
                latencies.append(await _request(host, port, rng.choice(scripts)))
            except (OSError, asyncio.IncompleteReadError, ConnectionError):
                errors += 1

    await asyncio.gather(*(one() for _ in range(clients)))
    out.put((latencies, errors))


def _proc_main(*a: object) -> None:
    try:
        import uvloop
        uvloop.run(_client_proc(*a))  # type: ignore[arg-type]
    except ImportError:
        asyncio.run(_client_proc(*a))  # type: ignore[arg-type]


def _cpu_seconds(pid: int) -> float:
    """utime+stime of ``pid`` and all its live descendants (workers), in seconds."""
    from idle_sessions import _children

    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [pid]
    while pids:
        p = pids.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15]) / tick
        pids.extend(_children(p))
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_server_arguments(ap)
    ap.add_argument("--users", type=int, default=0,
                    help="log in as a random one of USER0..USER(N-1) per request (0: always USER)")
    ap.add_argument("--mailbox", default="INBOX")
    ap.add_argument("--label", default="server")
    ap.add_argument("--clients", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--server-pid", type=int, default=0, help="for server CPU per request")
    args = ap.parse_args()
    users = [f"{args.user}{i}" for i in range(args.users)] if args.users else [args.user]
    scripts = [[f"a LOGIN {user} {args.password}\r\n".encode(), f"b SELECT {args.mailbox}\r\n".encode(),
                f"c UID FETCH {_uid_set(args, user)} (ENVELOPE FLAGS)\r\n".encode(), b"d LOGOUT\r\n"]
               for user in users]
    rows = []
    for clients in args.clients:
        queue: multiprocessing.Queue[tuple[list[float], int]] = multiprocessing.Queue()
        per = [clients // args.procs + (1 if i < clients % args.procs else 0) for i in range(args.procs)]
        procs = [multiprocessing.Process(target=_proc_main, args=(args.host, args.port, scripts, n,
                                                                  args.seconds, queue)) for n in per if n]
        cpu0 = _cpu_seconds(args.server_pid) if args.server_pid else 0.0
        t0 = time.monotonic()
        for p in procs:
            p.start()
        results = [queue.get() for _ in procs]
        for p in procs:
            p.join()
        wall = time.monotonic() - t0
        cpu = _cpu_seconds(args.server_pid) - cpu0 if args.server_pid else 0.0
        lat = sorted(x for r in results for x in r[0])
        errors = sum(r[1] for r in results)
        n = len(lat)
        row = {"bench": "T6", "label": args.label, "users": len(users), "clients": clients, "requests": n, "errors": errors,
               "req_per_s": round(n / args.seconds, 1), "p50_ms": round(statistics.median(lat) * 1000, 2),
               "p99_ms": round(lat[int(n * 0.99)] * 1000, 2),
               "server_cpu_ms_per_req": round(cpu / n * 1000, 3) if args.server_pid and n else None,
               "wall_s": round(wall, 1), "loadavg": os.getloadavg()[0]}
        print(json.dumps(row), flush=True)
        rows.append(row)
    print(f"\n{'label':16} {'clients':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'cpu ms/req':>10} {'err':>4}")
    for r in rows:
        print(f"{r['label']:16} {r['clients']:>7} {r['req_per_s']:>8} {r['p50_ms']:>8} {r['p99_ms']:>8} "
              f"{r['server_cpu_ms_per_req'] or '-':>10} {r['errors']:>4}")


if __name__ == "__main__":
    main()

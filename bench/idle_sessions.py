"""T2: server memory per idle session (LOGIN, SELECT INBOX, IDLE), from /proc.

    idle_sessions.py --ours [--sessions 10000]                   # starts our server on a temp data dir itself
    idle_sessions.py --port 11143 --pid PID --tree --label dovecot --sessions 1000
                                                                 # an existing server: PID and its descendants
    idle_sessions.py --port P --pgrep PATTERN ...                # or every process whose cmdline matches

Memory is read from /proc/PID/smaps_rollup (Rss, Pss), summed over the measured processes, once after one
warm session is idling (before) and once after N more sessions are idling (after). Per session:
(after - before) / N. For a forking server (Dovecot: one imap process per session) use --tree or --pgrep
and read PSS: summed RSS counts shared pages once per process. host_kb is the drop of MemAvailable, which
includes the client side's sockets too (and whatever else the machine does meanwhile): a rough figure.

The sessions are held by asyncio client processes on plain sockets (loop.sock_connect), at most
--per-proc sockets each (the file limit here is 20,000 per process), setting up --concurrency sessions at
a time. Everything is closed and stopped by the script. ``--quick``: 200 sessions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


# ---------------------------------------------------------------------------------------------- memory

def _rollup(pid: int) -> tuple[int, int]:
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return rss, pss


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
    except (FileNotFoundError, ProcessLookupError):
        pass
    return out


def processes(args: argparse.Namespace, pid: int | None) -> list[int]:
    if args.pgrep:
        me = {os.getpid(), os.getppid()}
        res = subprocess.run(["pgrep", "-f", args.pgrep], capture_output=True, text=True)
        return [int(p) for p in res.stdout.split() if int(p) not in me]
    assert pid is not None
    if not args.tree:
        return [pid]
    seen, todo = [], [pid]
    while todo:
        p = todo.pop()
        seen.append(p)
        todo += _children(p)
    return seen


def memory(args: argparse.Namespace, pid: int | None) -> dict[str, int]:
    procs = processes(args, pid)
    rss = pss = 0
    for p in procs:
        r, s = _rollup(p)
        rss += r
        pss += s
    return {"rss": rss, "pss": pss, "processes": len(procs), "host_available": _mem_available()}


def _mem_available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


# ---------------------------------------------------------------------------------------------- client

async def _read_until(loop: asyncio.AbstractEventLoop, sock: socket.socket, buf: bytearray, marker: bytes) -> None:
    while True:
        for line in bytes(buf).split(b"\r\n"):
            if line.startswith(marker):
                if marker != b"+" and b" OK" not in line[: len(marker) + 4]:
                    raise RuntimeError(f"server said {line!r}")
                buf.clear()
                return
        data = await loop.sock_recv(sock, 65536)
        if not data:
            raise RuntimeError("connection closed")
        buf += data


async def _session(loop: asyncio.AbstractEventLoop, host: str, port: int, login: bytes, sem: asyncio.Semaphore,
                   socks: list[socket.socket]) -> None:
    async with sem:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        await loop.sock_connect(sock, (host, port))
        buf = bytearray()
        await _read_until(loop, sock, buf, b"* OK")
        await loop.sock_sendall(sock, b"a1 LOGIN " + login + b"\r\n")
        await _read_until(loop, sock, buf, b"a1 ")
        await loop.sock_sendall(sock, b"a2 SELECT INBOX\r\n")
        await _read_until(loop, sock, buf, b"a2 ")
        await loop.sock_sendall(sock, b"a3 IDLE\r\n")
        await _read_until(loop, sock, buf, b"+")
        socks.append(sock)


async def _worker(host: str, port: int, n: int, login: bytes, concurrency: int) -> None:
    loop = asyncio.get_running_loop()
    sem = asyncio.Semaphore(concurrency)
    socks: list[socket.socket] = []
    results = await asyncio.gather(*(_session(loop, host, port, login, sem, socks) for _ in range(n)),
                                   return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    print(f"READY {len(socks)} {len(errors)} {errors[0]!r}" if errors else f"READY {len(socks)} 0",
          flush=True)
    # hold the sessions until told to stop (or the parent dies: stdin closes)
    await loop.run_in_executor(None, sys.stdin.readline)
    for s in socks:
        with contextlib.suppress(OSError):
            s.send(b"DONE\r\na4 LOGOUT\r\n")
    await asyncio.sleep(0.5)
    for s in socks:
        s.close()


def worker_main(args: argparse.Namespace) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    login = f'"{args.user}" "{args.password}"'.encode()
    asyncio.run(_worker(args.host, args.port, args.worker, login, args.concurrency))


# ---------------------------------------------------------------------------------------------- driver

def start_ours(args: argparse.Namespace) -> tuple[subprocess.Popen[bytes], str]:
    import ours
    import seed

    work = tempfile.mkdtemp(prefix="imapd-idle-")
    data = os.path.join(work, "data")
    seed.seed_store(data, args.user, args.password, "INBOX", args.inbox, 1, "plain")
    port = args.port or _free_port()
    args.port = port
    proc = ours.start(data, port, [
        f"limits.max_connections_per_user={args.sessions + 100}",
        f"limits.max_connections_per_address={args.sessions + 100}",
        *args.o,
    ])
    return proc, work


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ours", action="store_true", help="start our server on a temp data dir and measure it")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int)
    ap.add_argument("--pid", type=int, help="server process to measure (an existing server)")
    ap.add_argument("--tree", action="store_true", help="sum over --pid and all its descendants")
    ap.add_argument("--pgrep", help="sum over every process whose command line matches (pgrep -f)")
    ap.add_argument("--user", default="bench")
    ap.add_argument("--password", default="bench")
    ap.add_argument("--sessions", type=int, default=1000)
    ap.add_argument("--inbox", type=int, default=50, help="--ours: messages in the INBOX")
    ap.add_argument("--per-proc", type=int, default=8000, help="sessions per client process")
    ap.add_argument("--concurrency", type=int, default=64, help="sessions being set up at once per process")
    ap.add_argument("--settle", type=float, default=3.0, help="seconds to wait before each measurement")
    ap.add_argument("--label", default=None)
    ap.add_argument("--quick", action="store_true", help="200 sessions")
    ap.add_argument("-o", action="append", default=[], help="--ours: extra server setting KEY=VALUE")
    ap.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker is not None:
        worker_main(args)
        return
    if args.quick:
        args.sessions = 200
    if not args.ours and (not args.port or not (args.pid or args.pgrep)):
        ap.error("give --ours, or --port with --pid or --pgrep")
    label = args.label or ("ours" if args.ours else "server")

    server = work = None
    if args.ours:
        server, work = start_ours(args)
        args.pid = server.pid
    workers: list[subprocess.Popen[str]] = []
    try:
        from imapclient import Client, quote
        warm = Client(args.host, args.port)
        warm.command(f"LOGIN {quote(args.user)} {quote(args.password)}")
        warm.command("SELECT INBOX")
        warm.sock.sendall(b"w IDLE\r\n")
        warm.read_line()
        time.sleep(args.settle)
        before = memory(args, args.pid)
        t = time.perf_counter()
        nproc = math.ceil(args.sessions / args.per_proc)
        shares = [args.sessions // nproc + (1 if i < args.sessions % nproc else 0) for i in range(nproc)]
        for share in shares:
            workers.append(subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), "--worker", str(share), "--host", args.host,
                 "--port", str(args.port), "--user", args.user, "--password", args.password,
                 "--concurrency", str(args.concurrency)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        ready = failed = 0
        first_error = ""
        for w in workers:
            assert w.stdout is not None
            line = w.stdout.readline().split(maxsplit=3)
            if not line:
                raise SystemExit("a client process died")
            ready += int(line[1])
            failed += int(line[2])
            if len(line) > 3 and not first_error:
                first_error = line[3].strip()
        setup = time.perf_counter() - t
        time.sleep(args.settle)
        after = memory(args, args.pid)
        n = ready
        row = {
            "bench": "idle_sessions", "label": label, "sessions": n, "failed": failed,
            "setup_s": round(setup, 2),
            "rss_before": before["rss"], "rss_after": after["rss"],
            "pss_before": before["pss"], "pss_after": after["pss"],
            "processes_before": before["processes"], "processes_after": after["processes"],
            "rss_per_session_bytes": round((after["rss"] - before["rss"]) / max(n, 1)),
            "pss_per_session_bytes": round((after["pss"] - before["pss"]) / max(n, 1)),
            "host_per_session_bytes": round((before["host_available"] - after["host_available"]) / max(n, 1)),
        }
        if first_error:
            row["first_error"] = first_error
        print(json.dumps(row), flush=True)
        print(f"\n{label}: {n} idle sessions ({failed} failed), set up in {setup:.1f} s, "
              f"{before['processes']} -> {after['processes']} processes")
        print(f"{'':<6} {'before MiB':>11} {'after MiB':>10} {'per session':>12}")
        for k in ("rss", "pss"):
            per = (after[k] - before[k]) / max(n, 1)
            print(f"{k.upper():<6} {before[k] / 2**20:>11.1f} {after[k] / 2**20:>10.1f} "
                  f"{per / 1024:>9.2f} KiB")
        host = (before["host_available"] - after["host_available"]) / max(n, 1)
        print(f"{'host':<6} {'':>11} {'':>10} {host / 1024:>9.2f} KiB  (MemAvailable drop, client side included)")
    finally:
        for w in workers:
            try:
                assert w.stdin is not None
                w.stdin.write("stop\n")
                w.stdin.close()
            except (BrokenPipeError, OSError):
                pass
        for w in workers:
            try:
                w.wait(timeout=60)
            except subprocess.TimeoutExpired:
                w.kill()
        if server is not None and work is not None:
            import ours
            ours.stop(os.path.join(work, "data"))
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""`imapd proxy` figures: latency it adds to T1, memory per hibernated session, wake-up latency.

    proxy.py latency [--rounds 30 --runs 20]   # T1 (X-STATE RESTORE, UID FETCH 50 ENVELOPE FLAGS, LOGOUT) and
        [--modes proxy-protocol id id+pool]    # T1 LOGIN+SELECT, direct vs through the proxy, interleaved; one
                                               # backend+proxy per mode (PROXY v2 header / ID / ID + pool of 4)
    proxy.py memory --sessions 10000 15000     # RSS/PSS of one proxy process per hibernated IDLE session
    proxy.py wake [--runs 30]                  # a hibernated IDLE session: PUBLISH of a change -> `* n EXISTS`

Everything runs on loopback in a temp dir: one `imapd serve` backend (workers=1), one `imapd proxy`, and for
memory/wake a `redis-server`. The backend takes PROXY headers from 127.0.0.1 (the proxy); the direct
client connects from 127.0.0.2, so it needs none and both paths do the same IMAP. Latency is measured on
the client (perf_counter); the added latency is the median of the per-round differences of medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from imapclient import Client, quote  # noqa: E402  (bench/imapclient.py)

PY = sys.executable


def _cli(*args: str, stdin: str | None = None) -> None:
    subprocess.run([PY, "-m", "imapd", *args], input=stdin.encode() if stdin else None, check=True,
                   capture_output=True, cwd=ROOT)


def _wait_log(path: Path, pattern: str, proc: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        m = re.search(pattern, path.read_text(errors="replace"))
        if m:
            return int(m.group(1))
        if proc.poll() is not None:
            raise SystemExit(f"exited early:\n{path.read_text()}")
        time.sleep(0.05)
    raise SystemExit(f"not ready:\n{path.read_text()}")


class Stack:
    """A backend, a proxy and optionally Redis, in a temp dir; stopped by close()."""

    def __init__(self, *, redis: bool, hibernate_after: float = 0.0, messages: int = 200,
                 forward: str = "proxy-protocol", pool: int = 0, tree: Path = ROOT) -> None:
        """``tree``: the source tree whose ``imapd`` the backend and the proxy run (an A/B against a
        checkout of an older commit: ``latency --baseline DIR``)."""
        self.tree = tree
        self.tmp = Path(tempfile.mkdtemp(prefix="proxy-bench-"))
        self.procs: list[subprocess.Popen[bytes]] = []
        data = self.tmp / "data"
        _cli("user", "add", "alice", "--password-stdin", "--data-dir", str(data), stdin="secret1")
        extra: list[str] = []
        if redis:
            port = _free_port()
            self.redis_port = port
            self._spawn("redis", [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind",
                                  "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(self.tmp)])
            time.sleep(0.3)
            extra = ["-o", f'cluster.redis_url="redis://127.0.0.1:{port}/0"']
        trust = ('server.proxy_protocol_from=["127.0.0.1/32"]' if forward == "proxy-protocol"
                 else 'auth.trusted_networks=["127.0.0.1/32"]')
        log = self._spawn("backend", [PY, "-m", "imapd", "serve", "--data-dir", str(data), "--listen", "127.0.0.1:0",
                                      "-o", "server.workers=1", "-o", trust,
                                      "-o", "limits.max_connections_per_user=100000",
                                      "-o", "limits.max_connections_per_address=100000",
                                      "-o", "tls.allow_plaintext_auth=true"])
        self.backend_port = _wait_log(log, r"ready on 127\.0\.0\.1:(\d+)", self.procs[-1])
        self.backend_pid = self.procs[-1].pid
        log = self._spawn("proxy", [PY, "-m", "imapd", "proxy", "-o", f'server.data_dir="{data}"',
                                    "-o", 'proxy.listen=["127.0.0.1:0"]',
                                    "-o", f'proxy.backends=["b1=127.0.0.1:{self.backend_port}"]',
                                    "-o", f"proxy.hibernate_after={hibernate_after}",
                                    "-o", f'proxy.forward_address="{forward}"',
                                    *(["-o", f"proxy.pool_size={pool}"] if pool else []),
                                    "-o", f'proxy.control="{self.tmp}/proxy.sock"', *extra])
        self.proxy_port = _wait_log(log, r"ready on imap 127\.0\.0\.1:(\d+)", self.procs[-1])
        self.proxy_pid = self.procs[-1].pid
        c = self.direct()
        c.command("LOGIN alice secret1")
        body = "Subject: message {n}\r\nFrom: a@example.org\r\nTo: b@example.org\r\n\r\nhello\r\n"
        for n in range(messages):
            text = body.format(n=n)
            c.command(f"APPEND INBOX {{{len(text)}+}}\r\n{text}")
        c.command("SELECT INBOX")
        untagged, _ = c.command("X-STATE SAVE")
        self.token = next(line.split()[2].decode() for line in untagged if line.startswith(b"* X-STATE"))
        c.command("LOGOUT", check=False)

    def _spawn(self, name: str, argv: list[str]) -> Path:
        log = self.tmp / f"{name}.log"
        self.procs.append(subprocess.Popen(argv, stdout=open(log, "wb"), stderr=subprocess.STDOUT, cwd=self.tree,  # noqa: SIM115
                                           env={**os.environ, "PYTHONUNBUFFERED": "1"}))
        return log

    def direct(self) -> Client:
        real = socket.create_connection

        def from_other(address, timeout=None, source_address=None):  # type: ignore[no-untyped-def]
            return real(address, timeout, ("127.0.0.2", 0))

        socket.create_connection = from_other  # type: ignore[assignment]
        try:
            return Client("127.0.0.1", self.backend_port)
        finally:
            socket.create_connection = real  # type: ignore[assignment]

    def proxied(self) -> Client:
        return Client("127.0.0.1", self.proxy_port)

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------------------------------------ latency
def _t1(connect, token: str | None) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    c = connect()
    if token is None:
        c.command(f"LOGIN alice {quote('secret1')}")
        c.command("SELECT INBOX")
    else:
        c.command(f"X-STATE RESTORE {token}")
    untagged, _ = c.command("UID FETCH 151:200 (ENVELOPE FLAGS)")
    assert len(untagged) == 50, len(untagged)
    c.command("LOGOUT", check=False)
    t = time.perf_counter() - t0
    c.close()
    return t


MODES = {"proxy-protocol": ("proxy-protocol", 0), "id": ("id", 0), "id+pool": ("id", 4)}
"""How the proxy names the client to the backend, and its proxy.pool_size."""


def _loadavg() -> float:
    return round(os.getloadavg()[0], 2)


def latency(args: argparse.Namespace) -> None:
    """Each mode gets its own backend and proxy; every round measures every mode (direct, then proxied),
    so a change of machine load falls on all of them alike."""
    stacks = {}
    try:
        for mode in args.modes:
            forward, pool = MODES[mode]
            stacks[mode] = Stack(redis=False, forward=forward, pool=pool)
        for mode in args.baseline_modes if args.baseline else []:
            forward, pool = MODES[mode]
            stacks[f"{mode}@baseline"] = Stack(redis=False, forward=forward, pool=pool, tree=Path(args.baseline))
        for auth in ("xstate", "login"):
            _latency_rounds(args, stacks, auth)
        for mode, stack in stacks.items():
            _kept_connection(args, mode, stack)
    finally:
        for stack in stacks.values():
            stack.close()


def _latency_rounds(args: argparse.Namespace, stacks: dict[str, Stack], auth: str) -> None:
    load0 = _loadavg()
    diffs: dict[str, list[float]] = {m: [] for m in stacks}
    direct_all: dict[str, list[float]] = {m: [] for m in stacks}
    proxied_all: dict[str, list[float]] = {m: [] for m in stacks}
    cpu: dict[str, float] = dict.fromkeys(stacks, 0.0)
    round_medians: dict[str, list[float]] = {m: [] for m in stacks}
    for stack in stacks.values():
        token = stack.token if auth == "xstate" else None
        for _ in range(10):  # warm both paths (credential caches, warm mailbox)
            _t1(stack.direct, token)
            _t1(stack.proxied, token)
    for _ in range(args.rounds):
        for mode, stack in stacks.items():
            token = stack.token if auth == "xstate" else None
            d = [_t1(stack.direct, token) for _ in range(args.runs)]
            cpu0 = _cpu(stack.proxy_pid)
            p = [_t1(stack.proxied, token) for _ in range(args.runs)]
            cpu[mode] += _cpu(stack.proxy_pid) - cpu0
            direct_all[mode] += d
            proxied_all[mode] += p
            diffs[mode].append(statistics.median(p) - statistics.median(d))
            round_medians[mode].append(statistics.median(p))
    load1 = _loadavg()
    first = next(iter(stacks))
    for mode, stack in stacks.items():
        ds = sorted(diffs[mode])
        # Paired with the first mode, round by round: the proxied medians' difference (A/B of two proxies).
        vs = sorted(a - b for a, b in zip(round_medians[mode], round_medians[first], strict=True))
        pool = {k: v for k, v in _control(stack)["backends"][0].items() if k.startswith("pool")}
        print(json.dumps({"bench": "proxy_latency", "mode": f"T1 {auth}", "forward": mode, "rounds": args.rounds,
                          "runs": args.runs,
                          "direct_median_ms": round(statistics.median(direct_all[mode]) * 1e3, 3),
                          "proxied_median_ms": round(statistics.median(proxied_all[mode]) * 1e3, 3),
                          "added_median_ms": round(statistics.median(ds) * 1e3, 3),
                          "added_p25_p75_ms": [round(ds[len(ds) // 4] * 1e3, 3), round(ds[(3 * len(ds)) // 4] * 1e3, 3)],
                          "proxy_cpu_ms_per_request": round(cpu[mode] / (args.rounds * args.runs) * 1e3, 3),
                          f"proxied_vs_{first}_median_ms": round(statistics.median(vs) * 1e3, 3),
                          f"proxied_vs_{first}_p25_p75_ms": [round(vs[len(vs) // 4] * 1e3, 3),
                                                             round(vs[(3 * len(vs)) // 4] * 1e3, 3)],
                          **pool, "loadavg": [load0, load1]}), flush=True)


def _kept_connection(args: argparse.Namespace, mode: str, stack: Stack) -> None:
    """The relay alone: one kept connection each way, the request's FETCH repeated."""
    kept = {"direct": stack.direct(), "proxied": stack.proxied()}
    for c in kept.values():
        c.command(f"X-STATE RESTORE {stack.token}")
    diffs = []
    cpu = 0.0
    for _ in range(args.rounds):
        med = {}
        for name, c in kept.items():
            cpu0 = _cpu(stack.proxy_pid)
            xs = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                c.command("UID FETCH 151:200 (ENVELOPE FLAGS)")
                xs.append(time.perf_counter() - t0)
            if name == "proxied":
                cpu += _cpu(stack.proxy_pid) - cpu0
            med[name] = statistics.median(xs)
        diffs.append(med["proxied"] - med["direct"])
    print(json.dumps({"bench": "proxy_latency", "mode": "kept connection, UID FETCH 50 ENVELOPE FLAGS",
                      "forward": mode, "added_median_ms": round(statistics.median(diffs) * 1e3, 3),
                      "proxy_cpu_ms_per_command": round(cpu / (args.rounds * args.runs) * 1e3, 3),
                      "loadavg": _loadavg()}), flush=True)
    for c in kept.values():
        c.close()


def _cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------------------------------- memory
def _rollup(pid: int) -> tuple[int, int]:
    rss = pss = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Rss:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("Pss:"):
                pss = int(line.split()[1]) * 1024
    return rss, pss


def _control(stack: Stack) -> dict:  # type: ignore[type-arg]
    from imapd.proxy.control import request

    return request(stack.tmp / "proxy.sock", {"action": "list"})


async def _open_idle(port: int, token: str, n: int, socks: list[socket.socket], tag: int) -> None:
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    buf = b""
    while b"\r\n" not in buf:
        buf += await loop.sock_recv(sock, 4096)
    await loop.sock_sendall(sock, f"r X-STATE RESTORE {token}\r\ni{tag} IDLE\r\n".encode())
    buf = b""
    while b"+ idling" not in buf:
        chunk = await loop.sock_recv(sock, 65536)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    socks.append(sock)


async def _open_many(port: int, token: str, n: int, socks: list[socket.socket], concurrency: int = 50) -> None:
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            await _open_idle(port, token, n, socks, i)

    await asyncio.gather(*(one(i) for i in range(n)))


def memory(args: argparse.Namespace) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, resource.getrlimit(resource.RLIMIT_NOFILE))
    stack = Stack(redis=True, hibernate_after=1.0, messages=20)
    socks: list[socket.socket] = []
    try:
        asyncio.run(_open_many(stack.proxy_port, stack.token, 1, socks))
        _wait_hibernated(stack, 1)
        before = _rollup(stack.proxy_pid)
        have = 1
        for target in sorted(args.sessions):
            while have < target:  # batches, so the backend never holds more than a few hundred at once
                batch = min(500, target - have)
                asyncio.run(_open_many(stack.proxy_port, stack.token, batch, socks))
                have += batch
                _wait_hibernated(stack, have)
            time.sleep(1.0)
            after = _rollup(stack.proxy_pid)
            n = have - 1
            print(json.dumps({"bench": "proxy_hibernated_memory", "sessions": have, "hibernated": _control(stack)["hibernated"],
                              "rss_per_session_bytes": round((after[0] - before[0]) / n),
                              "pss_per_session_bytes": round((after[1] - before[1]) / n),
                              "proxy_rss_mb": round(after[0] / 2**20, 1)}))
    finally:
        for s in socks:
            s.close()
        stack.close()


def _wait_hibernated(stack: Stack, n: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while _control(stack)["hibernated"] < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {_control(stack)['hibernated']} of {n} sessions hibernated")
        time.sleep(0.2)


# --------------------------------------------------------------------------------------------------- wake
def wake(args: argparse.Namespace) -> None:
    import redis

    stack = Stack(redis=True, hibernate_after=0.3, messages=20)
    r = redis.Redis(port=stack.redis_port)
    socks: list[socket.socket] = []
    try:
        asyncio.run(_open_many(stack.proxy_port, stack.token, 1, socks))
        sock = socks[0]
        sock.setblocking(True)
        sock.settimeout(10)
        writer = stack.proxied()
        writer.command("LOGIN alice secret1")
        times = []
        for i in range(args.runs):
            _wait_hibernated(stack, 1)
            text = f"Subject: wake {i}\r\n\r\nx\r\n"
            writer.command(f"APPEND INBOX {{{len(text)}+}}\r\n{text}")
            t0 = time.perf_counter()
            r.publish("imapd:changes:alice", json.dumps({"node": "b1", "user": "alice", "mailbox": "INBOX",
                                                          "uidvalidity": 0, "modseq": 0, "kind": "new"}))
            buf = b""
            while b"EXISTS" not in buf:
                buf += sock.recv(65536)
            times.append(time.perf_counter() - t0)
            time.sleep(0.1)
        print(json.dumps({"bench": "proxy_wake", "runs": args.runs,
                          "median_ms": round(statistics.median(times) * 1e3, 2),
                          "p90_ms": round(sorted(times)[int(0.9 * (len(times) - 1))] * 1e3, 2)}))
    finally:
        for s in socks:
            s.close()
        stack.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    p = sub.add_parser("latency")
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    p.add_argument("--baseline", metavar="DIR", help="also measure a checkout of another commit (git archive | tar -x)")
    p.add_argument("--baseline-modes", nargs="+", choices=list(MODES), default=["proxy-protocol"])
    p.set_defaults(func=latency)
    p = sub.add_parser("memory")
    p.add_argument("--sessions", type=int, nargs="+", default=[10000, 15000])
    p.set_defaults(func=memory)
    p = sub.add_parser("wake")
    p.add_argument("--runs", type=int, default=30)
    p.set_defaults(func=wake)
    args = ap.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()

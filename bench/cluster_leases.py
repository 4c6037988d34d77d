"""Cluster coordination over Redis (issue 21 part 1): what the leases and the change channel cost and how
fast they act, on loopback with a private redis-server and real ``imapd serve`` nodes on one mail root.

    python bench/cluster_leases.py [--port-base 12310] [--rounds 3] [--requests 200] [--deliveries 50]

- notice: LMTP delivery on node B for a user owned by node A -> ``* 1 EXISTS`` at A's IDLE client
  (B stores the file in new/, publishes; A rescans new/), against LMTP on A itself; median and p95 ms.
- request: LOGIN, SELECT INBOX, LOGOUT on a fresh connection; client wall time and the node's CPU time
  per request (utime+stime from /proc), a cluster node against a plain one, interleaved rounds.
- failover: kill -9 of the owner -> first successful LOGIN of its user on the other node, seconds.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import smtplib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.rawimap import RawIMAP  # noqa: E402

MESSAGE = b"From: s@example.org\r\nSubject: bench\r\n\r\nhello\r\n"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Node:
    def __init__(self, root: Path, name: str, port: int, lmtp: int, redis_url: str | None,
                 extra: tuple[str, ...] = ()) -> None:
        self.port, self.lmtp, self.name = port, lmtp, name
        self.data = root / f"node-{name}"
        self.data.mkdir(exist_ok=True)
        for entry in ("mail", "passwd"):
            if not (self.data / entry).exists():
                (self.data / entry).symlink_to(root / "shared" / entry)
        args = [sys.executable, "-m", "imapd", "serve", "--data-dir", str(self.data), "--listen",
                f"127.0.0.1:{port}", "--workers", "1", "-o", f"lmtp.listen=\"127.0.0.1:{lmtp}\"",
                "-o", "store.watch=false", "-o", f"xstate.key_file={root / 'shared' / 'xstate.keys'}"]
        if redis_url:
            args += ["-o", f"cluster.redis_url={redis_url}", "-o", f"cluster.node_id={name}",
                     "-o", "cluster.reassert_grace=0.2", "-o", "cluster.login_wait=5"]
        args += extra
        self.log = open(root / f"{name}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + 30
        while not re.search(rb"ready on", (root / f"{name}.log").read_bytes()):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit(f"node {name} did not start: {(root / f'{name}.log').read_text()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=15)


def login(node: Node, user: str = "alice") -> RawIMAP:
    c = RawIMAP("127.0.0.1", node.port)
    c.ok(f"LOGIN {user} secret")
    return c


def deliver(node: Node, user: str) -> None:
    with smtplib.LMTP("127.0.0.1", node.lmtp) as lmtp:
        lmtp.sendmail("s@example.org", [user], MESSAGE)


def notice_latency(owner: Node, via: Node, n: int) -> list[float]:
    """ms from the end of the LMTP transaction to the IDLE client's EXISTS."""
    client = login(owner)
    client.ok("SELECT INBOX")
    out = []
    for _ in range(n):
        client.sock.sendall(b"i IDLE\r\n")
        client.readline()
        deliver(via, "alice")
        done = time.perf_counter()
        line = client.readline()
        out.append((time.perf_counter() - done) * 1000)
        assert line.endswith(b"EXISTS\r\n"), line
        client.sock.sendall(b"DONE\r\n")
        while not client.readline().startswith(b"i "):
            pass
    client.ok("LOGOUT")
    return out


def requests(node: Node, n: int, user: str) -> tuple[float, float]:
    """(median wall ms, node CPU ms per request)."""
    walls = []
    cpu0 = cpu_seconds(node.proc.pid)
    for _ in range(n):
        t = time.perf_counter()
        c = login(node, user)
        c.ok("SELECT INBOX")
        c.ok("LOGOUT")
        c.sock.close()
        walls.append((time.perf_counter() - t) * 1000)
    return statistics.median(walls), (cpu_seconds(node.proc.pid) - cpu0) * 1000 / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-base", type=int, default=12310)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--deliveries", type=int, default=50)
    ap.add_argument("--failovers", type=int, default=5)
    args = ap.parse_args()
    base = args.port_base
    root = Path(tempfile.mkdtemp(prefix="redis-bench-"))
    (root / "shared").mkdir()
    for user in ("alice", "bob", "carol", *(f"f{i}" for i in range(args.failovers))):
        subprocess.run([sys.executable, "-m", "imapd", "user", "add", user, "--password-stdin", "--data-dir",
                        str(root / "shared")], input=b"secret", check=True, cwd=ROOT, capture_output=True)
    redis = subprocess.Popen(["redis-server", "--port", str(base), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--dir", str(root)], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{base}/0"
    time.sleep(0.3)
    nodes: list[Node] = []
    try:
        a = Node(root, "a", base + 1, base + 2, url)
        b = Node(root, "b", base + 3, base + 4, url)
        plain = Node(root, "plain", base + 5, base + 6, None)
        nodes += [a, b, plain]
        with open("/proc/loadavg") as f:
            print("load:", f.read().strip())
        cross = notice_latency(a, b, args.deliveries)
        same = notice_latency(a, a, args.deliveries)
        for label, xs in (("other node (B -> Redis -> A)", cross), ("same node", same)):
            xs.sort()
            print(f"notice, delivery on {label}: median {statistics.median(xs):.2f} ms, "
                  f"p95 {xs[int(len(xs) * 0.95) - 1]:.2f} ms")
        for r in range(args.rounds):
            for node, user in ((a, "bob"), (plain, "carol")):
                wall, cpu = requests(node, args.requests, user)
                kind = "cluster" if node is a else "plain"
                print(f"round {r}: {kind:7} LOGIN+SELECT+LOGOUT median {wall:.2f} ms, node CPU {cpu:.2f} ms/request")
        times = []
        for i in range(args.failovers):
            owner = Node(root, f"k{i}", base + 20 + 2 * i, base + 21 + 2 * i, url)
            nodes.append(owner)
            login(owner, f"f{i}").ok("LOGOUT")  # k{i} now owns f{i}
            owner.proc.kill()
            owner.proc.wait()
            killed = time.perf_counter()
            login(b, f"f{i}").ok("LOGOUT")
            times.append(time.perf_counter() - killed)
        print("failover, kill -9 of the owner -> LOGIN on the other node: "
              + ", ".join(f"{t:.2f}" for t in times) + " s")
    finally:
        for node in nodes:
            try:
                node.stop()
            except Exception:
                node.proc.kill()
        redis.kill()
        redis.wait()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

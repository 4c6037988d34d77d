"""SORT, THREAD, FETCH ENVELOPE, SELECT and QRESYNC on big mailboxes (1k, 10k, 100k; ``--quick``: 1k, 10k).

For each size a data dir is built through the store API (synthetic but valid messages: varied Date, From,
To, Subject, threads through Message-ID/In-Reply-To/References; ``append_many`` in batches of 2,000 with
``durability="normal"`` and ``fsync=False``, the store's bulk-import path: 100k in about 25 s), then a
real server (``python -m imapd serve``) is started on it and a raw-socket client measures:

- ``select_cold_ms`` (first SELECT in a fresh server process), ``select_warm_ms``;
- ``sort_first_ms`` (builds the mailbox's sort keys), ``sort_ms``: ``UID SORT (REVERSE DATE) UTF-8 ALL``;
- ``thread_first_ms``, ``thread_ms``: ``UID THREAD REFS UTF-8 ALL``;
- ``fetch50_first_ms``, ``fetch50_ms``: ``UID FETCH <last 50> (ENVELOPE FLAGS)``;
- ``qresync_select_ms``: ``SELECT INBOX (QRESYNC (uidvalidity modseq))`` after another connection made 5
  flag changes and 5 expunges since that MODSEQ.

Warm figures are medians of --runs runs, with their spread (min, max) and the run count in the JSON line.
One JSON line per measurement, then a table (load average before and after). Built data dirs are kept under
``--workdir`` (default ``/tmp/imapd-bench-ext``) and reused; ``--server-root`` runs the server from another
checkout (before/after comparisons).

Any server: ``--port`` (and ``--host``, ``--user``, ``--password``) measures a running server instead of
building and starting ours, on the mailbox ``--mailbox`` (seed the same messages into every server first,
e.g. bench/seed.py --mailbox n100000 --count 100000); the command sequence is the same. The QRESYNC step
expunges 5 messages of that mailbox each run. A command the server refuses is reported as unavailable.

    extensions.py --sizes 100000 --port 11143 --user bench --password bench --mailbox n100000   # Dovecot
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from imapclient import Client, IMAPError  # noqa: E402

from imapd.store import Store  # noqa: E402
from imapd.store.mailbox import AppendItem  # noqa: E402

USER, PASSWORD = "bench", "bench-password"
NAMES = ["alice", "bob", "carol", "dave", "eve", "frank", "grace", "heidi", "ivan", "judy", "mallory", "niaj",
         "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "zoe"]
WORDS = ["meeting", "report", "budget", "lunch", "release", "plan", "review", "invoice", "draft", "travel", "update", "question", "server", "patch", "party", "offsite", "hiring", "roadmap", "incident", "backup"]


def messages(n: int, seed: int = 1) -> Iterator[AppendItem]:
    """Threads of up to 5 messages (70 %), the rest standalone; dates spread over ~n*10 minutes."""
    rng = random.Random(seed)
    base = 1_600_000_000
    for i in range(n):
        t = base + i * 600 + rng.randrange(-3000, 3000)
        frm, to = rng.choice(NAMES), rng.choice(NAMES)
        root = i - i % 5
        reply = i % 5 != 0 and rng.random() < 0.7
        subject = ("Re: " if reply else "") + f"{rng.choice(WORDS) if not reply else WORDS[root % len(WORDS)]} {root}"
        refs = ""
        if reply:
            refs = ("References: " + " ".join(f"<m{j}@bench.example>" for j in range(root, i))
                    + f"\r\nIn-Reply-To: <m{i - 1}@bench.example>\r\n")
        date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(t))
        raw = (f"From: {frm.title()} <{frm}@bench.example>\r\nTo: {to}@bench.example\r\nSubject: {subject}\r\n"
               f"Date: {date}\r\nMessage-ID: <m{i}@bench.example>\r\n{refs}MIME-Version: 1.0\r\n"
               f"Content-Type: text/plain; charset=utf-8\r\n\r\nMessage {i} of the benchmark.\r\n").encode()
        yield AppendItem(raw, ("\\Seen",) if i % 3 else (), float(t))


def build(data: str, n: int) -> float:
    """Create the data dir with ``n`` messages in INBOX (reused when complete); seconds spent."""
    marker = os.path.join(data, "bench-complete")
    if os.path.exists(marker):
        return 0.0
    from imapd.store.users import PasswdFile

    t = time.perf_counter()
    os.makedirs(data, exist_ok=True)
    passwd = PasswdFile(os.path.join(data, "passwd"))
    if passwd.get(USER) is None:
        passwd.add(USER, PASSWORD)
    store = Store(data, durability="normal")
    try:
        mb = store.create_user(USER).open("INBOX")
        batch: list[AppendItem] = []
        for item in messages(n):
            batch.append(item)
            if len(batch) == 2000:
                mb.append_many(batch, fsync=False)
                batch = []
        if batch:
            mb.append_many(batch, fsync=False)
        mb.release()
    finally:
        store.close()
    os.sync()
    open(marker, "w").close()
    return time.perf_counter() - t


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_server(data: str, root: str) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    log = open(data.rstrip("/") + "-server.log", "ab")  # noqa: SIM115 (kept open for the child)
    proc = subprocess.Popen([sys.executable, "-m", "imapd", "serve", "--data-dir", data, "--listen",
                             f"127.0.0.1:{port}"], cwd=root, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                if s.recv(100).startswith(b"* OK"):
                    return proc, port
        except OSError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise SystemExit(f"server did not start, see {log.name}")
        time.sleep(0.05)


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1e3


class Target:
    """Where to measure: host, port, credentials and mailbox."""

    def __init__(self, host: str, port: int, user: str, password: str, mailbox: str) -> None:
        self.host, self.port, self.user, self.password, self.mailbox = host, port, user, password, mailbox


def login(target: Target) -> Client:
    c = Client(target.host, target.port, timeout=600)
    c.command(f'LOGIN "{target.user}" "{target.password}"')
    return c


def load() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def _select_info(lines: list[bytes]) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in lines:
        for name in (b"UIDVALIDITY", b"UIDNEXT", b"HIGHESTMODSEQ"):
            m = re.search(name + rb" (\d+)", line)
            if m:
                out[name.decode()] = int(m.group(1))
        m = re.match(rb"\* (\d+) EXISTS", line)
        if m:
            out["EXISTS"] = int(m.group(1))
    return out


def measure(n: int, target: Target, warm_runs: int) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    mailbox = target.mailbox

    def record(metric: str, value: float, **extra: object) -> None:
        out.append({"bench": "extensions", "messages": n, "metric": metric, "value": round(value, 2), **extra})

    def warm(metric: str, fn: Callable[[], object], runs: int) -> None:
        times = [timed(fn) for _ in range(runs)]
        record(metric, statistics.median(times), spread=[round(min(times), 2), round(max(times), 2)], runs=runs)

    c = login(target)
    lines: list[bytes] = []

    def select() -> None:
        nonlocal lines
        lines, _ = c.command(f"SELECT {mailbox}")

    record("select_cold_ms", timed(select))
    info = _select_info(lines)
    assert info.get("EXISTS", 0) > n - 1000, info  # reused data dirs lose 5 messages per run
    warm("select_warm_ms", select, warm_runs)

    def step(name: str, command: str, runs: int) -> None:
        try:
            record(f"{name}_first_ms", timed(lambda: c.command(command)))
        except IMAPError as exc:
            record(f"{name}_first_ms", float("nan"), unavailable=str(exc)[:200])
            return
        warm(f"{name}_ms", lambda: c.command(command), runs)

    step("sort", "UID SORT (REVERSE DATE) UTF-8 ALL", warm_runs)
    step("thread", "UID THREAD REFS UTF-8 ALL", min(3, warm_runs))
    step("fetch50", f"UID FETCH {max(1, info['UIDNEXT'] - 50)}:* (ENVELOPE FLAGS)", warm_runs * 2)

    # QRESYNC: remember the state, let another connection change 5 flags and expunge 5 messages
    try:
        c.command("UNSELECT")
        c.command("ENABLE QRESYNC")
        lines, _ = c.command(f"SELECT {mailbox}")
        info = _select_info(lines)
        c.command("UNSELECT")
        other = login(target)
        other.command(f"SELECT {mailbox}")
        top = info["UIDNEXT"] - 1
        picks = random.Random(n).sample(range(1, top + 1), 10)
        for u in picks[:5]:
            other.command(f"UID STORE {u} +FLAGS.SILENT (\\Flagged)")
        gone = ",".join(str(u) for u in picks[5:])
        other.command(f"UID STORE {gone} +FLAGS.SILENT (\\Deleted)")
        other.command(f"UID EXPUNGE {gone}")
        other.command("LOGOUT", check=False)
        other.close()
        qresync = f"SELECT {mailbox} (QRESYNC ({info['UIDVALIDITY']} {info['HIGHESTMODSEQ']}))"
        record("qresync_select_ms", timed(lambda: c.command(qresync)))
    except (IMAPError, KeyError) as exc:
        record("qresync_select_ms", float("nan"), unavailable=str(exc)[:200])
    c.command("LOGOUT", check=False)
    c.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1k and 10k only")
    ap.add_argument("--sizes", type=int, nargs="*", help="message counts (default 1000 10000 100000)")
    ap.add_argument("--workdir", default="/tmp/imapd-bench-ext", help="where the data dirs are built and kept")
    ap.add_argument("--server-root", default=ROOT, help="checkout to run `python -m imapd serve` from")
    ap.add_argument("--runs", type=int, default=5, help="runs per warm median")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, help="measure this running server (any) instead of starting ours")
    ap.add_argument("--user", default=USER)
    ap.add_argument("--password", default=PASSWORD)
    ap.add_argument("--mailbox", default="INBOX", help="with --port: the seeded mailbox to measure")
    args = ap.parse_args()
    sizes = args.sizes or ([1000, 10_000] if args.quick else [1000, 10_000, 100_000])
    results: list[dict[str, object]] = []
    load_before = load()
    for n in sizes:
        if args.port is not None:
            rows = measure(n, Target(args.host, args.port, args.user, args.password, args.mailbox), args.runs)
        else:
            data = os.path.join(args.workdir, f"ext{n}")
            built = build(data, n)
            if built:
                print(json.dumps({"bench": "extensions", "messages": n, "metric": "build_s",
                                  "value": round(built, 1)}), flush=True)
            proc, port = start_server(data, os.path.abspath(args.server_root))
            try:
                rows = measure(n, Target("127.0.0.1", port, USER, PASSWORD, "INBOX"), args.runs)
            finally:
                stop_server(proc)
        for row in rows:
            print(json.dumps(row), flush=True)
        results += rows
    metrics = list(dict.fromkeys(str(r["metric"]) for r in results))
    print(f"\nload average {load_before} -> {load()} on {os.cpu_count()} cores; warm figures: median of "
          f"{args.runs} runs (fetch50: {args.runs * 2}, thread: {min(3, args.runs)}), spread in the JSON lines")
    print(f"{'metric':<20}" + "".join(f"{n:>12,}" for n in sizes))
    for metric in metrics:
        values = {r["messages"]: r["value"] for r in results if r["metric"] == metric}
        print(f"{metric:<20}" + "".join(f"{values.get(n, ''):>12}" for n in sizes))


if __name__ == "__main__":
    main()

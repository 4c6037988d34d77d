"""How mailbox open time and memory grow with message count (1k, 10k, 100k; ``--quick``: 1k, 10k).

For each size: synthetic messages are written straight into a Maildir ``cur/`` (names carry ``,S=``, so
indexing needs no stat), then we measure
- ``first_index``: first open of the folder -> directory scan + index build (one transaction);
- ``open_cold``: a new process-level Store opening the existing index (one query + two stats);
- ``sync_noop``: ``sync()`` when nothing changed;
- ``memory``: bytes allocated by the open Mailbox object (tracemalloc, cold open).
``--latency`` measures instead what SELECT / X-STATE RESTORE cost the store right after a write, without
and with the mail-root watcher running (``_watched``: as in the server),
(``sync()``: the Maildir re-check both run first), against the settled case, and a one-UID EXPUNGE:
- ``sync_settled_ms``: median ``sync()`` when cur/ has not changed for over a second;
- ``sync_after_own_write_ms`` / ``..._max_ms``: median / worst ``sync()`` sampled every 50 ms for the
  first second after a STORE by this process;
- ``sync_after_other_write_ms`` / ``..._max_ms``: the same after a STORE by another index connection
  (another server process), and after a file renamed by a foreign MUA (``sync_after_mua_rename_*``);
- ``expunge_one_ms``: median of 20 one-UID EXPUNGEs (index transaction, unlink, directory fsync, arrays).
One JSON line per measurement, then a short table.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from imapd.store import Mailbox, Store


def generate(folder: str, n: int) -> None:
    cur = os.path.join(folder, "cur")
    base_t = 1_600_000_000
    for i in range(n):
        body = f"From: a@example.org\r\nSubject: message {i}\r\n\r\nbody {i}\r\n".encode()
        name = f"{base_t + i}.M{i}P1Q1.bench,S={len(body)}:2,{'S' if i % 3 else ''}"
        fd = os.open(os.path.join(cur, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, body)
        os.close(fd)


def measure(n: int, workdir: str) -> list[dict[str, object]]:
    data = os.path.join(workdir, f"d{n}")
    store = Store(data, durability="normal")
    us = store.create_user("bench")
    folder = f"Big{n}"
    us.create_mailbox(folder)
    path = us.folder_path(folder)
    store.close()
    # the folder exists in the index but is empty; drop it so the first open indexes n files
    shutil.rmtree(path)
    os.makedirs(os.path.join(path, "cur"))
    os.makedirs(os.path.join(path, "new"))
    os.makedirs(os.path.join(path, "tmp"))
    t = time.perf_counter()
    generate(path, n)
    gen = time.perf_counter() - t
    out: list[dict[str, object]] = []
    store = Store(data, durability="normal")
    t = time.perf_counter()
    mb = store.open_mailbox("bench", folder)
    first = time.perf_counter() - t
    assert mb.exists == n, (mb.exists, n)
    store.close()
    out.append({"bench": "store_scale", "messages": n, "metric": "first_index_ms", "value": round(first * 1e3, 2),
                "generate_s": round(gen, 2)})
    time.sleep(1.1)  # past the one-second dirty window, as a mailbox that is not being delivered to
    warm = Store(data, durability="normal")
    warm.open_mailbox("bench", folder).sync()  # records clean mtimes
    warm.close()
    gc.collect()
    t = time.perf_counter()
    store = Store(data, durability="normal")
    mb = store.open_mailbox("bench", folder)
    mb.sync()
    cold = time.perf_counter() - t
    store.close()
    gc.collect()
    tracemalloc.start()
    snap0 = tracemalloc.take_snapshot()
    store = Store(data, durability="normal")
    mb = store.open_mailbox("bench", folder)
    snap1 = tracemalloc.take_snapshot()
    tracemalloc.stop()
    mem = sum(s.size_diff for s in snap1.compare_to(snap0, "filename"))
    t = time.perf_counter()
    for _ in range(10):
        mb.sync()
    noop = (time.perf_counter() - t) / 10
    out.append({"bench": "store_scale", "messages": n, "metric": "open_cold_ms", "value": round(cold * 1e3, 2)})
    out.append({"bench": "store_scale", "messages": n, "metric": "sync_noop_ms", "value": round(noop * 1e3, 3)})
    out.append({"bench": "store_scale", "messages": n, "metric": "memory_bytes", "value": mem,
                "per_message": round(mem / n, 1), "arrays_bytes": mb.memory_bytes()})
    store.close()
    return out


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[len(xs) // 2]


def _window(mb: Mailbox, write: Callable[[], object]) -> list[float]:
    """``sync()`` latencies sampled every 50 ms for the second after ``write()``."""
    out = []
    write()
    t0 = time.monotonic()
    while time.monotonic() - t0 < 1.0:
        t = time.perf_counter()
        mb.sync()
        out.append(time.perf_counter() - t)
        time.sleep(0.05)
    return out


def measure_latency(n: int, workdir: str, watched: bool) -> list[dict[str, object]]:
    data = os.path.join(workdir, f"l{n}{'w' if watched else ''}")
    store = Store(data, durability="normal")
    us = store.create_user("bench")
    folder = f"Big{n}"
    us.create_mailbox(folder)
    generate(us.folder_path(folder), n)
    mb = store.open_mailbox("bench", folder)
    assert mb.exists == n, (mb.exists, n)
    other = Store(data, durability="normal")  # a second index connection: another server process
    omb = other.open_mailbox("bench", folder)
    stop = threading.Event()
    watcher = threading.Thread(target=lambda: asyncio.run(store.watch(stop_event=stop)), daemon=True)
    if watched:  # as in the server: the mail-root watcher runs (here on a thread of its own)
        watcher.start()
        while not store.watching:
            time.sleep(0.01)
    cur = os.path.join(mb.path, "cur")
    out: list[dict[str, object]] = []

    def row(metric: str, value: float, **extra: object) -> None:
        out.append({"bench": "store_scale", "messages": n, "metric": metric + ("_watched" if watched else ""),
                    "value": round(value * 1e3, 3), **extra})

    def settle() -> list[float]:
        time.sleep(1.1)
        mb.sync()
        xs = []
        for _ in range(20):
            t = time.perf_counter()
            mb.sync()
            xs.append(time.perf_counter() - t)
        return xs

    row("sync_settled_ms", _median(settle()))
    uid = mb.uids()[n // 2]
    xs = _window(mb, lambda: mb.store_flags([uid], "add", ["\\Flagged"]))
    row("sync_after_own_write_ms", _median(xs), samples=len(xs))
    row("sync_after_own_write_max_ms", max(xs))
    settle()
    xs = _window(mb, lambda: omb.store_flags([uid], "remove", ["\\Flagged"]))
    row("sync_after_other_write_ms", _median(xs), samples=len(xs))
    row("sync_after_other_write_max_ms", max(xs))
    settle()

    def mua_rename() -> None:
        name = sorted(os.listdir(cur))[0]
        os.rename(os.path.join(cur, name), os.path.join(cur, name + "F"))

    xs = _window(mb, mua_rename)
    row("sync_after_mua_rename_ms", _median(xs), samples=len(xs))
    row("sync_after_mua_rename_max_ms", max(xs))
    settle()
    uids = mb.uids()
    xs = []
    for i in range(20):
        t = time.perf_counter()
        mb.expunge([uids[len(uids) // 3 + i]])
        xs.append(time.perf_counter() - t)
    row("expunge_one_ms", _median(xs))
    stop.set()
    if watched:
        watcher.join()
    other.close()
    store.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1k and 10k only")
    ap.add_argument("--latency", action="store_true", help="SELECT/RESTORE store cost after writes, EXPUNGE")
    ap.add_argument("--dir", help="work directory (default: a temporary one)")
    args = ap.parse_args()
    sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000]
    workdir = args.dir or tempfile.mkdtemp(prefix="store-scale-")
    if args.latency:
        try:
            lat = [r for n in sizes[1:] for w in (False, True) for r in measure_latency(n, workdir, w)]
        finally:
            if not args.dir:
                shutil.rmtree(workdir, ignore_errors=True)
        for r in lat:
            print(json.dumps(r), flush=True)
        print(f"\n{'messages':>9} {'metric':>32} {'ms':>9}")
        for r in lat:
            print(f"{r['messages']!s:>9} {r['metric']!s:>32} {r['value']!s:>9}")
        return
    rows: list[dict[str, object]] = []
    try:
        for n in sizes:
            for row in measure(n, workdir):
                print(json.dumps(row), flush=True)
                rows.append(row)
    finally:
        if not args.dir:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"\n{'messages':>9} {'first_index ms':>15} {'open_cold ms':>13} {'sync_noop ms':>13} {'B/msg':>7}")
    for n in sizes:
        r = {str(x["metric"]): x for x in rows if x["messages"] == n}
        print(f"{n:>9} {r['first_index_ms']['value']:>15} {r['open_cold_ms']['value']:>13} "
              f"{r['sync_noop_ms']['value']:>13} {r['memory_bytes']['per_message']:>7}")


if __name__ == "__main__":
    main()

"""X-STATE figures (targets.md T5): token size by mailbox size, and restore time by number of changes.

    python bench/xstate.py            # 1k, 10k, 100k messages; restore after 0, 10, 1,000, 100,000 changes
    python bench/xstate.py --quick    # 1k and 10k; changes 0, 10, 1,000
    python bench/xstate.py --only-expunge   # only the restore after one expunge (issue 15.5), all sizes

"After one expunge" restores a token saved just before one message (after the first UID gap) was
expunged: its cost must not grow with the mailbox (the catch-up is one EXPUNGE and one EXISTS).

Mailboxes are built through the store (bench/extensions.py's generator) with five UID gaps each, served
by a real ``imapd serve`` process, and measured over loopback with a raw socket client. One JSON line per
measurement, then a table. Restore time is from sending ``X-STATE RESTORE`` to its tagged OK on a fresh
connection (greeting excluded), including reading the whole catch-up.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from extensions import USER, build, login, start_server, stop_server
from imapclient import Client

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def emit(rows: list[dict[str, object]], **row: object) -> None:
    row = {"bench": "xstate", **row}
    rows.append(row)
    print(json.dumps(row), flush=True)


def make_gaps(port: int) -> None:
    """Expunge five messages spread over the mailbox (once per data dir)."""
    c = login(port)
    c.command("SELECT INBOX")
    untagged, _ = c.command("UID SEARCH ALL")
    uids = [int(x) for x in untagged[0].split()[2:]]
    if len(uids) and uids[-1] == len(uids):  # no gaps yet
        picks = [uids[len(uids) * k // 6] for k in range(1, 6)]
        c.command("UID STORE " + ",".join(map(str, picks)) + " +FLAGS.SILENT (\\Deleted)")
        c.command("UID EXPUNGE " + ",".join(map(str, picks)))
    c.command("LOGOUT", check=False)


def save_token(port: int) -> str:
    c = login(port)
    c.command("SELECT INBOX")
    untagged, _ = c.command("X-STATE SAVE")
    c.command("LOGOUT", check=False)
    for line in untagged:
        if line.startswith(b"* X-STATE "):
            return line.split()[2].decode()
    raise SystemExit("no X-STATE token: is this imapd?")


def change(port: int, count: int, flag_on: bool) -> None:
    """Flip \\Flagged on the first ``count`` messages (all of them when the mailbox has fewer)."""
    if not count:
        return
    c = login(port)
    untagged, _ = c.command("SELECT INBOX")
    exists = next(int(ln.split()[1]) for ln in untagged if ln.rstrip().endswith(b" EXISTS"))
    span = "1:*" if count >= exists else f"1:{count}"
    c.command(f"STORE {span} {'+' if flag_on else '-'}FLAGS.SILENT (\\Flagged)")
    c.command("LOGOUT", check=False)


def expunge_one(port: int) -> None:
    """Expunge the message right after the first UID gap: it widens that gap rather than adding one,
    so the saved tokens keep their exact UID ranges (more ranges would turn them into fingerprints)."""
    c = login(port)
    c.command("SELECT INBOX")
    untagged, _ = c.command("UID SEARCH ALL")
    uids = [int(x) for x in untagged[0].split()[2:]]
    after_gap = next((b for a, b in itertools.pairwise(uids) if b != a + 1), uids[len(uids) // 2])
    c.command(f"UID STORE {after_gap} +FLAGS.SILENT (\\Deleted)")
    c.command(f"UID EXPUNGE {after_gap}")
    c.command("LOGOUT", check=False)


def plan_ms(data: str) -> float | None:
    """In-process, no socket: the median time to compute RESTORE's catch-up (``resync.plan_restore``)
    for a view saved just before one expunge, i.e. the server's own cost of issue 15.5. On a checkout
    from before ``plan_restore`` it times what that one did instead (``cmd_xstate._client_map``: the
    client's old UID map rebuilt), so before/after runs compare the same thing; None if neither exists."""
    from array import array
    from collections.abc import Callable
    from typing import Any

    compute: Callable[[Any, Any], object]
    try:
        from imapd.session.resync import plan_restore

        def compute(mb: Any, saved: Any) -> object:
            return plan_restore(mb, saved, flags=None)
    except ImportError:
        try:
            from imapd.session.cmd_xstate import _client_map as compute  # type: ignore[attr-defined,no-redef]
        except ImportError:
            return None
    from imapd.store import Store
    from statecodec import MailboxView, compact_uids

    store = Store(data, durability="normal")
    try:
        mb = store.user(USER).open("INBOX")
        known = array("I", mb.uid_array)
        saved = MailboxView("INBOX", b"", mb.uidvalidity, False, mb.uidnext, len(known), mb.highestmodseq,
                            compact_uids(known, uidnext=mb.uidnext))
        after_gap = next((b for a, b in itertools.pairwise(known) if b != a + 1), known[len(known) // 2])
        mb.expunge([after_gap])
        times = []
        for _ in range(30):
            start = time.perf_counter()
            compute(mb, saved)
            times.append((time.perf_counter() - start) * 1e3)
        mb.release()
        return statistics.median(times)
    finally:
        store.close()


def restore_ms(port: int, token: str) -> tuple[float, int]:
    c = Client("127.0.0.1", port, timeout=600)
    start = time.perf_counter()
    untagged, tagged = c.command(f"X-STATE RESTORE {token}")
    elapsed = (time.perf_counter() - start) * 1e3
    if b"OK" not in tagged:
        raise SystemExit(f"restore failed: {tagged!r}")
    c.command("LOGOUT", check=False)
    return elapsed, len(untagged)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--workdir", default="/tmp/imapd-bench-xstate")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only-expunge", action="store_true", help="only the restore after one expunge")
    args = ap.parse_args()
    sizes = [1000, 10_000] if args.quick else [1000, 10_000, 100_000]
    rows: list[dict[str, object]] = []
    for n in sizes:
        data = os.path.join(args.workdir, f"x{n}")
        build(data, n)
        proc, port = start_server(data, ROOT)
        try:
            make_gaps(port)
            token = save_token(port)
            emit(rows, metric="token_bytes", messages=n, value=len(token))
            times = []
            for _ in range(args.runs * 2):
                token = save_token(port)
                expunge_one(port)
                ms, lines = restore_ms(port, token)
                times.append(ms)
            emit(rows, metric="restore_ms_one_expunge", messages=n, median=round(statistics.median(times), 2),
                 best=round(min(times), 2), catch_up_lines=lines)
            for changes in (0, 10, 1000, 100_000):
                if args.only_expunge:
                    break
                if changes > n or (args.quick and changes > 1000):
                    continue
                times, lines = [], 0
                for run in range(args.runs if changes < 100_000 else 2):
                    token = save_token(port)
                    change(port, changes, flag_on=run % 2 == 0)
                    ms, lines = restore_ms(port, token)
                    times.append(ms)
                emit(rows, metric="restore_ms", messages=n, changes=changes, median=round(statistics.median(times), 2),
                     best=round(min(times), 2), catch_up_lines=lines)
        finally:
            stop_server(proc)
        plan = plan_ms(data)
        if plan is not None:
            emit(rows, metric="plan_ms_one_expunge", messages=n, median=round(plan, 3))
    print("\nmessages  token bytes")
    for r in rows:
        if r["metric"] == "token_bytes":
            print(f"{r['messages']:>8}  {r['value']:>11}")
    print("\nmessages   restore after 1 expunge: median ms   best ms   catch-up lines")
    for r in rows:
        if r["metric"] == "restore_ms_one_expunge":
            print(f"{r['messages']:>8}  {r['median']:>35}  {r['best']:>8}  {r['catch_up_lines']:>14}")
    print("\nmessages   catch-up computed in-process after 1 expunge: median ms")
    for r in rows:
        if r["metric"] == "plan_ms_one_expunge":
            print(f"{r['messages']:>8}  {r['median']:>52}")
    print("\nmessages   changes   restore median ms   best ms   catch-up lines")
    for r in rows:
        if r["metric"] == "restore_ms":
            print(f"{r['messages']:>8}  {r['changes']:>8}  {r['median']:>18}  {r['best']:>8}  {r['catch_up_lines']:>14}")


if __name__ == "__main__":
    main()

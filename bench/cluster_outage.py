"""A Redis outage under load (issue 21, "Measure"): what two cluster nodes on one mail root keep doing while
their redis-server is gone, as figures. Reuses the nodes of bench/cluster_leases.py.

    python bench/cluster_outage.py [--port-base 14000] [--outage 5] [--clients 3] [--hang] [--keep]

Node A owns every user (logged in there first). On A: a few webmail-like clients (fresh connection: LOGIN,
SELECT, UID FETCH of a page, LOGOUT, in a loop) and one IDLE client (user alice). Then redis-server is
killed (kill -9; ``--hang``: SIGSTOP, a hung Redis) for ``--outage`` seconds; meanwhile messages for alice are
delivered over LMTP on node B (which cannot learn who owns alice either) and appended on A itself; then Redis
is restarted empty (or SIGCONT). Printed: requests served/failed per second before, during and after; when
the IDLE client was told of each change; when each node's imapd_cluster_redis_up went 0 and back to 1; and
whether every delivered or appended message is in alice's index afterwards.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import smtplib
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cluster_leases import ROOT, Node, deliver, login

from tests.rawimap import RawIMAP

PAGE = "UID FETCH 1:20 (UID FLAGS RFC822.SIZE ENVELOPE)"
SEED = 30  # messages per load user
NOOP_MARK = b"-- IDLE ended (DONE), NOOP --"


def metric(port: int, name: str) -> float | None:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1).read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rpartition(" ")[2])
    return 0.0


class Clock:
    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self.t0


def webmail(node: Node, user: str, clock: Clock, stop: threading.Event, out: list[tuple[float, float, str]]) -> None:
    """One client's loop; each request recorded as (start, seconds, "ok" or the failure)."""
    while not stop.is_set():
        start = clock.now()
        try:
            c = RawIMAP("127.0.0.1", node.port, timeout=15)
            c.ok(f"LOGIN {user} secret")
            c.ok("SELECT INBOX")
            c.ok(PAGE)
            c.ok("LOGOUT")
            c.sock.close()
            result = "ok"
        except (AssertionError, OSError, ConnectionError) as exc:
            result = str(exc)[:120]
            time.sleep(0.05)
        out.append((start, clock.now() - start, result))


def idler(node: Node, clock: Clock, stop: threading.Event, seen: list[tuple[float, int]],
          other: list[tuple[float, bytes]]) -> None:
    """alice in IDLE on A: (time, n) for every ``* n EXISTS``, (time, line) for anything else."""
    c = login(node, "alice")
    c.ok("SELECT INBOX")
    c.sock.sendall(b"i IDLE\r\n")
    c.readline()
    c.sock.settimeout(0.2)
    while not stop.is_set():
        try:
            line = c.readline()
        except TimeoutError:
            continue
        except ConnectionError as exc:
            other.append((clock.now(), str(exc).encode()))
            return
        if line.endswith(b"EXISTS\r\n"):
            seen.append((clock.now(), int(line.split()[1])))
        else:
            other.append((clock.now(), line))
    c.sock.settimeout(10)
    c.sock.sendall(b"DONE\r\n")
    while not c.readline().startswith(b"i "):
        pass
    other.append((clock.now(), NOOP_MARK))
    for line in c.ok("NOOP"):  # what a client learns at its next command
        if line.endswith(b"EXISTS"):
            seen.append((clock.now(), int(line.split()[1])))
    c.ok("LOGOUT")


def watch_metrics(ports: dict[str, int], clock: Clock, stop: threading.Event,
                  changes: dict[str, list[tuple[float, float | None]]]) -> None:
    last: dict[str, float | None] = {}
    while not stop.is_set():
        for name, port in ports.items():
            up = metric(port, "imapd_cluster_redis_up")
            if name not in last or up != last[name]:
                changes.setdefault(name, []).append((clock.now(), up))
                last[name] = up
        time.sleep(0.05)


def subject_of(what: str) -> str:
    return "outage " + what.replace(" ", "-")


def lmtp_reply(node: Node, user: str, subject: str) -> str:
    msg = f"From: s@example.org\r\nSubject: {subject}\r\n\r\nhello\r\n".encode()
    try:
        with smtplib.LMTP("127.0.0.1", node.lmtp) as lmtp:
            lmtp.sendmail("s@example.org", [user], msg)
        return "250"
    except smtplib.SMTPRecipientsRefused as exc:
        return " ".join(str(v) for v in exc.recipients.values())
    except (smtplib.SMTPException, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"


def append(node: Node, subject: str) -> str:
    try:
        c = login(node, "alice")
        body = f"From: a@example.org\r\nSubject: {subject}\r\n\r\n{subject}\r\n".encode()
        _, tagged = c.command(b"APPEND INBOX {" + str(len(body)).encode() + b"+}\r\n" + body)
        c.ok("LOGOUT")
    except (AssertionError, OSError, ConnectionError) as exc:
        return f"failed: {exc}"[:100]
    return tagged.decode().split(" ", 1)[1][:60]


def index_uids(root: Path, user: str) -> dict[str, int]:
    """Subject -> UID of every INBOX row of the user's index whose file exists (read directly)."""
    conn = sqlite3.connect(root / "shared" / "mail" / user / "imapd-index.sqlite")
    try:
        rows = list(conn.execute("SELECT m.uid, m.fname FROM messages m JOIN mailboxes b ON b.id = m.mailbox "
                                 "WHERE b.name = 'INBOX'"))
    finally:
        conn.close()
    out = {}
    for uid, fname in rows:
        for sub in ("cur", "new"):
            path = root / "shared" / "mail" / user / sub / fname
            if path.exists():
                for line in path.read_bytes().split(b"\r\n"):
                    if line.startswith(b"Subject: "):
                        out[line[9:].decode()] = uid
    return out


def report(root: Path, a: Node, b: Node, clock: Clock, t_down: float, t_up: float, t_end: float, hang: bool,
           reqs: list[list[tuple[float, float, str]]], events: list[tuple[float, str, str]],
           seen: list[tuple[float, int]], other: list[tuple[float, bytes]],
           ups: dict[str, list[tuple[float, float | None]]]) -> None:
    kind = "SIGSTOP (hung)" if hang else "kill -9"
    print(f"Redis {kind} at {t_down:.2f} s, back at {t_up:.2f} s ({t_up - t_down:.1f} s); run ends {t_end:.2f} s")
    flat = [r for rs in reqs for r in rs]
    for label, lo, hi in (("before", 0.0, t_down), ("during", t_down, t_up), ("after", t_up, t_end)):
        part = [r for r in flat if lo <= r[0] < hi]
        ok = [r for r in part if r[2] == "ok"]
        walls = sorted(r[1] for r in ok) or [0.0]
        print(f"  webmail requests {label:6}: {len(ok) / (hi - lo):6.1f}/s served, "
              f"{(len(part) - len(ok)) / (hi - lo):5.1f}/s failed, median {walls[len(walls) // 2] * 1000:.1f} ms, "
              f"max {walls[-1] * 1000:.0f} ms, {sum(w > 0.25 for w in walls)} over 250 ms")
    slow = [r for r in flat if r[1] > 1.0]
    for start, wall, result in slow[:5]:
        print(f"    slow request: started {start:.2f} s, took {wall:.2f} s, {result}")
    for f in sorted({r[2] for r in flat if r[2] != "ok"})[:5]:
        print("    failure:", f)
    for name, changes in sorted(ups.items()):
        print(f"  {name} imapd_cluster_redis_up: "
              + ", ".join(f"{v if v is None else int(v)} at {t:.2f}" for t, v in changes))
    uids = index_uids(root, "alice")
    noop_at = next((t for t, line in other if line == NOOP_MARK), None)
    for t, what, reply in events:
        uid = uids.get(subject_of(what))
        told = next((st for st, n in seen if uid is not None and n >= uid), None)
        late = (f"told at {told:.2f} s: {told - t:.2f} s after, {told - t_up:+.2f} s from Redis back"
                if told is not None else "never told")
        if told is not None and noop_at is not None and told >= noop_at:
            late += " (NOT in IDLE: only at the client's next command, the NOOP at the end)"
        print(f"  {what} at {t:.2f} s: {reply}; UID {uid}; {late}")
    print("  IDLE EXISTS seen: " + ", ".join(f"{n} at {t:.2f}" for t, n in seen))
    for t, line in other:
        print(f"  IDLE other at {t:.2f}: {line[:100]!r}")
    for name, node in (("A", a), ("B", b)):
        for ln in (root / f"{node.name}.log").read_text().splitlines():
            if "unreachable" in ln or "reachable again" in ln or "BYE" in ln or "Traceback" in ln:
                print(f"  {name} log: {ln[:170]}")
    c = login(a, "alice")
    exists = [ln for ln in c.ok("SELECT INBOX") if ln.endswith(b"EXISTS")]
    c.ok("LOGOUT")
    uids = index_uids(root, "alice")
    wanted = [subject_of(w) for _, w, reply in events if reply.startswith(("250", "OK"))]
    lost = [s for s in wanted if s not in uids]
    print(f"  alice after: SELECT says {exists[0].decode() if exists else '?'}; index holds {len(uids)} rows; "
          f"accepted during the outage {len(wanted)}, lost {len(lost)} {lost if lost else ''}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-base", type=int, default=14000)
    ap.add_argument("--outage", type=float, default=5.0)
    ap.add_argument("--clients", type=int, default=3)
    ap.add_argument("--before", type=float, default=4.0)
    ap.add_argument("--after", type=float, default=8.0)
    ap.add_argument("--keep", action="store_true", help="keep the data dir and node logs")
    ap.add_argument("--hang", action="store_true", help="SIGSTOP redis-server instead of kill -9")
    ap.add_argument("--tmp", default=None, help="where the data dir is made (default: the system's temp dir)")
    ap.add_argument("--prefix", default="outage-bench-", help="the data dir's name prefix")
    args = ap.parse_args()
    base = args.port_base
    root = Path(tempfile.mkdtemp(prefix=args.prefix, dir=args.tmp))
    (root / "shared").mkdir()
    users = ["alice", *(f"w{i}" for i in range(args.clients))]
    for user in users:
        subprocess.run([sys.executable, "-m", "imapd", "user", "add", user, "--password-stdin", "--data-dir",
                        str(root / "shared")], input=b"secret", check=True, cwd=ROOT, capture_output=True)
    redis_cmd = ["redis-server", "--port", str(base), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(root)]
    redis = subprocess.Popen(redis_cmd, stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{base}/0"
    time.sleep(0.3)
    nodes: list[Node] = []
    stop = threading.Event()
    try:
        a = Node(root, "a", base + 1, base + 2, url, ("-o", f"metrics.listen=\"127.0.0.1:{base + 5}\""))
        nodes.append(a)
        b = Node(root, "b", base + 3, base + 4, url, ("-o", f"metrics.listen=\"127.0.0.1:{base + 6}\""))
        nodes.append(b)
        for user in users:  # A owns them all; the load users get a page to fetch
            login(a, user).ok("LOGOUT")
        for user in users[1:]:
            for _ in range(SEED):
                deliver(a, user)
        with open("/proc/loadavg") as f:
            print("load:", f.read().strip())
        clock = Clock()
        reqs: list[list[tuple[float, float, str]]] = [[] for _ in users[1:]]
        seen: list[tuple[float, int]] = []
        other: list[tuple[float, bytes]] = []
        ups: dict[str, list[tuple[float, float | None]]] = {}
        threads = [threading.Thread(target=webmail, args=(a, u, clock, stop, reqs[i]))
                   for i, u in enumerate(users[1:])]
        threads.append(threading.Thread(target=idler, args=(a, clock, stop, seen, other)))
        threads.append(threading.Thread(target=watch_metrics, args=({"A": base + 5, "B": base + 6}, clock, stop,
                                                                     ups)))
        for t in threads:
            t.start()
        time.sleep(args.before)
        t_down = clock.now()
        if args.hang:
            redis.send_signal(signal.SIGSTOP)
        else:
            redis.kill()
            redis.wait()
        events: list[tuple[float, str, str]] = []  # (time, what, reply)
        time.sleep(1.0)
        for n in range(3):
            what = f"LMTP on B #{n}"
            events.append((clock.now(), what, lmtp_reply(b, "alice", subject_of(what))))
            what = f"APPEND on A #{n}"
            events.append((clock.now(), what, append(a, subject_of(what))))
            time.sleep(0.5)
        time.sleep(max(0.0, t_down + args.outage - clock.now()))
        t_up = clock.now()
        if args.hang:
            redis.send_signal(signal.SIGCONT)
        else:
            redis = subprocess.Popen(redis_cmd, stdout=subprocess.DEVNULL)  # empty, as after a crash
        time.sleep(args.after)
        stop.set()
        for t in threads:
            t.join(timeout=30)
        report(root, a, b, clock, t_down, t_up, clock.now(), args.hang, reqs, events, seen, other, ups)
    finally:
        stop.set()
        for node in nodes:
            try:
                node.stop()
            except Exception:
                node.proc.kill()
        if redis.poll() is None:
            redis.send_signal(signal.SIGCONT)
            redis.kill()
        redis.wait()
        if args.keep:
            print("kept", root)
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

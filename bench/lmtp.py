"""LMTP delivery: deliveries/s over one connection and with 8 concurrent clients, and the latency from the
end of the message (the final dot sent) to the LMTP 250 and to an IDLE client's ``* n EXISTS``.

    python bench/lmtp.py [--messages 1000] [--workers 0] [--dovecot] [--only dovecot] [--json FILE]
                         [--ports BASE] [--work DIR] [--root CHECKOUT] [--rounds N]

Ours: ``imapd serve`` (``--workers``, 0 = one per CPU) with ``lmtp.listen`` on loopback, users
bench0..bench7 in its passwd file. Dovecot (``--dovecot``, Debian's dovecot-imapd + dovecot-lmtpd, installed
if missing when run as root): a loopback test instance of its own with the same users, Maildir, its
default ``mail_fsync = optimized`` (fsync before the 250, like ours), IMAP for the IDLE client. Each
transaction is MAIL, RCPT (one recipient), DATA of a ~3 KB message; the 8 clients deliver to 8
different users, each on its own connection, from threads of this process (which shares the 2 cores).
Besides the rates it reports each server's CPU time (user + system, all its processes, from /proc) per
delivery: on a shared machine a steadier figure than the rate.

``--ports BASE`` takes the servers' ports from BASE on (else free ones), ``--work`` the data directory
(else a temporary one), ``--root`` runs another checkout's ``imapd`` (an A/B against a baseline), and
``--rounds N`` repeats ours and Dovecot in turn N times (interleaved, since the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import shutil
import signal
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
USERS = [f"bench{i}" for i in range(8)]
MESSAGE = (b"From: Sender <sender@example.org>\r\nTo: bench@example.org\r\nSubject: benchmark message\r\n"
           b"Date: Thu, 03 Dec 2026 10:00:00 +0000\r\nMessage-ID: <bench@example.org>\r\n"
           b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
           + b"".join(b"line %03d of a plain text body, about seventy characters long, for size\r\n" % i
                      for i in range(40)))


_next_port: list[int] = []


def free_port() -> int:
    if _next_port:
        _next_port[0] += 1
        return _next_port[0] - 1
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


class Ours:
    name = "imapd"

    def __init__(self, work: Path, workers: int, root: Path = ROOT, options: tuple[str, ...] = ()) -> None:
        self.data = work / "ours"
        shutil.rmtree(self.data, ignore_errors=True)
        self.data.mkdir(parents=True)
        (self.data / "passwd").write_text("".join(f"{u}:{{PLAIN}}bench:::::\n" for u in USERS))
        self.imap_port, self.lmtp_port = free_port(), free_port()
        self.log = open(work / "ours.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "imapd", "serve", "--data-dir", str(self.data),
             "--listen", f"127.0.0.1:{self.imap_port}", "-o", f"server.workers={workers}",
             "-o", f"lmtp.listen=127.0.0.1:{self.lmtp_port}", *(x for o in options for x in ("-o", o))],
            cwd=root, stdout=self.log, stderr=subprocess.STDOUT)
        wait_port(self.imap_port)
        wait_port(self.lmtp_port)

    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)


class Dovecot:
    name = "Dovecot"

    def __init__(self, work: Path) -> None:
        if not (shutil.which("dovecot") and Path("/usr/lib/dovecot/lmtp").exists()
                and Path("/usr/lib/dovecot/imap").exists()):
            subprocess.run(["apt-get", "install", "-y", "-qq", "dovecot-imapd", "dovecot-lmtpd"], check=True,
                           env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        self.work = work / "dovecot"
        shutil.rmtree(self.work, ignore_errors=True)
        (self.work / "run").mkdir(parents=True)
        (self.work / "mail").mkdir()
        self.imap_port, self.lmtp_port = free_port(), free_port()
        root = os.getuid() == 0
        internal = "dovecot" if root else os.environ.get("USER", "root")
        uid = int(subprocess.check_output(["id", "-u", internal])) if root else os.getuid()
        gid = int(subprocess.check_output(["id", "-g", internal])) if root else os.getgid()
        passwd = self.work / "passwd"
        passwd.write_text("".join(f"{u}:{{PLAIN}}bench:::::\n" for u in USERS))
        if root:
            shutil.chown(passwd, internal)
            os.chown(self.work / "mail", uid, gid)
        self.conf = self.work / "dovecot.conf"
        w = self.work
        self.conf.write_text(f"""# bench/lmtp.py: a loopback-only test instance
base_dir = {w}/run
state_dir = {w}/run/state
instance_name = imapd-bench-lmtp
listen = 127.0.0.1
protocols = imap lmtp
ssl = no
disable_plaintext_auth = no
log_path = {w}/log
info_log_path = {w}/log
default_internal_user = {internal}
default_internal_group = {internal}
default_login_user = {"dovenull" if root else internal}
mail_uid = {uid}
mail_gid = {gid}
mail_home = {w}/mail/%u
first_valid_uid = 0
first_valid_gid = 0
mail_location = maildir:{w}/mail/%u
postmaster_address = postmaster@example.org
lmtp_save_to_detail_mailbox = no
auth_username_format = %Ln
passdb {{
  driver = passwd-file
  args = {passwd}
}}
userdb {{
  driver = passwd-file
  args = {passwd}
}}
service imap-login {{
  service_count = 0
  process_min_avail = {os.cpu_count() or 1}
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {self.lmtp_port}
  }}
  unix_listener lmtp {{
    mode = 0600
  }}
}}
""")
        (self.work / "run" / "state").mkdir()
        subprocess.run(["dovecot", "-c", str(self.conf)], check=True)
        wait_port(self.imap_port)
        wait_port(self.lmtp_port)

    def pid(self) -> int:
        return int((self.work / "run" / "master.pid").read_text())

    def stop(self) -> None:
        subprocess.run(["doveadm", "-c", str(self.conf), "stop"], check=False, capture_output=True)


def tree_cpu(root: int) -> float:
    """CPU seconds (user + system) of process ``root``, its live descendants, and the children it reaped
    (Linux /proc): a server's whole cost, whatever its process layout (Dovecot's lmtp, auth, log, ...)."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                text = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            stats[int(entry)] = text.rpartition(")")[2].split()
    children: dict[int, list[int]] = {}
    for pid, fields in stats.items():
        children.setdefault(int(fields[1]), []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        own = stats.get(pid)
        if own is None:
            continue
        total += sum(int(x) for x in own[11:15]) / tick  # utime stime cutime cstime
        todo.extend(children.get(pid, []))
    return total


def transaction(client: smtplib.LMTP, user: str) -> None:
    client.mail("sender@example.org")
    code, _ = client.rcpt(f"{user}@example.org")
    assert code == 250, (code, user)
    code, reply = client.data(MESSAGE)
    assert code == 250, (code, reply)


def connect(port: int) -> smtplib.LMTP:
    client = smtplib.LMTP("127.0.0.1", port, timeout=60)
    client.ehlo_or_helo_if_needed()
    return client


def rate_one(port: int, n: int) -> float:
    client = connect(port)
    started = time.perf_counter()
    for _ in range(n):
        transaction(client, USERS[0])
    elapsed = time.perf_counter() - started
    client.quit()
    return n / elapsed


def rate_concurrent(port: int, n: int, clients: int = 8) -> float:
    per = n // clients
    conns = [connect(port) for _ in range(clients)]
    barrier = threading.Barrier(clients + 1)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            for _ in range(per):
                transaction(conns[i], USERS[i])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    for c in conns:
        c.quit()
    if errors:
        raise errors[0]
    return per * clients / elapsed


def latency(imap_port: int, lmtp_port: int, samples: int) -> tuple[list[float], list[float]]:
    """(dot -> 250, dot -> EXISTS) in ms, an IDLE client on bench7's INBOX."""
    idle = socket.create_connection(("127.0.0.1", imap_port), timeout=30)
    reader = idle.makefile("rb")
    reader.readline()
    idle.sendall(b"a LOGIN bench7 bench\r\nb SELECT INBOX\r\n")
    while not reader.readline().startswith(b"b OK"):
        pass
    idle.sendall(b"c IDLE\r\n")
    assert reader.readline().startswith(b"+")
    client = connect(lmtp_port)
    sel = selectors.DefaultSelector()
    sel.register(idle, selectors.EVENT_READ, "idle")
    sel.register(client.sock, selectors.EVENT_READ, "lmtp")
    to_250: list[float] = []
    to_exists: list[float] = []
    body = MESSAGE + b".\r\n"
    for _ in range(samples):
        client.mail("sender@example.org")
        client.rcpt("bench7@example.org")
        code, _ = client.docmd("DATA")
        assert code == 354
        client.sock.sendall(body)
        dot = time.perf_counter()
        got_250 = got_exists = None
        lmtp_buf = idle_buf = b""
        while got_250 is None or got_exists is None:
            for key, _ in sel.select(timeout=10):
                if key.data == "lmtp":
                    lmtp_buf += client.sock.recv(4096)
                    if lmtp_buf.endswith(b"\r\n") and got_250 is None:
                        assert lmtp_buf.startswith(b"250"), lmtp_buf
                        got_250 = time.perf_counter()
                else:
                    idle_buf += idle.recv(4096)
                    if b" EXISTS\r\n" in idle_buf and got_exists is None:
                        got_exists = time.perf_counter()
        to_250.append((got_250 - dot) * 1000)
        to_exists.append((got_exists - dot) * 1000)
    idle.sendall(b"DONE\r\nd LOGOUT\r\n")
    idle.close()
    client.sock.close()
    return to_250, to_exists


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def measure(server: Ours | Dovecot, n: int, samples: int) -> dict[str, float]:
    rate_one(server.lmtp_port, 50)  # warm-up: Maildirs created, processes started
    rate_concurrent(server.lmtp_port, 80)
    pid = server.pid()
    cpu = tree_cpu(pid)
    one = rate_one(server.lmtp_port, n)
    cpu_one, cpu = (tree_cpu(pid) - cpu) / n * 1000, tree_cpu(pid)
    eight = rate_concurrent(server.lmtp_port, n)
    cpu_eight = (tree_cpu(pid) - cpu) / (n // 8 * 8) * 1000
    to_250, to_exists = latency(server.imap_port, server.lmtp_port, samples)
    return {"one_connection_per_s": one, "eight_clients_per_s": eight,
            "one_connection_cpu_ms": cpu_one, "eight_clients_cpu_ms": cpu_eight,
            "dot_to_250_median_ms": statistics.median(to_250), "dot_to_250_p90_ms": pct(to_250, 90),
            "dot_to_exists_median_ms": statistics.median(to_exists), "dot_to_exists_p90_ms": pct(to_exists, 90)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--workers", type=int, default=0, help="our server.workers (0 = one per CPU)")
    ap.add_argument("--dovecot", action="store_true", help="also measure Dovecot's LMTP")
    ap.add_argument("--only", choices=["ours", "dovecot"], help="measure only this server")
    ap.add_argument("--ports", type=int, metavar="BASE", help="servers' ports from BASE on (else free ones)")
    ap.add_argument("--work", type=Path, metavar="DIR", help="data directory (else a temporary one, removed)")
    ap.add_argument("--root", type=Path, default=ROOT, help="the checkout whose imapd is run (A/B runs)")
    ap.add_argument("-o", "--server-option", action="append", default=[], metavar="KEY=VALUE",
                    help="another setting for our server (repeatable), e.g. server.shared_lanes=4")
    ap.add_argument("--rounds", type=int, default=1, help="measure each server this many times, in turn")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    if args.ports:
        _next_port.append(args.ports)
    work = args.work or Path(tempfile.mkdtemp(prefix="imapd-bench-lmtp-"))
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)
    results: dict[str, dict[str, float]] = {}
    rows: list[tuple[str, dict[str, float]]] = []
    kinds = {"ours": ["ours"], "dovecot": ["dovecot"]}.get(args.only or "", ["ours", *(["dovecot"] if args.dovecot else [])])
    try:
        for n in range(args.rounds):
            for kind in kinds:
                if args.ports:
                    _next_port[0] = args.ports
                server = Ours(work, args.workers, args.root.resolve(), tuple(args.server_option)) if kind == "ours" else Dovecot(work)
                try:
                    r = measure(server, args.messages, args.samples)
                finally:
                    server.stop()
                results[f"{server.name} #{n + 1}" if args.rounds > 1 else server.name] = r
                rows.append((server.name, r))
                print(f"{server.name}: {r['one_connection_per_s']:.0f} / {r['eight_clients_per_s']:.0f} per s, "
                      f"{r['one_connection_cpu_ms']:.2f} / {r['eight_clients_cpu_ms']:.2f} CPU ms "
                      f"(load {os.getloadavg()[0]:.2f})", file=sys.stderr, flush=True)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print("| server | 1 connection, deliveries/s | 8 clients, deliveries/s | server CPU ms a delivery (1 / 8) "
          "| dot -> 250 ms (median / p90) | dot -> IDLE EXISTS ms (median / p90) |")
    print("|---|---|---|---|---|---|")
    for name, r in rows:
        print(f"| {name} | {r['one_connection_per_s']:.0f} | {r['eight_clients_per_s']:.0f} | "
              f"{r['one_connection_cpu_ms']:.2f} / {r['eight_clients_cpu_ms']:.2f} | "
              f"{r['dot_to_250_median_ms']:.2f} / {r['dot_to_250_p90_ms']:.2f} | "
              f"{r['dot_to_exists_median_ms']:.2f} / {r['dot_to_exists_p90_ms']:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A newcomer's first minutes: ``make demo`` / ``imapd demo``, ``imapd --version`` and plain ``imapd``.

Each test starts the real command in its own session (as a terminal would), so "nothing is left running"
is checked by looking for any process of that session after it exits.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from sievelib.managesieve import Client as ManageSieveClient

import imapd
from imapd.demo_mail import DEMO_USERS

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PORTS = {"IMAP": 1143, "IMAPS": 1993, "webmail": 8080}
FLAGS = {"IMAP": ("--imap-port", "IMAP_PORT"), "IMAPS": ("--imaps-port", "IMAPS_PORT"),
         "webmail": ("--web-port", "WEB_PORT")}


def process_table() -> list[tuple[int, str, int, int, str]]:
    """(pid, state, ppid, session, command name) of every process, from /proc/*/stat."""
    rows = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # it exited meanwhile
            continue
        name, _, rest = text.partition(" (")[2].rpartition(")")
        state, ppid, _pgrp, sid = rest.split()[:4]
        rows.append((int(stat.parent.name), state, int(ppid), int(sid), name))
    return rows


def session_processes(sid: int) -> list[str]:
    """Processes still alive in session ``sid`` (the command's own and every child it started)."""
    return [f"{pid} ({name})" for pid, state, _, psid, name in process_table() if psid == sid and state != "Z"]


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [int(s.getsockname()[1]) for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.fixture
def default_ports_taken() -> Iterator[None]:
    """Listen on the demo's default ports (a port someone else already holds is just as taken)."""
    held: list[socket.socket] = []
    for port in DEFAULT_PORTS.values():
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            s.listen()
        except OSError:
            s.close()
            continue
        held.append(s)
    try:
        yield
    finally:
        for s in held:
            s.close()


def expected_port_line() -> str:
    roles = ["IMAP", *(["IMAPS"] if shutil.which("openssl") else []), "webmail"]
    parts = [f"{role} port {DEFAULT_PORTS[role]} on 127.0.0.1 is already in use "
             f"(change it with {FLAGS[role][0]} N or make demo {FLAGS[role][1]}=N)" for role in roles]
    return "imapd demo: " + "; ".join(parts) + "; nothing was started"


def clean_env() -> dict[str, str]:
    """The environment without an outer make's flags (``make test`` runs pytest)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.skipif(not (Path(sys.executable).parent / "python").exists(),
                    reason="not running from a venv: the Makefile runs $(BIN)/python")
def test_make_demo_with_default_ports_taken(default_ports_taken: None, tmp_path: Path) -> None:
    # The real `make demo` recipe, with the venv it runs from and its install step already done.
    stamp = tmp_path / "installed"
    stamp.touch()
    data = tmp_path / "demo-data"
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "demo", f"DEMO_DIR={data}", f"BIN={Path(sys.executable).parent}",
         f"RUNTIME_STAMP={stamp}"],
        cwd=ROOT, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    ours = [line for line in err.splitlines() if not line.startswith("make")]  # make adds "make: *** ... Error"
    assert ours == [expected_port_line()]
    assert "imapd demo is up" not in out
    assert not data.exists()  # checked before seeding: nothing was written either
    assert session_processes(proc.pid) == []


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_demo_passes_its_port_variables_on(tmp_path: Path) -> None:
    stamp = tmp_path / "installed"
    stamp.touch()
    proc = subprocess.run(
        ["make", "--no-print-directory", "-n", "demo", f"RUNTIME_STAMP={stamp}", "DEMO_DIR=d", "IMAP_PORT=2143",
         "IMAPS_PORT=2993", "WEB_PORT=8081", "MANAGESIEVE_PORT=4191", "METRICS_PORT=9144"],
        cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.replace("\\\n\t", "") == (
        ".venv/bin/python -m imapd demo --data-dir d --imap-port 2143 --imaps-port 2993 "
        "--web-port 8081 --managesieve-port 4191 --metrics-port 9144\n")


def test_imapd_demo_with_one_port_taken_names_that_port(tmp_path: Path) -> None:
    imap, imaps, web = free_ports(3)
    taker = socket.socket()
    taker.bind(("127.0.0.1", web))
    taker.listen()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "imapd", "demo", "--data-dir", str(tmp_path / "data"), "--imap-port", str(imap),
             "--imaps-port", str(imaps), "--web-port", str(web)],
            cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=60, start_new_session=True)
    finally:
        taker.close()
    assert proc.returncode == 69
    assert proc.stdout == ""
    assert proc.stderr == (f"imapd demo: webmail port {web} on 127.0.0.1 is already in use "
                           "(change it with --web-port N or make demo WEB_PORT=N); nothing was started\n")


def test_imapd_demo_listen_flag_is_named_when_it_set_the_port(tmp_path: Path) -> None:
    taker = socket.socket()
    taker.bind(("127.0.0.1", 0))
    taker.listen()
    port = int(taker.getsockname()[1])
    imaps, web = free_ports(2)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "imapd", "demo", "--data-dir", str(tmp_path / "data"),
             "--listen", f"127.0.0.1:{port}", "--imaps-port", str(imaps), "--web-port", str(web)],
            cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=60)
    finally:
        taker.close()
    assert proc.returncode == 69
    assert proc.stderr == (f"imapd demo: IMAP port {port} on 127.0.0.1 is already in use "
                           "(change it with --listen HOST:PORT); nothing was started\n")


def test_imapd_demo_same_port_twice_is_a_clash(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    imaps = free_ports(1)[0]
    proc = subprocess.run(
        [sys.executable, "-m", "imapd", "demo", "--data-dir", str(tmp_path / "data"), "--imap-port", str(port),
         "--imaps-port", str(imaps), "--web-port", str(port)],
        cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 69
    assert proc.stderr == (f"imapd demo: webmail port {port} on 127.0.0.1 is already in use "
                           "(change it with --web-port N or make demo WEB_PORT=N); nothing was started\n")


def test_imapd_demo_port_out_of_range_is_refused(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "imapd", "demo", "--data-dir", str(tmp_path / "data"), "--imap-port", "70000"],
        cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 64
    assert proc.stderr == ("imapd demo: IMAP port 70000 is not a port (0-65535; 0 picks a free one): "
                           "change --imap-port N or make demo IMAP_PORT=N\n")
    assert not (tmp_path / "data").exists()


def read_banner(path: Path, proc: subprocess.Popen[bytes], err: Path) -> dict[str, str]:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        text = path.read_text()
        if "\n  stop " in text:
            rows = {}
            for line in text.splitlines()[1:]:
                label, _, rest = line.strip().partition(" ")
                rows[label] = rest.strip()
            return rows
        if proc.poll() is not None:
            raise AssertionError(f"demo exited ({proc.returncode}):\n{text}\n{err.read_text()}")
        time.sleep(0.1)
    raise AssertionError(f"no banner:\n{path.read_text()}\n{err.read_text()}")


def read_greeting(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def start_demo(tmp_path: Path, *ports: int) -> tuple[subprocess.Popen[bytes], Path, Path]:
    """``imapd demo`` on the given IMAP, IMAPS, webmail (and metrics) ports, in a session of its own."""
    data = tmp_path / "data"
    out, err = tmp_path / "out", tmp_path / "err"
    args = [sys.executable, "-m", "imapd", "demo", "--data-dir", str(data)]
    for flag, port in zip(("--imap-port", "--imaps-port", "--web-port", "--metrics-port"), ports, strict=False):
        args += [flag, str(port)]
    args += ["--managesieve-port", str(free_ports(1)[0])]  # not the default 4190, which may be in use
    with open(out, "wb") as fout, open(err, "wb") as ferr:
        proc = subprocess.Popen(args, cwd=ROOT, env=clean_env(), stdout=fout, stderr=ferr, start_new_session=True)
    return proc, out, err


def test_demo_started_banner_addresses_answer(tmp_path: Path) -> None:
    imap, imaps, web, metrics = free_ports(4)
    data = tmp_path / "data"
    proc, out, err = start_demo(tmp_path, imap, imaps, web, metrics)
    try:
        banner = read_banner(out, proc, err)
        assert len(session_processes(proc.pid)) == 2  # the demo and its webmail child: the check below sees them
        assert out.read_text().splitlines()[0] == f"imapd demo is up: data in {data} (seeded demo, alice)"
        assert banner["IMAP"].split()[0] == f"127.0.0.1:{imap}"
        assert banner["webmail"].split()[0] == f"http://127.0.0.1:{web}/"
        assert banner["metrics"].split()[0] == f"http://127.0.0.1:{metrics}/metrics"
        sieve_host, _, sieve_port = banner["sieve"].split()[0].rpartition(":")
        client = ManageSieveClient(sieve_host, int(sieve_port))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # plaintext PLAIN on loopback, allowed as for IMAP
            assert client.connect(*DEMO_USERS[0], authmech="PLAIN")
        assert "vacation" in client.get_sieve_capabilities()
        client.logout()
        assert banner["users"] == ", ".join(f"{u} / {p}" for u, p in DEMO_USERS)
        assert banner["stop"] == "Ctrl-C"
        assert banner["LMTP"].split()[0] == str(data / "lmtp.sock")
        with smtplib.LMTP(str(data / "lmtp.sock"), timeout=10) as lmtp:  # delivery is on in the demo
            refused = lmtp.sendmail("someone@example.org", ["demo@localhost"], b"Subject: lmtp\r\n\r\nhi\r\n")
        assert refused == {}

        with socket.create_connection(("127.0.0.1", imap)) as s:
            greeting = read_greeting(s)
        assert greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 ") and greeting.endswith(b"] imapd ready\r\n")
        if shutil.which("openssl"):
            assert banner["IMAPS"].split()[0] == f"127.0.0.1:{imaps}"
            ctx = ssl.create_default_context(cafile=str(data / "tls" / "localhost.crt"))
            with socket.create_connection(("127.0.0.1", imaps)) as raw, \
                    ctx.wrap_socket(raw, server_hostname="localhost") as s:
                greeting = read_greeting(s)
            assert greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 ") and greeting.endswith(b"imapd ready\r\n")

        with urllib.request.urlopen(f"http://127.0.0.1:{web}/", timeout=10) as resp:  # -> /login
            assert resp.status == 200 and resp.url.endswith("/login")
            assert b'action="/login"' in resp.read()
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=10) as resp:
            assert resp.status == 200 and b"# TYPE imapd_connections" in resp.read()

        # The banner's one-line example works as printed.
        m = re.fullmatch(r'python3 -c "(.*)"', banner["try"])
        assert m, banner["try"]
        tried = subprocess.run([sys.executable, "-c", m.group(1)], capture_output=True, text=True, timeout=30)
        assert re.fullmatch(r"\('OK', \[b'\d+'\]\)\n", tried.stdout), tried.stdout + tried.stderr
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
        proc.wait(timeout=30)
    assert proc.returncode == 0
    assert err.read_text().splitlines()[-1] == "imapd demo: stopping"
    assert session_processes(proc.pid) == []


def test_sigterm_to_the_demo_alone_stops_its_webmail(tmp_path: Path) -> None:
    imap, imaps, web = free_ports(3)
    proc, out, err = start_demo(tmp_path, imap, imaps, web)
    try:
        read_banner(out, proc, err)
        proc.send_signal(signal.SIGTERM)  # a service manager stopping it: only the demo's own process is told
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0
    deadline = time.monotonic() + 10
    while session_processes(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert session_processes(proc.pid) == []


def test_webmail_dying_stops_the_demo(tmp_path: Path) -> None:
    imap, imaps, web = free_ports(3)
    proc, out, err = start_demo(tmp_path, imap, imaps, web)
    try:
        read_banner(out, proc, err)
        children = [pid for pid, state, ppid, _, _ in process_table() if ppid == proc.pid and state != "Z"]
        assert len(children) == 1
        os.kill(children[0], signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 1
    assert err.read_text().splitlines()[-1] == "imapd demo: the webmail stopped (exit status -9); stopping IMAP too"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", imap), timeout=2).close()
    assert session_processes(proc.pid) == []


RACE_SCRIPT = """
import asyncio, sys
from pathlib import Path
from imapd.demo import DemoPlan, Endpoint, check_ports, ensure_self_signed, seed_demo, serve_demo

data = Path(sys.argv[1])
imap, imaps, web, metrics = (Endpoint(role, "127.0.0.1", int(port), flag) for role, port, flag in
                             (("IMAP", sys.argv[2], "--imap-port N"), ("IMAPS", sys.argv[3], "--imaps-port N"),
                              ("webmail", sys.argv[4], "--web-port N"), ("metrics", sys.argv[5], "--metrics-port N")))
seed_demo(data)
tls = ensure_self_signed(data)
bound, problems = check_ports([imap, imaps, web])  # as run_demo does; metrics binds its own address later
assert not problems
plan = DemoPlan(data, imap, imaps, web, metrics)
raise SystemExit(asyncio.run(serve_demo(plan, plan.settings(tls), bound)))
"""


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl for the IMAPS listener")
def test_port_lost_after_the_check_stops_everything(tmp_path: Path) -> None:
    """Another program took the metrics port between the check and the bind: the same one line, and the IMAP
    listeners that had already started are gone with the process (the webmail never started)."""
    imap, imaps, web, metrics = free_ports(4)
    taker = socket.socket()
    taker.bind(("127.0.0.1", metrics))
    taker.listen()
    try:
        proc = subprocess.Popen([sys.executable, "-c", RACE_SCRIPT, str(tmp_path / "data"), str(imap), str(imaps),
                                 str(web), str(metrics)], cwd=ROOT, env=clean_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        out, err = proc.communicate(timeout=60)
    finally:
        taker.close()
    assert proc.returncode == 69, err
    assert out == ""
    assert err == (f"imapd demo: metrics port {metrics} on 127.0.0.1 is already in use "
                           "(change it with --metrics-port N); nothing was started\n")
    for port in (imap, imaps, web):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert session_processes(proc.pid) == []


def test_version() -> None:
    proc = subprocess.run([sys.executable, "-m", "imapd", "--version"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0
    assert proc.stdout == f"imapd {imapd.__version__}\n"


def test_no_arguments_says_what_it_serves_and_how_to_stop(tmp_path: Path) -> None:
    probe = socket.socket()
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind(("127.0.0.1", 1143))
    except OSError:
        pytest.skip("127.0.0.1:1143 is in use: plain `imapd` serves there")
    finally:
        probe.close()
    err = tmp_path / "err"
    with open(err, "wb") as ferr:
        proc = subprocess.Popen([sys.executable, "-m", "imapd"], cwd=tmp_path, env=clean_env(),
                                stdout=subprocess.DEVNULL, stderr=ferr, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while "ready on" not in err.read_text() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        lines = err.read_text().splitlines()
        assert lines[0] == (f"imapd: no command given, so serving ./imapd-data ({tmp_path / 'imapd-data'}) on "
                            "127.0.0.1:1143 as `imapd serve` does; stop it with Ctrl-C "
                            "(`imapd --help` lists the commands)")
        assert re.search(r"imapd ready on 127\.0\.0\.1:1143 \(data dir \./imapd-data\b", lines[1]), lines
        with socket.create_connection(("127.0.0.1", 1143)) as s:
            assert read_greeting(s).startswith(b"* OK ")
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=30)
    assert proc.returncode == 0
    assert (tmp_path / "imapd-data").is_dir()

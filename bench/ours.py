"""Start/stop our server for the benchmarks, like peers.sh does for Dovecot.

    ours.py start   --data-dir DIR [--port 11144] [-o KEY=VALUE]...   # background, returns once it greets
    ours.py stop    --data-dir DIR                                     # SIGTERM by PID (pid file), then KILL
    ours.py restart --data-dir DIR [--port 11144] [-o ...]             # a "cold" server: fresh process

The pid file and log sit beside DIR (DIR-server.pid, DIR-server.log). Settings are the server's defaults
unless -o says otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _paths(data_dir: str) -> tuple[str, str]:
    base = os.path.abspath(data_dir).rstrip("/")
    return base + "-server.pid", base + "-server.log"


def wait_greeting(host: str, port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=2) as s:
                if s.recv(4096).startswith(b"* OK"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"server on {host}:{port} did not greet within {timeout} s")
        time.sleep(0.05)


def _raise_nofile() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def start(data_dir: str, port: int, overrides: list[str], python: str = sys.executable) -> subprocess.Popen[bytes]:
    pidfile, logfile = _paths(data_dir)
    cmd = [python, "-m", "imapd", "serve", "--data-dir", data_dir, "--listen", f"127.0.0.1:{port}"]
    for o in overrides:
        cmd += ["-o", o]
    with open(logfile, "ab") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                start_new_session=True, preexec_fn=_raise_nofile)
    with open(pidfile, "w") as f:
        f.write(str(proc.pid))
    try:
        wait_greeting("127.0.0.1", port)
    except SystemExit:
        proc.kill()
        raise
    return proc


def stop(data_dir: str) -> None:
    pidfile, _ = _paths(data_dir)
    try:
        with open(pidfile) as f:
            pid = int(f.read())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        os.unlink(pidfile)
        return
    for _ in range(200):
        try:
            os.kill(pid, 0)
            # reap if it is our child (it is not when started by another ours.py run)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    os.unlink(pidfile)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=["start", "stop", "restart"])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--port", type=int, default=11144)
    ap.add_argument("-o", action="append", default=[], dest="overrides")
    args = ap.parse_args()
    if args.action in ("stop", "restart"):
        stop(args.data_dir)
    if args.action in ("start", "restart"):
        proc = start(args.data_dir, args.port, args.overrides)
        print(f"ours: pid {proc.pid} on 127.0.0.1:{args.port}")


if __name__ == "__main__":
    main()

"""``imapd demo`` / ``make demo``: seed demo users and mail into a data dir, then serve them.

Seeding is idempotent: users that already exist keep their mail, so restarting the demo keeps
whatever was changed through a client.

A newcomer's first run must either work or say in one line what to change: every port is checked
before anything is seeded or started, and the sockets bound by that check are the ones IMAP and the
webmail child serve on, so no port can be lost meanwhile. The metrics listener, which binds its own
address, stops everything with the same line if it lost its port; the banner is printed only once every
address answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from imapd.config import Settings, load_settings
from imapd.demo_mail import DEMO_USERS, demo_messages
from imapd.server.listener import parse_hostport

log = logging.getLogger("imapd.demo")

__all__ = ["DemoPlan", "Endpoint", "PortProblem", "check_ports", "endpoint", "run_demo", "seed_demo",
           "serve_demo"]

EX_UNAVAILABLE = 69  # sysexits: a port the demo needs is taken (or the webmail would not start)
WEBMAIL_START_TIMEOUT = 30.0


def seed_demo(data_dir: str | os.PathLike[str]) -> list[str]:
    """Create the demo users with their mail; return the users created now."""
    from imapd.store.mailbox import AppendItem
    from imapd.store.store import Store
    from imapd.store.users import PasswdFile

    data = Path(data_dir)
    data.mkdir(parents=True, exist_ok=True)
    passwd = PasswdFile(data / "passwd")
    store = Store(data)
    created: list[str] = []
    try:
        for user, password in DEMO_USERS:
            if passwd.get(user) is not None:
                continue
            passwd.add(user, password)
            ustore = store.create_user(user)
            by_folder: dict[str, list[AppendItem]] = {}
            for msg in demo_messages(user):
                by_folder.setdefault(msg.folder, []).append(
                    AppendItem(msg.raw, msg.flags, msg.internaldate.timestamp())
                )
            for folder, items in by_folder.items():
                if not ustore.exists(folder):
                    ustore.create_mailbox(folder)
                mailbox = ustore.open(folder)
                try:
                    mailbox.append_many(items)
                finally:
                    mailbox.release()
            log.info("seeded demo user %s with %d messages", user, sum(len(v) for v in by_folder.values()))
            created.append(user)
    finally:
        store.close()
    return created


def _cert_paths(data_dir: Path) -> tuple[Path, Path]:
    return data_dir / "tls" / "localhost.crt", data_dir / "tls" / "localhost.key"


def tls_available(data_dir: Path) -> bool:
    """Whether the demo will have a certificate (one made earlier, or openssl to make one)."""
    cert, key = _cert_paths(data_dir)
    return (cert.exists() and key.exists()) or shutil.which("openssl") is not None


def ensure_self_signed(data_dir: Path) -> tuple[str, str] | None:
    """A self-signed certificate for localhost, made once with openssl (None when openssl is missing)."""
    cert, key = _cert_paths(data_dir)
    if cert.exists() and key.exists():
        return str(cert), str(key)
    if shutil.which("openssl") is None:
        log.warning("openssl not found: the demo runs without TLS")
        return None
    cert.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "825",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    os.chmod(key, 0o600)
    return str(cert), str(key)


# -- addresses and the port check ------------------------------------------------------------------

@dataclass(frozen=True)
class Endpoint:
    """One address the demo listens on, and what the user changes to move it (named in error messages)."""

    role: str  # "IMAP", "IMAPS", "webmail", "ManageSieve", "metrics"
    host: str
    port: int
    change: str  # e.g. "--imap-port N or make demo IMAP_PORT=N"

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def connect_host(self) -> str:
        """Where a local client connects: a wildcard listener answers on loopback."""
        return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)


def endpoint(role: str, listen: str | None, port: int | None, default_port: int,
             port_flag: str, make_var: str, listen_flag: str) -> Endpoint:
    """The address for one role from ``--X-port N`` (on 127.0.0.1) or ``--X-listen HOST:PORT``."""
    if listen is not None:
        host, lport = parse_hostport(listen)
        ep = Endpoint(role, host, lport, f"{listen_flag} HOST:PORT")
    else:
        ep = Endpoint(role, "127.0.0.1", default_port if port is None else port,
                      f"{port_flag} N or make demo {make_var}=N")
    if not 0 <= ep.port <= 65535:
        raise ValueError(f"{role} port {ep.port} is not a port (0-65535; 0 picks a free one): change {ep.change}")
    return ep


@dataclass(frozen=True)
class PortProblem:
    endpoint: Endpoint
    error: OSError

    def describe(self) -> str:
        ep, err = self.endpoint, self.error
        if err.errno == errno.EADDRINUSE:
            what = "is already in use"
        elif err.errno == errno.EACCES:
            what = "needs root (ports below 1024 are privileged)"
        elif err.errno == errno.EADDRNOTAVAIL:
            what = f"cannot be used: {ep.host} is not an address of this machine"
        elif isinstance(err, socket.gaierror):
            what = f"cannot be used: host {ep.host!r} not found"
        else:
            what = f"cannot be used: {err.strerror or err}"
        return f"{ep.role} port {ep.port} on {ep.host} {what} (change it with {ep.change})"


def port_message(problems: Sequence[PortProblem]) -> str:
    """The one line a taken port gets: every problem, each with the flag to change."""
    return "imapd demo: " + "; ".join(p.describe() for p in problems) + "; nothing was started"


def _bind(ep: Endpoint) -> list[socket.socket]:
    """Bind and listen on every address of ``ep`` the way asyncio's create_server will (SO_REUSEADDR,
    so a port in TIME_WAIT is no conflict; listening, so two of our own endpoints on one port clash)."""
    infos = socket.getaddrinfo(ep.host or None, ep.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    socks: list[socket.socket] = []
    try:
        for family, type_, proto, _, addr in dict.fromkeys(infos):
            sock = socket.socket(family, type_, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(addr)
            sock.listen(128)
    except OSError:
        for sock in socks:
            sock.close()
        raise
    return socks


def check_ports(endpoints: Sequence[Endpoint]) -> tuple[dict[Endpoint, list[socket.socket]], list[PortProblem]]:
    """Bind every endpoint at once; return the bound sockets (keyed by the endpoint with its real port,
    for ``N=0``) and the problems. The caller closes the sockets, or hands them on."""
    bound: dict[Endpoint, list[socket.socket]] = {}
    problems: list[PortProblem] = []
    for ep in endpoints:
        try:
            socks = _bind(ep)
        except OSError as exc:
            problems.append(PortProblem(ep, exc))
            continue
        real = replace(ep, port=int(socks[0].getsockname()[1]))
        bound[real] = socks
    return bound, problems


@dataclass(frozen=True)
class DemoPlan:
    """What the demo serves, after the port check: every endpoint has its real port."""

    data_dir: Path
    imap: Endpoint
    imaps: Endpoint | None  # None without TLS (no openssl)
    web: Endpoint
    metrics: Endpoint | None  # None unless asked for
    created: tuple[str, ...] = ()
    managesieve: Endpoint | None = None

    def settings(self, tls: tuple[str, str] | None) -> Settings:
        overrides = [f"server.data_dir={_toml_str(str(self.data_dir))}",
                     f"server.listen=[{_toml_str(self.imap.address)}]"]
        if tls is not None and self.imaps is not None:
            overrides += [f"tls.cert={_toml_str(tls[0])}", f"tls.key={_toml_str(tls[1])}",
                          f"server.tls_listen=[{_toml_str(self.imaps.address)}]"]
        if self.metrics is not None:
            overrides.append(f"metrics.listen={_toml_str(self.metrics.address)}")
        if self.managesieve is not None:
            overrides.append(f"managesieve.listen={_toml_str(self.managesieve.address)}")
        if self.lmtp_socket:
            overrides.append(f"lmtp.listen={_toml_str(self.lmtp_socket)}")
        return load_settings(None, overrides)

    @property
    def lmtp_socket(self) -> str:
        """LMTP on a UNIX socket in the data dir: a port that cannot clash with anything ("" when the
        path is longer than a UNIX socket address can be: then the demo has no LMTP)."""
        path = str(self.data_dir / "lmtp.sock")
        return path if len(os.fsencode(path)) < 104 else ""

    def banner(self) -> str:
        """What is up, where, and a first command to try; printed once everything answers."""
        seeded = "seeded " + ", ".join(self.created) if self.created else "already seeded"
        imap = self.imap
        lines = [f"imapd demo is up: data in {self.data_dir} ({seeded})",
                 f"  IMAP     {imap.address:<26} " + ("STARTTLS, self-signed certificate" if self.imaps
                                                        else "no TLS (openssl not found)")]
        if self.imaps is not None:
            lines.append(f"  IMAPS    {self.imaps.address:<26} implicit TLS, self-signed certificate")
        lines.append(f"  webmail  {_url(self.web, '/'):<26} reattaches with X-STATE on every request")
        if self.managesieve is not None:
            lines.append(f"  sieve    {self.managesieve.address:<26} ManageSieve (filters), "
                         + ("STARTTLS" if self.imaps else "no TLS"))
        if self.metrics is not None:
            lines.append(f"  metrics  {_url(self.metrics, '/metrics'):<26} "
                         f"or: imapd stats --metrics {self.metrics.address}")
        if self.lmtp_socket:
            lines.append(f"  LMTP     {self.lmtp_socket:<26} or: imapd deliver demo --data-dir {self.data_dir} < MSG")
        else:
            lines.append("  LMTP     off: the data dir's path is too long for a UNIX socket")
        lines.append("  users    " + ", ".join(f"{u} / {p}" for u, p in DEMO_USERS))
        user, password = DEMO_USERS[0]
        snippet = (f"import imaplib; m = imaplib.IMAP4({imap.connect_host!r}, {imap.port}); "
                   f"m.login({user!r}, {password!r}); print(m.select('INBOX'))")
        lines.append(f'  try      python3 -c "{snippet}"')
        lines.append("  stop     Ctrl-C")
        return "\n".join(lines)


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _url(ep: Endpoint, path: str) -> str:
    host = f"[{ep.connect_host}]" if ":" in ep.connect_host else ep.connect_host
    return f"http://{host}:{ep.port}{path}"


# -- running ---------------------------------------------------------------------------------------

def run_demo(data_dir: str, imap: Endpoint, imaps: Endpoint, web: Endpoint, metrics: Endpoint | None = None,
             *, serve: bool = True, managesieve: Endpoint | None = None) -> int:
    """Check every port, seed, then serve IMAP (in this process) and the webmail (a child process)."""
    data = Path(data_dir)
    if not serve:
        created = seed_demo(data)
        ensure_self_signed(data)
        print(f"imapd demo: data in {data} ({'seeded ' + ', '.join(created) if created else 'already seeded'})")
        return 0
    wanted = [imap, *([imaps] if tls_available(data) else []), web, *([managesieve] if managesieve else []),
              *([metrics] if metrics else [])]
    bound, problems = check_ports(wanted)
    if problems:
        _close(bound)
        print(port_message(problems), file=sys.stderr, flush=True)
        return EX_UNAVAILABLE
    real = {ep.role: ep for ep in bound}
    if "metrics" in real:  # aiohttp binds the metrics address itself: a port lost meanwhile is reported then
        _close({real["metrics"]: bound.pop(real["metrics"])})
    try:
        created = seed_demo(data)
        tls = ensure_self_signed(data)
        plan = DemoPlan(data, real["IMAP"], real.get("IMAPS") if tls else None, real["webmail"],
                        real.get("metrics"), tuple(created), real.get("ManageSieve"))
        settings = plan.settings(tls)
    except KeyboardInterrupt:  # Ctrl-C while seeding: stop quietly, as Ctrl-C does once serving
        _close(bound)
        print("imapd demo: stopped while seeding", file=sys.stderr, flush=True)
        return 130
    except BaseException:
        _close(bound)
        raise
    return _run_loop(serve_demo(plan, settings, bound), settings)


def _close(bound: dict[Endpoint, list[socket.socket]]) -> None:
    for socks in bound.values():
        for sock in socks:
            sock.close()


def _run_loop(main: Coroutine[Any, Any, int], settings: Settings) -> int:
    """The event loop ``imapd serve`` uses (uvloop when installed and not turned off)."""
    if settings.server.use_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return int(uvloop.run(main))
    return asyncio.run(main)


async def serve_demo(plan: DemoPlan, settings: Settings, bound: dict[Endpoint, list[socket.socket]]) -> int:
    """Serve IMAP on the sockets ``check_ports`` bound for it, then the webmail (a child) on its socket; stop
    everything on Ctrl-C or SIGTERM, or when any part fails. Closes ``bound``. Returns the exit status."""
    from imapd.server.main import ServerHandle

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    handle = ServerHandle(settings)
    loop.add_signal_handler(signal.SIGHUP, handle.reload)
    imap_socks = [(sock, ep.role == "IMAPS") for ep, socks in bound.items() if ep.role in ("IMAP", "IMAPS")
                  for sock in socks]
    web_sock, *extra = bound.get(plan.web, [])  # the webmail serves on one address (the first resolved)
    for sock in extra:
        sock.close()
    if plan.metrics is not None:
        # Imported now, not by handle.start(): aiohttp's import would stall the running loop (and warn).
        import imapd.server.metrics_http  # noqa: F401
    webmail: subprocess.Popen[bytes] | None = None
    try:
        try:
            sieve_socks = bound.get(plan.managesieve, []) if plan.managesieve is not None else []
            await handle.start(sockets=imap_socks, managesieve_socket=sieve_socks[0] if sieve_socks else None)
        except OSError as exc:
            print(_bind_failure(exc, [e for e in (plan.imap, plan.imaps, plan.managesieve, plan.metrics) if e]),
                  file=sys.stderr, flush=True)
            return EX_UNAVAILABLE
        webmail = _spawn_webmail(plan, web_sock)
        web_sock.close()
        failure = await _wait_until_answering(plan, webmail, stop)
        if failure:
            print(failure, file=sys.stderr, flush=True)
            return EX_UNAVAILABLE
        if stop.is_set():
            return 0
        print(plan.banner(), flush=True)
        while not stop.is_set():
            if webmail.poll() is not None:
                print(f"imapd demo: the webmail stopped (exit status {webmail.returncode}); stopping IMAP too",
                      file=sys.stderr, flush=True)
                return 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
        print("imapd demo: stopping", file=sys.stderr, flush=True)
        return 0
    finally:
        if webmail is not None:
            await _stop_child(webmail)
        await handle.stop()
        _close(bound)  # the sockets no listener took (a listener's own are closed by handle.stop())


def _bind_failure(exc: OSError, endpoints: Sequence[Endpoint]) -> str:
    """A listener lost its port after the check (another program took it meanwhile): the same one line."""
    m = re.search(r"\(\s*'([^']*)',\s*(\d+)", str(exc))
    for ep in endpoints:
        if m and int(m.group(2)) == ep.port:
            return port_message([PortProblem(ep, exc)])
    return f"imapd demo: cannot start IMAP: {exc}; nothing was started"


def _spawn_webmail(plan: DemoPlan, web_sock: socket.socket) -> subprocess.Popen[bytes]:
    """The webmail is an IMAP client of the server, so it runs as its own process next to it, serving
    on the socket this process bound during the port check."""
    imap = f"{plan.imap.connect_host}:{plan.imap.port}"
    fd = web_sock.fileno()
    sieve = [] if plan.managesieve is None else [
        "--managesieve", f"{plan.managesieve.connect_host}:{plan.managesieve.port}"]
    return subprocess.Popen(
        [sys.executable, "-m", "webmail_demo", "--imap", imap, "--listen", plan.web.address,
         "--listen-fd", str(fd), "--reattach", "xstate", *sieve],
        pass_fds=(fd,),
    )


async def _wait_until_answering(plan: DemoPlan, webmail: subprocess.Popen[bytes], stop: asyncio.Event) -> str:
    """Wait until the webmail answers HTTP; return a one-line failure, or "" (also when stopped)."""
    url = _url(plan.web, "/login")
    deadline = time.monotonic() + WEBMAIL_START_TIMEOUT
    while not stop.is_set():
        if webmail.poll() is not None:
            return (f"imapd demo: the webmail exited while starting (exit status {webmail.returncode}, "
                    "its output is above); IMAP stopped, nothing is left running")
        if await asyncio.to_thread(_http_ok, url):
            return ""
        if time.monotonic() > deadline:
            return (f"imapd demo: the webmail did not answer on {url} within {WEBMAIL_START_TIMEOUT:.0f} s; "
                    "stopped everything")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.1)
    return ""


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError):
        return False


async def _stop_child(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
    deadline = time.monotonic() + 5
    while proc.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    if proc.poll() is None:
        proc.kill()
        proc.wait()

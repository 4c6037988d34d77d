"""The deploy/ example on loopback: Redis, 3 backends on one shared mail root, 2 proxies, HAProxy (``make cluster-demo``).

It runs the files of deploy/ themselves, with only what must differ on one machine changed: addresses and
ports (all 127.0.0.1), paths (one demo directory), one worker per backend, and ``tls.trust_loopback`` on
(every demo client is local). The imapd configs are deploy/*.toml with those settings replaced; the HAProxy
config is deploy/haproxy.cfg from ``defaults`` on, with a ``global`` section for a foreground process;
Redis runs deploy/redis.conf with command-line overrides.

Settings or commands this imapd does not have yet (``[cluster]``, ``[proxy]``, ``imapd proxy``, while the
branches that add them are not merged) are named: unknown settings are left out with a warning, and a
missing command stops the demo with a message naming it, after starting what exists.

``python scripts/cluster_demo.py [--dir DIR] [--imap-port N] [--imaps-port N] [--base-port N]``;
``Cluster`` is also what bench/cluster_failover.py starts.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
HOST = "127.0.0.1"
LOCAL_V2 = b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x20, 0x00, 0x00, 0x00])  # a PROXY v2 LOCAL header (a check)

EX_MISSING = 69  # sysexits EX_UNAVAILABLE: a command or package the demo needs is not there


class DemoError(Exception):
    """Something the demo cannot go on without; the message says what and where to look."""


@dataclass(frozen=True)
class Layout:
    """Every port of the demo: HAProxy's two (what clients use), the rest from ``base``."""

    imap_port: int = 10143
    imaps_port: int = 10993
    base: int = 10200

    def backend(self, n: int) -> int:
        return self.base + n  # n = 1..3

    def lmtp(self, n: int) -> int:
        return self.base + 10 + n

    def metrics(self, n: int) -> int:
        return self.base + 50 + n

    def proxy(self, n: int) -> int:
        return self.base + 20 + n  # n = 1..2

    def proxy_tls(self, n: int) -> int:
        return self.base + 30 + n

    @property
    def redis(self) -> int:
        return self.base + 40

    def all_ports(self) -> list[tuple[str, int]]:
        ports = [("HAProxy IMAP", self.imap_port), ("HAProxy IMAPS", self.imaps_port), ("Redis", self.redis)]
        for n in (1, 2, 3):
            ports += [(f"backend-{n}", self.backend(n)), (f"backend-{n} LMTP", self.lmtp(n)),
                      (f"backend-{n} metrics", self.metrics(n))]
        for n in (1, 2):
            ports += [(f"proxy-{n}", self.proxy(n)), (f"proxy-{n} TLS", self.proxy_tls(n))]
        return ports


# -- what this imapd knows ------------------------------------------------------------------------------------
def known_settings() -> dict[str, set[str]]:
    """Section -> setting names of the installed imapd (the branches that add [cluster], [proxy] may be absent)."""
    import msgspec

    from imapd.config import Settings

    out: dict[str, set[str]] = {}
    for section in msgspec.structs.fields(Settings):
        sub = section.default_factory() if callable(section.default_factory) else section.default
        out[section.name] = {f.name for f in msgspec.structs.fields(type(sub))}
    return out


def has_command(*words: str) -> bool:
    """Whether ``python -m imapd WORDS --help`` works (``imapd proxy`` comes with the proxy branch)."""
    proc = subprocess.run([sys.executable, "-m", "imapd", *words, "--help"], cwd=ROOT, capture_output=True,
                          timeout=60)
    return proc.returncode == 0


def binary(name: str) -> str | None:
    return shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}")
                                       if os.access(p, os.X_OK)), None)


# -- configs ---------------------------------------------------------------------------------------------------
def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def render_toml(tree: dict[str, dict[str, Any]]) -> str:
    lines: list[str] = []
    for section, values in tree.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in values.items()]
        lines.append("")
    return "\n".join(lines)


def imapd_config(source: Path, changes: dict[str, dict[str, Any]], known: dict[str, set[str]],
                 drop: list[str] | None = None) -> tuple[str, list[str]]:
    """deploy/SOURCE with ``changes`` applied and ``drop`` (``section.key``) removed; settings this imapd does
    not know are left out. Returns the TOML text and the names left out."""
    tree: dict[str, dict[str, Any]] = tomllib.loads(source.read_text())
    for section, values in changes.items():
        tree.setdefault(section, {}).update(values)
    for name in drop or []:
        section, _, key = name.partition(".")
        tree.get(section, {}).pop(key, None)
    left_out: list[str] = []
    for section in list(tree):
        if section not in known:
            left_out += [f"{section}.{key}" for key in tree.pop(section)]
            continue
        for key in list(tree[section]):
            if key not in known[section]:
                left_out.append(f"{section}.{key}")
                del tree[section][key]
    return render_toml(tree), left_out


def haproxy_config(layout: Layout, stats: Path) -> str:
    """deploy/haproxy.cfg from ``defaults`` on, on loopback, with a foreground ``global``."""
    text = (DEPLOY / "haproxy.cfg").read_text()
    body = text[text.index("\ndefaults") + 1:]
    out = []
    for line in body.splitlines():
        line = line.replace("10.0.0.10:143", f"{HOST}:{layout.imap_port}")
        line = line.replace("10.0.0.10:993", f"{HOST}:{layout.imaps_port}")
        for n in (1, 2):
            if f"10.0.0.2{n}:993" in line:
                line = line.replace(f"10.0.0.2{n}:993", f"{HOST}:{layout.proxy_tls(n)}")
                line = line.replace("port 143", f"port {layout.proxy(n)}")
            line = line.replace(f"10.0.0.2{n}:143", f"{HOST}:{layout.proxy(n)}")
        if "10.0.0." in line.split("#", 1)[0]:
            raise DemoError(f"deploy/haproxy.cfg: an address the demo does not map: {line.strip()!r}")
        out.append(line)
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    maxconn = max(256, min(50000, (soft - 200) // 2))
    head = ["global", "    log stdout format raw local0 info", f"    stats socket {stats} mode 600 level admin",
            f"    maxconn {maxconn}", ""]
    return "\n".join(head + out) + "\n"


# -- processes ---------------------------------------------------------------------------------------------------
@dataclass
class Child:
    name: str
    argv: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child's for its lifetime
        # A session of its own: Ctrl-C reaches only the demo, which stops the children in order.
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                     start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        log.close()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 10.0) -> None:
        if not self.alive:
            return
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def kill(self) -> None:
        """kill -9 (the failover bench)."""
        if self.alive:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(timeout=5)


def greets(port: int, *, header: bytes = b"", expect: bytes = b"* OK", send: bytes = b"",
           timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            if header or send:
                sock.sendall(header + send)
            data = b""
            while expect not in data and len(data) < 4096:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
            if expect == b"* OK" and expect in data:
                sock.sendall(b"a1 LOGOUT\r\n")
            return expect in data
    except OSError:
        return False


@dataclass
class Cluster:
    directory: Path
    layout: Layout = field(default_factory=Layout)
    workers: int = 1
    # More settings for the rendered configs (a bench: proxy.hibernate_after, ...): section -> key -> value.
    backend_changes: dict[str, dict[str, Any]] = field(default_factory=dict)
    proxy_changes: dict[str, dict[str, Any]] = field(default_factory=dict)
    children: dict[str, Child] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def shared(self) -> Path:
        """The one mail root of all backends and proxies (deploy/: /srv/imapd)."""
        return self.directory / "shared"

    @property
    def cert(self) -> tuple[Path, Path]:
        return self.shared / "tls" / "localhost.crt", self.shared / "tls" / "localhost.key"

    def _child(self, name: str, argv: list[str]) -> Child:
        child = Child(name, argv, self.directory / "logs" / f"{name}.log")
        self.children[name] = child
        return child

    # -- preparing ---------------------------------------------------------------------------------------------
    def check_ports(self) -> None:
        taken = []
        for what, port in self.layout.all_ports():
            with socket.socket() as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((HOST, port))
                except OSError:
                    taken.append(f"{what} ({HOST}:{port})")
        if taken:
            raise DemoError("ports in use: " + ", ".join(taken) + "; choose others with --imap-port, --imaps-port "
                            "and --base-port (make cluster-demo CLUSTER_IMAP_PORT=... CLUSTER_BASE_PORT=...)")

    def seed(self) -> None:
        """The demo users and mail (``imapd demo --seed-only``) into the shared mail root, and a certificate."""
        proc = subprocess.run([sys.executable, "-m", "imapd", "demo", "--data-dir", str(self.shared), "--seed-only"],
                              cwd=ROOT, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise DemoError(f"seeding {self.shared} failed:\n{proc.stdout}{proc.stderr}")

    def write_configs(self) -> None:
        known = known_settings()
        etc = self.directory / "etc"
        etc.mkdir(parents=True, exist_ok=True)
        (self.directory / "logs").mkdir(exist_ok=True)
        (self.directory / "run").mkdir(exist_ok=True)
        redis_url = f"redis://{HOST}:{self.layout.redis}/0"
        left_out: set[str] = set()
        for n in (1, 2, 3):
            port = self.layout.backend(n)
            changes: dict[str, dict[str, Any]] = {
                "server": {"data_dir": str(self.shared), "listen": [f"{HOST}:{port}"], "workers": self.workers,
                           "proxy_protocol_from": [f"{HOST}/32"]},
                "tls": {"trust_loopback": True},
                "cluster": {"redis_url": redis_url, "advertise": f"{HOST}:{port}"},
                "lmtp": {"listen": f"{HOST}:{self.layout.lmtp(n)}"},
                "metrics": {"listen": f"{HOST}:{self.layout.metrics(n)}"},
            }
            for section, values in self.backend_changes.items():
                changes.setdefault(section, {}).update(values)
            text, missing = imapd_config(DEPLOY / f"imapd-backend-{n}.toml", changes, known)
            (etc / f"backend-{n}.toml").write_text(text)
            left_out.update(missing)
        cert, key = self.cert
        backends = [f"backend-{n}={HOST}:{self.layout.backend(n)}" for n in (1, 2, 3)]
        for n in (1, 2):
            tls: dict[str, Any] = {"trust_loopback": True}
            if cert.exists():
                tls.update(cert=str(cert), key=str(key))
            changes = {
                "server": {"data_dir": str(self.shared)},
                "proxy": {"listen": [f"{HOST}:{self.layout.proxy(n)}"],
                          "tls_listen": [f"{HOST}:{self.layout.proxy_tls(n)}"] if cert.exists() else [],
                          "backends": backends, "proxy_protocol_from": [f"{HOST}/32"],
                          "control": str(self.directory / "run" / f"proxy-{n}.sock")},
                "tls": tls,
                "cluster": {"redis_url": redis_url},
            }
            for section, values in self.proxy_changes.items():
                changes.setdefault(section, {}).update(values)
            text, missing = imapd_config(DEPLOY / f"imapd-proxy-{n}.toml", changes, known,
                                         drop=[] if cert.exists() else ["tls.cert", "tls.key"])
            (etc / f"proxy-{n}.toml").write_text(text)
            left_out.update(missing)
        if left_out:
            self.warnings.append("settings of deploy/ this imapd does not know (left out; the branch that adds "
                                 "them is not merged here): " + ", ".join(sorted(left_out)))
        (etc / "haproxy.cfg").write_text(haproxy_config(self.layout, self.directory / "run" / "haproxy.sock"))
        from imapd.config import ConfigError, load_settings

        for path in sorted(etc.glob("*.toml")):
            try:
                load_settings(path)
            except ConfigError as exc:
                raise DemoError(f"{path} (from deploy/): {exc}") from None

    # -- starting ----------------------------------------------------------------------------------------------
    def wait(self, child: Child, ready: Any, what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not child.alive:
                raise DemoError(f"{child.name} exited ({child.proc.returncode if child.proc else '?'}); "
                                f"its log {child.log_path}:\n{child.log_tail()}")
            if ready():
                return
            time.sleep(0.1)
        raise DemoError(f"{child.name} does not answer on {what} after {timeout:g} s; "
                        f"its log {child.log_path}:\n{child.log_tail()}")

    def start_redis(self) -> None:
        redis = binary("redis-server")
        if redis is None:
            raise DemoError("redis-server not found: run scripts/install-sysdeps.sh as root "
                            "(apt-get install redis-server)")
        data = self.directory / "redis"
        data.mkdir(exist_ok=True)
        child = self._child("redis", [redis, str(DEPLOY / "redis.conf"), "--bind", HOST, "--port",
                                      str(self.layout.redis), "--dir", str(data), "--supervised", "no"])
        child.start()
        self.wait(child, lambda: greets(self.layout.redis, send=b"PING\r\n", expect=b"+PONG"),
                  f"{HOST}:{self.layout.redis}")

    def start_backend(self, n: int) -> None:
        child = self._child(f"backend-{n}", [sys.executable, "-m", "imapd", "serve", "--config",
                                             str(self.directory / "etc" / f"backend-{n}.toml")])
        child.start()
        port = self.layout.backend(n)
        self.wait(child, lambda: greets(port, header=LOCAL_V2), f"{HOST}:{port}")

    def start_proxy(self, n: int) -> None:
        child = self._child(f"proxy-{n}", [sys.executable, "-m", "imapd", "proxy", "--config",
                                           str(self.directory / "etc" / f"proxy-{n}.toml")])
        child.start()
        port = self.layout.proxy(n)
        self.wait(child, lambda: greets(port, header=LOCAL_V2), f"{HOST}:{port}")

    def start_haproxy(self) -> None:
        haproxy = binary("haproxy")
        if haproxy is None:
            raise DemoError("haproxy not found: run scripts/install-sysdeps.sh as root (apt-get install haproxy)")
        cfg = self.directory / "etc" / "haproxy.cfg"
        check = subprocess.run([haproxy, "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            raise DemoError(f"haproxy refuses {cfg}:\n{check.stdout}{check.stderr}")
        child = self._child("haproxy", [haproxy, "-db", "-f", str(cfg)])
        child.start()
        # Through the whole chain: HAProxy -> a proxy -> (a backend, once a user logs in).
        self.wait(child, lambda: greets(self.layout.imap_port), f"{HOST}:{self.layout.imap_port}")

    def start(self, *, seed: bool = True) -> None:
        """Everything, in order; what is missing raises DemoError naming it (after starting what exists)."""
        self.check_ports()
        self.directory.mkdir(parents=True, exist_ok=True)
        if binary("haproxy") is None or binary("redis-server") is None:
            subprocess.run([str(ROOT / "scripts" / "install-sysdeps.sh")], cwd=ROOT, check=False)
        if seed:
            self.seed()
        self.write_configs()
        self.start_redis()
        for n in (1, 2, 3):
            self.start_backend(n)
        if not has_command("proxy"):
            started = ", ".join(self.children)
            raise DemoError(f"`imapd proxy` not found (python -m imapd proxy: no such command): the proxy branch "
                            f"is not merged into this tree. Started so far: {started}; the proxies and HAProxy "
                            f"need it.")
        for n in (1, 2):
            self.start_proxy(n)
        self.start_haproxy()

    def stop(self) -> None:
        """HAProxy first (no new clients), then the proxies, the backends, Redis."""
        for name in reversed(list(self.children)):
            self.children[name].stop()

    def banner(self) -> str:
        lay = self.layout
        tls = f" and {HOST}:{lay.imaps_port} (IMAPS)" if self.cert[0].exists() else ""
        return "\n".join([
            f"cluster-demo ready: HAProxy {HOST}:{lay.imap_port} (IMAP, STARTTLS){tls}"
            f" -> proxies :{lay.proxy(1)} :{lay.proxy(2)} -> backends :{lay.backend(1)} :{lay.backend(2)}"
            f" :{lay.backend(3)} (one mail root {self.shared}) -> Redis :{lay.redis}",
            f"  python3 -c 'import imaplib; m = imaplib.IMAP4(\"{HOST}\", {lay.imap_port}); "
            f"m.login(\"demo\", \"demo\"); print(m.select(\"INBOX\"))'",
            f"  users demo/demo and alice/alice; logs in {self.directory / 'logs'}; "
            f"`python -m imapd proxy --config {self.directory / 'etc' / 'proxy-1.toml'} backends list`",
            "  Ctrl-C stops everything.",
        ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default=os.environ.get("CLUSTER_DIR", "cluster-demo-data"), type=Path,
                        help="the demo's files: shared/ (the mail root), etc/, logs/, run/, redis/")
    parser.add_argument("--imap-port", type=int, default=int(os.environ.get("CLUSTER_IMAP_PORT", 10143)))
    parser.add_argument("--imaps-port", type=int, default=int(os.environ.get("CLUSTER_IMAPS_PORT", 10993)))
    parser.add_argument("--base-port", type=int, default=int(os.environ.get("CLUSTER_BASE_PORT", 10200)),
                        help="backends BASE+1..3, LMTP +11..13, proxies +21..22 (TLS +31..32), Redis +40, "
                             "metrics +51..53")
    parser.add_argument("--workers", type=int, default=1, help="worker processes per backend")
    args = parser.parse_args(argv)
    cluster = Cluster(args.dir.resolve(), Layout(args.imap_port, args.imaps_port, args.base_port), args.workers)
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    try:
        try:
            cluster.start()
        finally:
            for warning in cluster.warnings:
                print(f"cluster-demo: warning: {warning}", file=sys.stderr, flush=True)
        print(cluster.banner(), flush=True)
        while not stop:
            for child in cluster.children.values():
                if not child.alive:
                    raise DemoError(f"{child.name} exited; its log {child.log_path}:\n{child.log_tail()}")
            time.sleep(0.5)
    except DemoError as exc:
        print(f"cluster-demo: {exc}", file=sys.stderr, flush=True)
        cluster.stop()
        return EX_MISSING
    except KeyboardInterrupt:
        pass
    print("cluster-demo: stopping", flush=True)
    cluster.stop()
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())

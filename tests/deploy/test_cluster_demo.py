"""deploy/ as files that work: HAProxy and Redis accept theirs, imapd loads its own, and `make cluster-demo`
(scripts/cluster_demo.py) starts the chain on loopback, or, while `imapd proxy` is not part of this tree,
starts what exists and stops with a message naming the missing command."""

from __future__ import annotations

import imaplib
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cluster.haproxy import free_port, haproxy_binary
from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import cluster_demo


class IMAP4From(imaplib.IMAP4):
    def __init__(self, source: str, port: int) -> None:
        self._source = source
        super().__init__("127.0.0.1", port, timeout=30)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout, source_address=(self._source, 0))


def free_base() -> int:
    """A base port with the demo's 60 ports after it free (probably: checked again by the demo)."""
    for _ in range(50):
        base = free_port() // 100 * 100
        if 20000 <= base <= 60000:
            try:
                cluster_demo.Cluster(Path("/nonexistent"), cluster_demo.Layout(base + 43, base + 93, base)).check_ports()
            except cluster_demo.DemoError:
                continue
            return base
    pytest.skip("no free range of 100 ports")


def test_deploy_haproxy_cfg_is_valid() -> None:
    binary = haproxy_binary()
    if binary is None:
        pytest.skip("haproxy is not installed")
    check = subprocess.run([binary, "-c", "-f", str(ROOT / "deploy" / "haproxy.cfg")], capture_output=True,
                           text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr


def test_demo_haproxy_cfg_maps_every_address(tmp_path: Path) -> None:
    layout = cluster_demo.Layout(10143, 10993, 10200)
    text = cluster_demo.haproxy_config(layout, tmp_path / "haproxy.sock")
    assert "10.0.0." not in text
    assert "127.0.0.1:10221 send-proxy-v2 check check-send-proxy" in text
    assert "127.0.0.1:10232 send-proxy-v2 check check-send-proxy port 10222" in text  # IMAPS checked on plain
    assert "timeout tunnel 35m" in text
    binary = haproxy_binary()
    if binary is not None:
        (tmp_path / "haproxy.cfg").write_text(text)
        check = subprocess.run([binary, "-c", "-f", str(tmp_path / "haproxy.cfg")], capture_output=True,
                               text=True, timeout=30)
        assert check.returncode == 0, check.stdout + check.stderr


def test_imapd_configs_load_with_the_settings_this_imapd_has(tmp_path: Path) -> None:
    """Each deploy/*.toml, less the sections this tree does not have yet, is a valid config; what is left out
    is only what the redis and proxy branches add (never a typo in a setting we have)."""
    from imapd.config import load_settings

    known = cluster_demo.known_settings()
    later = {"cluster", "proxy"}  # the sections other branches add
    for source in sorted((ROOT / "deploy").glob("imapd-*.toml")):
        text, left_out = cluster_demo.imapd_config(source, {}, known)
        assert all(name.split(".")[0] in later for name in left_out), (source.name, left_out)
        path = tmp_path / source.name
        path.write_text(text)
        settings = load_settings(path)
        if "backend" in source.name:
            assert settings.server.proxy_protocol_from == ["10.0.0.21/32", "10.0.0.22/32"]
            assert settings.server.data_dir == "/srv/imapd"


def test_redis_conf_starts(tmp_path: Path) -> None:
    redis = cluster_demo.binary("redis-server")
    if redis is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    proc = subprocess.Popen([redis, str(ROOT / "deploy" / "redis.conf"), "--bind", "127.0.0.1", "--port", str(port),
                             "--dir", str(tmp_path), "--supervised", "no"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while not cluster_demo.greets(port, send=b"PING\r\n", expect=b"+PONG"):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.1)
        assert cluster_demo.greets(port, send=b"CONFIG GET maxmemory-policy\r\n", expect=b"noeviction")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_cluster_demo_starts_what_exists(tmp_path: Path) -> None:
    base = free_base()
    cluster = cluster_demo.Cluster(tmp_path / "demo", cluster_demo.Layout(base + 43, base + 93, base))
    try:
        if not cluster_demo.has_command("proxy"):
            with pytest.raises(cluster_demo.DemoError, match=r"`imapd proxy` not found"):
                cluster.start()
            # What exists was started and answered: Redis and three backends on one mail root.
            assert list(cluster.children) == ["redis", "backend-1", "backend-2", "backend-3"]
            assert all(child.alive for child in cluster.children.values())
            assert cluster_demo.greets(cluster.layout.backend(2), header=cluster_demo.LOCAL_V2)
        else:
            cluster.start()
            # Plain IMAP from a client address of its own: the backend that serves the session logs that
            # address (HAProxy's PROXY header to the proxy, the proxy's to the backend).
            imap = IMAP4From("127.0.0.9", cluster.layout.imap_port)
            try:
                assert imap.login("demo", "demo")[0] == "OK"
                typ, data = imap.select("INBOX")
                assert typ == "OK" and int(data[0] or b"0") > 0
            finally:
                imap.logout()
            logs = "".join((cluster.directory / "logs" / f"backend-{n}.log").read_text() for n in (1, 2, 3))
            assert "user='demo' address=127.0.0.9 " in logs, logs[-3000:]
            # IMAPS: HAProxy passes TLS through with the PROXY header in front of the ClientHello.
            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            imaps = imaplib.IMAP4_SSL("127.0.0.1", cluster.layout.imaps_port, ssl_context=context, timeout=30)
            try:
                assert imaps.login("alice", "alice")[0] == "OK"
            finally:
                imaps.logout()
    finally:
        cluster.stop()
    assert not any(child.alive for child in cluster.children.values())

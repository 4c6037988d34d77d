"""SIGHUP reloads the TLS certificate: new connections get the new one, open ones keep theirs."""

from __future__ import annotations

import shutil
import signal
import socket
import ssl
import time
from pathlib import Path

import pytest

from tests.conftest import stop_server
from tests.e2e.test_tls import client_context, make_cert, start_tls_server


def _peer_cert(port: int) -> tuple[bytes, socket.socket]:
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    tls = client_context().wrap_socket(raw, server_hostname="localhost")
    assert tls.recv(4096).startswith(b"* OK")
    cert = tls.getpeercert(binary_form=True)
    assert cert is not None
    return cert, tls


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sighup_reloads_the_certificate(tmp_path: Path, workers: str) -> None:
    server = start_tls_server(tmp_path, "-o", f"server.workers={workers}")
    try:
        old_cert, old_conn = _peer_cert(server.tls_port)
        new_dir = tmp_path / "renewed"
        new_dir.mkdir()
        cert, key = make_cert(new_dir)
        shutil.copy(cert, tmp_path / "cert.pem")
        shutil.copy(key, tmp_path / "key.pem")
        server.srv.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        new_cert = old_cert
        while new_cert == old_cert and time.monotonic() < deadline:
            time.sleep(0.1)
            new_cert, conn = _peer_cert(server.tls_port)
            conn.close()
        assert new_cert != old_cert, server.srv.log()
        assert new_cert == ssl.PEM_cert_to_DER_cert((new_dir / "cert.pem").read_text())
        # the connection made before the reload goes on with its own session
        old_conn.sendall(b"a NOOP\r\n")
        assert old_conn.recv(4096).startswith(b"a OK")
        old_conn.close()
        assert "reloaded the TLS certificate" in server.srv.log()
    finally:
        stop_server(server.srv)

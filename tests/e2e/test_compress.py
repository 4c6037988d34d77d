"""COMPRESS=DEFLATE (RFC 4978) end to end: a zlib client over plain and TLS connections, across workers
and a reload, IDLE pushes, a literal that expands a thousandfold, a corrupt stream; and mbsync, which
turns it on by itself."""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
import zlib
from pathlib import Path

import pytest

from imapd.server.handoff import owner_slot
from tests.conftest import RunningServer, imapd_cli
from tests.e2e.test_mbsync import ensure_mbsync, mbsync_version, write_config
from tests.e2e.test_tls import client_context
from tests.e2e.test_workers import USERS, cluster  # noqa: F401 - the two-worker fixture
from tests.rawimap import RawIMAP


class Deflated:
    """A socket seen through raw deflate both ways, as an RFC 4978 client does it (sync flush per write)."""

    def __init__(self, sock: socket.socket | ssl.SSLSocket, leftover: bytes = b"") -> None:
        self.sock = sock
        self.out = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.inflate = zlib.decompressobj(-15)
        self.received = len(leftover)
        assert not leftover, "the server sent compressed data before we asked"

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(self.out.compress(data) + self.out.flush(zlib.Z_SYNC_FLUSH))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self, size: int) -> bytes:
        while True:
            chunk = self.sock.recv(size)
            if not chunk:
                return b""
            self.received += len(chunk)
            plain = self.inflate.decompress(chunk)
            if plain:
                return plain

    def settimeout(self, value: float) -> None:
        self.sock.settimeout(value)

    def getsockname(self) -> tuple[str, int]:
        return self.sock.getsockname()  # type: ignore[no-any-return]

    def close(self) -> None:
        self.sock.close()


class ZClient(RawIMAP):
    def compress(self) -> None:
        untagged, tagged = self.command("COMPRESS DEFLATE")
        assert tagged.endswith(b" OK DEFLATE active"), (untagged, tagged)
        self.sock = Deflated(self.sock, self.buf)  # type: ignore[assignment]

    @classmethod
    def over_tls(cls, port: int) -> ZClient:
        self = cls.__new__(cls)
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock = client_context().wrap_socket(raw, server_hostname="localhost")
        self.buf = b""
        self.greeting = self.readline()
        self._n = 0
        return self


def _message(subject: str, body: bytes = b"hello\r\n") -> bytes:
    return b"From: a@example.org\r\nSubject: " + subject.encode() + b"\r\n\r\n" + body


def test_compress_session(server: RunningServer) -> None:
    user, password = "alice", server.users["alice"]
    c = ZClient(server.host, server.port)
    assert b"COMPRESS=DEFLATE" in c.greeting
    _, tagged = c.command("COMPRESS DEFLATE")
    assert tagged.startswith(b"t1 BAD"), tagged  # not before login (RFC 4978 section 3)
    c.ok(f"LOGIN {user} {password}")
    _, tagged = c.command("COMPRESS LZW")
    assert tagged.startswith(b"t3 BAD"), tagged
    c.compress()
    _, tagged = c.command("COMPRESS DEFLATE")
    assert tagged.startswith(b"t5 NO [COMPRESSIONACTIVE]"), tagged
    # A synchronizing literal: the continuation request comes compressed too.
    body = b"".join(b"line %d of a compressible body\r\n" % i for i in range(5000))
    msg = _message("compressed append", body)
    c.sock.sendall(b"a1 APPEND INBOX {%d}\r\n" % len(msg))
    assert c.readline().startswith(b"+ ")
    c.sock.sendall(msg + b"\r\n")
    assert b"a1 OK [APPENDUID" in c.read_until(rb"^a1 ")[-1]
    untagged = c.ok("SELECT INBOX")
    exists = next(int(line.split()[1]) for line in untagged if line.endswith(b" EXISTS"))
    lines = c.ok(f"FETCH {exists} BODY.PEEK[]")
    assert msg in lines[0]
    assert c.sock.received < len(msg) // 10  # what came over the wire was compressed  # type: ignore[attr-defined]
    # IDLE: a push from another session arrives compressed.
    other = RawIMAP(server.host, server.port)
    other.ok(f"LOGIN {user} {password}")
    c.sock.sendall(b"i1 IDLE\r\n")
    assert c.readline().startswith(b"+ ")
    other.ok(b"APPEND INBOX {%d+}\r\n" % len(_message("pushed")) + _message("pushed"))
    assert c.read_until(rb"^\* \d+ EXISTS$")[-1] == b"* %d EXISTS" % (exists + 1)
    c.sock.sendall(b"DONE\r\n")
    c.read_until(rb"^i1 OK")
    other.command("LOGOUT")
    untagged, tagged = c.command("LOGOUT")
    assert untagged[0].startswith(b"* BYE") and b"OK" in tagged
    c.close()


def test_a_literal_that_expands_a_thousandfold(server: RunningServer) -> None:
    """20 MB of one byte deflate to ~20 KB: the server expands it in steps and keeps serving others."""
    c = ZClient(server.host, server.port, timeout=60)
    c.ok(f"LOGIN alice {server.users['alice']}")
    c.compress()
    msg = _message("zeros", b"0" * 20_000_000 + b"\r\n")
    other = RawIMAP(server.host, server.port)
    other.ok(f"LOGIN bob {server.users['bob']}")
    c.sock.sendall(b"a1 APPEND INBOX {%d+}\r\n" % len(msg) + msg + b"\r\n")
    start = time.monotonic()
    other.ok("NOOP")  # answered while alice's literal is being expanded
    assert time.monotonic() - start < 5
    assert b"a1 OK [APPENDUID" in c.read_until(rb"^a1 ", timeout=60)[-1]
    untagged = c.ok("SELECT INBOX")
    exists = next(int(line.split()[1]) for line in untagged if line.endswith(b" EXISTS"))
    assert any(f"RFC822.SIZE {len(msg)}".encode() in line for line in c.ok(f"FETCH {exists} RFC822.SIZE"))
    c.command("LOGOUT")
    other.command("LOGOUT")


def test_a_corrupt_stream_ends_the_session_with_bye(server: RunningServer) -> None:
    c = ZClient(server.host, server.port)
    c.ok(f"LOGIN alice {server.users['alice']}")
    c.compress()
    c.sock.send_raw(b"\xff\xff\xff\xff garbage")  # type: ignore[attr-defined]
    line = c.readline()
    assert line.startswith(b"* BYE [CLIENTBUG]"), line
    with pytest.raises((ConnectionError, OSError)):
        c.readline()
    # the server goes on
    fresh = RawIMAP(server.host, server.port)
    fresh.ok(f"LOGIN alice {server.users['alice']}")
    fresh.command("LOGOUT")


def test_compressed_sessions_survive_a_reload_plain_and_tls(cluster: tuple[RunningServer, int]) -> None:  # noqa: F811
    """Two workers: a TLS session is relayed to its owner and inflated there; at a reload each compressed
    session moves to the new generation with its stream (full flush one way, the window the other)."""
    srv, tls_port = cluster
    data = srv.data_dir
    assert {owner_slot(u, 2) for u in USERS} == {0, 1}
    sessions: dict[str, ZClient] = {}
    for i, (user, password) in enumerate(USERS.items()):
        c = ZClient.over_tls(tls_port) if i % 2 else ZClient(srv.host, srv.port)
        c.ok(f"LOGIN {user} {password}")
        c.compress()
        c.ok("SELECT INBOX")
        # history the inflater must remember: the commands after the reload refer back into it
        c.ok('LIST "" "*"')
        sessions[user] = c
    idler = sessions["alice"]
    idler.sock.sendall(b"i1 IDLE\r\n")
    assert idler.readline().startswith(b"+ ")
    imapd_cli("reload", "--data-dir", str(data))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and srv.log().count("to the new generation") < 2:
        time.sleep(0.1)
    assert srv.log().count("handed 2 session(s) to the new generation") == 2, srv.log()[-3000:]
    for user, c in sessions.items():
        if c is idler:
            continue
        untagged = c.ok("SELECT INBOX")  # the same words as before: back-references into the window
        assert any(line.endswith(b" EXISTS") for line in untagged), (user, untagged)
        c.ok(b"APPEND INBOX {%d+}\r\n" % len(_message(f"after reload {user}")) + _message(f"after reload {user}"))
    # the IDLE session is still in IDLE on the new worker and hears of new mail
    writer = RawIMAP(srv.host, srv.port)
    writer.ok("LOGIN alice secret1")
    writer.ok(b"APPEND INBOX {%d+}\r\n" % len(_message("for the idler")) + _message("for the idler"))
    writer.command("LOGOUT")
    assert any(line.endswith(b" EXISTS") for line in idler.read_until(rb"^\* \d+ EXISTS$", timeout=10))
    idler.sock.sendall(b"DONE\r\n")
    idler.read_until(rb"^i1 OK")
    idler.ok("NOOP")
    for c in sessions.values():
        c.command("LOGOUT")
        c.close()


def test_mbsync_turns_compression_on(server: RunningServer, tmp_path: Path) -> None:
    mbsync = ensure_mbsync()
    version = mbsync_version(mbsync)
    server.add_user("mbuser", "mbsync-pass")
    imap = RawIMAP(server.host, server.port)
    imap.ok("LOGIN mbuser mbsync-pass")
    for i in range(20):
        msg = _message(f"sync {i}", b"word " * 2000 + b"\r\n")
        imap.ok(b"APPEND INBOX {%d+}\r\n" % len(msg) + msg)
    rc = write_config(tmp_path, server, version)
    proc = subprocess.run([mbsync, "-D", "-c", str(rc), "-a"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "COMPRESS DEFLATE" in proc.stdout + proc.stderr
    local = tmp_path / "mail" / "INBOX"
    files = list((local / "new").iterdir()) + list((local / "cur").iterdir())
    assert len(files) == 20
    assert all(b"word word" in f.read_bytes() for f in files)
    imap.command("LOGOUT")

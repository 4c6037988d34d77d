"""ManageSieve (RFC 5804) driven by sievelib's client against a real ``imapd serve`` process."""

from __future__ import annotations

import imaplib
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sievelib.managesieve import Client

from tests.conftest import RunningServer, imapd_cli, start_server, stop_server
from tests.e2e.test_tls import make_cert

pytestmark = pytest.mark.filterwarnings("ignore:Credentials are sent over an unencrypted connection")


def sieve_port(srv: RunningServer) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        m = re.search(r"managesieve listening on 127\.0\.0\.1:(\d+)", srv.log())
        if m:
            return int(m.group(1))
        time.sleep(0.05)
    raise AssertionError(srv.log())


def make_server(base: Path, *extra: str) -> RunningServer:
    data_dir = base / "data"
    data_dir.mkdir(parents=True)
    imapd_cli("user", "add", "alice", "--password-stdin", "--data-dir", str(data_dir), stdin="secret1")
    srv = start_server(data_dir, "-o", "managesieve.listen=127.0.0.1:0", *extra)
    srv.users["alice"] = "secret1"
    return srv


@pytest.fixture(scope="module", params=["1", "2"], ids=["single", "workers"])
def sieve_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = make_server(tmp_path_factory.mktemp("ms"), "-o", f"server.workers={request.param}")
    try:
        yield srv
    finally:
        stop_server(srv)


def connect(srv: RunningServer, password: str = "secret1", **kwargs: object) -> Client:
    client = Client("127.0.0.1", sieve_port(srv))
    assert client.connect("alice", password, authmech="PLAIN", **kwargs), client.errmsg
    return client


GOOD = 'require ["fileinto", "mailbox"];\r\nif header :contains "Subject" "invoice" { fileinto :create "Invoices"; }\r\n'


def test_scripts_roundtrip(sieve_server: RunningServer) -> None:
    c = connect(sieve_server)
    assert "vacation" in c.get_sieve_capabilities() and "fileinto" in c.get_sieve_capabilities()
    assert c.havespace("main", len(GOOD))
    assert c.putscript("main", GOOD)
    assert c.listscripts() == (None, ["main"])
    assert c.setactive("main")
    assert c.listscripts() == ("main", [])
    assert c.getscript("main") == GOOD.replace("\r\n", "\n").rstrip("\n")
    assert c.putscript("spare", "keep;")
    assert c.renamescript("spare", "spare2")
    assert not c.renamescript("nosuch", "x") and c.errcode == b"NONEXISTENT"
    assert not c.renamescript("spare2", "main") and c.errcode == b"ALREADYEXISTS"
    assert c.renamescript("main", "primary")  # the active script keeps being active under its new name
    assert c.listscripts() == ("primary", ["spare2"])
    assert not c.deletescript("primary") and c.errcode == b"ACTIVE"
    assert c.deletescript("spare2")
    assert not c.deletescript("spare2") and c.errcode == b"NONEXISTENT"
    assert not c.setactive("nosuch") and c.errcode == b"NONEXISTENT"
    assert not c.havespace("big", 10 * 1024 * 1024) and c.errcode == b"QUOTA/MAXSIZE"
    c.logout()
    # another connection (maybe another worker) sees the same scripts
    c2 = connect(sieve_server)
    assert c2.listscripts() == ("primary", [])
    assert c2.setactive("")
    assert c2.listscripts() == (None, ["primary"])
    assert c2.deletescript("primary")
    c2.logout()


def test_bad_script_is_refused_with_the_parser_message(sieve_server: RunningServer) -> None:
    c = connect(sieve_server)
    assert not c.putscript("bad", 'fileinto "x";')
    assert c.errmsg == b"line 1: extension 'fileinto' not loaded"
    assert not c.putscript("bad", 'require "fileinto";\nif true {\n  fileinto "x";\n')
    assert c.errmsg == b"line 4: parsing error: end of script reached while right_cbracket expected"
    assert not c.checkscript('require "nosuch";') and b"not supported" in c.errmsg
    assert c.checkscript('require "vacation"; vacation "away";')
    assert c.listscripts() == (None, [])
    c.logout()


def test_wrong_password_is_refused(sieve_server: RunningServer) -> None:
    client = Client("127.0.0.1", sieve_port(sieve_server))
    assert not client.connect("alice", "wrong", authmech="PLAIN")
    assert b"AUTH-FAILED" in (client.errcode or b"") or client.errmsg


def test_active_script_from_managesieve_decides_delivery(sieve_server: RunningServer) -> None:
    c = connect(sieve_server)
    assert c.putscript("main", GOOD) and c.setactive("main")
    c.logout()
    msg = b"From: a@b.example\nTo: alice@example.org\nSubject: invoice 42\n\npay\n"
    imapd_cli("deliver", "alice", "--data-dir", str(sieve_server.data_dir), stdin=msg)
    with imaplib.IMAP4(sieve_server.host, sieve_server.port) as imap:
        imap.login("alice", "secret1")
        typ, data = imap.select("Invoices")
        assert typ == "OK" and data == [b"1"]
    c = connect(sieve_server)
    assert c.setactive("") and c.deletescript("main")
    c.logout()


def _raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        out = b""
        while not out.endswith(b"\r\nOK \"imapd ManageSieve ready\"\r\n"):
            out += s.recv(4096)
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        while chunk := s.recv(4096):
            out += chunk
        return out


def test_starttls_and_no_plaintext_before_it(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path)
    # loopback not trusted: as for IMAP, PLAIN only after STARTTLS
    srv = make_server(tmp_path, "-o", f"tls.cert={cert}", "-o", f"tls.key={key}", "-o", "tls.trust_loopback=false")
    try:
        port = sieve_port(srv)
        out = _raw(port, b'AUTHENTICATE "PLAIN" "AGFsaWNlAHNlY3JldDE="\r\nLOGOUT\r\n')
        assert b'"STARTTLS"' in out and b'"SASL" ""' in out
        assert b"NO (ENCRYPT-NEEDED)" in out
        client = Client("127.0.0.1", port, srvhostname="localhost")
        assert not client.connect("alice", "secret1", authmech="PLAIN")  # no STARTTLS: refused
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("SSL_CERT_FILE", str(cert))  # the client's default context trusts our certificate
            client = Client("127.0.0.1", port, srvhostname="localhost")
            assert client.connect("alice", "secret1", starttls=True, authmech="PLAIN"), client.errmsg
            assert "STARTTLS" not in client.capability().decode()  # not offered twice
            assert client.putscript("main", "keep;")
            assert client.listscripts() == (None, ["main"])
            client.logout()
    finally:
        stop_server(srv)


def test_raw_sasl_continuation_and_states(sieve_server: RunningServer) -> None:
    port = sieve_port(sieve_server)
    plain = b'"AGFsaWNlAHNlY3JldDE="'  # \0alice\0secret1
    out = _raw(port, b'LISTSCRIPTS\r\nFROB\r\nAUTHENTICATE "PLAIN"\r\n' + plain + b'\r\n'
                     b'PUTSCRIPT "lit" {5+}\r\nkeep;\r\nLISTSCRIPTS\r\nNOOP "t1"\r\nUNAUTHENTICATE\r\n'
                     b'LISTSCRIPTS\r\nAUTHENTICATE "PLAIN"\r\n"*"\r\nLOGOUT\r\n')
    tail = out.split(b'OK "imapd ManageSieve ready"\r\n', 1)[1]
    assert tail.split(b"\r\n")[:12] == [
        b'NO "Authenticate first"', b'NO "Unknown command FROB"', b'""', b'OK "Logged in"',
        b'OK "Script stored"', b'"lit"', b'OK "Listscripts completed"', b'OK (TAG "t1") "Done"',
        b'OK "Unauthenticated"', b'NO "Authenticate first"', b'""', b'NO "Authentication cancelled"']
    c = connect(sieve_server)
    assert c.deletescript("lit")
    c.logout()


def test_failed_managesieve_logins_throttle_imap_too(tmp_path: Path) -> None:
    """One throttle for both protocols: guessing over ManageSieve does not get a fresh budget on IMAP."""
    srv = make_server(tmp_path, "-o", "server.workers=1", "-o", "auth.max_user_failures=2",
                      "-o", "auth.max_failures=100")
    try:
        for _ in range(3):
            client = Client("127.0.0.1", sieve_port(srv))
            assert not client.connect("alice", "guess", authmech="PLAIN")
            assert client.errcode == b"AUTH-FAILED"
        with imaplib.IMAP4(srv.host, srv.port) as imap, pytest.raises(imaplib.IMAP4.error,
                                                                       match="AUTHENTICATIONFAILED"):
            imap.login("alice", "secret1")  # the right password, refused: alice is throttled
        assert "protocol=managesieve mechanism=PLAIN reason=wrong password" in srv.log()
    finally:
        stop_server(srv)


def test_idle_client_gets_bye(tmp_path: Path) -> None:
    srv = make_server(tmp_path, "-o", "server.workers=1", "-o", "limits.preauth_timeout=0.5")
    try:
        with socket.create_connection(("127.0.0.1", sieve_port(srv)), timeout=10) as s:
            out = b""
            while chunk := s.recv(4096):
                out += chunk
        assert out.endswith(b'BYE "Idle for too long"\r\n')
    finally:
        stop_server(srv)


def test_xstate_token_authenticates_until_revoked(sieve_server: RunningServer) -> None:
    """SASL X-STATE: a webmail that keeps only the IMAP token manages the filters with it; a revoked
    token (the webmail's logout) or a forged one is refused like a wrong password."""
    import base64

    from imapd.client import xstate_save

    imap = imaplib.IMAP4("127.0.0.1", sieve_server.port)
    imap.login("alice", "secret1")
    token = xstate_save(imap)
    port = sieve_port(sieve_server)
    b64 = base64.b64encode(token.encode()).decode()
    out = _raw(port, b'AUTHENTICATE "X-STATE" "' + b64.encode() + b'"\r\nCAPABILITY\r\nLISTSCRIPTS\r\nLOGOUT\r\n')
    tail = out.split(b'OK "imapd ManageSieve ready"\r\n', 1)[1]
    assert tail.startswith(b'OK "Logged in"\r\n'), tail
    assert b'"OWNER" "alice"' in tail and b'OK "Listscripts completed"' in tail
    assert b'"SASL" "PLAIN X-STATE"' in out.split(b'OK "imapd ManageSieve ready"')[0]
    # the continuation form, and a token that is not this server's
    forged = base64.b64encode(token[:-4].encode() + b"AAAA").decode()
    out = _raw(port, b'AUTHENTICATE "X-STATE"\r\n"' + forged.encode() + b'"\r\nLISTSCRIPTS\r\nLOGOUT\r\n')
    assert b'""\r\nNO (AUTH-FAILED) "Not a state token of this server"' in out, out
    assert b'NO "Authenticate first"' in out
    typ, _ = imap._simple_command("X-STATE", "REVOKE")
    assert typ == "OK"
    imap.logout()
    out = _raw(port, b'AUTHENTICATE "X-STATE" "' + b64.encode() + b'"\r\nLOGOUT\r\n')
    assert b'NO (AUTH-FAILED) "State token was revoked (X-STATE REVOKE)"' in out, out

"""The warm cache is only visible through speed and metrics, so its correctness is tested directly:
whatever changes while a user is cached is seen at reconnect, and the bounds hold."""

from __future__ import annotations

import imaplib
import re
import socket
import time
import urllib.request
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import pytest

from tests.conftest import RunningServer, imapd_cli, start_server, stop_server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def message(subject: str) -> bytes:
    m = EmailMessage()
    m["From"] = "x@example.org"
    m["To"] = "ivy@example.org"
    m["Subject"] = subject
    m.set_content("hi\n")
    return m.as_bytes(policy=SMTP)


class Cached:
    def __init__(self, server: RunningServer, metrics_port: int) -> None:
        self.server = server
        self.metrics_port = metrics_port

    def session(self) -> imaplib.IMAP4:
        imap = imaplib.IMAP4(self.server.host, self.server.port)
        imap.login("ivy", "pw-ivy")
        return imap

    def metrics(self) -> dict[str, float]:
        return metrics(self.metrics_port)


@pytest.fixture
def cached(tmp_path: Path) -> Iterator[Cached]:
    data = tmp_path / "data"
    imapd_cli("user", "add", "ivy", "--password-stdin", "--data-dir", str(data), stdin="pw-ivy")
    port = free_port()
    srv = start_server(data, "-o", f"metrics.listen=127.0.0.1:{port}", "-o", "cache.ttl=600")
    srv.users["ivy"] = "pw-ivy"
    try:
        yield Cached(srv, port)
    finally:
        stop_server(srv)


def _visit(c: Cached, mailbox: str = "INBOX") -> tuple[imaplib.IMAP4, int]:
    imap = c.session()
    typ, data = imap.select(mailbox)
    assert typ == "OK", data
    return imap, int(data[0])


def test_reconnect_hits_the_cache_and_login_skips_the_hash(cached: Cached) -> None:
    imap, _ = _visit(cached)
    imap.logout()
    before = cached.metrics()
    imap, _ = _visit(cached)
    imap.logout()
    after = cached.metrics()
    assert after["imapd_cache_hits_total"] == before.get("imapd_cache_hits_total", 0) + 1
    assert after["imapd_credential_cache_hits_total"] >= 1
    assert after['imapd_command_seconds_count{command="SELECT"}'] >= 2
    bad = imaplib.IMAP4(cached.server.host, cached.server.port)
    with pytest.raises(imaplib.IMAP4.error):
        bad.login("ivy", "wrong")  # a wrong password is never answered from the cache
    bad.logout()


def test_delivery_while_cached_is_seen_at_reconnect(cached: Cached) -> None:
    imap, n = _visit(cached)
    imap.logout()
    imapd_cli("deliver", "ivy", "--data-dir", str(cached.server.data_dir), stdin=message("while away"))
    imap, m = _visit(cached)
    assert m == n + 1
    _, data = imap.fetch(str(m), "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert b"while away" in data[0][1]
    imap.logout()
    assert cached.metrics()["imapd_cache_hits_total"] >= 1


def test_changes_by_another_server_process_are_seen(cached: Cached, tmp_path: Path) -> None:
    imap = cached.session()
    imap.create("Shared")
    imap.append("Shared", None, None, message("one"))
    imap.append("Shared", None, None, message("two"))
    imap.select("Shared")
    imap.logout()  # "Shared" is now warm in the first process
    other = start_server(cached.server.data_dir)
    other.users["ivy"] = "pw-ivy"
    try:
        o = imaplib.IMAP4(other.host, other.port)
        o.login("ivy", "pw-ivy")
        o.select("Shared")
        o.store("1", "+FLAGS", "(\\Flagged)")
        o.store("2", "+FLAGS", "(\\Deleted)")
        o.expunge()
        o.create("Doomed")
        o.logout()
        imap, n = _visit(cached, "Shared")
        assert n == 1
        _, data = imap.fetch("1", "(FLAGS)")
        assert b"\\Flagged" in data[0]
        imap.logout()
        imap, _ = _visit(cached, "Doomed")
        imap.logout()
        o = imaplib.IMAP4(other.host, other.port)
        o.login("ivy", "pw-ivy")
        o.delete("Doomed")
        o.logout()
        imap = cached.session()
        typ, data = imap.select("Doomed")
        assert typ == "NO" and b"NONEXISTENT" in data[0]
        imap.logout()
    finally:
        stop_server(other)


def test_password_change_clears_the_fast_path(cached: Cached) -> None:
    cached.session().logout()
    cached.session().logout()
    imapd_cli("user", "passwd", "ivy", "--password-stdin", "--data-dir", str(cached.server.data_dir),
              stdin="pw-new")
    old = imaplib.IMAP4(cached.server.host, cached.server.port)
    with pytest.raises(imaplib.IMAP4.error):
        old.login("ivy", "pw-ivy")
    old.logout()
    new = imaplib.IMAP4(cached.server.host, cached.server.port)
    assert new.login("ivy", "pw-new")[0] == "OK"
    new.logout()


def test_tiny_max_bytes_evicts_and_tiny_ttl_expires(tmp_path: Path) -> None:
    data = tmp_path / "data"
    imapd_cli("user", "add", "ivy", "--password-stdin", "--data-dir", str(data), stdin="pw-ivy")
    port = free_port()
    srv = start_server(data, "-o", f"metrics.listen=127.0.0.1:{port}", "-o", "cache.max_bytes=600")
    srv.users["ivy"] = "pw-ivy"
    try:
        c = Cached(srv, port)
        for box in ("INBOX", "Sent", "Drafts"):
            imap, _ = _visit(c, box)
            imap.logout()
        time.sleep(0.2)
        m = c.metrics()
        assert m["imapd_cache_evictions_total"] >= 2 and m["imapd_cache_bytes"] <= 600
    finally:
        stop_server(srv)
    port = free_port()
    srv = start_server(data, "-o", f"metrics.listen=127.0.0.1:{port}", "-o", "cache.ttl=0.4")
    srv.users["ivy"] = "pw-ivy"
    try:
        c = Cached(srv, port)
        imap, _ = _visit(c)
        imap.logout()
        time.sleep(0.3)
        assert c.metrics()["imapd_cache_mailboxes"] == 1
        deadline = time.monotonic() + 5
        while c.metrics()["imapd_cache_mailboxes"] and time.monotonic() < deadline:
            time.sleep(0.1)
        m = c.metrics()
        assert m["imapd_cache_mailboxes"] == 0 and m["imapd_cache_evictions_total"] >= 1
        out = imapd_cli("stats", "--metrics", f"127.0.0.1:{port}").stdout.decode()
        assert re.search(r"imapd_cache_evictions_total\s+\d+", out)
    finally:
        stop_server(srv)


def test_a_warm_envelope_fetch_is_answered_in_place_and_the_same(cached: Cached) -> None:
    """The webmail's repeated FETCH of a page of envelopes runs on the network loop once the envelopes are
    in the value cache: no lane round trip, and the same answer as from the lane; a FETCH that needs the
    index or the file (sizes, bodies, \\Seen) still goes to the lane. (A background job of the user, such
    as the sync after a delivery, sends a command to the lane too: hence the retries.)"""
    for i in range(5):
        imapd_cli("deliver", "ivy", "--data-dir", str(cached.server.data_dir), stdin=message(f"page {i}"))
    imap, n = _visit(cached)

    def inline() -> float:
        return cached.metrics().get("imapd_inline_commands_total", 0)

    before = inline()
    _, first = imap.uid("FETCH", "1:*", "(UID ENVELOPE FLAGS)")  # the lane fills the value cache
    assert inline() == before and len(first) == n
    for _ in range(50):
        _, again = imap.uid("FETCH", "1:*", "(UID ENVELOPE FLAGS)")
        assert again == first
        if inline() > before:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the cached FETCH never ran in place")
    before = inline()
    imap.uid("FETCH", "1:*", "(RFC822.SIZE)")  # from the index
    imap.fetch("1", "(BODY[TEXT])")  # from the file, and sets \Seen
    assert inline() == before
    _, flags = imap.fetch("1", "(FLAGS)")
    assert b"\\Seen" in flags[0]
    imap.logout()

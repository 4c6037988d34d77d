"""A session handed to a new worker by a reload keeps its X-STATE lineage: its later tokens and the
earlier ones still die together on REVOKE."""

from __future__ import annotations

import time
from pathlib import Path

from statecodec import KeyRing
from statecodec import decode as decode_token
from tests.conftest import imapd_cli, start_server, stop_server
from tests.e2e.test_workers import _supervisor_ready
from tests.e2e.test_xstate import token_of
from tests.rawimap import RawIMAP


def test_reload_keeps_the_lineage(tmp_path: Path) -> None:
    data = tmp_path / "data"
    imapd_cli("user", "add", "dora", "--password-stdin", "--data-dir", str(data), stdin="pw-dora")
    srv = start_server(data, "-o", "server.workers=2")
    try:
        _supervisor_ready(srv, 2)
        keys = KeyRing.load(data / "xstate.keys")
        a = RawIMAP(srv.host, srv.port)
        a.ok("LOGIN dora pw-dora")
        before = token_of(a.ok("X-STATE SAVE"))
        imapd_cli("reload", "--data-dir", str(data))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "finished its hand-over" not in srv.log():
            time.sleep(0.05)
        assert "finished its hand-over" in srv.log(), srv.log()
        after = token_of(a.ok("X-STATE SAVE"))  # served by the new generation now
        assert decode_token(after, keys, max_age=60).lineage == decode_token(before, keys, max_age=60).lineage
        assert a.command("X-STATE REVOKE")[1].endswith(b"OK X-STATE revoked")
        a.close()
        for token in (before, after):
            c = RawIMAP(srv.host, srv.port)
            assert c.command(f"X-STATE RESTORE {token}")[1].startswith(b"t1 NO [X-STATE-EXPIRED]")
            c.close()
    finally:
        stop_server(srv)

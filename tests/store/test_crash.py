"""kill -9 a writer at random moments; every acknowledged APPEND must survive with its UID."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

from imapd.store import Store
from imapd.store.flags import parse_info

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def test_kill9_appends_survive(tmp_path: object) -> None:
    data = os.path.join(str(tmp_path), "data")
    s = Store(data)
    s.create_user("crash")
    uidvalidity = s.open_mailbox("crash", "INBOX").uidvalidity
    s.close()
    acked: dict[int, int] = {}  # uid -> n
    rng = random.Random(1234)
    env = {**os.environ, "PYTHONPATH": ROOT}
    for round_ in range(6):
        mode = "flags" if round_ % 2 else "plain"
        p = subprocess.Popen([sys.executable, os.path.join(HERE, "crash_writer.py"), data, mode],
                             stdout=subprocess.PIPE, env=env, cwd=ROOT)
        time.sleep(0.4 + rng.random() * 0.6)
        os.kill(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        assert p.returncode == -signal.SIGKILL
        for line in out.decode().splitlines():
            parts = line.split()
            if len(parts) != 2:
                continue  # a torn last line: not acknowledged
            uid, n = int(parts[0]), int(parts[1])
            assert uid not in acked, f"UID {uid} reused"
            acked[uid] = n
    assert len(acked) > 20
    s = Store(data)
    mb = s.open_mailbox("crash", "INBOX")
    mb.sync()
    assert mb.uidvalidity == uidvalidity
    expunged = set(mb.expunged_since(0)[0])
    present = set(mb.uids().tolist())
    for uid, n in acked.items():
        if uid in expunged:
            continue  # the writer itself expunged it (flags mode)
        assert uid in present, f"acknowledged UID {uid} lost"
        assert mb.read_message(uid).startswith(f"Subject: crash {n}\r\n".encode())
    assert mb.uidnext > max(acked)
    # index and Maildir agree: every cur/ file is indexed, every row has its file
    cur = os.listdir(os.path.join(mb.path, "cur"))
    rows = dict(s.user("crash").index.conn.execute(
        "SELECT fname, uid FROM messages WHERE mailbox=?", (mb.mailbox_id,)).fetchall())
    assert sorted(cur) == sorted(rows)
    assert os.listdir(os.path.join(mb.path, "new")) == []
    for fname in cur:
        assert mb.flags(rows[fname]) is not None
        assert parse_info(fname)[1] & 0x1f == s.user("crash").index.conn.execute(
            "SELECT flags FROM messages WHERE mailbox=? AND fname=?", (mb.mailbox_id, fname)).fetchone()[0] & 0x1f
    s.close()

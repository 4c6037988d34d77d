"""Quota (RFC 9208) in the store: usage kept by the index's triggers, enforcement inside the write."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from imapd.store import Store, UserStore
from imapd.store.errors import OverQuota
from imapd.store.quota import QuotaLimits, QuotaUsage, limits_from_fields
from imapd.store.users import PasswdFile
from imapd.store.userstore import INDEX_FILE
from tests.conftest import ROOT, imapd_cli

from .conftest import msg


def _scan(user: UserStore) -> QuotaUsage:
    """The usage as a full scan finds it: what the triggers must agree with."""
    with user.index.lock:
        n, size = user.index.conn.execute("SELECT count(*), total(size) FROM messages").fetchone()
    return QuotaUsage(int(n), int(size))


def test_usage_follows_append_copy_move_expunge_delete_and_foreign_delivery(store: Store, alice: UserStore) -> None:
    inbox = alice.open("INBOX")
    uids = [inbox.append(msg(i)) for i in range(3)]
    assert alice.quota_usage() == _scan(alice) == QuotaUsage(3, sum(len(msg(i)) for i in range(3)))
    alice.create_mailbox("Work")
    inbox.copy(uids[:2], "Work")
    assert alice.quota_usage().messages == 5
    inbox.move(uids[2:], "Work")
    assert alice.quota_usage().messages == 5
    inbox.expunge(uids[:1])
    assert alice.quota_usage() == _scan(alice)
    assert alice.quota_usage().messages == 4
    # An MDA's file dropped into new/ is counted when the reconcile finds it.
    path = os.path.join(alice.root, "new", "1700000000.M1P1.host")
    with open(path, "wb") as f:
        f.write(msg(99))
    inbox.sync()
    assert alice.quota_usage() == _scan(alice)
    assert alice.quota_usage().messages == 5
    inbox.release()
    alice.delete_mailbox("Work")
    assert alice.quota_usage() == _scan(alice)
    assert alice.quota_usage().messages == 2


def test_an_index_made_before_quota_counts_its_messages_once(tmp_path: Path) -> None:
    store = Store(tmp_path, durability="normal")
    user = store.create_user("u")
    mb = user.open("INBOX")
    for i in range(4):
        mb.append(msg(i))
    mb.release()
    expected = _scan(user)
    store.close()
    conn = sqlite3.connect(os.path.join(tmp_path, "mail", "u", INDEX_FILE))
    conn.executescript("DROP TRIGGER quota_usage_insert; DROP TRIGGER quota_usage_delete; "
                       "DROP TRIGGER quota_usage_resize; DROP TABLE quota_usage; PRAGMA user_version=1;")
    conn.close()
    store = Store(tmp_path, durability="normal")
    user = store.user("u")
    assert user.quota_usage() == expected
    mb = user.open("INBOX")
    mb.append(msg(9))
    assert user.quota_usage() == _scan(user)
    mb.release()
    store.close()


@pytest.mark.parametrize(("limits", "resource"), [
    (QuotaLimits(messages=2), "MESSAGE"),
    (QuotaLimits(storage_kib=1), "STORAGE"),
])
def test_append_and_copy_are_refused_over_quota_and_leave_nothing(store: Store, alice: UserStore,
                                                                  limits: QuotaLimits, resource: str) -> None:
    inbox = alice.open("INBOX")
    body = msg(0, "x" * 300)
    first = [inbox.append(body), inbox.append(body)]  # 2 messages, ~0.8 KiB: fits both limits
    store.quota_limits = lambda _user: limits
    before = alice.quota_usage()
    with pytest.raises(OverQuota) as info:
        inbox.append(body)
    assert info.value.resource == resource and info.value.code == "OVERQUOTA"
    with pytest.raises(OverQuota):
        inbox.copy(first, "Sent")
    assert alice.quota_usage() == before
    assert inbox.exists == 2
    assert len(os.listdir(os.path.join(alice.root, "cur"))) == 2
    sent = alice.open("Sent")
    assert sent.exists == 0 and os.listdir(os.path.join(sent.path, "cur")) == []
    assert os.listdir(os.path.join(alice.root, "tmp")) == []
    # MOVE stays inside the one quota root: allowed even at the limit.
    assert len(inbox.move(first[:1], "Sent")) == 1
    assert alice.quota_usage() == before
    # Expunging makes room again.
    sent.expunge(sent.uids())
    assert inbox.append(body) > 0
    sent.release()
    inbox.release()


def test_check_quota_is_the_early_check_for_an_lmtp_server(store: Store, alice: UserStore) -> None:
    alice.check_quota(messages=1, storage_bytes=10**9)  # unlimited by default
    store.quota_limits = lambda _user: QuotaLimits(storage_kib=2)
    alice.check_quota(messages=1, storage_bytes=2048)
    with pytest.raises(OverQuota) as info:
        alice.check_quota(messages=1, storage_bytes=2049)
    assert info.value.limit == 2 and info.value.resource == "STORAGE"


@pytest.mark.parametrize(("extra", "expected"), [
    ({}, QuotaLimits(1000, 50)),
    ({"quota_storage": "20"}, QuotaLimits(20, 50)),
    ({"quota_storage": "0", "quota_messages": "7"}, QuotaLimits(None, 7)),
    ({"quota_messages": "lots"}, QuotaLimits(1000, 50)),  # malformed: the default, not a lock-out
    ({"quota_messages": "-3"}, QuotaLimits(1000, 50)),
    # A passwd-file from Dovecot: its quota rules apply; our own fields win over them.
    ({"userdb_quota_rule": "*:storage=1G"}, QuotaLimits(1024 * 1024, 50)),
    ({"userdb_quota_rule": "*:storage=2048", "userdb_quota_rule2": "*:messages=10"}, QuotaLimits(2048, 10)),
    ({"userdb_quota_rule": "*:bytes=1500"}, QuotaLimits(2, 50)),
    ({"userdb_quota_rule": "*:storage=0"}, QuotaLimits(None, 50)),
    ({"userdb_quota_rule": "*:storage=1G", "quota_storage": "10"}, QuotaLimits(10, 50)),
    ({"userdb_quota_rule": "Trash:ignore", "userdb_quota_rule2": "*:storage=10%"}, QuotaLimits(1000, 50)),
])
def test_limits_from_passwd_fields(extra: dict[str, str], expected: QuotaLimits) -> None:
    assert limits_from_fields(extra, QuotaLimits(1000, 50)) == expected


def test_setting_a_quota_keeps_the_credential_generation(tmp_path: Path) -> None:
    pf = PasswdFile(tmp_path / "passwd")
    rec = pf.add("u", "pw")
    changed = pf.set_fields("u", {"quota_storage": "100", "quota_messages": "5"})
    assert changed.extra["quota_storage"] == "100"
    assert PasswdFile(tmp_path / "passwd").get("u") == changed
    assert changed.generation == rec.generation
    assert pf.set_fields("u", {"quota_storage": None}).extra.get("quota_storage") is None
    with pytest.raises(ValueError):
        pf.set_fields("u", {"xstate_gen": "9"})


def _deliver(data_dir: Path, body: bytes, *extra: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "imapd", "deliver", "u", "--data-dir", str(data_dir), *extra],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    assert proc.stdin is not None
    proc.stdin.write(body)
    proc.stdin.close()
    return proc


def test_concurrent_deliveries_never_pass_the_limit(tmp_path: Path) -> None:
    """Eight `imapd deliver` processes at once against a limit of 5 messages: exactly 5 get in, the
    others exit 75 (EX_TEMPFAIL), and the usage the index keeps matches a scan."""
    data = tmp_path / "data"
    imapd_cli("user", "add", "u", "--password-stdin", "--data-dir", str(data), stdin="pw")
    imapd_cli("user", "quota", "u", "--messages", "5", "--data-dir", str(data))
    procs = [_deliver(data, msg(i)) for i in range(8)]
    codes = sorted(p.wait(timeout=120) for p in procs)
    for p in procs:
        assert p.stdout is not None and p.stderr is not None
        p.stdout.close()
        p.stderr.close()
    assert codes == [0] * 5 + [75] * 3
    store = Store(data)
    user = store.user("u")
    assert user.quota_usage() == _scan(user) and user.quota_usage().messages == 5
    store.close()
    out = imapd_cli("user", "quota", "u", "--data-dir", str(data)).stdout.decode()
    assert "MESSAGE 5 of 5 (user)" in out and "STORAGE" in out and "unlimited (default)" in out
    bounce = imapd_cli("deliver", "u", "--data-dir", str(data), "--over-quota", "bounce", stdin=msg(9), check=False)
    assert bounce.returncode == 77 and b"over quota" in bounce.stderr
    # The [quota] default from the settings applies when the entry sets none.
    imapd_cli("user", "quota", "u", "--messages", "default", "--data-dir", str(data))
    assert imapd_cli("deliver", "u", "--data-dir", str(data), "-o", "quota.messages=5", stdin=msg(10),
                     check=False).returncode == 75
    imapd_cli("deliver", "u", "--data-dir", str(data), stdin=msg(11))

"""A Maildir as Dovecot leaves it keeps its UIDs, UIDVALIDITY, UIDNEXT and keywords."""

from __future__ import annotations

import os

from imapd.store import Store

from .conftest import msg


def write_dovecot_maildir(path: str) -> None:
    for d in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(path, d), exist_ok=True)
    files = {
        "1700000000.M1P100.host,S=100,W=102:2,S": msg(1),
        "1700000100.M2P100.host,S=100,W=102:2,RSab": msg(2),
        "1700000200.M3P100.host:2,": msg(3),
    }
    for name, data in files.items():
        with open(os.path.join(path, "cur", name), "wb") as f:
            f.write(data)
    with open(os.path.join(path, "new", "1700000300.M4P100.host"), "wb") as f:
        f.write(msg(4))
    # dovecot-uidlist version 3: header, then "<uid> [ext fields] :<filename>"
    with open(os.path.join(path, "dovecot-uidlist"), "w") as f:
        f.write("3 V1234567890 N42 G0123456789abcdef0123456789abcdef\n")
        f.write("7 W102 S100 :1700000000.M1P100.host,S=100,W=102\n")
        f.write("9 :1700000100.M2P100.host,S=100,W=102\n")
        f.write("12 :1700000200.M3P100.host\n")
        f.write("15 :1699999999.M0P1.host\n")  # listed, file gone
    with open(os.path.join(path, "dovecot-keywords"), "w") as f:
        f.write("0 $Forwarded\n1 Important\n")


def test_import_keeps_uids_and_keywords(tmp_path: object, store: Store) -> None:
    root = os.path.join(store.mail_root, "carol")
    write_dovecot_maildir(root)
    write_dovecot_maildir(os.path.join(root, ".Old"))
    with open(os.path.join(root, ".Old", "dovecot-uidlist"), "w") as f:
        f.write("1 1111 20\n5 1700000000.M1P100.host,S=100,W=102\n")
    us = store.user("carol")
    mb = us.open("INBOX")
    assert mb.uidvalidity == 1234567890
    assert mb.uids().tolist() == [7, 9, 12, 42]  # the one in new/ gets N
    assert mb.uidnext == 43
    assert mb.flags(7) == ("\\Seen",)
    assert mb.flags(9) == ("\\Answered", "\\Seen", "$Forwarded", "Important")
    assert mb.read_message(42) == msg(4)
    # new appends continue after UIDNEXT; keyword numbering continues after Dovecot's
    assert mb.append(msg(5), ["Later"]) == 43
    with open(os.path.join(root, "dovecot-keywords")) as f:
        assert f.read() == "0 $Forwarded\n1 Important\n2 Later\n"
    assert mb.expunged_since(0)[1] is False  # history before the import is unknown
    old = us.open("Old")
    assert old.uidvalidity == 1111 and old.uids().tolist()[0] == 5
    # new mailboxes never reuse an imported UIDVALIDITY
    us.create_mailbox("Fresh")
    assert us.status("Fresh").uidvalidity > 1234567890
    mb.release()
    old.release()

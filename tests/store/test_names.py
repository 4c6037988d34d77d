from __future__ import annotations

import pytest

from imapd.store.errors import InvalidMailboxName
from imapd.store.names import decode_folder_dir, folder_dir_name, normalize


@pytest.mark.parametrize("name", [
    "", "/", "/a", "a/", "a//b", "..", "a/../b", ".", "a/./b", "a\x00b", "a\nb", "a\x7fb", "a\x85b",
    "x" * 300,
])
def test_refused(name: str) -> None:
    with pytest.raises(InvalidMailboxName):
        normalize(name)


@pytest.mark.parametrize(("name", "disk"), [
    ("Archive", ".Archive"),
    ("Archive/2024", ".Archive.2024"),
    ("a.b", ".a\\2eb"),
    ("a.b/c.d", ".a\\2eb.c\\2ed"),
    ("back\\slash", ".back\\5cslash"),
    ("~home", ".\\7ehome"),
    (".hidden", ".\\2ehidden"),
    ("Entwürfe", ".Entw&APw-rfe"),
    ("台北/日本語", ".&U,BTFw-.&ZeVnLIqe-"),
    ("A&B", ".A&-B"),
    ("INBOX/sub", ".INBOX.sub"),
])
def test_round_trip(name: str, disk: str) -> None:
    assert normalize(name) == name
    assert folder_dir_name(name) == disk
    assert decode_folder_dir(disk) == name


def test_inbox_case_insensitive() -> None:
    assert normalize("inbox") == "INBOX"
    assert normalize("Inbox/Sub") == "INBOX/Sub"


@pytest.mark.parametrize("dirname", ["..", ".", ".a..b", "cur", ".&Jjo", ".inbox"])
def test_decode_rejects(dirname: str) -> None:
    assert decode_folder_dir(dirname) is None

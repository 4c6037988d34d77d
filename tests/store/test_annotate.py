"""RFC 5464 entries in the index: depth ranges, names, limits, and the rows' lifetime with their mailbox."""

from __future__ import annotations

import shutil

import pytest

from imapd.store import UserStore
from imapd.store.annotate import (
    AnnotationLimits,
    AnnotationTooLarge,
    InvalidEntryName,
    TooManyAnnotations,
    valid_entry_name,
)
from imapd.store.errors import NoSuchMailbox

LIMITS = AnnotationLimits(max_value_size=16, max_entries=5)


def test_depth_0_1_infinity_and_neighbours_that_only_share_a_prefix(alice: UserStore) -> None:
    alice.set_annotations("INBOX", [("/private/a", b"1"), ("/private/a/b", b"2"), ("/private/a/b/c", b"3"),
                                    ("/private/ab", b"4"), ("/private/a.x", b"5")], LIMITS)
    assert alice.get_annotations("INBOX", ["/private/a"], 0) == [("/private/a", b"1")]
    assert alice.get_annotations("INBOX", ["/private/a"], 1) == [("/private/a", b"1"), ("/private/a/b", b"2")]
    assert alice.get_annotations("INBOX", ["/private/a"], None) == [
        ("/private/a", b"1"), ("/private/a/b", b"2"), ("/private/a/b/c", b"3")]
    assert [n for n, _ in alice.get_annotations("INBOX", ["/private"], 1)] == [
        "/private/a", "/private/a.x", "/private/ab"]
    assert alice.get_annotations(None, ["/private/a"], None) == []  # the server's entries are apart


def test_names_values_and_limits(alice: UserStore) -> None:
    for name in ("/private/comment", "/shared/vendor/vendor.x/a-b_c", "/private", "/shared"):
        assert valid_entry_name(name)
    for name in ("/public/x", "private/x", "/private/", "/private//x", "/private/a*", "/private/%", "/private/\x01",
                 "/private/é"):
        assert not valid_entry_name(name)
    with pytest.raises(InvalidEntryName):
        alice.set_annotations("INBOX", [("/shared", b"x")], LIMITS)
    alice.set_annotations("INBOX", [("/Private/Comment", b"v")], LIMITS)
    assert alice.get_annotations("INBOX", ["/PRIVATE/COMMENT"], 0) == [("/private/comment", b"v")]
    with pytest.raises(AnnotationTooLarge) as big:
        alice.set_annotations("INBOX", [("/private/x", b"y"), ("/private/z", b"z" * 17)], LIMITS)
    assert big.value.max_size == 16
    with pytest.raises(TooManyAnnotations):
        alice.set_annotations("INBOX", [(f"/private/n{i}", b"v") for i in range(5)], LIMITS)
    assert alice.get_annotations("INBOX", ["/private"], None) == [("/private/comment", b"v")]  # all or nothing
    alice.set_annotations("INBOX", [("/private/comment", None)], LIMITS)
    assert alice.get_annotations("INBOX", ["/private/comment"], 0) == []
    with pytest.raises(NoSuchMailbox):
        alice.set_annotations("Nope", [("/private/x", b"v")], LIMITS)


def test_rows_go_with_a_folder_removed_on_disk(alice: UserStore) -> None:
    alice.create_mailbox("Gone")
    alice.set_annotations("Gone", [("/private/comment", b"bye")], LIMITS)
    mailbox_id, _ = alice.resolve("Gone")
    shutil.rmtree(alice.folder_path("Gone"))
    alice.list_mailboxes()  # the folder list is synced with the disk
    with alice.index.lock:
        left = alice.index.conn.execute("SELECT count(*) FROM annotations WHERE mailbox=?", (mailbox_id,)).fetchone()
    assert left[0] == 0

"""Read (and write) Dovecot's Maildir side files so a Dovecot Maildir keeps its UIDs and keywords.

``dovecot-uidlist`` version 3: a header ``3 V<uidvalidity> N<nextuid> G<guid> ...`` then one line per
message ``<uid> [<ext fields>] :<filename>``. Version 1: header ``1 <uidvalidity> <nextuid>`` and lines
``<uid> <filename>``. ``dovecot-keywords``: lines ``<n> <keyword>``; keyword ``n`` is file-name letter
``chr(ord('a') + n)``.
"""

from __future__ import annotations

import os

import msgspec

__all__ = ["UidList", "read_keywords", "read_uidlist", "write_keywords"]


class UidList(msgspec.Struct):
    uidvalidity: int
    uidnext: int
    uids: dict[str, int]
    """Maildir base name -> UID."""


def read_uidlist(folder: str) -> UidList | None:
    path = os.path.join(folder, "dovecot-uidlist")
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    if not lines:
        return None
    header = lines[0].split()
    uidvalidity = 0
    uidnext = 1
    try:
        if header[0] == "3":
            for field in header[1:]:
                if field.startswith("V"):
                    uidvalidity = int(field[1:])
                elif field.startswith("N"):
                    uidnext = int(field[1:])
        elif header[0] == "1" and len(header) >= 3:
            uidvalidity = int(header[1])
            uidnext = int(header[2])
        else:
            return None
    except ValueError:
        return None
    uids: dict[str, int] = {}
    for line in lines[1:]:
        head, sep, rest = line.partition(" ")
        if not sep or not head.isdigit():
            continue
        if header[0] == "3":
            if rest.startswith(":"):
                fname = rest[1:]
            else:
                _, sep2, fname = rest.partition(" :")
                if not sep2:
                    continue
        else:
            fname = rest
        uid = int(head)
        if uid <= 0 or not fname:
            continue
        uids[fname.partition(":")[0]] = uid
        uidnext = max(uidnext, uid + 1)
    if uidvalidity <= 0:
        return None
    return UidList(uidvalidity=uidvalidity, uidnext=uidnext, uids=uids)


def read_keywords(folder: str) -> dict[int, str]:
    path = os.path.join(folder, "dovecot-keywords")
    out: dict[int, str] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                num, sep, name = line.rstrip("\n").partition(" ")
                if sep and num.isdigit() and name:
                    out[int(num)] = name
    except OSError:
        pass
    return out


def write_keywords(folder: str, keywords: dict[int, str]) -> None:
    """Rewrite ``dovecot-keywords`` atomically (only numbers 0..25 have file-name letters)."""
    path = os.path.join(folder, "dovecot-keywords")
    tmp = path + f".tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        for i, name in sorted(keywords.items()):
            if i < 26:
                f.write(f"{i} {name}\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)

"""Child process of test_crash: append forever, print each UID after append() returned."""

from __future__ import annotations

import sys

from imapd.store import Store


def main() -> None:
    data_dir, mode = sys.argv[1], sys.argv[2]
    store = Store(data_dir, durability="full")
    mb = store.open_mailbox("crash", "INBOX")
    n = 0
    while True:
        n += 1
        body = f"Subject: crash {n}\r\n\r\n{'x' * (n % 500)}\r\n".encode()
        if mode == "flags" and mb.exists and n % 3 == 0:
            mb.store_flags([mb.uids()[-1]], "add", ["\\Seen"])
        if mode == "flags" and n % 7 == 0 and mb.exists > 2:
            mb.expunge([mb.uids()[0]])
        uid = mb.append(body)
        sys.stdout.write(f"{uid} {n}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()

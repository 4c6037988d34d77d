"""Seed identical, realistic mailboxes into any IMAP server (APPEND) or straight into our store.

    seed.py --host 127.0.0.1 --port 11143 --user bench --password bench --count 5000     # any server, IMAP
    seed.py --data-dir DIR --user bench --password bench --count 5000                    # ours, store API

Messages are generated deterministically from --seed (same bytes every time, ~2-10 KB each): threads with
Re: subjects, In-Reply-To/References, a dozen senders, RFC 2047 non-ASCII headers, plain and
multipart/alternative bodies, Date/INTERNALDATE spread over months, \\Seen on all but the newest, some
\\Flagged and \\Answered. Over IMAP the APPENDs are pipelined with LITERAL+ when the server advertises it
(synchronizing literals one by one otherwise). With --data-dir the user is created (``{PLAIN}`` password
by default, as the benchmarks give Dovecot; ``--scheme argon2id`` for the server's normal hash) and the
same messages are appended through ``UserStore.open(...).append_many``, which is much faster.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from imapclient import Client, quote

PEOPLE = [
    ("Alice Martin", "alice@example.org"),
    ("=?utf-8?q?Bob_=C3=98deg=C3=A5rd?=", "bob@example.net"),
    ("=?utf-8?q?Chlo=C3=A9_Durand?=", "chloe@example.fr"),
    ("Dmitri Ivanov", "dmitri@example.com"),
    ("=?utf-8?b?5p2O5bCP6b6Z?=", "li@example.cn"),
    ("=?utf-8?q?Eve_Sch=C3=A4fer?=", "eve@example.de"),
    ("GitHub", "notifications@github.example"),
    ("Weekly Digest", "digest@news.example"),
    ("Frank O'Neil", "frank@example.ie"),
    ("Grace Hopper", "grace@navy.example"),
    ("Billing", "billing@shop.example"),
    ("Hana Suzuki", "hana@example.jp"),
]
TOPICS = [
    "Quarterly planning", "Lunch on Friday?", "Release 2.4 checklist",
    "=?utf-8?q?=C3=9Cberpr=C3=BCfung_der_Rechnung?=", "=?utf-8?q?D=C3=A9jeuner_d'=C3=A9quipe?=",
    "Trip to Kyoto", "Server migration window", "Budget numbers", "Design review notes",
    "Your invoice #4471", "Welcome aboard!", "Photos from the weekend", "[repo] Fix flaky test (#1234)",
    "Weekly digest: 12 new posts", "Offsite agenda", "Contract renewal",
]
LINES = [
    "Thanks for the update, this looks good to me.",
    "Could we move the meeting to Thursday afternoon?",
    "I attached the document we talked about.",
    "Let me know if anything is unclear.",
    "The numbers for Q3 are in the spreadsheet, see the second tab for the breakdown by region.",
    "I think we should ship it on Monday, unless QA finds something over the weekend.",
    "Here is the summary of what we decided during the call yesterday.",
    "Please review before the end of the week so we can send it to the customer.",
    "We still need a decision on the hosting provider and the migration window.",
    "Sorry for the late reply, I was travelling most of last week.",
]


def _body(rng: random.Random, size: int) -> str:
    out: list[str] = []
    n = 0
    while n < size:
        para = " ".join(rng.choice(LINES) for _ in range(rng.randint(2, 5)))
        # wrap at ~76 columns like a mail client
        words, line = para.split(), ""
        for w in words:
            if len(line) + len(w) + 1 > 76:
                out.append(line)
                n += len(line) + 2
                line = w
            else:
                line = f"{line} {w}" if line else w
        out.append(line)
        out.append("")
        n += len(line) + 4
    return "\r\n".join(out)


def messages(count: int, seed: int = 1, user: str = "bench",
             body_size: tuple[int, int] = (1500, 8500)) -> Iterator[tuple[bytes, tuple[str, ...], float]]:
    """(raw message, flags, internaldate) for ``count`` messages, oldest first, deterministic.

    ``body_size``: range of the text body's size in bytes (the default gives ~6 KB messages; throughput.py
    asks for (8000, 10500), ~10 KB)."""
    rng = random.Random(seed)
    me = ("Bench User", f"{user}@example.org")
    end = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    threads: list[tuple[str, str, str]] = []  # (subject, message-id, references)
    for i in range(count):
        when = end - timedelta(minutes=(count - i) * 37 + rng.randint(0, 30))
        name, addr = rng.choice(PEOPLE)
        msgid = f"<{seed}.{i}.{rng.getrandbits(40):x}@{addr.partition('@')[2]}>"
        headers = [
            f"Return-Path: <{addr}>",
            f"Received: from mx{rng.randint(1, 9)}.example.net (mx.example.net [192.0.2.{rng.randint(1, 254)}])"
            f"\r\n\tby mail.example.org with ESMTPS id {rng.getrandbits(48):X}\r\n\tfor <{me[1]}>; "
            f"{format_datetime(when)}",
            f"From: {name} <{addr}>",
            f"To: {me[0]} <{me[1]}>",
        ]
        if rng.random() < 0.3:
            cname, caddr = rng.choice(PEOPLE)
            headers.append(f"Cc: {cname} <{caddr}>")
        if threads and rng.random() < 0.4:
            subj, pid, refs = rng.choice(threads[-200:])
            subject = "Re: " + subj.removeprefix("Re: ")
            refs = (refs + " " + pid).strip()
            headers += [f"Subject: {subject}", f"In-Reply-To: {pid}", f"References: {refs[-900:]}"]
        else:
            subject, refs = rng.choice(TOPICS), ""
            headers.append(f"Subject: {subject}")
        threads.append((subject, msgid, refs))
        headers += [f"Date: {format_datetime(when)}", f"Message-ID: {msgid}", "MIME-Version: 1.0"]
        size = rng.randint(*body_size)
        text = _body(rng, size)
        if rng.random() < 0.35:
            boundary = f"=_alt_{seed}_{i}"
            html = "".join(f"<p>{p}</p>" for p in text.split("\r\n\r\n")[:4])
            headers.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
            body = (f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                    f"Content-Transfer-Encoding: 8bit\r\n\r\n{text}\r\n"
                    f"--{boundary}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
                    f"<html><body>{html}</body></html>\r\n--{boundary}--\r\n")
        else:
            headers.append("Content-Type: text/plain; charset=utf-8")
            body = text + "\r\n"
        raw = ("\r\n".join(headers) + "\r\n\r\n" + body).encode()
        flags: list[str] = []
        if i < count - 20 or rng.random() < 0.3:
            flags.append("\\Seen")
        if rng.random() < 0.05:
            flags.append("\\Flagged")
        if rng.random() < 0.1:
            flags.append("\\Answered")
        yield raw, tuple(flags), when.timestamp()


def imap_date(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime('"%d-%b-%Y %H:%M:%S +0000"')


def append_pipelined(c: Client, mailbox: str, items: Iterable[tuple[bytes, tuple[str, ...], float]], *,
                     plus: bool, batch: int = 200) -> int:
    """APPEND every (raw, flags, time) into ``mailbox``: pipelined LITERAL+ in batches when ``plus``,
    else one synchronizing literal at a time. Returns the bytes of message data sent."""
    pending: list[bytes] = []
    out = bytearray()
    total = 0

    def flush() -> None:
        c.sock.sendall(out)
        out.clear()
        for tag in pending:
            _, done = c.read_tagged(tag)
            if not done[len(tag) + 1:].startswith(b"OK"):
                raise SystemExit(f"APPEND failed: {done!r}")
        pending.clear()

    for raw, flags, ts in items:
        total += len(raw)
        tag = c.next_tag()
        head = f"APPEND {quote(mailbox)} ({' '.join(flags)}) {imap_date(ts)} ".encode()
        if plus:
            out += tag + b" " + head + b"{%d+}\r\n" % len(raw) + raw + b"\r\n"
            pending.append(tag)
            if len(pending) >= batch:
                flush()
        else:
            c.sock.sendall(tag + b" " + head + b"{%d}\r\n" % len(raw))
            line = c.read_line()
            if not line.startswith(b"+"):
                raise SystemExit(f"APPEND refused: {line!r}")
            c.sock.sendall(raw + b"\r\n")
            pending.append(tag)
            flush()
    flush()
    return total


def seed_imap(host: str, port: int, user: str, password: str, mailbox: str, count: int, seed: int,
              batch: int = 200) -> None:
    c = Client(host, port)
    untagged, _ = c.command("CAPABILITY")
    caps = b" ".join(untagged).upper()
    c.command(f"LOGIN {quote(user)} {quote(password)}")
    if mailbox.upper() != "INBOX":
        # LIST first: pymap 0.36 drops the connection on CREATE of an existing mailbox instead of NO
        listed, _ = c.command(f'LIST "" {quote(mailbox)}')
        if not listed:
            c.command(f"CREATE {quote(mailbox)}")
    append_pipelined(c, mailbox, messages(count, seed, user), plus=b"LITERAL+" in caps, batch=batch)
    c.command("LOGOUT", check=False)
    c.close()


def _plain_passwords(passwd: str, users: set[str], password: str) -> None:
    """Same scheme as the Dovecot peer: the benchmarks compare IMAP work, not argon2id."""
    lines = []
    with open(passwd) as f:
        for line in f:
            fields = line.rstrip("\n").split(":")
            if fields[0] in users:
                fields[1] = "{PLAIN}" + password
            lines.append(":".join(fields) + "\n")
    tmp = passwd + ".bench"
    with open(tmp, "w") as f:
        f.writelines(lines)
    os.chmod(tmp, 0o600)
    os.replace(tmp, passwd)


def seed_store(data_dir: str, user: str, password: str, mailbox: str, count: int, seed: int,
               scheme: str, bulk: bool = False, sync: bool = True) -> None:
    from imapd.store.mailbox import AppendItem
    from imapd.store.store import Store
    from imapd.store.users import PasswdFile

    passwd = os.path.join(data_dir, "passwd")
    os.makedirs(data_dir, exist_ok=True)
    if scheme != "stored" and user not in PasswdFile(passwd).list():
        subprocess.run([sys.executable, "-m", "imapd", "user", "add", user, "--password-stdin",
                        "--data-dir", data_dir], input=password.encode(), check=True)
    if scheme == "plain":
        _plain_passwords(passwd, {user}, password)
    # --bulk: the store's bulk-import path (no fsync per message, one os.sync() at the end)
    store = Store(data_dir, durability="normal") if bulk else Store(data_dir)
    us = store.create_user(user)
    if mailbox.upper() != "INBOX" and mailbox not in [m for m in _names(us)]:
        us.create_mailbox(mailbox)
    mb = us.open(mailbox)
    chunk: list[AppendItem] = []
    for raw, flags, ts in messages(count, seed, user):
        chunk.append(AppendItem(raw, flags, ts))
        if len(chunk) >= 1000:
            mb.append_many(chunk, fsync=not bulk)
            chunk = []
    if chunk:
        mb.append_many(chunk, fsync=not bulk)
    us.release(mb)
    store.close()
    if bulk and sync:
        os.sync()


def seed_store_users(data_dir: str, users: list[str], password: str, mailbox: str, count: int, seed: int,
                     scheme: str, bulk: bool = False) -> None:
    """Many users (the many-user T6 benchmark) in one process: the passwd lines written at once instead of
    one ``imapd user add`` per user, then each user's messages through the store API."""
    from imapd.store.users import PasswdFile

    os.makedirs(data_dir, exist_ok=True)
    passwd = os.path.join(data_dir, "passwd")
    pw = PasswdFile(passwd)
    have = set(pw.list())
    for user in users:
        if user not in have:
            pw.add(user, password)
    if scheme == "plain":
        _plain_passwords(passwd, set(users), password)
    for user in users:
        seed_store(data_dir, user, password, mailbox, count, seed, "stored", bulk, sync=False)
    if bulk:
        os.sync()


def seed_maildir(path: str, user: str, count: int, seed: int) -> None:
    """Write the messages straight into an existing Maildir folder (``path`` with cur/ new/ tmp/), the files a
    delivery agent would leave: flags in the name (``:2,FRS``), INTERNALDATE as the file's mtime. For a
    peer's big mailbox when its IMAP APPEND is too slow to seed 100,000 messages (the server indexes the
    files at its next SELECT)."""
    letters = {"\\Flagged": "F", "\\Answered": "R", "\\Seen": "S"}
    cur = os.path.join(path, "cur")
    if not os.path.isdir(cur):
        raise SystemExit(f"{cur} is missing: CREATE the mailbox over IMAP first")
    host = "bench"
    for i, (raw, flags, ts) in enumerate(messages(count, seed, user)):
        info = "".join(sorted(letters[f] for f in flags if f in letters))
        name = f"{int(ts)}.M{i}P{os.getpid()}.{host},S={len(raw)}:2,{info}"
        tmp = os.path.join(path, "tmp", name)
        with open(tmp, "wb") as fh:
            fh.write(raw)
        os.utime(tmp, (ts, ts))
        os.rename(tmp, os.path.join(cur, name))
    os.sync()


def _names(us: object) -> list[str]:
    try:
        return [m.name for m in us.list_mailboxes()]  # type: ignore[attr-defined]
    except Exception:
        return []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int)
    ap.add_argument("--data-dir", help="seed our server's data dir through the store API instead of IMAP")
    ap.add_argument("--user", default="bench")
    ap.add_argument("--users", type=int, default=0,
                    help="seed N users named USER0..USER(N-1) (same password, same messages each) instead of USER")
    ap.add_argument("--password", default="bench")
    ap.add_argument("--mailbox", default="INBOX")
    ap.add_argument("--count", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--scheme", choices=["plain", "argon2id"], default="plain",
                    help="password scheme of a user created with --data-dir")
    ap.add_argument("--maildir", help="write the messages straight into this Maildir folder (a peer's, for "
                    "big mailboxes; the folder must exist and be empty)")
    ap.add_argument("--bulk", action="store_true",
                    help="with --data-dir: the store's bulk-import path (no fsync per message; os.sync at the end)")
    args = ap.parse_args()
    t = time.perf_counter()
    if args.users:
        names = [f"{args.user}{i}" for i in range(args.users)]
        if args.data_dir:
            seed_store_users(args.data_dir, names, args.password, args.mailbox, args.count, args.seed,
                             args.scheme, args.bulk)
        elif args.port:
            for name in names:
                seed_imap(args.host, args.port, name, args.password, args.mailbox, args.count, args.seed)
        else:
            ap.error("--users needs --port or --data-dir")
        dt = time.perf_counter() - t
        print(f"seeded {args.count} messages into each of {len(names)} users ({names[0]}..{names[-1]}) "
              f"in {dt:.1f} s", file=sys.stderr)
        return
    if args.maildir:
        seed_maildir(args.maildir, args.user, args.count, args.seed)
        where = args.maildir
    elif args.data_dir:
        seed_store(args.data_dir, args.user, args.password, args.mailbox, args.count, args.seed, args.scheme,
                   args.bulk)
        where = args.data_dir
    else:
        if not args.port:
            ap.error("--port or --data-dir is needed")
        seed_imap(args.host, args.port, args.user, args.password, args.mailbox, args.count, args.seed)
        where = f"{args.host}:{args.port}"
    dt = time.perf_counter() - t
    print(f"seeded {args.count} messages into {args.user}/{args.mailbox} at {where} in {dt:.1f} s "
          f"({args.count / dt:.0f} msg/s)", file=sys.stderr)


if __name__ == "__main__":
    main()

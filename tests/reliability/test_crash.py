"""kill -9 under load: nothing acknowledged is lost, no UID is reused, the index and Maildir agree.

Load (threads, one RawIMAP connection each, all one user):
- two appenders: APPEND to INBOX, noting APPENDUID and the exact bytes of every APPEND that got OK;
- a churner: APPEND to Scratch, STORE \\Deleted, EXPUNGE, MOVE to Scratch2 (UIDs from APPENDUID/COPYUID noted);
- a flagger: STORE +FLAGS/-FLAGS on INBOX;
- a saver: SELECT INBOX + X-STATE SAVE, keeping the tokens.

The server is SIGKILLed at a random moment, restarted on the same data dir, and we check: every acknowledged
APPEND to INBOX is there with its UID and the same bytes; UIDVALIDITY is unchanged; no UID handed out
after the restart is at or below one handed out before (per mailbox); for every mailbox the number of files
in cur/ + new/ equals UID SEARCH ALL; every X-STATE token saved before the kill restores (OK, possibly
[X-STATE-STALE]), never NO/BAD or a dropped connection. 3 kills in make test, 50 with ``IMAPD_SOAK=1``.
"""

from __future__ import annotations

import os
import random
import re
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import RunningServer, imapd_cli, start_server, stop_server
from tests.rawimap import RawIMAP

SOAK = os.environ.get("IMAPD_SOAK") == "1"
KILLS = 50 if SOAK else 3
USER, PASSWORD = "crash", "pw-crash"
MAILDIRS = {"INBOX": "", "Scratch": ".Scratch", "Scratch2": ".Scratch2"}
_APPENDUID = re.compile(rb"APPENDUID (\d+) (\d+)")
_COPYUID = re.compile(rb"COPYUID \d+ [\d:,]+ ([\d:,]+)")
_UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)")


def _uids(text: bytes) -> list[int]:
    out: list[int] = []
    for part in text.split(b","):
        lo, _, hi = part.partition(b":")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


@dataclass
class Ledger:
    acked: dict[int, bytes] = field(default_factory=dict)  # INBOX UID -> bytes, APPEND got OK
    uids_handed: dict[str, set[int]] = field(default_factory=lambda: {m: set() for m in MAILDIRS})
    tokens: list[str] = field(default_factory=list)
    appends_ok: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def hand(self, mailbox: str, uids: list[int], epoch_floor: dict[str, int]) -> None:
        with self.lock:
            for u in uids:
                assert u > epoch_floor[mailbox], f"{mailbox} UID {u} reused (max before restart {epoch_floor[mailbox]})"
                assert u not in self.uids_handed[mailbox], f"{mailbox} UID {u} handed out twice"
                self.uids_handed[mailbox].add(u)


def _login(srv: RunningServer) -> RawIMAP:
    imap = RawIMAP(srv.host, srv.port, timeout=20)
    imap.ok(f"LOGIN {USER} {PASSWORD}")
    return imap


def _message(rng: random.Random, n: int) -> bytes:
    body = bytes(rng.randrange(32, 127) for _ in range(rng.randrange(10, 3000)))
    return (b"From: load@example.org\r\nSubject: crash %d\r\nMessage-ID: <%d.%d@t>\r\n\r\n" % (n, n, rng.random() * 1e9)
            + b"\r\n".join(body[i : i + 70] for i in range(0, len(body), 70)) + b"\r\n")


def _worker(kind: str, srv: RunningServer, ledger: Ledger, floor: dict[str, int], stop: threading.Event,
            seed: int, errors: list[BaseException]) -> None:
    rng = random.Random(seed)
    n = 0
    try:
        imap = _login(srv)
        if kind in ("flagger", "saver"):
            imap.ok("SELECT INBOX")
        if kind == "churner":
            imap.ok("SELECT Scratch")
        while not stop.is_set():
            n += 1
            if kind == "appender":
                msg = _message(rng, n)
                _, tagged = imap.command(f"APPEND INBOX {{{len(msg)}+}}\r\n".encode() + msg)
                if b" OK" in tagged[:12]:
                    m = _APPENDUID.search(tagged)
                    assert m, tagged
                    uid = int(m.group(2))
                    ledger.hand("INBOX", [uid], floor)
                    with ledger.lock:
                        ledger.acked[uid] = msg
                        ledger.appends_ok += 1
            elif kind == "churner":
                msg = _message(rng, n)
                _, tagged = imap.command(f"APPEND Scratch {{{len(msg)}+}}\r\n".encode() + msg)
                if m := _APPENDUID.search(tagged):
                    ledger.hand("Scratch", [int(m.group(2))], floor)
                op = rng.choice(["move", "expunge", "store"])
                if op == "move":
                    _, tagged = imap.command("MOVE 1 Scratch2")
                    if m := _COPYUID.search(tagged):
                        ledger.hand("Scratch2", _uids(m.group(1)), floor)
                elif op == "expunge":
                    imap.command("STORE 1:2 +FLAGS.SILENT (\\Deleted)")
                    imap.command("EXPUNGE")
                else:
                    imap.command("STORE 1:* +FLAGS (\\Flagged)")
            elif kind == "flagger":
                flag = rng.choice(["\\Seen", "$a", "\\Answered"])
                imap.command(f"STORE 1:* {rng.choice(['+', '-'])}FLAGS.SILENT ({flag})")
            elif kind == "saver":
                untagged, tagged = imap.command("X-STATE SAVE")
                for line in untagged:
                    if line.startswith(b"* X-STATE "):
                        with ledger.lock:
                            ledger.tokens.append(line.split()[2].decode())
                time.sleep(0.02)
    except (OSError, ConnectionError):
        pass  # the server was killed
    except BaseException as exc:
        errors.append(exc)


def _count_files(data: Path, mailbox: str) -> int:
    base = data / "mail" / USER / MAILDIRS[mailbox]
    return sum(1 for sub in ("cur", "new") if (base / sub).is_dir() for p in (base / sub).iterdir() if p.is_file())


def _verify(srv: RunningServer, ledger: Ledger, uidvalidity: dict[str, int], floor: dict[str, int]) -> None:
    imap = _login(srv)
    try:
        for mailbox in MAILDIRS:
            untagged, tagged = imap.command(f"SELECT {mailbox}")
            assert b" OK" in tagged, tagged
            uv = int(next(m.group(1) for line in untagged if (m := _UIDVALIDITY.search(line))))
            assert uidvalidity.setdefault(mailbox, uv) == uv, f"{mailbox} UIDVALIDITY changed {uidvalidity[mailbox]} -> {uv}"
            uids = [int(x) for line in imap.ok("UID SEARCH ALL") if line.startswith(b"* SEARCH")
                    for x in line.split()[2:]]
            files = _count_files(srv.data_dir, mailbox)
            assert files == len(uids), f"{mailbox}: {files} files in cur/+new/ but {len(uids)} UIDs in the index"
            handed = ledger.uids_handed[mailbox]
            floor[mailbox] = max([floor[mailbox], *uids, *handed])
            if mailbox == "INBOX":
                missing = sorted(set(ledger.acked) - set(uids))
                assert not missing, f"acknowledged APPENDs lost after kill -9: UIDs {missing[:10]}"
                for uid, data in ledger.acked.items():
                    line = imap.ok(f"UID FETCH {uid} BODY.PEEK[]")[0]
                    m = re.search(rb"\{(\d+)\}\r\n", line)
                    assert m, line[:200]
                    got = line[m.end() : m.end() + int(m.group(1))]
                    assert got == data, f"UID {uid}: bytes differ after restart"
        imap.command("LOGOUT")
    finally:
        imap.close()
    for token in ledger.tokens[-20:]:
        c = RawIMAP(srv.host, srv.port, timeout=20)
        try:
            untagged, tagged = c.command(f"X-STATE RESTORE {token}")
            assert b" OK" in tagged[:12], f"X-STATE token saved before the kill: {tagged!r}"
        finally:
            c.close()


def test_kill_9_under_load(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    imapd_cli("user", "add", USER, "--password-stdin", "--data-dir", str(data), stdin=PASSWORD)
    srv = start_server(data)
    imap = _login(srv)
    imap.ok("CREATE Scratch")
    imap.ok("CREATE Scratch2")
    imap.close()
    ledger = Ledger()
    uidvalidity: dict[str, int] = {}
    floor = {m: 0 for m in MAILDIRS}
    rng = random.Random(int(os.environ.get("CRASH_SEED", "0")) or None)
    kills = 0
    try:
        for round_ in range(KILLS):
            stop = threading.Event()
            errors: list[BaseException] = []
            kinds = ["appender", "appender", "churner", "flagger", "saver"]
            threads = [threading.Thread(target=_worker, args=(k, srv, ledger, floor, stop, rng.random(), errors),
                                        daemon=True) for k in kinds]
            for t in threads:
                t.start()
            time.sleep(rng.uniform(0.3, 1.5))
            srv.proc.send_signal(signal.SIGKILL)
            srv.proc.wait()
            kills += 1
            stop.set()
            for t in threads:
                t.join(30)
            assert not errors, errors
            srv = start_server(data)
            _verify(srv, ledger, uidvalidity, floor)
            ledger.tokens.clear()
            print(f"round {round_}: {len(ledger.acked)} acknowledged APPENDs verified")
        assert ledger.appends_ok > 0
        print(f"CRASH-SUMMARY kills={kills} acked_appends={ledger.appends_ok} verified={len(ledger.acked)}")
    finally:
        stop_server(srv)

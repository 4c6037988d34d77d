"""A real browser (Debian's Chromium driven by Playwright) against `webmail-demo` and a real imapd.

Also takes screenshots: into docs/screenshots/ when IMAPD_SCREENSHOTS=1 (to refresh the docs), else into the
test's temporary directory, so a test run never changes the work tree. Never downloads a browser: it uses /usr/bin/chromium.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from imapd.demo import seed_demo
from tests.conftest import RunningServer, start_server, stop_server
from tests.e2e.test_managesieve import sieve_port
from tests.webmail.conftest import Account, html_mail, text_mail

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
DOC_SHOTS = ROOT / "docs" / "screenshots"
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

playwright_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason=f"{CHROMIUM} is missing (scripts/install-sysdeps.sh installs Debian's chromium)")


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data = tmp_path_factory.mktemp("browser") / "data"
    seed_demo(data)  # the demo users with realistic mail: demo / demo
    srv = start_server(data, "-o", "store.fsync=false", "-o", "managesieve.listen=127.0.0.1:0")
    srv.users["demo"] = "demo"
    try:
        yield srv
    finally:
        stop_server(srv)


@pytest.fixture(scope="module")
def webmail(demo_server: RunningServer) -> Iterator[str]:
    port = free_port()
    log = open(demo_server.data_dir.parent / "webmail.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "webmail_demo", "--imap", f"127.0.0.1:{demo_server.port}",
                             "--managesieve", f"127.0.0.1:{sieve_port(demo_server)}",
                             "--listen", f"127.0.0.1:{port}"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None:
                raise AssertionError((demo_server.data_dir.parent / "webmail.log").read_text()) from None
            time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_browser_session(webmail: str, demo_server: RunningServer, tmp_path: Path) -> None:
    SHOTS = DOC_SHOTS if os.environ.get("IMAPD_SCREENSHOTS") == "1" else tmp_path
    demo = Account(demo_server, "demo", "demo")
    now = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())
    demo.deliver(html_mail("Weekly digest (HTML)", date=now))
    SHOTS.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.set_default_timeout(10_000)
        console_errors: list[str] = []
        page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)

        page.goto(webmail + "/")
        page.wait_for_selector("form[action='/login']")
        page.fill("input[name=user]", "demo")
        page.screenshot(path=str(SHOTS / "login.png"))
        page.fill("input[name=password]", "demo")
        page.click("button[type=submit]")
        page.wait_for_selector("#msglist tbody tr[data-uid]")
        page.wait_for_selector("body[data-live=ready]")
        assert "via X-STATE RESTORE" in page.inner_text("footer")
        page.screenshot(path=str(SHOTS / "mailbox.png"))

        # New mail shows up without a reload (IDLE -> server-sent event -> the list refreshes).
        page.evaluate("window.__noReload = true")
        demo.deliver(text_mail("Arrived while you were looking", "Live Sender <live@example.org>",
                               date=now))
        page.wait_for_selector("#msglist tr.new >> text=Arrived while you were looking", timeout=15_000)
        assert page.evaluate("window.__noReload") is True
        assert page.is_visible("#live")

        # Open the HTML message: sanitized, in a sandboxed iframe, remote images blocked.
        page.click("#msglist a >> text=Weekly digest (HTML)")
        page.wait_for_selector("iframe.mailbody")
        assert "remote image" in page.inner_text("p.blocked")
        frame = page.frame_locator("iframe.mailbody")
        frame.locator("text=Big news").wait_for()
        assert frame.locator("script").count() == 0 and frame.locator("img[src^='http']").count() == 0
        page.screenshot(path=str(SHOTS / "message.png"), full_page=True)

        # Flag it, then move it to Archive.
        page.click("button[value=flag]")
        page.wait_for_selector("h1 .star")
        assert "\\Flagged" in demo.flags("INBOX", max(demo.uids("INBOX", "SUBJECT \"Weekly digest\"")))
        page.select_option("select[name=target]", "Archive")
        page.click("button[value=move]")
        page.wait_for_selector(".flash >> text=Moved to Archive")
        assert page.locator("#msglist a >> text=Weekly digest (HTML)").count() == 0
        assert demo.uids("Archive", "SUBJECT \"Weekly digest\"")

        page.click(".views a >> text=Threads")
        page.wait_for_selector("#msglist .indent")
        page.screenshot(path=str(SHOTS / "threads.png"))

        page.click("header button >> text=Log out")
        page.wait_for_selector(".flash >> text=You have logged out")
        page.goto(webmail + "/mail?box=INBOX")
        assert re.search(r"/login$", page.url)
        assert not [e for e in console_errors if "Content Security Policy" in e], console_errors
        browser.close()


def _script(srv: RunningServer) -> tuple[str | None, str]:
    """The active script's name and the text of "webmail", as the server has them (GETSCRIPT)."""
    from sievelib.managesieve import Client

    c = Client("127.0.0.1", sieve_port(srv))
    assert c.connect("demo", "demo", authmech="PLAIN"), c.errmsg
    active, _ = c.listscripts()
    text = c.getscript("webmail") or ""
    c.logout()
    return active, text


@pytest.mark.filterwarnings("ignore:Credentials are sent over an unencrypted connection")
def test_browser_filters_and_vacation(webmail: str, demo_server: RunningServer, tmp_path: Path) -> None:
    """Settings > Filters: add a rule and a vacation reply in the browser; `imapd deliver` then files by the
    script the page stored over ManageSieve; edit and delete round-trip through the server's script."""
    SHOTS = DOC_SHOTS if os.environ.get("IMAPD_SCREENSHOTS") == "1" else tmp_path
    demo = Account(demo_server, "demo", "demo")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(10_000)
        console_errors: list[str] = []
        page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
        page.goto(webmail + "/login")
        page.fill("input[name=user]", "demo")
        page.fill("input[name=password]", "demo")
        page.click("button[type=submit]")
        page.wait_for_selector("#msglist")
        page.click("a.manage >> text=Filters & vacation")
        page.wait_for_selector("main.settings >> text=No filters yet.")

        rule = page.locator("form[aria-label=Filter]")
        rule.locator("input[name=name]").fill("Mailing lists")
        rule.locator("select[name=field]").select_option("subject")
        rule.locator("select[name=match]").select_option("contains")
        rule.locator("input[name=value]").fill("[list]")
        rule.locator("select[name=action]").select_option("move")
        rule.locator("input[name=folder]").fill("Lists")
        rule.locator("button >> text=Add filter").click()
        page.wait_for_selector(".flash >> text=Filter “Mailing lists” added.")

        vac = page.locator("form.vacation-form")
        vac.locator("input[name=enabled]").check()
        vac.locator("input[name=subject]").fill("Out of office")
        vac.locator("textarea[name=body]").fill("I am away until Monday.\nYour mail will be read then.")
        vac.locator("input[name=days]").fill("5")
        vac.locator("button >> text=Save vacation reply").click()
        page.wait_for_selector(".flash >> text=Vacation reply on.")
        assert page.locator("form.vacation-form textarea[name=body]").input_value() == (
            "I am away until Monday.\nYour mail will be read then.")
        page.screenshot(path=str(SHOTS / "settings.png"), full_page=True)

        active, text = _script(demo_server)
        assert active == "webmail"
        assert 'if header :contains "Subject" "[list]" { fileinto :create "Lists"; stop; }' in text
        assert 'vacation :days 5 :subject "Out of office"' in text
        before = len(demo.uids("INBOX"))
        demo.deliver(text_mail("[list] release 2.0 announced", "Lists <list@example.org>"))
        demo.deliver(text_mail("Not for the list", "Ann <ann@example.org>"))
        assert len(demo.uids("Lists", 'SUBJECT "release 2.0"')) == 1
        assert len(demo.uids("INBOX")) == before + 1 and not demo.uids("INBOX", 'SUBJECT "release 2.0"')

        # edit: the form comes back filled in from the server's script
        page.click("tr[data-rule='0'] a >> text=Edit")
        form = page.locator("form[aria-label=Filter]")
        assert form.locator("input[name=value]").input_value() == "[list]"
        form.locator("input[name=value]").fill("[announce]")
        form.locator("button >> text=Save filter").click()
        page.wait_for_selector(".flash >> text=Filter “Mailing lists” saved.")
        assert "“[announce]”" in page.inner_text("tr[data-rule='0']")
        _, text = _script(demo_server)
        assert '"[announce]"' in text and '"[list]"' not in text and "vacation :days 5" in text

        page.click("tr[data-rule='0'] button >> text=Delete")
        page.wait_for_selector(".flash >> text=Filter “Mailing lists” deleted.")
        page.wait_for_selector("main.settings >> text=No filters yet.")
        _, text = _script(demo_server)
        assert "if header" not in text and "vacation :days 5" in text
        assert not [e for e in console_errors if "Content Security Policy" in e], console_errors
        browser.close()

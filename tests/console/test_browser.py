"""The console in a real browser: Debian's chromium driven by selenium through /usr/bin/chromedriver
(nothing is downloaded), against the API served by uvicorn on a free loopback port. Screenshots of
each page go to ``$BOUNCE_TEST_ARTIFACTS/console`` (default ``var/test-artifacts/console``)."""

from __future__ import annotations

import http.server
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from processor.config import Settings
from processor.records import BounceType, EventKind
from processor.store import Store
from tests.conftest import PROJECT, require
from tests.console.helpers import OPERATOR, report, served

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(os.environ.get("BOUNCE_TEST_ARTIFACTS", PROJECT / "var" / "test-artifacts")) / "console"
SCRIPT_DIAGNOSTIC = '550 5.1.1 <script>document.title="owned";window.owned=1</script> user unknown'
pytestmark = pytest.mark.slow
VICTIM_DSN = (
    "From: MAILER-DAEMON@mx.receiver.example\r\nTo: bounces@sender.example\r\n"
    "Subject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n"
    "Content-Type: multipart/report; report-type=delivery-status; boundary=\"r\"\r\n\r\n"
    "--r\r\nContent-Type: text/plain\r\n\r\nThis is the mail system at host mx.receiver.example.\r\n"
    "Your message could not be delivered to one or more recipients.\r\n\r\n"
    "--r\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.receiver.example\r\n\r\n"
    "Final-Recipient: rfc822; victim@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n"
    f"Diagnostic-Code: smtp; {SCRIPT_DIAGNOSTIC}\r\n\r\n--r--\r\n"
).encode()


@pytest.fixture
def engine_name() -> str:
    """The browser flows run once, on SQLite (the engines are covered in-process)."""
    return "sqlite"


@pytest.fixture
def live_url(settings: Settings, store: Store) -> Iterator[str]:
    """The API (with the console) under uvicorn on a free loopback port, stopped at the end."""
    with served(settings, store) as url:
        yield url


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Debian chromium (skipped without it, failed in CI), with a fresh profile."""
    require(Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(),
            "chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="bp-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,1000", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def shot(driver: Any, name: str) -> Path:
    """A full-page screenshot of the current page."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, max(800, min(int(height) + 40, 4000)))
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    driver.set_window_size(1280, 1000)
    return path


def wait_for(driver: Any, css: str) -> Any:
    """The element, once the page that has it has loaded (a click returns before navigation ends)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, 15).until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css)))


def fill_store(store: Store) -> None:
    """Thirty days of reports: hard bounces, deferrals, complaints and auto-replies, for two senders."""
    now = datetime.now(UTC).replace(hour=12, minute=0)
    for day in range(30):
        at = now - timedelta(days=day)
        for n in range(3 + day % 5):
            report(store, f"h{day}-{n}@{('mail.example', 'post.example', 'web.example')[n % 3]}", at=at,
                   rule_id="hard-user-unknown")
        for n in range(day % 3):
            report(store, f"s{day}-{n}@slow.example", kind=EventKind.DELAY, bounce_type=BounceType.SOFT,
                   reason="mailboxfull", rule_id="soft-mailbox-full", at=at)
        if day % 4 == 0:
            report(store, f"c{day}@mail.example", kind=EventKind.COMPLAINT, bounce_type=BounceType.COMPLAINT,
                   reason="abuse", rule_id="arf-abuse", at=at, sender="news@news.example")
        if day % 6 == 0:
            report(store, f"a{day}@post.example", kind=EventKind.AUTO_REPLY, bounce_type=BounceType.AUTO_REPLY,
                   reason="vacation", rule_id="auto-reply", at=at)
    report(store, "victim@example.org", kind=EventKind.DELAY, bounce_type=BounceType.SOFT, reason="mailboxfull",
           diagnostic="452 4.2.2 mailbox full", at=now - timedelta(days=3), rule_id="soft-mailbox-full")
    report(store, "victim@example.org", diagnostic=SCRIPT_DIAGNOSTIC, at=now - timedelta(days=2),
           rule_id="hard-user-unknown", raw=VICTIM_DSN)
    report(store, "odd@example.org", bounce_type=BounceType.UNDETERMINED, reason="undefined", rule_id="",
           diagnostic="421 try later <b>maybe</b>", at=now)
    store.set_mailbox_state("bounces/INBOX", 1, 1200)
    from processor.store import MessageRef

    store.record_failed(MessageRef.for_bytes(b"junk", mailbox="bounces/INBOX", uidvalidity=1, uid=77),
                        "cannot parse: the message has no header section")


class _AttackerPage(http.server.BaseHTTPRequestHandler):
    """Another origin's page with a form that posts to the console (what a CSRF attack looks like)."""

    target = ""

    def do_GET(self) -> None:
        body = (f'<html><body><form method="post" action="{self.target}/ui/address/remove">'
                '<input type="hidden" name="address" value="victim@example.org">'
                '<input type="hidden" name="note" value="forged">'
                '<button id="go" type="submit">win a prize</button></form></body></html>').encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_console_in_a_browser(browser: Any, live_url: str, store: Store) -> None:
    """Sign in, read the overview chart, find an address, see its history and evidence with a <script>
    diagnostic inert, have a cross-site form refused, remove the address with a note and see the API agree."""
    from selenium.webdriver.common.by import By

    fill_store(store)
    httpx.post(f"{live_url}/v1/stats/sent", headers={"Authorization": f"Bearer {OPERATOR}"}, json={"counts": [
        {"day": (datetime.now(UTC) - timedelta(days=d)).strftime("%Y-%m-%d"), "sending_domain": "news.example",
         "sent": 900 + 10 * d} for d in range(30)]}).raise_for_status()

    browser.get(f"{live_url}/ui/")
    assert "/ui/login" in browser.current_url
    shot(browser, "login")
    browser.find_element(By.ID, "token").send_keys(OPERATOR)
    browser.find_element(By.ID, "sign-in").click()
    wait_for(browser, "#events-chart")
    assert browser.current_url.rstrip("/").endswith("/ui")

    # overview: the chart's bars exist, are drawn, and carry the recorded counts
    bars = browser.find_elements(By.CSS_SELECTOR, "#events-chart rect.bar")
    drawn = {(b.get_attribute("data-day"), b.get_attribute("data-category")): int(b.get_attribute("data-count"))
             for b in bars}
    expected = _daily_counts(store)
    assert drawn == expected
    assert all(b.size["height"] > 0 and b.size["width"] > 0 for b in bars)
    points = browser.find_elements(By.CSS_SELECTOR, '.rate[data-sender="news.example"] circle.point')
    assert len(points) == 60  # two rates a day, 30 days, all with sent counts
    shot(browser, "overview")

    # search the address, see the history and the evidence; the <script> diagnostic is inert text
    search = browser.find_element(By.CSS_SELECTOR, "header form.search input")
    search.send_keys("Victim@Example.org\n")
    assert wait_for(browser, "h1.address").text == "victim@example.org"
    events = browser.find_elements(By.CSS_SELECTOR, "article.event")
    assert len(events) == 2
    diagnostic = events[0].find_element(By.CSS_SELECTOR, ".diagnostic").text
    assert diagnostic == SCRIPT_DIAGNOSTIC
    assert browser.title != "owned" and browser.execute_script("return window.owned === undefined")
    evidence = events[0].find_element(By.CSS_SELECTOR, ".evidence pre").text
    assert "verdict:" in evidence
    shot(browser, "address")

    # the report the verdict came from: the delivery-status part that names the recipient, as text
    events[0].find_element(By.CSS_SELECTOR, "a.raw-report").click()
    part = wait_for(browser, "section.report-part")
    assert part.get_attribute("data-type") == "message/delivery-status"
    assert "Final-Recipient: rfc822; victim@example.org" in part.text and "<script>" in part.text
    assert browser.title != "owned" and browser.execute_script("return window.owned === undefined")
    shot(browser, "report")

    # a form on another origin posting to the console is refused, and nothing changes
    attacker = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _AttackerPage)
    _AttackerPage.target = live_url
    threading.Thread(target=attacker.serve_forever, daemon=True).start()
    try:
        browser.get(f"http://127.0.0.1:{attacker.server_address[1]}/")
        browser.find_element(By.ID, "go").click()
        assert wait_for(browser, "#csrf-error").is_displayed()
        shot(browser, "csrf-refused")
    finally:
        attacker.shutdown()
    assert store.is_suppressed("victim@example.org") is not None

    # remove with a note; the API no longer lists it
    browser.get(f"{live_url}/ui/address?a=victim@example.org")
    form = browser.find_element(By.CSS_SELECTOR, "form.remove")
    form.find_element(By.NAME, "note").send_keys("customer confirmed the address works")
    form.find_element(By.CSS_SELECTOR, "button").click()
    assert "was removed" in wait_for(browser, "#done").text
    assert browser.find_element(By.ID, "not-suppressed").is_displayed()
    shot(browser, "address-removed")
    answer = httpx.get(f"{live_url}/v1/suppressions/victim@example.org",
                       headers={"Authorization": f"Bearer {OPERATOR}"})
    assert answer.status_code == 404
    assert store.history("victim@example.org")[0].actor == "ui:operator"

    for page in ("review", "mailboxes"):
        browser.get(f"{live_url}/ui/{page}")
        assert browser.find_element(By.CSS_SELECTOR, "h1").text.lower() == page
        shot(browser, page)
    browser.find_element(By.CSS_SELECTOR, "form.signout button").click()
    wait_for(browser, "#token")
    assert "/ui/login" in browser.current_url


def _daily_counts(store: Store) -> dict[tuple[str, str], int]:
    """What the chart must show, counted from the events themselves."""
    import sqlalchemy as sa

    since = (datetime.now(UTC) - timedelta(days=29)).strftime("%Y-%m-%d")
    with store.engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT substr(CAST(received_at AS VARCHAR), 1, 10) AS day, bounce_type, count(*) FROM event "
            "WHERE bounce_type IN ('hard', 'soft', 'complaint', 'auto_reply') GROUP BY 1, 2"))
        return {(day, kind): n for day, kind, n in rows if day >= since}


class _AttackerReprocess(_AttackerPage):
    """Another origin's form asking the console to process a quarantined message again."""

    failed_id = 0

    def do_GET(self) -> None:
        body = (f'<html><body><form method="post" action="{self.target}/ui/quarantine/reprocess">'
                f'<input type="hidden" name="id" value="{self.failed_id}">'
                '<button id="go" type="submit">win a prize</button></form></body></html>').encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_mailboxes_and_process_again_in_a_browser(browser: Any, live_url: str, store: Store) -> None:
    """The mailboxes page shows each mailbox's backlog and lease holder; "Process again" marks a
    quarantined message for the daemon with the operator and the note; a form without the session's
    token, or from another origin, is refused and marks nothing."""
    from selenium.webdriver.common.by import By

    from processor.store import MessageRef

    store.set_mailbox_state("bounces/INBOX", 1, 1200)
    store.record_pass("bounces/INBOX", holder="mx1.example:4242", handled=100, backlog=380)
    store.set_mailbox_state("fbl/INBOX", 9, 40)
    store.record_pass("fbl/INBOX", holder="mx2.example:517", handled=4, backlog=0)
    store.record_pass_error("fbl/INBOX", holder="mx2.example:517",
                            error="fbl/INBOX: imap.example:993 closed the connection")
    first = store.record_failed(MessageRef.for_bytes(b"Subject: one\r\n\r\njunk\r\n", mailbox="bounces/INBOX",
                                                     uidvalidity=1, uid=77),
                                "storing raised OverflowError: date value out of range")
    second = store.record_failed(MessageRef.for_bytes(b"\r\n\r\n", mailbox="fbl/INBOX", uidvalidity=9, uid=12),
                                 "cannot parse: <script>window.owned=1</script> empty message")

    browser.get(f"{live_url}/ui/login?next=/ui/mailboxes")
    browser.find_element(By.ID, "token").send_keys(OPERATOR)
    browser.find_element(By.ID, "sign-in").click()
    rows = {r.get_attribute("data-mailbox"): r for r in
            wait_for(browser, "#mailboxes").find_elements(By.CSS_SELECTOR, "tr.mailbox")}
    assert rows["bounces/INBOX"].find_element(By.CSS_SELECTOR, ".backlog").text == "380"
    assert rows["bounces/INBOX"].find_element(By.CSS_SELECTOR, ".holder").text == "mx1.example:4242"
    assert "closed the connection" in rows["fbl/INBOX"].find_element(By.CSS_SELECTOR, ".last-error").text
    assert browser.execute_script("return window.owned === undefined")
    shot(browser, "mailboxes-quarantine")

    # a same-origin form stripped of its token is refused
    browser.execute_script(
        f"document.querySelector(\"tr[data-id='{second}'] form.reprocess input[name=csrf_token]\").remove()")
    browser.find_element(By.CSS_SELECTOR, f"tr[data-id='{second}'] form.reprocess button").click()
    assert wait_for(browser, "#csrf-error").is_displayed()

    # another origin's form is refused
    attacker = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _AttackerReprocess)
    _AttackerReprocess.target, _AttackerReprocess.failed_id = live_url, first
    threading.Thread(target=attacker.serve_forever, daemon=True).start()
    try:
        browser.get(f"http://127.0.0.1:{attacker.server_address[1]}/")
        browser.find_element(By.ID, "go").click()
        assert wait_for(browser, "#csrf-error").is_displayed()
    finally:
        attacker.shutdown()
    assert store.requested_messages(["bounces/INBOX", "fbl/INBOX"]) == []

    # the operator's click, with a note
    browser.get(f"{live_url}/ui/mailboxes")
    form = wait_for(browser, f"tr[data-id='{first}'] form.reprocess")
    form.find_element(By.NAME, "note").send_keys("TTL fixed in 10-operator.yaml")
    form.find_element(By.CSS_SELECTOR, "button").click()
    assert f"#{first} (bounces/INBOX, UID 77) will be processed again" in wait_for(browser, "#done").text
    row = browser.find_element(By.CSS_SELECTOR, f"tr[data-id='{first}']")
    assert row.find_element(By.CSS_SELECTOR, ".status .badge").text == "requested"
    assert "asked by ui:operator" in row.find_element(By.CSS_SELECTOR, ".requested").text
    assert "TTL fixed in 10-operator.yaml" in row.find_element(By.CSS_SELECTOR, ".requested").text
    assert not row.find_elements(By.CSS_SELECTOR, "form.reprocess")
    assert [r.id for r in store.requested_messages(["bounces/INBOX", "fbl/INBOX"])] == [first]
    shot(browser, "mailboxes-requested")

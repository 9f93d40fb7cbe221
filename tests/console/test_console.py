"""The web console in-process: sign-in and sessions, CSRF, the address page and its changes, the
overview's charts and rates, review, mailboxes, and escaping. Pages are checked as parsed HTML."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from starlette.testclient import TestClient

from processor.api import create_app
from processor.api.auth import hash_token, new_token
from processor.config import ApiSettings, ApiToken, DatabaseSettings, Settings
from processor.console.session import COOKIE_NAME
from processor.records import BounceType, EventKind
from processor.store import Store
from tests.console.helpers import MAILER, OPERATOR, VIEWER, form_token, report, sign_in, soup, squash

BEARER = {"Authorization": f"Bearer {OPERATOR}"}
SCRIPT = '<script>document.title="owned"</script><img src=x onerror=alert(1)>'


def today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


# ----------------------------------------------------------------------------- sign-in, sessions


def test_pages_need_a_session(client: TestClient) -> None:
    """Every console page sends a visitor without a session to the sign-in page, keeping the target."""
    for path in ("/ui/", "/ui/address?a=a@example.org", "/ui/search?q=x", "/ui/review", "/ui/mailboxes"):
        answer = client.get(path, follow_redirects=False)
        assert answer.status_code == 303, path
        assert answer.headers["location"].startswith("/ui/login?next=%2Fui%2F"), path


def test_sign_in_sets_a_strict_http_only_cookie(client: TestClient) -> None:
    """A ui token is swapped for an HttpOnly, SameSite=Strict cookie (not Secure over plain HTTP)."""
    answer = client.post("/ui/login", data={"token": OPERATOR, "next": "/ui/review"}, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/review"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE_NAME}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    assert "Secure" not in cookie
    assert OPERATOR not in cookie
    assert client.get("/ui/review").status_code == 200


def test_sign_in_over_tls_sets_a_secure_cookie(settings: Settings, store: Store) -> None:
    """Served over TLS, the session cookie is also Secure."""
    with TestClient(create_app(settings, store), base_url="https://console.test") as secure:
        answer = secure.post("/ui/login", data={"token": OPERATOR}, follow_redirects=False)
    assert answer.status_code == 303
    assert "Secure" in answer.headers["set-cookie"]


@pytest.mark.parametrize(("token", "why"), [
    ("bp_not-a-token", "not valid"),
    (MAILER, "lacks the ui scope"),
    ("", "not valid"),
])
def test_sign_in_refuses_bad_tokens(client: TestClient, token: str, why: str) -> None:
    """An unknown token, or one without the ui scope, gets the form again with a reason and no cookie."""
    answer = client.post("/ui/login", data={"token": token}, follow_redirects=False)
    assert answer.status_code == 401
    assert why in soup(answer.text).select_one(".error").get_text()
    assert "set-cookie" not in answer.headers
    assert token not in answer.text or not token


def test_sign_in_only_redirects_inside_the_console(client: TestClient) -> None:
    """A ``next`` pointing at another site is replaced by the overview (no open redirect)."""
    answer = client.post("/ui/login", data={"token": OPERATOR, "next": "https://evil.example/"},
                         follow_redirects=False)
    assert answer.headers["location"] == "/ui/"
    answer = client.post("/ui/login", data={"token": OPERATOR, "next": "//evil.example/ui"}, follow_redirects=False)
    assert answer.headers["location"] == "/ui/"


def test_forged_cookie_is_no_session(client: TestClient) -> None:
    """A cookie not signed by this console is ignored."""
    client.cookies.set(COOKIE_NAME, "eyJuIjoib3BlcmF0b3IifQ.forged.signature", path="/ui")
    assert client.get("/ui/", follow_redirects=False).status_code == 303


def test_sign_out_ends_the_session(client: TestClient) -> None:
    """Signing out (a form with the session's token) clears the cookie; pages ask to sign in again."""
    token = sign_in(client, OPERATOR)
    answer = client.post("/ui/logout", data={"csrf_token": token}, follow_redirects=False)
    assert answer.status_code == 303
    assert f'{COOKIE_NAME}=""' in answer.headers["set-cookie"]
    assert client.get("/ui/", follow_redirects=False).status_code == 303


def test_session_ends_when_its_token_is_removed(db_url: str, store: Store) -> None:
    """A session follows the configuration: with its token removed, the cookie no longer signs in."""
    kept = new_token()
    secret = "a fixed console secret for this test"
    before = Settings(database=DatabaseSettings(url=db_url), api=ApiSettings(console_secret=secret, tokens=[
        ApiToken(name="operator", hash=hash_token(OPERATOR), scopes=["ui", "read", "write"]),
        ApiToken(name="other", hash=hash_token(kept), scopes=["ui"])]))
    after = before.model_copy(update={"api": before.api.model_copy(update={"tokens": before.api.tokens[1:]})})
    with TestClient(create_app(before, store)) as first:
        sign_in(first, OPERATOR)
        cookie = first.cookies[COOKIE_NAME]
    with TestClient(create_app(before, store), cookies={COOKIE_NAME: cookie}) as same_config:
        assert same_config.get("/ui/", follow_redirects=False).status_code == 200
    with TestClient(create_app(after, store), cookies={COOKIE_NAME: cookie}) as changed:
        assert changed.get("/ui/", follow_redirects=False).status_code == 303


# ----------------------------------------------------------------------------- CSRF


@pytest.mark.parametrize(("headers", "with_token"), [
    ({}, False),
    ({"Sec-Fetch-Site": "cross-site"}, True),
    ({"Sec-Fetch-Site": "same-site"}, True),
    ({"Origin": "https://evil.example"}, True),
])
def test_forms_without_csrf_proof_are_refused(
    client: TestClient, store: Store, headers: dict[str, str], with_token: bool
) -> None:
    """A POST without the session's form token, or from another site, is refused (403) and changes nothing."""
    report(store, "keep@example.org")
    token = sign_in(client, OPERATOR)
    data = {"address": "keep@example.org", "scope": "global", "note": "should not happen"}
    if with_token:
        data["csrf_token"] = token
    answer = client.post("/ui/address/remove", data=data, headers=headers, follow_redirects=False)
    assert answer.status_code == 403
    assert soup(answer.text).select_one("#csrf-error") is not None
    assert store.is_suppressed("keep@example.org") is not None


def test_same_origin_form_passes(client: TestClient, store: Store) -> None:
    """The same form from the console's own origin, with the token, is accepted."""
    report(store, "go@example.org")
    token = sign_in(client, OPERATOR)
    answer = client.post("/ui/address/remove", data={"address": "go@example.org", "note": "asked", "csrf_token": token},
                         headers={"Sec-Fetch-Site": "same-origin", "Origin": "http://testserver"},
                         follow_redirects=False)
    assert answer.status_code == 303
    assert store.is_suppressed("go@example.org") is None


def test_bearer_api_needs_no_csrf_token(client: TestClient) -> None:
    """The bearer-token API is untouched by the console's CSRF check."""
    answer = client.put("/v1/suppressions/api@example.org", json={"reason": "manual"}, headers=BEARER)
    assert answer.status_code == 201


# ----------------------------------------------------------------------------- address page


def test_address_page_shows_entries_history_and_evidence(client: TestClient, store: Store) -> None:
    """The address page lists the entry, each event with status, reply, diagnostic and rule, and the evidence."""
    report(store, "Gone@Example.org", diagnostic="550 5.1.1 <gone@example.org>: no such user here",
           rule_id="hard-user-unknown")
    sign_in(client, VIEWER)
    page = soup(client.get("/ui/address", params={"a": "Gone@Example.org"}).text)
    assert squash(page.select_one("h1").get_text()) == "gone@example.org"
    entry = page.select_one("#entries tr.entry")
    assert entry is not None and "suppressed" in entry.get_text() and "userunknown" in entry.get_text()
    event = page.select_one("article.event")
    assert event is not None
    assert "5.1.1 550" in squash(event.select_one(".status").get_text())
    assert event.select_one(".rule").get_text() == "hard-user-unknown"
    assert "no such user here" in event.select_one(".diagnostic").get_text()
    evidence = event.select_one(".evidence pre").get_text()
    assert "verdict:" in evidence and "diagnostic" in evidence


def test_search_by_domain_pages_through_entries(client: TestClient, store: Store) -> None:
    """A domain search lists its entries 50 to a page, with a link to the next page."""
    for n in range(55):
        store.add(f"user{n:02d}@paged.example", reason="manual", actor="test")
    store.add("other@elsewhere.example", actor="test")
    sign_in(client, VIEWER)
    first = soup(client.get("/ui/search", params={"q": "paged.example"}).text)
    assert len(first.select("#entries tbody tr")) == 50
    following = first.select_one("#next-page")
    assert following is not None
    second = soup(client.get(str(following["href"])).text)
    rows = [squash(row.get_text()) for row in second.select("#entries tbody tr")]
    assert len(rows) == 5
    assert all("paged.example" in row for row in rows)


def test_search_for_an_address_opens_its_page(client: TestClient) -> None:
    """A search holding an @ goes straight to that address's page."""
    sign_in(client, VIEWER)
    answer = client.get("/ui/search", params={"q": "someone@example.org"}, follow_redirects=False)
    assert answer.headers["location"] == "/ui/address?a=someone%40example.org"


def test_remove_with_a_note_is_an_event_by_the_signed_in_token(client: TestClient, store: Store) -> None:
    """Removing with a note unsuppresses the address (the API agrees) and records who did it and why."""
    report(store, "undo@example.org")
    token = sign_in(client, OPERATOR)
    answer = client.post("/ui/address/remove",
                         data={"address": "undo@example.org", "scope": "global", "note": "customer asked",
                               "csrf_token": token})
    assert answer.status_code == 200
    assert soup(answer.text).select_one("#done") is not None
    assert client.get("/v1/suppressions/undo@example.org", headers=BEARER).status_code == 404
    latest = store.history("undo@example.org")[0]
    assert (latest.kind, latest.actor, latest.explanation) == ("manual_remove", "ui:operator", "customer asked")


def test_remove_without_a_note_is_refused(client: TestClient, store: Store) -> None:
    """The note is required: without one nothing is removed."""
    report(store, "stay@example.org")
    token = sign_in(client, OPERATOR)
    answer = client.post("/ui/address/remove",
                         data={"address": "stay@example.org", "note": "  ", "csrf_token": token})
    assert answer.status_code == 422
    assert store.is_suppressed("stay@example.org") is not None


def test_add_by_hand(client: TestClient, store: Store) -> None:
    """Suppressing by hand adds the entry with its reason, expiry and note, as the signed-in token."""
    token = sign_in(client, OPERATOR)
    client.post("/ui/address/add", data={"address": "new@example.org", "scope": "global", "reason": "request",
                                         "ttl_days": "30", "note": "phoned", "csrf_token": token})
    entry = store.is_suppressed("new@example.org")
    assert entry is not None and entry.reason == "request" and entry.note == "phoned"
    assert entry.expires_at is not None
    assert timedelta(days=29) < entry.expires_at - datetime.now(UTC) <= timedelta(days=30)
    assert store.history("new@example.org")[0].actor == "ui:operator"


def test_read_only_session_sees_but_cannot_change(client: TestClient, store: Store) -> None:
    """A ui token without write gets no change forms, and a forged change is refused (403)."""
    report(store, "ro@example.org")
    token = sign_in(client, VIEWER)
    page = soup(client.get("/ui/address", params={"a": "ro@example.org"}).text)
    assert page.select("form.remove") == [] and page.select_one("#add-form") is None
    answer = client.post("/ui/address/remove", data={"address": "ro@example.org", "note": "x", "csrf_token": token})
    assert answer.status_code == 403
    assert store.is_suppressed("ro@example.org") is not None


# ----------------------------------------------------------------------------- escaping


def test_html_in_mail_is_shown_as_text(client: TestClient, store: Store) -> None:
    """A diagnostic, recipient-side text or error holding HTML or script is escaped everywhere it is shown."""
    report(store, "x@example.org", diagnostic=SCRIPT, bounce_type=BounceType.UNDETERMINED, reason="undefined",
           rule_id="")
    store.record_failed(_ref(), f"cannot parse: {SCRIPT}")
    sign_in(client, VIEWER)
    for path in ("/ui/address?a=x@example.org", "/ui/review", "/ui/mailboxes"):
        html = client.get(path).text
        page = soup(html)
        assert page.select("script") == [] and page.select("img") == [], path
        assert SCRIPT in page.get_text(), path
        assert "&lt;script&gt;" in html, path


def _ref() -> object:
    from processor.store import MessageRef

    return MessageRef.for_bytes(b"broken message", mailbox="bounces/INBOX", uidvalidity=1, uid=999)


def test_pages_forbid_scripts(client: TestClient) -> None:
    """Every console page carries a Content-Security-Policy that allows no script at all."""
    sign_in(client, VIEWER)
    policy = client.get("/ui/").headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src" not in policy


# ----------------------------------------------------------------------------- overview


def test_overview_chart_carries_the_daily_counts(client: TestClient, store: Store) -> None:
    """The events chart has one bar per (day, type) with that day's count, from the daily counts."""
    now = datetime.now(UTC)
    yesterday = now - timedelta(days=1)
    for n in range(3):
        report(store, f"h{n}@a.example", at=now)
    report(store, "h9@a.example", at=yesterday)
    report(store, "c@b.example", kind=EventKind.COMPLAINT, bounce_type=BounceType.COMPLAINT, reason="abuse", at=now)
    report(store, "s@b.example", kind=EventKind.DELAY, bounce_type=BounceType.SOFT, reason="mailboxfull", at=now)
    sign_in(client, VIEWER)
    page = soup(client.get("/ui/").text)
    bars = {(bar["data-day"], bar["data-category"]): int(bar["data-count"])
            for bar in page.select("#events-chart rect.bar")}
    day, before = now.strftime("%Y-%m-%d"), yesterday.strftime("%Y-%m-%d")
    assert bars == {(day, "hard"): 3, (before, "hard"): 1, (day, "complaint"): 1, (day, "soft"): 1}
    assert [squash(row.get_text(" ")) for row in page.select("#top-hard tr")] == ["a.example 4"]
    assert [squash(row.get_text(" ")) for row in page.select("#top-deferral tr")] == ["b.example 1"]
    reasons = {squash(r.select("td")[0].get_text()): squash(r.select("td")[1].get_text())
               for r in page.select("#active-reasons tr")}
    assert reasons["userunknown"] == "4" and reasons["abuse"] == "1" and reasons["all"] == "5"


def test_overview_rates_per_sending_domain(client: TestClient, store: Store) -> None:
    """With sent counts posted, each day's complaint and hard-bounce rates are drawn; without, "no sent counts"."""
    for n in range(2):
        report(store, f"c{n}@r.example", kind=EventKind.COMPLAINT, bounce_type=BounceType.COMPLAINT,
               reason="abuse", sender="News <news@counted.example>")
    report(store, "h@r.example", sender="news@counted.example")
    report(store, "h@q.example", sender="alerts@uncounted.example")
    answer = client.post("/v1/stats/sent", headers=BEARER,
                         json={"counts": [{"day": today(), "sending_domain": "Counted.Example", "sent": 1000}]})
    assert answer.status_code == 200 and answer.json() == {"stored": 1}
    sign_in(client, VIEWER)
    page = soup(client.get("/ui/").text)
    counted = page.select_one('.rate[data-sender="counted.example"]')
    assert counted is not None
    points = {p["data-series"]: (float(p["data-rate"]), int(p["data-count"]), int(p["data-sent"]))
              for p in counted.select("circle.point") if p["data-day"] == today()}
    assert points == {"complaint rate": (0.002, 2, 1000), "hard-bounce rate": (0.001, 1, 1000)}
    assert {line["data-threshold"] for line in counted.select("line.threshold")} == {"0.1%", "0.3%"}
    uncounted = page.select_one('.rate[data-sender="uncounted.example"]')
    assert uncounted is not None and uncounted.select("svg") == []
    assert "No sent counts" in uncounted.select_one(".no-sent").get_text()


def test_sent_counts_replace_and_need_write(client: TestClient, store: Store) -> None:
    """POST /v1/stats/sent needs the write scope, validates its input, and a repeat replaces the count."""
    body = {"counts": [{"day": today(), "sending_domain": "s.example", "sent": 10}]}
    assert client.post("/v1/stats/sent", json=body).status_code == 401
    assert client.post("/v1/stats/sent", json=body, headers={"Authorization": f"Bearer {VIEWER}"}).status_code == 403
    bad = {"counts": [{"day": today(), "sending_domain": "not a domain!", "sent": 10}]}
    assert client.post("/v1/stats/sent", json=bad, headers=BEARER).status_code == 422
    negative = {"counts": [{"day": today(), "sending_domain": "s.example", "sent": -1}]}
    assert client.post("/v1/stats/sent", json=negative, headers=BEARER).status_code == 422
    assert client.post("/v1/stats/sent", json=body, headers=BEARER).status_code == 200
    body["counts"][0]["sent"] = 25
    assert client.post("/v1/stats/sent", json=body, headers=BEARER).status_code == 200
    from processor.store import console

    [series] = [s for s in console.overview(store, 30).rates if s.sender_domain == "s.example"]
    assert series.sent[-1] == 25


# ----------------------------------------------------------------------------- review, mailboxes


def test_review_lists_undetermined_events_and_top_rules(client: TestClient, store: Store) -> None:
    """Review shows the events no rule decided, with their explain evidence, and the rules that fire most."""
    report(store, "u@example.org", bounce_type=BounceType.UNDETERMINED, reason="undefined", rule_id="",
           diagnostic="something nobody wrote a rule for")
    for n in range(3):
        report(store, f"k{n}@example.org", rule_id="hard-user-unknown")
    sign_in(client, VIEWER)
    page = soup(client.get("/ui/review").text)
    events = page.select("article.event")
    assert len(events) == 1 and "something nobody wrote a rule for" in events[0].get_text()
    assert "undetermined" in events[0].select_one(".evidence pre").get_text()
    rows = [squash(row.get_text(" ")) for row in page.select("#top-rules tbody tr")]
    assert rows[0].startswith("hard-user-unknown hard 3")


def test_reprocess_preview_and_apply(client: TestClient, store: Store) -> None:
    """The reprocess preview replays recent reports with today's rules and changes nothing; applying
    needs a note, which is kept with each change made, as the signed-in token."""
    report(store, "re@example.org", diagnostic="452 4.2.2 mailbox full", rule_id="old-rule")
    token = sign_in(client, OPERATOR)
    page = soup(client.post("/ui/review/reprocess", data={"since_days": "7", "csrf_token": token}).text)
    assert "Preview:" in page.select_one("#plan").get_text()
    assert "re@example.org" in page.select_one("#plan").get_text()
    assert store.is_suppressed("re@example.org") is not None
    answer = client.post("/ui/review/reprocess", data={"since_days": "7", "apply": "1", "csrf_token": token})
    assert answer.status_code == 422
    applied = soup(client.post("/ui/review/reprocess",
                               data={"since_days": "7", "apply": "1", "note": "rules 2", "csrf_token": token}).text)
    assert "Applied:" in applied.select_one("#plan").get_text()
    assert store.is_suppressed("re@example.org") is None
    change = store.history("re@example.org")[0]
    assert (change.kind, change.actor) == ("reprocess", "ui:operator")
    assert change.explanation.endswith(": rules 2")


def test_mailboxes_page(client: TestClient, store: Store) -> None:
    """Mailboxes shows each mailbox's position and last pass, and quarantined messages with their error."""
    store.set_mailbox_state("bounces/INBOX", 7, 41)
    store.record_failed(_ref(), "cannot parse: truncated MIME")
    sign_in(client, VIEWER)
    page = soup(client.get("/ui/mailboxes").text)
    row = squash(page.select_one("#mailboxes tbody tr").get_text(" "))
    assert row.startswith("bounces/INBOX") and " 7 41 1 1" in row
    assert "cannot parse: truncated MIME" in page.select_one("#quarantine").get_text()


def test_form_token_is_per_session(client: TestClient, settings: Settings, store: Store) -> None:
    """Two sign-ins get different form tokens; one session's token does not pass for another."""
    first = sign_in(client, OPERATOR)
    report(store, "pair@example.org")
    with TestClient(create_app(settings, store)) as other:
        second = sign_in(other, OPERATOR)
        assert first != second
        answer = other.post("/ui/address/remove", data={"address": "pair@example.org", "note": "x",
                                                        "csrf_token": first})
        assert answer.status_code == 403
    assert form_token(client.get("/ui/").text) == first


# ----------------------------------------------------------------------------- kept reports

DSN = (
    "From: MAILER-DAEMON@mx.receiver.example\r\nTo: bounces@sender.example\r\nSubject: Undelivered Mail\r\n"
    "MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b1\"\r\n\r\n"
    "--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nYour message could not be delivered.\r\n"
    "<b>{filler}</b>\r\n"
    "--b1\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.receiver.example\r\n\r\n"
    "Final-Recipient: rfc822; gone@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n"
    "Diagnostic-Code: smtp; 550 5.1.1 <gone@example.org> no such user\r\n\r\n--b1--\r\n"
)


def _record_dsn(store: Store, filler: str = "") -> int:
    from processor.records import Event, OriginalMessage, Verdict
    from processor.store import MessageRef

    data = DSN.format(filler=filler).encode()
    event = Event(kind=EventKind.FAILURE, recipient="gone@example.org", status="5.1.1", mta="rfc3464",
                  diagnostic="550 5.1.1 <gone@example.org> no such user",
                  original=OriginalMessage(from_addr="news@sender.example"))
    result = store.record_message(MessageRef.for_bytes(data, mailbox="bounces/INBOX", uidvalidity=1, uid=4242),
                                  [Verdict(event, "userunknown", BounceType.HARD, "r")])
    return result.event_ids[0]


def test_report_page_shows_the_part_that_names_the_recipient(client: TestClient, store: Store) -> None:
    """The report behind an event is kept; its delivery-status part naming the recipient comes first, escaped."""
    event_id = _record_dsn(store)
    sign_in(client, VIEWER)
    address_page = soup(client.get("/ui/address", params={"a": "gone@example.org"}).text)
    link = address_page.select_one("a.raw-report")
    assert link is not None and link["href"] == f"/ui/report?event={event_id}"
    answer = client.get(str(link["href"]))
    page = soup(answer.text)
    parts = page.select("section.report-part")
    assert parts[0]["data-type"] == "message/delivery-status"
    assert "Final-Recipient: rfc822; gone@example.org" in parts[0].get_text()
    assert parts[0].select_one(".badge") is not None
    assert page.select("b") == [] and "&lt;b&gt;" in answer.text
    assert page.select_one("#truncated") is None


def test_long_reports_are_kept_cut_with_a_note(db_url: str) -> None:
    """A message longer than keep_report_kib is kept cut, and the page says how much was kept."""
    from processor.store import open_store
    from tests.console.helpers import make_settings

    settings = make_settings(db_url)
    settings = settings.model_copy(update={"database": settings.database.model_copy(update={"keep_report_kib": 1})})
    small = open_store(settings)
    try:
        event_id = _record_dsn(small, filler="x" * 5000)
        with TestClient(create_app(settings, small)) as client:
            sign_in(client, VIEWER)
            page = soup(client.get(f"/ui/report?event={event_id}").text)
        note = squash(page.select_one("#truncated").get_text())
        assert "first 1,024 were kept" in note
    finally:
        small.close()


def test_quarantined_message_downloads_as_kept(client: TestClient, store: Store) -> None:
    """A quarantined message is offered as an attachment, byte for byte; only to a signed-in operator."""
    from processor.store import MessageRef

    data = b"Subject: broken\r\n\r\n\xff\xfe not a report <script>\r\n"
    store.record_failed(MessageRef.for_bytes(data, mailbox="bounces/INBOX", uidvalidity=1, uid=9), "cannot parse")
    assert client.get("/ui/quarantine/raw?id=1", follow_redirects=False).status_code == 303
    sign_in(client, VIEWER)
    link = soup(client.get("/ui/mailboxes").text).select_one("#quarantine a.download")
    answer = client.get(str(link["href"]))
    assert answer.status_code == 200
    assert answer.content == data
    assert answer.headers["content-type"] == "application/octet-stream"
    assert answer.headers["content-disposition"].startswith("attachment;")


def test_open_api_console_signs_in_without_a_token(db_url: str, store: Store) -> None:
    """With no tokens configured (loopback only), the console signs in as anonymous, with every scope."""
    settings = Settings(database=DatabaseSettings(url=db_url), api=ApiSettings())
    with TestClient(create_app(settings, store)) as open_client:
        token = sign_in(open_client, "")
        page = soup(open_client.get("/ui/").text)
        assert squash(page.select_one(".who").get_text()) == "anonymous"
        answer = open_client.post("/ui/address/add",
                                  data={"address": "o@example.org", "note": "n", "csrf_token": token})
        assert answer.status_code == 200
    assert store.history("o@example.org")[0].actor == "ui:anonymous"


def test_evidence_for_the_newest_report_events(client: TestClient, store: Store) -> None:
    """An address page works out explain for its ten newest report events; older ones link onwards."""
    now = datetime.now(UTC)
    for n in range(12):
        report(store, "many@example.org", kind=EventKind.DELAY, bounce_type=BounceType.SOFT, reason="mailboxfull",
               at=now - timedelta(hours=n))
    sign_in(client, VIEWER)
    page = soup(client.get("/ui/address", params={"a": "many@example.org"}).text)
    assert len(page.select("article.event")) == 12
    assert len(page.select("article.event .evidence")) == 10
    assert len(page.select("article.event .evidence-later")) == 2

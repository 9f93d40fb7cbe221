"""The mailboxes page: each mailbox's backlog and lease holder, and "process again" for quarantined
messages (a request for the daemon: the console parses nothing), with its CSRF and scope checks."""

from __future__ import annotations

from starlette.testclient import TestClient

from processor.store import MessageRef, Store
from processor.store.quarantine import quarantine_action
from tests.console.helpers import OPERATOR, VIEWER, sign_in, soup, squash


def _quarantine(store: Store, uid: int = 31) -> int:
    data = b"Subject: <b>broken</b>\r\n\r\nnot a report\r\n"
    return store.record_failed(MessageRef.for_bytes(data, mailbox="bounces/INBOX", uidvalidity=2, uid=uid),
                               "cannot parse: <script>x</script>")


def _request_count(store: Store) -> int:
    with store.engine.connect() as conn:
        return len(conn.execute(quarantine_action.select()).all())


def test_mailboxes_page_shows_backlog_holder_and_last_error(client: TestClient, store: Store) -> None:
    """The last pass's backlog, the daemon holding the lease and the last failure are on the page."""
    store.set_mailbox_state("bounces/INBOX", 7, 41)
    store.record_pass("bounces/INBOX", holder="mx1.example:4242", handled=10, backlog=250)
    store.record_pass_error("bounces/INBOX", holder="mx1.example:4242", error="bounces/INBOX: <b>LOGIN</b> failed")
    store.record_pass("fbl/INBOX", holder="mx2.example:99", handled=3, backlog=0)
    sign_in(client, VIEWER)
    page = soup(client.get("/ui/mailboxes").text)
    rows = {str(tr["data-mailbox"]): tr for tr in page.select("#mailboxes tr.mailbox")}
    assert sorted(rows) == ["bounces/INBOX", "fbl/INBOX"]
    bounces = rows["bounces/INBOX"]
    assert squash(bounces.select_one(".backlog").get_text()) == "250"
    assert squash(bounces.select_one(".holder").get_text()) == "mx1.example:4242"
    assert "bounces/INBOX: <b>LOGIN</b> failed" in bounces.select_one(".last-error").get_text()  # as text
    assert bounces.select_one(".last-error b") is None
    assert squash(rows["fbl/INBOX"].select_one(".backlog").get_text()) == "0"
    assert squash(rows["fbl/INBOX"].select_one(".last-error").get_text()) == "—"


def test_process_again_marks_the_message_with_actor_and_note(client: TestClient, store: Store) -> None:
    """The operator's button (with the form token) marks the message requested, with the actor and note."""
    failed_id = _quarantine(store)
    token = sign_in(client, OPERATOR)
    page = soup(client.get("/ui/mailboxes").text)
    form = page.select_one(f"#quarantine tr[data-id='{failed_id}'] form.reprocess")
    assert form is not None and form["action"] == "/ui/quarantine/reprocess"
    answer = client.post("/ui/quarantine/reprocess", data={"id": str(failed_id), "note": "fixed the rule <i>",
                                                           "csrf_token": token}, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    page = soup(client.get(answer.headers["location"]).text)
    assert str(failed_id) in page.select_one("#done").get_text()
    row = page.select_one(f"#quarantine tr[data-id='{failed_id}']")
    assert squash(row.select_one(".status .badge").get_text()) == "requested"
    assert "asked by ui:operator" in row.select_one(".requested").get_text()
    assert "fixed the rule <i>" in row.select_one(".requested").get_text() and row.select_one(".requested i") is None
    assert row.select_one("form.reprocess") is None  # asked already: no second button
    (wanted,) = store.requested_messages(["bounces/INBOX"])
    assert wanted.id == failed_id


def test_process_again_without_form_token_or_write_scope_is_refused(client: TestClient, store: Store) -> None:
    """A POST without the session's form token, or from a read-only token, changes nothing."""
    failed_id = _quarantine(store)
    sign_in(client, OPERATOR)
    answer = client.post("/ui/quarantine/reprocess", data={"id": str(failed_id)})
    assert answer.status_code == 403
    answer = client.post("/ui/quarantine/reprocess", data={"id": str(failed_id), "csrf_token": "forged"})
    assert answer.status_code == 403
    client.cookies.clear()
    token = sign_in(client, VIEWER)
    assert soup(client.get("/ui/mailboxes").text).select_one("form.reprocess") is None
    answer = client.post("/ui/quarantine/reprocess", data={"id": str(failed_id), "csrf_token": token})
    assert answer.status_code == 403 and "lacks the write scope" in answer.text
    assert _request_count(store) == 0 and store.requested_messages(["bounces/INBOX"]) == []


def test_process_again_of_an_unknown_message_says_why(client: TestClient, store: Store) -> None:
    """An id that names no quarantined message is refused with the reason, not a server error."""
    token = sign_in(client, OPERATOR)
    answer = client.post("/ui/quarantine/reprocess", data={"id": "12345", "csrf_token": token})
    assert answer.status_code == 422 and "no quarantined message 12345" in answer.text

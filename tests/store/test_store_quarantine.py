"""Each mailbox's last pass (backlog, lease holder, failure) and quarantined messages processed
again on request (processor.store.passes, processor.store.quarantine), on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from processor.store import MessageRef, QueryError, Store
from processor.store import console as queries
from processor.store.quarantine import quarantine_action
from tests.store.conftest import make_settings


def _failed(store: Store, data: bytes = b"Subject: x\r\n\r\nunreadable\r\n", uid: int = 5) -> int:
    return store.record_failed(MessageRef.for_bytes(data, mailbox="bounces/INBOX", uidvalidity=3, uid=uid),
                               "cannot parse: test")


def _actions(store: Store) -> list[tuple[str, str, str, str]]:
    t = quarantine_action.c
    with store.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.select(t.action, t.actor, t.note, t.error).order_by(t.id))]


def test_a_pass_records_backlog_and_holder_and_a_failure_keeps_the_backlog(store: Store) -> None:
    """record_pass sets the backlog and holder and clears the error; a failure keeps the last backlog;
    release_holder clears only this daemon's name."""
    store.record_pass("b/INBOX", holder="host-a:11", handled=40, backlog=60)
    store.record_pass_error("b/INBOX", holder="host-a:11", error="b/INBOX: imap.example closed the connection")
    (box,) = queries.mailboxes(store)
    assert (box.mailbox, box.backlog, box.holder) == ("b/INBOX", 60, "host-a:11")
    assert box.last_error == "b/INBOX: imap.example closed the connection" and box.last_error_at is not None
    assert box.last_pass is not None
    store.record_pass("b/INBOX", holder="host-b:22", handled=60, backlog=0)
    store.release_holder(["b/INBOX"], "host-a:11")  # not the holder any more: nothing changes
    (box,) = queries.mailboxes(store)
    assert (box.backlog, box.holder, box.last_error) == (0, "host-b:22", "")
    store.release_holder(["b/INBOX"], "host-b:22")
    assert queries.mailboxes(store)[0].holder == ""


def test_process_again_request_then_success_leaves_the_quarantine(store: Store) -> None:
    """A request marks the message and writes an audit row; the daemon's success takes it out of the
    quarantine (counted no more), with its ledger row named."""
    store.set_mailbox_state("bounces/INBOX", 3, 5)
    failed_id = _failed(store)
    assert queries.mailboxes(store)[0].quarantined_total == 1
    (shown,) = queries.quarantined(store)
    assert shown.kept_whole and shown.status == "quarantined" and shown.requested is None
    store.request_reprocess(failed_id, actor="ui:operator", note="parser fixed in 2.1")
    (shown,) = queries.quarantined(store)
    assert shown.status == "requested" and shown.requested is not None
    assert (shown.requested.actor, shown.requested.note) == ("ui:operator", "parser fixed in 2.1")
    (wanted,) = store.requested_messages(["bounces/INBOX"])
    assert (wanted.id, wanted.uid, wanted.uidvalidity) == (failed_id, 5, 3)
    assert wanted.data == b"Subject: x\r\n\r\nunreadable\r\n" and wanted.size == len(wanted.data)
    assert store.requested_messages(["other/INBOX"]) == []
    store.finish_reprocess(failed_id, actor="daemon:h:1", message_ref=77)
    assert queries.quarantined(store) == [] and store.requested_messages(["bounces/INBOX"]) == []
    assert queries.mailboxes(store)[0].quarantined_total == 0
    assert _actions(store) == [("requested", "ui:operator", "parser fixed in 2.1", ""),
                               ("processed", "daemon:h:1", "", "")]
    with pytest.raises(QueryError, match="processed again already"):
        store.request_reprocess(failed_id, actor="ui:operator")


def test_a_failed_retry_stays_quarantined_with_the_new_error(store: Store) -> None:
    """A retry that fails puts the message back in the quarantine with the new error; it may be asked again."""
    failed_id = _failed(store)
    store.request_reprocess(failed_id, actor="ui:operator")
    store.finish_reprocess(failed_id, actor="daemon:h:1", error="storing raised OverflowError: date value out of range")
    (shown,) = queries.quarantined(store)
    assert (shown.status, shown.error) == ("quarantined", "storing raised OverflowError: date value out of range")
    store.finish_reprocess(failed_id, actor="daemon:h:2")  # not requested now: a late outcome changes nothing
    assert queries.quarantined(store)[0].status == "quarantined"
    store.request_reprocess(failed_id, actor="ui:operator", note="again")
    assert [a[0] for a in _actions(store)] == ["requested", "failed", "requested"]


def test_request_refused_for_an_unknown_or_unkept_message(store: Store, db_url: str) -> None:
    """No such message, or one not kept (keep_report_kib = 0): refused with a reason, nothing written."""
    with pytest.raises(QueryError, match="no quarantined message 999"):
        store.request_reprocess(999, actor="ui:operator")
    settings = make_settings(db_url)
    settings.database.keep_report_kib = 0
    unkept = Store(store.engine, settings)
    failed_id = _failed(unkept, b"Subject: y\r\n\r\nnot kept\r\n", uid=6)
    assert not queries.quarantined(store)[0].kept_whole
    with pytest.raises(QueryError, match="was not kept"):
        store.request_reprocess(failed_id, actor="ui:operator")
    assert _actions(store) == [] and store.requested_messages(["bounces/INBOX"]) == []


def test_quarantined_messages_are_kept_whole_beyond_keep_report_kib(store: Store) -> None:
    """A quarantined message is kept whole (so it can be processed again) even when it is longer than
    keep_report_kib, which still cuts processed reports."""
    big = b"Subject: big\r\n\r\n" + b"x" * (store.settings.database.keep_report_kib * 1024 + 5000)
    failed_id = _failed(store, big)
    failed, kept = queries.quarantined_message(store, failed_id) or (None, None)
    assert failed is not None and failed.kept_whole and kept is not None and kept.data == big

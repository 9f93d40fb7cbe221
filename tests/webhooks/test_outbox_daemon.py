"""The daemon announces the suppressions it makes: `run --once` posts the outbox when it is done."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.conftest import SAMPLES
from tests.daemon.helpers import run_once, write_config
from tests.webhooks.receiver import receiver


def test_run_once_delivers_the_changes_it_made(tmp_path: Path) -> None:
    """A hard bounce read from a directory suppresses its recipient and is announced to the endpoint."""
    reports = tmp_path / "reports"
    reports.mkdir()
    shutil.copy(SAMPLES / "mta" / "postfix-01.eml", reports / "bounce.eml")
    with receiver() as endpoint:
        config = write_config(tmp_path / "config.toml", {
            "database": {"url": f"sqlite:///{tmp_path / 'd.db'}"},
            "mailboxes.reports": {"source": "directory", "path": str(reports), "read_only": True,
                                  "processed": "keep"},
            "outbox.endpoints.app": {"url": endpoint.url},
        })
        daemon = run_once(config)
        assert daemon.proc.returncode == 0, daemon.text()[-2000:]
        got = [json.loads(r.body) for r in endpoint.delivered()]
    assert got, daemon.text()[-2000:]
    assert {g["type"] for g in got} == {"suppression.added"}
    assert all(g["data"]["source"] == "bounce" for g in got)

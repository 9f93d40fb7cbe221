"""The README's sender example runs as written against a real API server and a real SMTP server."""

from __future__ import annotations

import re

from processor.store import Store
from tests.api.conftest import READER, RunningServer
from tests.conftest import PROJECT
from tests.servers import SmtpSink


def _example() -> str:
    text = (PROJECT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    matches = [block for block in blocks if "filter_allowed" in block and "smtplib" in block]
    assert len(matches) == 1, "README.md must hold one sender example using filter_allowed and smtplib"
    return matches[0]


def test_readme_sender_example(live_server: RunningServer, store: Store, smtp_sink: SmtpSink) -> None:
    """The example mails only the recipients the API allows (a suppressed one is left out)."""
    store.add("bob@example.net", reason="userunknown", bounce_type="hard")
    code = _example()
    for literal in ('"http://127.0.0.1:8025"', 'token="bp_..."', 'smtplib.SMTP("127.0.0.1", 25)'):
        assert literal in code, literal
    code = (code.replace('"http://127.0.0.1:8025"', repr(live_server.base_url))
                .replace('token="bp_..."', f"token={READER!r}")
                .replace('smtplib.SMTP("127.0.0.1", 25)', f'smtplib.SMTP("127.0.0.1", {smtp_sink.port})'))
    namespace: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["allowed"] == ["alice@example.org", "carol@example.com"]
    [envelope] = smtp_sink.wait_for(1)
    assert sorted(envelope.rcpt_to) == ["alice@example.org", "carol@example.com"]

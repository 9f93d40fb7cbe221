"""``bounce-processor parse``: its inputs (files, directories, Maildirs, mbox, stdin), its JSON
contract, and a quiet terminal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from processor.commands import parse_cmd
from tests.conftest import PROJECT, SAMPLES

QMAIL = SAMPLES / "mta" / "qmail-01.eml"
CONTRACT = {
    "source", "recipient", "status", "reply_code", "smtp_command", "diagnostic", "reason", "bounce_type",
    "feedback_type", "remote_mta", "message_id", "rule_id",
}


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "processor", "parse", *args], input=stdin, capture_output=True, cwd=PROJECT, check=False
    )


def events(proc: subprocess.CompletedProcess[bytes]) -> list[dict[str, object]]:
    return [json.loads(line) for line in proc.stdout.decode().splitlines()]


def test_jsonl_contract_and_quiet_terminal() -> None:
    """Each event line has the contract's fields; nothing else (no flanker start-up noise) is printed."""
    proc = run("--jsonl", str(QMAIL))
    assert proc.returncode == 0 and proc.stderr == b""
    found = events(proc)
    assert found and all(set(event) >= CONTRACT for event in found)
    assert {event["source"] for event in found} == {str(QMAIL)}


def test_directory_maildir_mbox_and_stdin(tmp_path: Path) -> None:
    """A directory, a Maildir's new/ and cur/, an mbox of two messages and stdin are all read."""
    data = QMAIL.read_bytes()
    maildir = tmp_path / "Maildir"
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True)
    (maildir / "new" / "1.host").write_bytes(data)
    (maildir / "cur" / "2.host:2,S").write_bytes(data)
    (maildir / "tmp" / "3.host").write_bytes(data)  # being delivered: not read
    mbox = tmp_path / "bounces.mbox"
    mbox.write_bytes(b"From MAILER-DAEMON Mon Nov  2 10:00:00 2026\n" + data + b"\n"
                     b"From MAILER-DAEMON Mon Nov  2 10:01:00 2026\n" + data.replace(b"\nFrom ", b"\n>From ") + b"\n")
    single = len(events(run("--jsonl", str(QMAIL))))
    assert len(events(run("--jsonl", str(maildir)))) == 2 * single
    by_mbox = events(run("--jsonl", str(mbox)))
    assert len(by_mbox) == 2 * single
    assert {event["source"] for event in by_mbox} == {f"{mbox}#0", f"{mbox}#1"}
    assert len(events(run("--jsonl", str(SAMPLES / "mta")))) > single
    from_stdin = events(run("--jsonl", "-", stdin=data))
    assert len(from_stdin) == single and {event["source"] for event in from_stdin} == {"-"}


def test_unreadable_message_is_reported_and_the_run_goes_on(tmp_path: Path) -> None:
    """An empty file is named on stderr and in an error line; the other files are still parsed."""
    (tmp_path / "a-empty.eml").write_bytes(b"")
    (tmp_path / "b-qmail.eml").write_bytes(QMAIL.read_bytes())
    proc = run("--jsonl", str(tmp_path))
    assert proc.returncode == 0
    lines = events(proc)
    assert lines[0] == {"source": str(tmp_path / "a-empty.eml"), "bounce_type": "none", "error": "empty message"}
    assert len(lines) > 1
    assert proc.stderr.decode() == f"bounce-processor: {tmp_path / 'a-empty.eml'}: cannot parse: empty message\n"


def test_missing_path_is_a_one_line_error(tmp_path: Path) -> None:
    """A path that does not exist gives exit code 1 and one line, no traceback."""
    proc = run(str(tmp_path / "nope.eml"))
    assert proc.returncode == 1
    assert proc.stderr.decode() == f"bounce-processor: error: {tmp_path / 'nope.eml'}: no such file or directory\n"


def test_flanker_import_noise_never_reaches_the_terminal(tmp_path: Path) -> None:
    """What a library prints while flanker's grammar tables are built (ply's warnings, shown the
    first time on a fresh install) is swallowed by the one place that imports it."""
    (tmp_path / "noisy_grammar.py").write_text(
        "import sys\nprint(\"Symbol 'mailbox' is unreachable\", file=sys.stderr)\nprint('generating tables')\n"
    )
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "from processor.parse._flanker import _import; _import('noisy_grammar')"
    )
    quiet = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, cwd=PROJECT, check=False)
    assert quiet.returncode == 0 and quiet.stdout == b"" and quiet.stderr == b""
    loud = subprocess.run(
        [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); import noisy_grammar", str(tmp_path)],
        capture_output=True, check=False,
    )
    assert b"is unreachable" in loud.stderr  # the control: the module does print when imported plainly


def test_jobs_keep_order_and_output(tmp_path: Path) -> None:
    """``--jobs 2`` prints exactly what ``--jobs 1`` prints, in the same order, over many messages."""
    files = sorted((SAMPLES / "mta").glob("*.eml"))
    for i in range(100):  # more than a few chunks, so that the work really spreads over workers
        (tmp_path / f"{i:04d}.eml").write_bytes(files[i % len(files)].read_bytes())
    one, two = run("--jsonl", "--jobs", "1", str(tmp_path)), run("--jsonl", "--jobs", "2", str(tmp_path))
    assert one.returncode == two.returncode == 0
    assert one.stdout == two.stdout and one.stdout.count(b"\n") >= 100


def test_jobs_must_be_positive() -> None:
    """``--jobs 0`` is refused with a usage error, before anything is read."""
    proc = run("--jobs", "0", str(QMAIL))
    assert proc.returncode == 2 and b"--jobs must be at least 1" in proc.stderr


def test_jobs_read_mbox_files_and_keep_their_order(tmp_path: Path) -> None:
    """The workers read the files themselves: an mbox among them gives its messages in order, and
    ``--jobs 2`` prints what ``--jobs 1`` prints."""
    files = sorted((SAMPLES / "mta").glob("*.eml"))
    for i in range(80):
        (tmp_path / f"{i:04d}.eml").write_bytes(files[i % len(files)].read_bytes())
    envelope = b"From MAILER-DAEMON Thu Jan  1 00:00:00 2026\n"
    (tmp_path / "0040.mbox").write_bytes(b"".join(envelope + f.read_bytes() + b"\n" for f in files[:3]))
    big = b"".join(envelope + files[i % len(files)].read_bytes() + b"\n" for i in range(60))
    assert len(big) > parse_cmd.WORKER_READS_BELOW  # streamed from the parent, message by message
    (tmp_path / "0060.mbox").write_bytes(big)
    one, two = run("--jsonl", "--jobs", "1", str(tmp_path)), run("--jsonl", "--jobs", "2", str(tmp_path))
    assert one.returncode == two.returncode == 0 and one.stdout == two.stdout
    sources = [str(event["source"]) for event in events(two)]
    small, streamed = f"{tmp_path / '0040.mbox'}#", f"{tmp_path / '0060.mbox'}#"
    assert [s for s in sources if s.startswith(small)][:1] == [small + "0"]
    assert sources.index(f"{tmp_path / '0039.eml'}") < sources.index(small + "0")
    assert sources.index(small + "2") < sources.index(f"{tmp_path / '0041.eml'}")
    assert sources.index(f"{tmp_path / '0059.eml'}") < sources.index(streamed + "0") < sources.index(streamed + "59")


def test_a_big_message_is_read_by_a_worker_and_only_a_big_mbox_by_the_parent(tmp_path: Path) -> None:
    """A file of one message goes to a worker whatever its size (its output is a few lines); only
    an mbox of WORKER_READS_BELOW or more is handed back, for the parent to stream."""
    message = QMAIL.read_bytes()
    padding = b"x" * 76 + b"\n"
    big_eml = tmp_path / "big.eml"
    big_eml.write_bytes(message.rstrip(b"\n") + b"\n\n" + padding * (parse_cmd.WORKER_READS_BELOW // len(padding) + 1))
    envelope = b"From MAILER-DAEMON Thu Jan  1 00:00:00 2026\n"
    big_mbox = tmp_path / "big.mbox"
    big_mbox.write_bytes(envelope + big_eml.read_bytes() + b"\n" + envelope + message)
    assert big_eml.stat().st_size >= parse_cmd.WORKER_READS_BELOW
    parse_cmd._start_worker((None, None), True)
    outputs = parse_cmd._work([(str(big_eml), None), (str(big_mbox), None), (str(QMAIL), None)])
    # (the output before a streamed file goes with it: the big .eml's, then the mbox for the parent)
    assert [(error, fatal, stream) for _, error, fatal, stream in outputs] == [("", "", str(big_mbox)), ("", "", "")]
    sources = [[json.loads(line)["source"] for line in text.decode().splitlines()] for text, *_ in outputs]
    assert sources[0] and set(sources[0]) == {str(big_eml)}
    assert sources[1] and set(sources[1]) == {str(QMAIL)}


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.upper().startswith("BOUNCE_")}


def test_defaults_start_without_pydantic() -> None:
    """With no configuration, ``parse`` starts from the defaults alone: pydantic (half of the
    start-up) is never imported, and the events are the same as with the settings models."""
    code = (
        "import sys\n"
        "from processor.cli import main\n"
        f"main(['parse', '--jsonl', {str(QMAIL)!r}])\n"
        "print('pydantic' in sys.modules, file=sys.stderr)\n"
    )
    fast = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, cwd=PROJECT, env=_clean_env(), check=True
    )
    assert fast.stderr.strip() == b"False"
    models = (
        "import sys\n"
        "from processor.commands import parse_cmd\n"
        "from processor.parse_settings import ParseSettings, RulesSettings\n"
        "worker = parse_cmd._Worker((ParseSettings(), RulesSettings()), True)\n"
        f"sys.stdout.write(worker.lines({str(QMAIL)!r}, open({str(QMAIL)!r}, 'rb').read())[0])\n"
    )
    slow = subprocess.run(
        [sys.executable, "-c", models], capture_output=True, cwd=PROJECT, env=_clean_env(), check=True
    )
    assert fast.stdout == slow.stdout and events(fast)


def test_a_setting_in_the_environment_is_still_read() -> None:
    """BOUNCE_RULES__* (or a configuration file) takes the settings path, not the defaults."""
    plain = subprocess.run(
        [sys.executable, "-m", "processor", "parse", "--jsonl", str(QMAIL)],
        capture_output=True, cwd=PROJECT, env=_clean_env(), check=True,
    )
    no_rules = subprocess.run(
        [sys.executable, "-m", "processor", "parse", "--jsonl", str(QMAIL)],
        capture_output=True, cwd=PROJECT, env={**_clean_env(), "BOUNCE_RULES__INCLUDE_DEFAULTS": "false"}, check=True,
    )
    assert {e["rule_id"] for e in events(plain)} != {""}
    assert {e["rule_id"] for e in events(no_rules)} == {""}


def test_a_file_that_cannot_be_read_ends_the_run_after_the_files_before_it(tmp_path: Path) -> None:
    """A dangling link among the files: a one-line error and exit 1, after the output of every
    file before it (the worker that met it reports it in its turn), with one job or two."""
    for i in range(70):
        (tmp_path / f"{i:04d}.eml").write_bytes(QMAIL.read_bytes())
    (tmp_path / "0050b.eml").symlink_to(tmp_path / "missing")
    one, two = run("--jsonl", "--jobs", "1", str(tmp_path)), run("--jsonl", "--jobs", "2", str(tmp_path))
    assert one.returncode == two.returncode == 1 and one.stdout == two.stdout
    assert one.stderr == two.stderr and one.stderr.count(b"\n") == 1 and b"0050b.eml" in one.stderr
    sources = {event["source"] for event in events(two)}
    assert sources == {str(tmp_path / f"{i:04d}.eml") for i in range(51)}


def test_small_files_read_in_one_go_match_read_file(tmp_path: Path) -> None:
    """``read_small`` (the one-open read ``read_file`` uses for small files) gives what reading line
    by line gives: an .eml whole, a one-message mbox under the file's own name, each message of a
    longer mbox with '>From ' unquoted; and None for a file of the size limit or more (streamed)."""
    from processor.records import RawMessage
    from processor.sources.files import iter_mbox, read_file, read_small

    eml = tmp_path / "a.eml"
    eml.write_bytes(QMAIL.read_bytes())
    one = tmp_path / "one.mbox"
    one.write_bytes(b"From a@b.example Mon\nSubject: x\n\nhi\n")
    two = tmp_path / "two.mbox"
    two.write_bytes(b"From a@b.example Mon\nSubject: x\n\nhi\n\nFrom c@d.example Tue\nSubject: y\n\n>From here\n")
    short = tmp_path / "short"
    short.write_bytes(b"Fro")
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    envelope_only = tmp_path / "envelope-only.mbox"
    envelope_only.write_bytes(b"From a@b.example Mon\n")
    no_newline = tmp_path / "no-newline.mbox"
    no_newline.write_bytes(b"From a@b.example Mon")
    crlf = tmp_path / "crlf.mbox"
    crlf.write_bytes(b"From a@b.example Mon\r\nSubject: x\r\n\r\nhi\r\n")
    quoted = tmp_path / "quoted.mbox"
    quoted.write_bytes(b"From a@b.example Mon\nSubject: x\n\n>From here\n>>From there\n> quoted\n")
    not_split = tmp_path / "not-split.mbox"
    not_split.write_bytes(b"From a@b.example Mon\nSubject: x\nFrom c@d.example Tue\n\nhi\n")
    def line_by_line(path: Path) -> list[RawMessage]:
        """The reference: an mbox read line by line (``iter_mbox``), one message of it reported
        under the file's own name; any other file whole."""
        if not path.read_bytes().startswith(b"From "):
            return [RawMessage(path.read_bytes(), str(path))]
        messages = list(iter_mbox(path))
        return [RawMessage(messages[0].data, str(path))] if len(messages) == 1 else messages

    cases = (eml, one, two, short, empty, envelope_only, no_newline, crlf, quoted, not_split)
    for path in cases:
        assert read_small(str(path)) == line_by_line(path), path
        assert list(read_file(path)) == line_by_line(path), path
    assert [m.origin for m in read_small(str(two)) or []] == [f"{two}#0", f"{two}#1"]
    assert (read_small(str(two)) or [])[1].data.endswith(b"\nFrom here\n")
    assert read_small(str(eml), below=eml.stat().st_size) is None
    assert read_small(str(eml), below=eml.stat().st_size + 1) is not None


def test_a_missing_small_file_is_a_source_error(tmp_path: Path) -> None:
    from processor.sources.files import SourceError, read_small

    with pytest.raises(SourceError, match="No such file or directory"):
        read_small(str(tmp_path / "gone.eml"))


def test_file_names_are_the_paths_of_iter_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``iter_files`` names each file as ``str(path)`` of ``iter_directory``'s Path, whatever
    spelling of the directory was given ("./d/", "d//", an absolute path, a Maildir)."""
    from processor.sources.files import iter_directory, iter_files

    (tmp_path / "d" / "sub").mkdir(parents=True)
    for name in ("d/b.eml", "d/a.eml", "d/sub/c.eml", "d/.hidden"):
        (tmp_path / name).write_bytes(b"x")
    for box in ("cur", "new", "tmp"):
        (tmp_path / "md" / box).mkdir(parents=True)
    (tmp_path / "md" / "new" / "1.eml").write_bytes(b"x")
    (tmp_path / "md" / "cur" / "2.eml").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    for given in ("d", "./d/", "d//", "d/sub/..", str(tmp_path / "d"), "md", "./md/", "."):
        names = list(iter_files(given))
        assert names == [str(p) for p in iter_directory(Path(given))], given
    assert list(iter_files("d")) == ["d/a.eml", "d/b.eml", "d/sub/c.eml"]


def test_jsonl_line_is_json_dumps_of_the_record() -> None:
    """The written-out JSON line of ``parse --jsonl`` is ``json.dumps(event_record(...),
    ensure_ascii=False)`` character for character: over every sample message, and over an event
    with quotes, backslashes, control and non-ASCII characters and repeated correlation headers."""
    from processor.classify import load_classifier
    from processor.parse import ParseError, Parser
    from processor.records import BounceType, Event, EventKind, OriginalMessage, Verdict
    from processor.sources.files import iter_path

    parser, rules = Parser(), load_classifier()
    checked = 0
    for message in iter_path(str(SAMPLES)):
        try:
            found = parser.parse(message.data)
        except ParseError:
            continue
        for event in found:
            verdict = rules.classify(event)
            expected = json.dumps(parse_cmd.event_record(message.origin, verdict), ensure_ascii=False)
            assert parse_cmd.jsonl_line(message.origin, verdict) == expected, message.origin
            checked += 1
    assert checked > 300
    odd = 'a "quoted" \\ back\tslash\n\x00\x1f\x7f é 日本 \u2028 \ud83d'
    event = Event(
        EventKind.FAILURE,
        recipient=odd,
        diagnostic=odd,
        remote_mta=odd,
        original=OriginalMessage(subject=odd, correlation=(("x-a", odd), ("x-b", "1"), ("x-a", "2"))),
    )
    verdict = Verdict(event, "undefined", BounceType.UNDETERMINED, odd)
    assert parse_cmd.jsonl_line(odd, verdict) == json.dumps(parse_cmd.event_record(odd, verdict), ensure_ascii=False)

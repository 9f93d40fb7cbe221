"""Per-message cost of the candidate MIME engines, on the same files, in one process.

    python tests/bench/mime_bench.py [CORPUS_DIR ...] [--runs 5]

Each engine parses every message and then walks its tree the way detection starts: every part's
content type and header names (no body is decoded; all engines are lazy about bodies or were
made so). Engines: flanker (``mime.from_string``), the standard library's ``email`` parser with
the compat32 and the default policies, fast-mail-parser's ``parse_email_tree`` (lazy mode) when it
is installed, and the project's own ``read_message`` (what ``parse`` pays for MIME today). Prints
the median of ``--runs`` passes per engine, in microseconds a message, and how many messages each
engine refused. Default corpora: ../shared/corpus/*/messages, else samples/.
"""

from __future__ import annotations

import argparse
import email
import email.message
import email.policy
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[2]
SHARED = PROJECT.parent / "shared" / "corpus"


def _walk_stdlib(msg: email.message.Message) -> int:
    count = 0
    for part in msg.walk():
        part.get_content_type()
        part.keys()
        count += 1
    return count


def _flanker(data: bytes) -> int:
    from processor.parse._flanker import flanker_mime

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    root = flanker_mime().from_string(text)
    count = 0
    for part in root.walk(with_self=True):
        str(part.content_type.value)
        list(part.headers.keys())
        count += 1
    return count


def _compat32(data: bytes) -> int:
    return _walk_stdlib(email.message_from_bytes(data, policy=email.policy.compat32))


def _default(data: bytes) -> int:
    return _walk_stdlib(email.message_from_bytes(data, policy=email.policy.default))


def _fast_mail_parser(data: bytes) -> int:
    from fast_mail_parser import parse_email_tree

    stack: list[Any] = [parse_email_tree(data, mode="lazy")]
    count = 0
    while stack:
        part = stack.pop()
        str(part.content_type)
        list(part.headers)
        count += 1
        stack.extend(part.children)
    return count


def _project(data: bytes) -> int:
    from processor.parse.mime import read_message

    root = read_message(data)
    count = 0
    for part in root.walk():
        len(part.headers)
        count += 1
    return count


ENGINES: dict[str, Callable[[bytes], int]] = {
    "flanker 0.9 from_string": _flanker,
    "stdlib email, compat32 policy": _compat32,
    "stdlib email, default policy": _default,
    "fast-mail-parser parse_email_tree (lazy)": _fast_mail_parser,
    "project read_message (parse's MIME layer)": _project,
}


def load(corpora: list[Path]) -> list[bytes]:
    files = sorted(p for corpus in corpora for p in corpus.rglob("*.eml") if p.is_file())
    if not files:
        raise SystemExit(f"no .eml files under {', '.join(map(str, corpora))}")
    return [p.read_bytes() for p in files]


def one_pass(engine: Callable[[bytes], int], messages: list[bytes]) -> tuple[float, int]:
    refused = 0
    start = time.perf_counter()
    for data in messages:
        try:
            engine(data)
        except Exception:
            refused += 1
    return time.perf_counter() - start, refused


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("corpora", nargs="*", type=Path)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    corpora = args.corpora or sorted(SHARED.glob("*/messages")) or [PROJECT / "samples"]
    messages = load(corpora)
    print(f"{len(messages)} messages from {', '.join(map(str, corpora))}; median of {args.runs} passes")
    for name, engine in ENGINES.items():
        try:
            engine(messages[0])  # imports and one-time set-up are not part of the per-message cost
        except ImportError as exc:
            print(f"  {name:45s} not installed ({exc})")
            continue
        except Exception:
            pass
        times, refused = [], 0
        for _ in range(args.runs):
            took, refused = one_pass(engine, messages)
            times.append(took)
        median = statistics.median(times)
        print(
            f"  {name:45s} {median / len(messages) * 1e6:8.0f} us/message "
            f"({len(messages) / median:6.0f} messages/s), refused {refused}"
        )


if __name__ == "__main__":
    main()

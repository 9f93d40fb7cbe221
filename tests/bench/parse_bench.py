"""Throughput of ``bounce-processor parse --jsonl`` (parse and classify, one process), whole command.

    python tests/bench/parse_bench.py [CORPUS_DIR] [--messages 5000] [--runs 3] [--extra-rules 1000]

The messages of CORPUS_DIR (a directory of .eml files, searched recursively; default: samples/,
or ../shared/corpus/sisimai-train/messages when present) are replicated into a temporary
directory until there are --messages of them, then the command runs --runs times and the median
is printed. With --extra-rules N, a rule directory of N synthetic rules (that never match real
mail, so every event is tested against all of them) is loaded before the defaults, for the
rules-scaling figure. When flufl.bounce is installed, its detectors run over the same files as
a baseline in the same invocation, and so does flanker's MIME scan alone (the part of the work
the parser cannot avoid, since every message goes through flanker). Also prints the peak RSS of
parsing one 50 MB message.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
SHARED = PROJECT.parent / "shared" / "corpus" / "sisimai-train" / "messages"


def replicate(source: Path, target: Path, count: int) -> int:
    files = sorted(p for p in source.rglob("*.eml") if p.is_file())
    if not files:
        raise SystemExit(f"no .eml files under {source}")
    for i in range(count):
        shutil.copyfile(files[i % len(files)], target / f"{i:06d}.eml")
    return len(files)


def synthetic_rules(directory: Path, count: int) -> None:
    lines = ["rules:"]
    for i in range(count):
        lines += [
            f"  - id: synthetic-{i:05d}",
            f"    description: synthetic rule {i} that matches no real report",
            "    match:",
            f"      diagnostic: 'zq{i:05d}xj (?:alpha|beta) [0-9]{{3}} synthetic-marker-{i}'",
            "    result:",
            "      reason: undefined",
            "      bounce_type: undetermined",
        ]
    (directory / "synthetic.yaml").write_text("\n".join(lines) + "\n")


def run_command(files_dir: Path, env: dict[str, str]) -> tuple[float, int]:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "processor", "parse", "--jsonl", str(files_dir)],
        capture_output=True,
        env=env,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"parse failed: {proc.stderr.decode()[-2000:]}")
    return elapsed, proc.stdout.count(b"\n")


FLUFL = (
    "import sys, email, pathlib\n"
    "from flufl.bounce import all_failures\n"
    "for p in sorted(pathlib.Path(sys.argv[1]).iterdir()):\n"
    "    msg = email.message_from_bytes(p.read_bytes())\n"
    "    try:\n"
    "        all_failures(msg)\n"
    "    except Exception:\n"
    "        pass\n"
)
FLANKER_SCAN = (
    "import sys, pathlib\n"
    "from processor.parse._flanker import flanker_mime\n"
    "mime = flanker_mime()\n"
    "for p in sorted(pathlib.Path(sys.argv[1]).iterdir()):\n"
    "    try:\n"
    "        mime.from_string(p.read_bytes().decode('utf-8', 'replace'))\n"
    "    except Exception:\n"
    "        pass\n"
)


def baseline(code: str, files_dir: Path, runs: int) -> float:
    """Median time of a one-process script over the same files (``runs`` runs)."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code, str(files_dir)], check=True, capture_output=True, cwd=PROJECT)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_rss_for_big_message(size_mb: int, workdir: Path) -> str:
    """Peak RSS of a fresh process that reads one big bounce from a file and parses it."""
    # Two shapes of big message: a bounce returning a 50 MB original (the common case: only the
    # returned message's headers are read), and a 50 MB notice text that must be parsed whole.
    returned = (
        b"From: MAILER-DAEMON@example.org\nTo: a@example.org\nSubject: Undelivered Mail\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\n\n--b\n'
        b"Content-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.org\n\n"
        b"Final-Recipient: rfc822; bob@example.net\nAction: failed\nStatus: 5.1.1\n\n--b\n"
        b"Content-Type: message/rfc822\n\nSubject: big\n\n"
    )
    notice = (
        b"From: MAILER-DAEMON@example.org\nTo: a@example.org\nSubject: Undelivered Mail\n"
        b"Content-Type: text/plain\n\n<bob@example.net>: 550 5.1.1 user unknown\n\n"
    )
    paths: dict[str, Path] = {}
    for shape, head in (("returned original", returned), ("notice text", notice)):
        path = paths[shape] = workdir / f"big-{len(paths)}.eml"
        with path.open("wb") as fh:
            fh.write(head)
            line = b"x" * 76 + b"\n"
            for _ in range(size_mb * 1024 * 1024 // len(line)):
                fh.write(line)
            fh.write(b"\n--b--\n" if head is returned else b"\n")
    code = (
        "import resource, sys, pathlib\n"
        "from processor.parse import Parser\n"
        "from processor.config import ParseSettings\n"
        "from processor.parse._flanker import flanker_mime\n"
        "flanker_mime()\n"
        "parser = Parser(ParseSettings(max_message_bytes=int(sys.argv[2])))\n"
        "data = pathlib.Path(sys.argv[1]).read_bytes()\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "events = parser.parse(data)\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(len(data), before, after, len(events))\n"
    )
    lines = []
    limits = (("default 10 MB limit", 10 * 1024 * 1024), ("limit raised to 64 MB", 64 * 1024 * 1024))
    for shape, path in paths.items():
        for label, limit in limits:
            out = subprocess.run(
                [sys.executable, "-c", code, str(path), str(limit)],
                check=True, capture_output=True, text=True, cwd=PROJECT,
            ).stdout.split()
            size, before, after, events = int(out[0]), int(out[1]) * 1024, int(out[2]) * 1024, out[3]
            lines.append(
                f"  {shape}, {label}: message {size / 2**20:.1f} MB, process peak RSS {after / 2**20:.1f} MB = "
                f"{after / size:.2f}x the message (of which {(after - before) / 2**20:.1f} MB = "
                f"{(after - before) / size:.2f}x added while parsing), {events} event(s)"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("corpus", nargs="?", type=Path)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--extra-rules", type=int, default=0)
    parser.add_argument("--big-message-mb", type=int, default=50)
    args = parser.parse_args()
    corpus = args.corpus or (SHARED if SHARED.is_dir() else PROJECT / "samples")
    with tempfile.TemporaryDirectory() as tmp:
        files = Path(tmp) / "messages"
        files.mkdir()
        distinct = replicate(corpus, files, args.messages)
        env = dict(os.environ)
        if args.extra_rules:
            rules = Path(tmp) / "rules"
            rules.mkdir()
            synthetic_rules(rules, args.extra_rules)
            env["BOUNCE_RULES__DIRS"] = f'["{rules}"]'
        run_command(files, env)  # warm the page cache and any byte-code
        times = []
        events = 0
        for _ in range(args.runs):
            elapsed, events = run_command(files, env)
            times.append(elapsed)
        median = statistics.median(times)
        print(f"corpus: {corpus} ({distinct} distinct messages replicated to {args.messages})")
        if args.extra_rules:
            print(f"extra synthetic rules loaded: {args.extra_rules}")
        print(
            f"bounce-processor parse --jsonl: median {median:.2f}s of {args.runs} runs "
            f"({', '.join(f'{t:.2f}' for t in times)}), {args.messages / median:.0f} messages/s, {events} events"
        )
        try:
            import flufl.bounce  # noqa: F401
        except ImportError:
            print("baseline flufl.bounce: not installed (pip install flufl.bounce to compare)")
        else:
            took = baseline(FLUFL, files, args.runs)
            rate = args.messages / took
            print(f"baseline flufl.bounce all_failures, same files: median {took:.2f}s, {rate:.0f} messages/s")
        took = baseline(FLANKER_SCAN, files, args.runs)
        print(
            f"floor: flanker's MIME scan alone (no detection, no rules), same files: median {took:.2f}s, "
            f"{args.messages / took:.0f} messages/s"
        )
        if args.big_message_mb > 0:  # --big-message-mb 0 leaves the memory figure out
            print(f"peak memory parsing one {args.big_message_mb} MB message:")
            print(peak_rss_for_big_message(args.big_message_mb, Path(tmp)))


if __name__ == "__main__":
    main()

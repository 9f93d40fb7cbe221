"""Throughput of ``bounce-processor parse --jsonl`` (parse and classify), whole command, against its peers.

    python tests/bench/parse_bench.py [CORPUS_DIR] [--messages 5000] [--runs 3] [--extra-rules 1000]
                                      [--baseline OTHER_CHECKOUT]

The messages of CORPUS_DIR (a directory of .eml files, searched recursively; default:
../shared/corpus/sisimai-train/messages when present, else samples/) are replicated into a
temporary directory until there are --messages of them. Then, in one invocation and interleaved
run by run: ``parse --jobs 1``, ``parse`` on all cores, the peers flufl.bounce (``pip install -e
'.[bench]'``) and Sisimai (Perl; Debian's libsisimai-perl) over the same files, and the MIME
engine's scan alone (the floor). Prints each median of --runs, and the ratios. With
--extra-rules N, a rule directory of N synthetic rules (that never match real mail) is loaded
before the defaults. With --baseline, another checkout (one with its own .venv, such as a git
worktree of main) runs the same two ``parse`` commands in the same invocation, for a before/after.
Also prints the peak RSS of parsing one 50 MB message.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
# ../shared beside the checkout (or beside the directory of git worktrees a checkout may be in)
SHARED = next(
    (c for c in (PROJECT.parent / "shared", PROJECT.parent.parent / "shared") if c.is_dir()), PROJECT.parent / "shared"
) / "corpus" / "sisimai-train" / "messages"


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


def timed(argv: list[str], env: dict[str, str] | None = None, cwd: Path = PROJECT) -> tuple[float, float, bytes]:
    """Wall time and CPU time (user + system, its children included) of one whole process, and
    what it printed. On a shared machine the CPU time is the steadier figure of work done."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, env=env, check=False, cwd=cwd)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{argv[:4]} failed: {proc.stderr.decode(errors='replace')[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu, proc.stdout


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
SISIMAI = "my $found = Sisimai->make($ARGV[0]); print scalar(@{$found || []}), qq(\\n);"
ENGINE_SCAN = (
    "import sys, pathlib\n"
    "from fast_mail_parser import parse_email_tree\n"
    "for p in sorted(pathlib.Path(sys.argv[1]).iterdir()):\n"
    "    try:\n"
    "        parse_email_tree(p.read_bytes(), mode='lazy')\n"
    "    except Exception:\n"
    "        pass\n"
)


def have_flufl() -> bool:
    probe = subprocess.run([sys.executable, "-c", "import flufl.bounce"], capture_output=True, check=False)
    return probe.returncode == 0


def have_sisimai() -> bool:
    if shutil.which("perl") is None:
        return False
    return subprocess.run(["perl", "-MSisimai", "-e", "1"], capture_output=True, check=False).returncode == 0


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
    parser.add_argument("--baseline", type=Path, help="another checkout with its own .venv, timed alongside")
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
        ours = [sys.executable, "-m", "processor", "parse", "--jsonl"]
        contenders: dict[str, list[str]] = {
            "bounce-processor parse --jsonl --jobs 1": [*ours, "--jobs", "1", str(files)],
            "bounce-processor parse --jsonl (all cores)": [*ours, str(files)],
        }
        cwds: dict[str, Path] = {}
        if args.baseline:
            base = args.baseline.resolve()
            theirs = [str(base / ".venv" / "bin" / "python"), "-m", "processor", "parse", "--jsonl"]
            for label, extra in (("--jobs 1", ["--jobs", "1"]), ("(all cores)", [])):
                name = f"baseline parse --jsonl {label}"
                contenders[name], cwds[name] = [*theirs, *extra, str(files)], base
            compile_base = [theirs[0], "-m", "compileall", "-q", str(base / "processor")]
            subprocess.run(compile_base, check=True, capture_output=True)
        if have_flufl():
            contenders["flufl.bounce all_failures (peer)"] = [sys.executable, "-c", FLUFL, str(files)]
        else:
            print("peer flufl.bounce: not installed (pip install -e '.[bench]')")
        if have_sisimai():
            contenders["Sisimai (Perl) make (peer)"] = ["perl", "-MSisimai", "-e", SISIMAI, str(files)]
        else:
            print("peer Sisimai: not installed (apt-get install libsisimai-perl)")
        contenders["floor: fast-mail-parser tree scan alone"] = [sys.executable, "-c", ENGINE_SCAN, str(files)]
        # An installed package carries its byte-code; a checkout run with PYTHONDONTWRITEBYTECODE
        # (as here) would compile every module again in every run and time the compiler
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(PROJECT / "processor")], check=True,
                       capture_output=True)
        times: dict[str, list[float]] = {name: [] for name in contenders}
        cpus: dict[str, list[float]] = {name: [] for name in contenders}
        events = 0
        for name, argv in contenders.items():  # warm the page cache and any byte-code
            timed(argv, env, cwds.get(name, PROJECT))
        for _ in range(args.runs):  # interleaved, so that a slow spell of the machine hits all alike
            for name, argv in contenders.items():
                elapsed, cpu, out = timed(argv, env, cwds.get(name, PROJECT))
                times[name].append(elapsed)
                cpus[name].append(cpu)
                if name.endswith("--jobs 1"):
                    events = out.count(b"\n")
        print(f"corpus: {corpus} ({distinct} distinct messages replicated to {args.messages}), {os.cpu_count()} CPUs")
        if args.extra_rules:
            print(f"extra synthetic rules loaded: {args.extra_rules}")
        medians = {name: statistics.median(t) for name, t in times.items()}
        cpu_medians = {name: statistics.median(t) for name, t in cpus.items()}
        for name, median in medians.items():
            runs = ", ".join(f"{t:.2f}" for t in times[name])
            print(f"  {name:45s} wall median {median:6.2f}s ({runs}), {args.messages / median:6.0f} messages/s; "
                  f"CPU median {cpu_medians[name]:.2f}s")
        print(f"  ({events} events from bounce-processor)")
        one = medians["bounce-processor parse --jsonl --jobs 1"]
        one_cpu = cpu_medians["bounce-processor parse --jsonl --jobs 1"]
        print(f"ratio all cores / --jobs 1 (wall): {one / medians['bounce-processor parse --jsonl (all cores)']:.2f}x")
        if args.baseline:
            for label in ("--jobs 1", "(all cores)"):
                mine, theirs_name = f"bounce-processor parse --jsonl {label}", f"baseline parse --jsonl {label}"
                print(f"ratio this checkout / baseline, {label}: "
                      f"wall {medians[theirs_name] / medians[mine]:.2f}x, "
                      f"CPU {cpu_medians[theirs_name] / cpu_medians[mine]:.2f}x")
            base_one = medians["baseline parse --jsonl --jobs 1"]
            base_all = medians["baseline parse --jsonl (all cores)"]
            print(f"ratio all cores / --jobs 1 (wall), baseline: {base_one / base_all:.2f}x")
        for name, median in medians.items():
            if name.endswith("(peer)"):
                print(f"ratio --jobs 1 / {name.removesuffix(' (peer)')}: wall {median / one:.2f}x, "
                      f"CPU {cpu_medians[name] / one_cpu:.2f}x")
        if args.big_message_mb > 0:  # --big-message-mb 0 leaves the memory figure out
            print(f"peak memory parsing one {args.big_message_mb} MB message:")
            print(peak_rss_for_big_message(args.big_message_mb, Path(tmp)))


if __name__ == "__main__":
    main()

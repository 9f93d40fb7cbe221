"""Whole-process time of the commands scripts call once per item: ``parse FILE`` and
``suppress check ADDR`` (target: under 0.3 s each on this 2-core machine).

    python tests/bench/startup_bench.py [--runs 9]

Each command runs --runs times, interleaved; the median wall and CPU (user + system) times are
printed with the load average. ``suppress check`` asks a SQLite database made by ``init`` in a
temporary directory. The package's byte-code is compiled first (an installed package has it).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
SAMPLE = PROJECT / "samples" / "mta" / "postfix-01.eml"


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, env=env, cwd=PROJECT, check=False)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in (0, 1):  # suppress check exits 1 for an address that is not listed
        raise SystemExit(f"{argv} failed: {proc.stderr.decode(errors='replace')[-2000:]}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(PROJECT / "processor")], check=True,
                   capture_output=True)
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BOUNCE_")}
        subprocess.run([sys.executable, "-m", "processor", "init", tmp], check=True, capture_output=True, env=env)
        config = str(Path(tmp) / "config.toml")
        commands = {
            "parse FILE": [sys.executable, "-m", "processor", "parse", str(SAMPLE)],
            "suppress check ADDR": [sys.executable, "-m", "processor", "--config", config, "suppress", "check",
                                    "someone@example.org"],
        }
        walls: dict[str, list[float]] = {name: [] for name in commands}
        cpus: dict[str, list[float]] = {name: [] for name in commands}
        for argv in commands.values():
            timed(argv, env)  # warm the page cache
        for _ in range(args.runs):
            for name, argv in commands.items():
                wall, cpu = timed(argv, env)
                walls[name].append(wall)
                cpus[name].append(cpu)
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs, {args.runs} runs each")
    for name in commands:
        print(f"  {name:22s} whole process: wall median {statistics.median(walls[name]):.3f}s "
              f"(min {min(walls[name]):.3f}), CPU median {statistics.median(cpus[name]):.3f}s")


if __name__ == "__main__":
    main()

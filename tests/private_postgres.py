"""A PostgreSQL cluster of one test's own, which the test may stop and start (an outage) without
touching the machine's shared server: ``initdb`` in a private directory, ``pg_ctl`` on a free
loopback port, run as the ``postgres`` user (the server refuses to run as root).

    with PrivatePostgres() as cluster:
        url = cluster.url            # postgresql+psycopg://postgres@127.0.0.1:PORT/postgres
        cluster.stop()               # pg_ctl stop -m immediate: connections die at once
        cluster.start()
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
from pathlib import Path
from types import TracebackType

from tests.servers import free_port, private_dir, wait_for_port

__all__ = ["PrivatePostgres", "private_postgres_missing"]


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


def private_postgres_missing() -> str | None:
    """Why a private cluster cannot be made here (None when it can)."""
    if _bin_dir() is None:
        return "PostgreSQL server binaries (/usr/lib/postgresql/*/bin) are not installed"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "there is no postgres user to run a private cluster as"
    if os.geteuid() != 0:
        return "a private PostgreSQL cluster is started as the postgres user, which needs root"
    return None


class PrivatePostgres:
    """See the module docstring."""

    def __init__(self) -> None:
        bin_dir = _bin_dir()
        assert bin_dir is not None, private_postgres_missing()
        self.bin = bin_dir
        self.root = private_dir("bp-pg-")
        self.data = self.root / "data"
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        user = pwd.getpwnam("postgres")
        os.chown(self.root, user.pw_uid, user.pw_gid)
        self._as_postgres(["initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                           "--no-sync"])
        # fsync off is safe against what the tests do (a server process killed, not the machine);
        # synchronous_commit must stay on: a commit the daemon was told of must survive the kill
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(f"port = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{self.root}'\n"
                       "fsync = off\nmax_connections = 50\n")

    def _as_postgres(self, argv: list[str]) -> None:
        command = ["runuser", "-u", "postgres", "--", str(self.bin / argv[0]), *argv[1:]]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stdout}{result.stderr}")

    def start(self) -> None:
        self._as_postgres(["pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w", "start"])
        wait_for_port(self.port)

    def stop(self, mode: str = "immediate") -> None:
        self._as_postgres(["pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop"])

    def __enter__(self) -> PrivatePostgres:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

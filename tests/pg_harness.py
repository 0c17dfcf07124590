"""Finds a PostgreSQL server for the tests, or starts a throwaway one.

First choice: ``HUIYUAN_TEST_PG_URL`` (default ``postgres@127.0.0.1:5432``, the server the project's
machines start). If nothing answers there, a private cluster is created with ``initdb`` in a temporary
directory and started on a free port (the Debian ``postgresql`` package is installed if missing), so a
fresh machine of any kind still runs the PostgreSQL half of the suite. Each test run creates its own
databases (``huiyuan_t_<random>``) and drops them at the end.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass

import psycopg


@dataclass
class PgServer:
    admin_url: str  # SQLAlchemy URL of the maintenance database
    stop: object = None

    def url_for(self, dbname: str) -> str:
        base, _, _ = self.admin_url.rpartition("/")
        return f"{base}/{dbname}"

    def _conninfo(self, url: str) -> str:
        return url.replace("postgresql+psycopg://", "postgresql://")

    def create_database(self, prefix: str = "huiyuan_t") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self._conninfo(self.admin_url), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self._conninfo(self.admin_url), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _answers(url: str) -> bool:
    try:
        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), connect_timeout=3) as c:
            c.execute("SELECT 1")
        return True
    except Exception:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_bin() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return os.path.dirname(found[-1]) if found else None


def _start_throwaway() -> PgServer:
    bindir = _pg_bin()
    if bindir is None:
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True)
        subprocess.run(
            [*sudo, "apt-get", "install", "-y", "-qq", "postgresql"],
            check=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
        bindir = _pg_bin()
        if bindir is None:
            raise RuntimeError("PostgreSQL could not be installed")
    datadir = tempfile.mkdtemp(prefix="huiyuan-pg-")
    port = _free_port()
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(datadir, "postgres", "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*run_as, f"{bindir}/initdb", "-D", datadir, "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *run_as,
            f"{bindir}/pg_ctl",
            "-D",
            datadir,
            "-w",
            "-l",
            f"{datadir}/log",
            "-o",
            f"-p {port} -k {datadir} -c listen_addresses=127.0.0.1 -c fsync=off",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    for _ in range(50):
        if _answers(url):
            break
        time.sleep(0.2)

    def stop() -> None:
        subprocess.run(
            [*run_as, f"{bindir}/pg_ctl", "-D", datadir, "-m", "fast", "stop"], capture_output=True
        )
        shutil.rmtree(datadir, ignore_errors=True)

    return PgServer(admin_url=url, stop=stop)


def find_or_start(url: str) -> PgServer:
    if _answers(url):
        return PgServer(admin_url=url)
    return _start_throwaway()

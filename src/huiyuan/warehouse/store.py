"""The DuckDB side of the warehouse: opening the file (one writer, or readers), the sync lock, the
cursors in ``_sync_state`` and the run log in ``_sync_runs``. Must not query OLTP.

DuckDB lets one process write a file, or any number read it; within one process, connections to a
file share one instance, opened read-write or read-only. So writers and readers wait a little for
each other (readers: one query; a writer: one incremental sync), and a reader in the process that
is writing joins the writer's instance instead of waiting.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from huiyuan.kit.errors import AppError, Conflict
from huiyuan.warehouse.schema import SCHEMA_VERSION, create_all, version_of

try:  # POSIX; elsewhere the lock is this process's only
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

T = TypeVar("T")


class SyncInProgress(Conflict):
    code = "warehouse-sync-running"
    title = "Another warehouse sync is running"


class WarehouseBusy(AppError):
    status = 503
    code = "warehouse-busy"
    title = "The warehouse file is busy; retry shortly"


def _locked(exc: Exception) -> bool:
    text = str(exc)
    return "lock" in text.lower() or "different configuration" in text


def retry_locked(open_: Callable[[], T], wait: float) -> T:
    """``open_()``, retried while another process (or this one, differently) holds the file."""
    deadline = time.monotonic() + wait
    delay = 0.05
    while True:
        try:
            return open_()
        except (duckdb.IOException, duckdb.ConnectionException) as exc:
            if not _locked(exc):
                raise
            if time.monotonic() >= deadline:
                raise WarehouseBusy(f"The warehouse file is in use: {exc}") from exc
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def open_writer(path: str | Path, *, wait: float = 30.0) -> duckdb.DuckDBPyConnection:
    """A read-write connection (UTC session zone) with every table created."""
    con = retry_locked(lambda: duckdb.connect(str(path)), wait)
    con.execute("SET TimeZone = 'UTC'")
    create_all(con)
    return con


def open_reader(path: str | Path, *, wait: float = 10.0) -> duckdb.DuckDBPyConnection:
    """A read-only connection; inside the process that is writing, a connection to its instance."""

    def open_() -> duckdb.DuckDBPyConnection:
        try:
            return duckdb.connect(str(path), read_only=True)
        except duckdb.ConnectionException as exc:
            if "different configuration" not in str(exc):
                raise
            return duckdb.connect(str(path))  # this process writes the file: share its instance

    return retry_locked(open_, wait)


def file_version(path: Path, *, wait: float = 30.0) -> int | None:
    """The schema version of the file at ``path`` (None: no file, or an empty one)."""
    if not path.exists():
        return None
    con = retry_locked(lambda: duckdb.connect(str(path)), wait)
    try:
        return version_of(con)
    finally:
        con.close()


@contextmanager
def sync_lock(path: Path, *, wait: float = 0.0) -> Iterator[None]:
    """Hold the warehouse's sync lock (``<file>.lock``, an OS lock released if the process dies);
    raise ``SyncInProgress`` if another sync holds it for longer than ``wait`` seconds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(f"{path}.lock", "a+")  # noqa: SIM115 - held for the whole block
    try:
        if fcntl is not None:
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise SyncInProgress(f"Another sync of {path} is running.") from None
                    time.sleep(0.2)
        yield
    finally:
        handle.close()  # closing releases the lock


def replace_file(built: Path, path: Path) -> None:
    """Swap a finished rebuild in: one rename, so readers see the old file or the new one."""
    os.replace(built, path)
    Path(f"{path}.wal").unlink(missing_ok=True)  # the old file's, if it had one


def naive(value: datetime | None) -> datetime | None:
    """A naive UTC timestamp, as the warehouse keeps them."""
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def read_state(con: duckdb.DuckDBPyConnection, name: str) -> tuple[datetime | None, int]:
    """``(updated_at, id)`` of the last row copied for ``name`` (UTC-aware; ``None, 0`` at first)."""
    row = con.execute("SELECT cursor_ts, cursor_id FROM _sync_state WHERE table_name = ?", [name]).fetchone()
    if row is None:
        return None, 0
    ts = row[0].replace(tzinfo=UTC) if row[0] is not None else None
    return ts, int(row[1] or 0)


def write_state(
    con: duckdb.DuckDBPyConnection,
    name: str,
    table: str,
    cursor_ts: datetime | None,
    cursor_id: int,
    at: datetime,
) -> None:
    """Record the cursor of ``name`` with the row count of ``table`` (in the caller's transaction)."""
    cursor = naive(cursor_ts).isoformat() if cursor_ts is not None else str(cursor_id)  # type: ignore[union-attr]
    con.execute(
        f"""INSERT OR REPLACE INTO _sync_state (table_name, cursor, rows, synced_at, cursor_ts, cursor_id)
            SELECT ?, ?, (SELECT count(*) FROM {table}), ?, ?, ?""",
        [name, cursor if cursor_id else None, naive(at), naive(cursor_ts), cursor_id],
    )


def last_run_started(con: duckdb.DuckDBPyConnection) -> datetime | None:
    row = con.execute("SELECT max(started_at) FROM _sync_runs WHERE finished_at IS NOT NULL").fetchone()
    return row[0].replace(tzinfo=UTC) if row and row[0] is not None else None


def log_run(
    con: duckdb.DuckDBPyConnection, started: datetime, finished: datetime, rows: int, full: bool
) -> None:
    con.execute("INSERT INTO _sync_runs VALUES (?, ?, ?, ?)", [naive(started), naive(finished), rows, full])


def is_current(path: Path) -> bool:
    """Whether the file at ``path`` has this code's schema (no file: nothing to rebuild)."""
    version = file_version(path)
    return version is None or version == SCHEMA_VERSION


def states(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[Any, ...]]:
    return {
        r[0]: r[1:]
        for r in con.execute("SELECT table_name, cursor, rows, synced_at FROM _sync_state").fetchall()
    }

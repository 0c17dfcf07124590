"""Background checkpoints on a SQLite file (``kit.checkpoints``): writers stop checkpointing inside
their commits, a long log is started afresh after a pass with the writers held off, and nothing is
lost while the thread runs beside writers."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from huiyuan.kit import checkpoints
from huiyuan.kit.db import Database, writer_turn


def _write(db: Database, n: int, i: int) -> None:
    with db.unit_of_work() as s:
        s.execute(
            text("INSERT INTO t (payload) VALUES (:p)"),
            [{"p": f"{n}-{i}-{j}-" + "x" * 400} for j in range(20)],
        )


def _log_pages(path: Path) -> int:
    """Frames in the write-ahead log now (a checkpoint pass reports them)."""
    with sqlite3.connect(path) as con:
        return int(con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1])


def _table(path: Path) -> Database:
    db = Database(f"sqlite:///{path}")
    with db.unit_of_work() as s:
        s.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, payload TEXT)"))
    return db


def test_a_long_log_is_started_afresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checkpoints, "RESTART_PAGES", 200)
    path = tmp_path / "c.db"
    db = _table(path)
    db.start_checkpoints()
    assert db._checkpoints is not None
    db._checkpoints.stop()  # passes are run by hand below
    with db.engine.connect() as conn:  # connections opened from now on leave checkpoints to the thread
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == checkpoints.SAFETY_PAGES
    for i in range(60):
        _write(db, 0, i)
    long_log = _log_pages(path)
    assert long_log > 200  # the writers did not checkpoint themselves
    handle = checkpoints.Checkpoints(str(path), writer_turn(db.engine))
    con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    handle.checkpoint(con)
    assert (handle.runs, handle.restarts, handle.errors) == (1, 1, 0)
    _write(db, 0, 60)  # the next writer starts the log from its beginning
    assert _log_pages(path) < long_log // 4
    # A short log is copied without holding the writers off.
    handle.checkpoint(con)
    assert (handle.runs, handle.restarts) == (2, 1)
    con.close()
    db.dispose()


def test_the_thread_beside_writers_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    db = _table(path)
    db.start_checkpoints()
    handle = db._checkpoints
    assert handle is not None
    handle.interval = 0.01
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(100):
                _write(db, n, i)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    db.dispose()  # stops the thread after a last pass
    assert errors == [] and handle.runs > 0 and handle.errors == 0
    check = Database(f"sqlite:///{path}")
    with check.unit_of_work(write=False) as s:
        assert s.execute(text("SELECT count(*) FROM t")).scalar() == 2 * 100 * 20
    check.dispose()


def test_not_for_memory_databases() -> None:
    db = Database("sqlite://")
    db.start_checkpoints()
    assert db._checkpoints is None
    db.dispose()

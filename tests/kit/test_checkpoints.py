"""Background checkpoints on a SQLite file (``kit.checkpoints``): writers stop checkpointing inside
their commits, the thread keeps the write-ahead log short (starting it afresh with the writers held
off once it is long), and nothing is lost."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from huiyuan.kit import checkpoints
from huiyuan.kit.db import Database


def _wal_pages(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return wal.stat().st_size // 4096 if wal.exists() else 0


def test_the_thread_keeps_the_log_short_while_writers_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpoints, "RESTART_PAGES", 200)
    path = tmp_path / "c.db"
    db = Database(f"sqlite:///{path}")
    with db.unit_of_work() as s:
        s.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, payload TEXT)"))
    db.start_checkpoints()
    handle = db._checkpoints
    assert handle is not None
    handle.interval = 0.02
    with db.engine.connect() as conn:  # connections opened from now on leave checkpoints to the thread
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == checkpoints.SAFETY_PAGES
    longest = 0
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(150):
                with db.unit_of_work() as s:
                    s.execute(
                        text("INSERT INTO t (payload) VALUES (:p)"),
                        [{"p": f"{n}-{i}-{j}-" + "x" * 400} for j in range(20)],
                    )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        longest = max(longest, _wal_pages(path))
        threads[0].join(0.01)
    for t in threads:
        t.join()
    assert errors == []
    db.dispose()  # stops the thread after a last pass
    assert handle.runs > 0 and handle.restarts > 0 and handle.errors == 0
    # Each commit writes its pages to the log again: without the restarts the log reached ~1,500
    # pages here, with them ~330.
    assert longest < 1_000
    check = Database(f"sqlite:///{path}")
    with check.unit_of_work(write=False) as s:
        assert s.execute(text("SELECT count(*) FROM t")).scalar() == 2 * 150 * 20
    check.dispose()
    assert os.path.exists(path)


def test_not_for_postgresql_or_memory() -> None:
    db = Database("sqlite://")
    db.start_checkpoints()
    assert db._checkpoints is None
    db.dispose()

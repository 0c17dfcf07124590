"""Concurrent writers on SQLite queue on the process's writer lock instead of SQLite's busy loop."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from sqlalchemy import func, select

from huiyuan.kit.db import Database
from huiyuan.kit.migrate import upgrade
from huiyuan.kit.scope import SYSTEM
from huiyuan.tenancy import service as tenancy
from huiyuan.tenancy.models import Brand


def test_concurrent_writers_all_commit_and_reads_do_not_wait(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    upgrade(url)
    db = Database(url)
    errors: list[BaseException] = []
    committed: list[float] = []

    def writer(i: int) -> None:
        try:
            with db.unit_of_work() as s:
                tenancy.create_brand(s, actor=SYSTEM, code=f"b{i}", name=f"B{i}")
                time.sleep(0.01)  # hold the write transaction a little
            committed.append(time.perf_counter())
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    # A reader is not blocked by the writers' lock (WAL): it answers while they queue. The writers
    # hold the lock one after another for at least 16 × 10 ms, so a reader that waited for them would
    # finish after the last commit (a structural check rather than a wall-clock bound).
    with db.unit_of_work(write=False) as s:
        s.scalar(select(func.count()).select_from(Brand))
    read_done = time.perf_counter()
    for t in threads:
        t.join()
    assert errors == []
    with db.unit_of_work(write=False) as s:
        assert s.scalar(select(func.count()).select_from(Brand)) == 16
    assert read_done < max(committed)


def test_lock_is_released_after_rollback(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    upgrade(url)
    db = Database(url)
    try:
        with db.unit_of_work() as s:
            tenancy.create_brand(s, actor=SYSTEM, code="x", name="X")
            raise RuntimeError("abort")
    except RuntimeError:
        pass
    done = threading.Event()

    def second() -> None:
        with db.unit_of_work() as s:
            tenancy.create_brand(s, actor=SYSTEM, code="y", name="Y")
        done.set()

    t = threading.Thread(target=second)
    t.start()
    assert done.wait(5), "the writer lock was not released by the rollback"
    t.join()

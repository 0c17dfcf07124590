"""Concurrent writers on SQLite queue on the file's writer turn (a lock among threads, a ``flock``
among processes) instead of SQLite's busy loop."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select

from huiyuan.kit import db as kit_db
from huiyuan.kit.db import Database, reads_before_write
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


def test_the_lock_passes_on_only_once_sqlite_has_committed(tmp_path: Path) -> None:
    # SQLAlchemy announces a commit (or rollback) before running it: the transaction must already be
    # over when the lock is released, or the next writer's BEGIN IMMEDIATE meets SQLite's lock.
    url = f"sqlite:///{tmp_path / 'c.db'}"
    upgrade(url)
    db = Database(url)
    seen: list[tuple[str, bool]] = []

    def after(kind: str):  # type: ignore[no-untyped-def]
        def check(conn: Any) -> None:  # runs after the writer lock's own listener
            seen.append((kind, conn.connection.dbapi_connection.in_transaction))

        return check

    event.listen(db.engine, "commit", after("commit"))
    event.listen(db.engine, "rollback", after("rollback"))
    with db.unit_of_work() as s:
        tenancy.create_brand(s, actor=SYSTEM, code="c1", name="C1")
    try:
        with db.unit_of_work() as s:
            tenancy.create_brand(s, actor=SYSTEM, code="c2", name="C2")
            raise RuntimeError("abort")
    except RuntimeError:
        pass
    assert seen == [("commit", False), ("rollback", False)]
    # A reading transaction is left to SQLAlchemy as before.
    seen.clear()
    with db.unit_of_work(write=False) as s:
        s.scalar(select(func.count()).select_from(Brand))
    assert seen == [("commit", True)]
    with db.unit_of_work(write=False) as s:
        assert s.scalar(select(func.count()).select_from(Brand)) == 1
    db.dispose()


def test_reads_before_write_end_before_the_writer_begins(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'rw.db'}"
    upgrade(url)
    db = Database(url)
    began: list[str] = []
    event.listen(
        db.engine,
        "begin",
        lambda conn: began.append(str(conn.get_execution_options().get("sqlite_immediate"))),
    )
    session = db.session(None, write=True, begin_now=False)
    try:
        with reads_before_write(session):
            session.scalar(select(func.count()).select_from(Brand))
        assert not session.in_transaction()
        tenancy.create_brand(session, actor=SYSTEM, code="rw", name="RW")
        session.commit()
    finally:
        session.close()
    assert began == ["False", "True"]
    # Inside an open transaction the reads are simply part of it.
    session = db.session(None, write=True)
    try:
        with reads_before_write(session):
            session.scalar(select(func.count()).select_from(Brand))
        assert session.in_transaction()
        session.rollback()
    finally:
        session.close()
    db.dispose()


def test_writers_wait_for_another_process_turn_and_take_it_after_commit(tmp_path: Path) -> None:
    # Another process holds the file's turn: a writer of this process waits until it lets go, and
    # after its own commit the turn is free again (released after COMMIT, not kept with the connection).
    url = f"sqlite:///{tmp_path / 'p.db'}"
    upgrade(url)
    db = Database(url)
    lock_path = str(tmp_path / "p.db") + "-writers.lock"
    holder = _hold_turn(lock_path)
    try:
        done = threading.Event()

        def writer() -> None:
            with db.unit_of_work() as s:
                tenancy.create_brand(s, actor=SYSTEM, code="p1", name="P1")
            done.set()

        t = threading.Thread(target=writer, daemon=True)
        t.start()
        assert not done.wait(0.5), "the writer did not wait for the other process's turn"
        _let_go(holder)
        assert done.wait(10), "the writer did not get the turn once the other process let go"
        t.join()
    finally:
        holder.kill()
        holder.wait()
    _assert_turn_free(lock_path)
    with db.unit_of_work(write=False) as s:
        assert s.scalar(select(func.count()).select_from(Brand)) == 1
    db.dispose()


def test_a_writer_gives_up_on_another_process_turn_after_the_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A process that keeps the turn (a transaction left open) must not stall every writer for ever:
    # after WRITE_LOCK_TIMEOUT_SECONDS the writer answers DatabaseBusy and writes nothing; the waits
    # it gave up on do not keep the turn once the holder lets go.
    monkeypatch.setattr(kit_db, "WRITE_LOCK_TIMEOUT_SECONDS", 0.3)
    url = f"sqlite:///{tmp_path / 't.db'}"
    upgrade(url)
    db = Database(url)
    lock_path = str(tmp_path / "t.db") + "-writers.lock"
    holder = _hold_turn(lock_path)
    try:
        for code in ("t1", "t2"):  # the second queues behind the first's abandoned wait
            with pytest.raises(kit_db.DatabaseBusy), db.unit_of_work() as s:
                tenancy.create_brand(s, actor=SYSTEM, code=code, name=code.upper())
        _let_go(holder)
        holder.wait(10)
        monkeypatch.setattr(kit_db, "WRITE_LOCK_TIMEOUT_SECONDS", 10.0)
        with db.unit_of_work() as s:
            tenancy.create_brand(s, actor=SYSTEM, code="t3", name="T3")
    finally:
        holder.kill()
        holder.wait()
    _assert_turn_free(lock_path)
    with db.unit_of_work(write=False) as s:
        assert list(s.scalars(select(Brand.code).order_by(Brand.id))) == ["t3"]
    db.dispose()


def _hold_turn(lock_path: str) -> subprocess.Popen[str]:
    """Another process that takes the file's writer turn and keeps it until a line on its stdin."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600); "
            "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.readline()",
            lock_path,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def _let_go(holder: subprocess.Popen[str]) -> None:
    assert holder.stdin is not None
    holder.stdin.write("\n")
    holder.stdin.flush()


def _assert_turn_free(lock_path: str) -> None:
    fd = os.open(lock_path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free: raises BlockingIOError if still held
    finally:
        os.close(fd)

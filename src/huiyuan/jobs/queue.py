"""The Huey queue behind background jobs, built from settings.

* ``sqlite`` (default): ``SqliteHuey`` on a file next to a SQLite database (``<name>-jobs.db``;
  ``jobs_sqlite_path`` when set or when the database is PostgreSQL); nothing to install.
* ``redis`` (production): ``RedisHuey`` on ``settings.redis_url``; any number of workers.
* ``memory`` (tests): ``MemoryHuey(immediate=True)``; a job runs in the thread that enqueued it,
  right after the enqueuing transaction commits.

Only one Huey task exists, ``huiyuan.run_job(run_id)``: the message carries the run id, never the
parameters or credentials; the worker reads the ``JobRun`` row from its own database (the one bound
with ``bind_database`` when the worker started). Must not contain job logic (``jobs.service``).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huey import Huey, MemoryHuey, RedisHuey, SqliteHuey
from huey.api import TaskWrapper
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import sessionmaker

from huiyuan.kit.db import Database
from huiyuan.settings import Settings, get_settings

TASK_NAME = "huiyuan.run_job"


@dataclass
class JobQueue:
    huey: Huey
    run_job: TaskWrapper

    def send(self, run_id: int) -> None:
        self.run_job(run_id)

    @property
    def immediate(self) -> bool:
        return bool(self.huey.immediate)


_queues: dict[tuple[str, ...], JobQueue] = {}
_queues_lock = threading.Lock()
_bound: Database | None = None
_override: ContextVar[Database | None] = ContextVar("huiyuan_job_database", default=None)
_wrapped: weakref.WeakKeyDictionary[Engine, Database] = weakref.WeakKeyDictionary()


def _run_job_task(run_id: int) -> str | None:
    from huiyuan.jobs.service import execute_run

    db = _override.get() or _bound
    if db is None:
        raise RuntimeError("no database is bound to the job worker (start it with start_in_process_worker)")
    return execute_run(db, run_id)


def build_queue(settings: Settings) -> JobQueue:
    """A new Huey instance for these settings with the ``run_job`` task registered on it."""
    name = settings.jobs_queue_name
    huey: Huey
    # No result store: a run's outcome lives in its JobRun row, and unread results would pile up.
    if settings.jobs_backend == "memory":
        huey = MemoryHuey(name, results=False, immediate=True)
    elif settings.jobs_backend == "redis":
        huey = RedisHuey(name, results=False, url=settings.redis_url)
    else:
        huey = SqliteHuey(name, results=False, filename=sqlite_queue_path(settings))
    task = huey.task(name=TASK_NAME, retries=0)(_run_job_task)
    return JobQueue(huey=huey, run_job=task)


def sqlite_queue_path(settings: Settings) -> str:
    """The SQLite queue file: as configured, or (by default) beside a SQLite database file, so that
    ``huiyuan serve`` and ``huiyuan worker`` started from different directories share one queue."""
    if "jobs_sqlite_path" in settings.model_fields_set:
        return settings.jobs_sqlite_path
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        db_path = Path(url.database)
        return str(db_path.with_name(db_path.stem + "-jobs.db"))
    return settings.jobs_sqlite_path


def _key(settings: Settings) -> tuple[str, ...]:
    return (settings.jobs_backend, settings.jobs_queue_name, sqlite_queue_path(settings), settings.redis_url)


def get_queue(settings: Settings | None = None) -> JobQueue:
    """The process's queue for these settings (one Huey instance per configuration)."""
    settings = settings or get_settings()
    key = _key(settings)
    with _queues_lock:
        queue = _queues.get(key)
        if queue is None:
            queue = _queues[key] = build_queue(settings)
        return queue


def bind_database(db: Database | None) -> None:
    """Tell this process's job worker which database its runs live in."""
    global _bound
    _bound = db


def bound_database() -> Database | None:
    return _bound


@contextmanager
def using_database(db: Database) -> Iterator[None]:
    """Run immediate-mode tasks of this thread against ``db`` (the enqueuing session's database)."""
    token = _override.set(db)
    try:
        yield
    finally:
        _override.reset(token)


def database_for_engine(engine: Engine) -> Database:
    """A ``Database`` sharing an existing engine (no new pool), cached per engine."""
    db = _wrapped.get(engine)
    if db is None:
        db = Database.__new__(Database)
        db.url = engine.url.render_as_string(hide_password=False)
        db.engine = engine
        db.sessionmaker = sessionmaker(engine, expire_on_commit=False, autoflush=True)
        _wrapped[engine] = db
    return db


def describe(queue: JobQueue) -> dict[str, Any]:
    """Queue facts for status lines: backend class and waiting messages."""
    try:
        pending = queue.huey.pending_count()
    except Exception:  # a queue that cannot be reached must not break a status line
        pending = -1
    return {"backend": type(queue.huey).__name__, "pending": pending}

"""The Huey queue behind background jobs, built from settings.

* ``sqlite`` (default): ``SqliteHuey`` on a file next to the database; nothing to install.
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
from typing import Any

from huey import Huey, MemoryHuey, RedisHuey, SqliteHuey
from huey.api import TaskWrapper
from sqlalchemy.engine import Engine
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
    if settings.jobs_backend == "memory":
        huey = MemoryHuey(name, immediate=True)
    elif settings.jobs_backend == "redis":
        huey = RedisHuey(name, url=settings.redis_url)
    else:
        huey = SqliteHuey(name, filename=settings.jobs_sqlite_path)
    task = huey.task(name=TASK_NAME, retries=0)(_run_job_task)
    return JobQueue(huey=huey, run_job=task)


def _key(settings: Settings) -> tuple[str, ...]:
    return (settings.jobs_backend, settings.jobs_queue_name, settings.jobs_sqlite_path, settings.redis_url)


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

"""The registry of job kinds: ``@job("members.import")`` maps a kind to the function that runs it.

A job function takes one ``JobContext`` and returns a JSON-able result (or ``None``). Modules that
define jobs are listed in ``JOB_MODULES`` and imported by the worker and by ``enqueue`` (which
refuses unknown kinds). This module must not import domain code.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from huiyuan.jobs.context import JobContext

JobFunction = Callable[["JobContext"], "dict[str, Any] | None"]

# Modules whose import registers jobs; add a line when a domain gets background work.
JOB_MODULES: tuple[str, ...] = (
    "huiyuan.points.jobs",
    "huiyuan.outbox.dispatcher",
    "huiyuan.members.import_jobs",
    "huiyuan.tiers.jobs",
    "huiyuan.paid.jobs",
    "huiyuan.coupons.jobs",
    "huiyuan.warehouse.jobs",
    "huiyuan.identity.jobs",
    "huiyuan.events.jobs",
    "huiyuan.benefits.jobs",
)

_jobs: dict[str, JobFunction] = {}
_loaded = False


@dataclass(frozen=True)
class Schedule:
    """Run ``kind`` for every active brand: each ``every_minutes``, or once a day at ``daily_at``
    (``"HH:MM"`` in the brand's timezone). ``jobs.schedule`` enqueues due runs."""

    kind: str
    every_minutes: int | None = None
    daily_at: str | None = None


_schedules: dict[str, Schedule] = {}


def schedule(kind: str, *, every_minutes: int | None = None, daily_at: str | None = None) -> None:
    """Declare that the job ``kind`` runs on its own, per brand (one of the two cadences)."""
    if (every_minutes is None) == (daily_at is None):
        raise ValueError("a schedule needs exactly one of every_minutes and daily_at")
    if daily_at is not None:
        hour, minute = (int(x) for x in daily_at.split(":"))
        if not (0 <= hour < 24 and 0 <= minute < 60):
            raise ValueError(f"daily_at must be HH:MM, got {daily_at!r}")
    _schedules[kind] = Schedule(kind=kind, every_minutes=every_minutes, daily_at=daily_at)


def schedules() -> list[Schedule]:
    """Every declared schedule, by kind."""
    load_job_modules()
    return [_schedules[k] for k in sorted(_schedules)]


def job(kind: str) -> Callable[[JobFunction], JobFunction]:
    """Decorator registering ``fn(ctx) -> dict | None`` as the job ``kind``."""

    def register(fn: JobFunction) -> JobFunction:
        existing = _jobs.get(kind)
        if existing is not None and existing is not fn and existing.__qualname__ != fn.__qualname__:
            raise ValueError(f"job kind '{kind}' is already registered by {existing.__module__}")
        _jobs[kind] = fn
        return fn

    return register


def load_job_modules() -> None:
    """Import every module that registers jobs (once per process)."""
    global _loaded
    if _loaded:
        return
    for name in JOB_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:  # an optional domain that is not installed
            if exc.name != name:
                raise
    _loaded = True


def get_job(kind: str) -> JobFunction | None:
    load_job_modules()
    return _jobs.get(kind)


def kinds() -> list[str]:
    load_job_modules()
    return sorted(_jobs)

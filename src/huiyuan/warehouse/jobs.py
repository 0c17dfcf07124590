"""``warehouse.sync`` — bring the DuckDB warehouse up to date (``warehouse.sync.sync``) every 10
minutes, with progress on the run.

The sync is platform-wide while schedules start one run per brand and slot: the first run of a slot
does the work; a run that finds another sync holding the file's lock (``store.sync_lock``, an OS
lock that dies with its process) stops at once, and one that starts after a sync of its slot has
finished does nothing. ``params``: ``path`` (default ``HUIYUAN_WAREHOUSE_PATH``), ``tables``,
``settle_seconds`` (default 5).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from huiyuan.jobs.context import JobContext
from huiyuan.jobs.registry import job, schedule
from huiyuan.settings import get_settings
from huiyuan.warehouse import sync
from huiyuan.warehouse.store import SyncInProgress

KIND = "warehouse.sync"


class JobReporter:
    """Sync progress as the run's progress: rows copied so far, out of the rows found pending."""

    def __init__(self, ctx: JobContext) -> None:
        self.ctx, self.done, self.total = ctx, 0, 0

    def start(self, phase: str, total: int) -> None:
        self.total += total
        self.ctx.progress(self.done, self.total, f"{phase}: {total} rows to copy")

    def advance(self, phase: str, rows: int) -> None:
        self.done += rows
        self.ctx.progress(self.done, self.total, f"{phase}: {self.done} rows copied")

    def finish(self, phase: str) -> None:
        return None


@job(KIND)
def run_sync(ctx: JobContext) -> dict[str, Any]:
    path = ctx.params.get("path") or get_settings().warehouse_path
    slot = ctx.params.get("at")  # scheduled runs: when the slot began
    try:
        report = sync.sync(
            ctx.db,
            path,
            tables=ctx.params.get("tables"),
            reporter=JobReporter(ctx),
            synced_since=datetime.fromisoformat(slot) if slot else None,
            settle_seconds=float(ctx.params.get("settle_seconds", 5.0)),
        )
    except SyncInProgress:
        return {"skipped": "another warehouse sync is running"}
    if report.skipped:
        return {"skipped": report.skipped}
    return {
        "rows": report.rows,
        "copied": report.copied,
        "seconds": round(report.seconds, 3),
        "rebuilt": report.rebuilt,
    }


schedule(KIND, every_minutes=10)

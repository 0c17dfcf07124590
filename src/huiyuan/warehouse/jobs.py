"""``warehouse.sync`` — bring the DuckDB warehouse up to date (``warehouse.sync.sync``), every 10
minutes. The sync is platform-wide: the schedule starts one run per brand and slot, and the runs
after the first find nothing left to copy (or the file locked by the first, and stop at once)."""

from __future__ import annotations

from typing import Any

import duckdb

from huiyuan.jobs.context import JobContext
from huiyuan.jobs.registry import job, schedule
from huiyuan.settings import get_settings
from huiyuan.warehouse import sync

KIND = "warehouse.sync"


class _Progress:
    def __init__(self, ctx: JobContext) -> None:
        self.ctx, self.done = ctx, 0

    def start(self, phase: str, total: int) -> None:
        return None

    def advance(self, phase: str, rows: int) -> None:
        self.done += rows
        self.ctx.progress(self.done, None, f"{phase}: {self.done} rows copied")

    def finish(self, phase: str) -> None:
        return None


@job(KIND)
def run_sync(ctx: JobContext) -> dict[str, Any]:
    path = ctx.params.get("path") or get_settings().warehouse_path
    try:
        report = sync.sync(ctx.db, path, tables=ctx.params.get("tables"), reporter=_Progress(ctx))
    except duckdb.IOException as exc:  # another process holds the file: that run is doing the work
        return {"skipped": str(exc)[:200]}
    return {"rows": report.rows, "copied": report.copied, "seconds": round(report.seconds, 3)}


schedule(KIND, every_minutes=10)

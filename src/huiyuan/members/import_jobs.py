"""The background job that carries out an uploaded member import (``members.import``).

The job's parameters name only the ``ImportRun``; the run row holds the stored file and the options.
Progress goes to the job run (``ctx.progress``, visible in the jobs API and the console) and the
counts to the import run. Must not contain import logic (``members.importer``).
"""

from __future__ import annotations

from typing import Any

from huiyuan.jobs.context import JobContext
from huiyuan.jobs.registry import job
from huiyuan.members import importer

KIND = importer.JOB_KIND


@job(KIND)
def run_member_import(ctx: JobContext) -> dict[str, Any]:
    """Import the stored file of one ``ImportRun``, reporting progress per chunk."""
    summary = importer.run_pending(
        ctx.db, actor=ctx.actor, run_id=int(ctx.params["import_run_id"]), progress=ctx.progress
    )
    return {
        "import_run_id": summary.run_id,
        "status": summary.status,
        "rows": summary.processed_rows,
        "created": summary.created,
        "updated": summary.updated,
        "skipped": summary.skipped,
        "failed": summary.failed,
        "dry_run": summary.dry_run,
    }

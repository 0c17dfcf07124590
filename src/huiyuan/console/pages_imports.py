"""Console pages for member imports: the upload form, the list of runs and a run's live progress.

Uploads go to ``members.importer.submit_upload`` (the same call as ``POST /api/v1/imports/members``),
which queues the import as a background job; the run page polls a progress fragment with HTMX every
second until the run has finished, and links to the API's error report CSV (the session cookie
authenticates the download). No import logic here.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import RedirectResponse, Response

from huiyuan.console.deps import Console, requires
from huiyuan.console.web import ConsoleRoute, render
from huiyuan.kit.errors import ValidationFailed
from huiyuan.members import importer
from huiyuan.members.models import ImportRun

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

Importer = Annotated[Console, requires("imports:write")]
RECENT_RUNS = 20
FINISHED = ("succeeded", "failed", "cancelled")


def _progress(run: ImportRun) -> dict[str, Any]:
    percent = None
    if run.total_rows:
        percent = round(100.0 * min(run.processed_rows, run.total_rows) / run.total_rows, 1)
    elif run.status in FINISHED:
        percent = 100.0
    return {
        "run": run,
        "percent": percent,
        "finished": run.status in FINISHED,
        "errors_url": f"/api/v1/imports/{run.id}/errors.csv",
    }


def _imports_page(
    request: Request, console: Console, *, errors: list[dict[str, Any]] | None = None, status: int = 200
) -> Response:
    runs = (
        importer.list_runs(console.session, after_id=None, limit=RECENT_RUNS)
        if console.brand_id is not None
        else []
    )
    return render(request, "imports.html", {"runs": runs, "errors": errors or []}, status=status)


@router.get("/console/imports")
def imports_page(request: Request, console: Importer) -> Response:
    return _imports_page(request, console)


@router.post("/console/imports")
def upload(
    request: Request,
    console: Importer,
    file: Annotated[UploadFile, File()],
    dry_run: Annotated[str, Form(max_length=5)] = "",
    on_duplicate: Annotated[str, Form(max_length=8)] = "skip",
    default_status: Annotated[str, Form(max_length=16)] = "prospect",
) -> Response:
    try:
        run = importer.submit_upload(
            console.session,
            actor=console.principal,
            stream=file.file,
            filename=file.filename or "upload",
            dry_run=dry_run in ("1", "on", "true"),
            on_duplicate=on_duplicate,
            default_status=default_status,
        )
    except ValidationFailed as exc:
        console.session.rollback()
        return _imports_page(request, console, errors=exc.errors or [{"message": exc.detail}], status=422)
    return RedirectResponse(f"/console/imports/{run.id}", status_code=303)


@router.get("/console/imports/{run_id}")
def import_run(request: Request, run_id: int, console: Importer) -> Response:
    return render(request, "import_run.html", _progress(importer.get_run(console.session, run_id)))


@router.get("/console/imports/{run_id}/progress")
def import_progress(request: Request, run_id: int, console: Importer) -> Response:
    """The progress block alone, polled by the run page while the import is pending or running."""
    return render(request, "_import_progress.html", _progress(importer.get_run(console.session, run_id)))

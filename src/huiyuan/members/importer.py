"""Member and prospect import from CSV and XLSX (A2/C6): every row goes through ``MemberEnroll`` and
``members.service`` exactly as an API call would, de-duplicated on its identifiers, written in chunks
of ``CHUNK_ROWS`` rows per transaction with a SAVEPOINT per row, so one bad row never undoes its
neighbours. A dry run does all of it and rolls every chunk back. Re-running a file is safe: rows
that match a member are skipped (or fill that member's empty fields), never created twice.

Owns the ``ImportRun`` lifecycle (uploads kept under ``data_dir``, the background job, the counts),
and the row-level error report; rows are prepared in ``import_rows`` and written by
``import_writer``. Must not re-implement member validation, query outside the repositories, or
commit inside a business verb.
"""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from huiyuan.audit import service as audit
from huiyuan.jobs.context import JobCancelled
from huiyuan.jobs.service import enqueue
from huiyuan.kit import pii
from huiyuan.kit.clock import utcnow
from huiyuan.kit.db import Database
from huiyuan.kit.errors import AppError, NotFound, PayloadTooLarge, ValidationFailed, field_error
from huiyuan.kit.scope import Principal
from huiyuan.members import custom_fields
from huiyuan.members.import_reader import FORMATS, detect_format, map_columns, open_rows
from huiyuan.members.import_repository import ImportRepository
from huiyuan.members.import_rows import PreparedRow, RowMapper
from huiyuan.members.import_writer import ChunkWriter, ImportSummary, apply_counts
from huiyuan.members.models import ImportRun
from huiyuan.outbox.service import emit
from huiyuan.settings import get_settings
from huiyuan.tenancy.repository import TenancyRepository

CHUNK_ROWS = 500
JOB_KIND = "members.import"
ON_DUPLICATE = ("skip", "update")
DEFAULT_STATUSES = ("prospect", "active")
ProgressCallback = Callable[[int, int, str], None]  # (rows done, rows expected, message)


# -- runs ------------------------------------------------------------------------------------------


def check_options(fmt: str, on_duplicate: str, default_status: str) -> None:
    errors = []
    if fmt not in FORMATS:
        errors.append(field_error("format", "csv or xlsx", "unsupported-format"))
    if on_duplicate not in ON_DUPLICATE:
        errors.append(field_error("on_duplicate", "skip or update", "invalid"))
    if default_status not in DEFAULT_STATUSES:
        errors.append(field_error("default_status", "prospect or active", "invalid"))
    if errors:
        raise ValidationFailed("The import options are not valid.", errors=errors)


def create_run(
    session: Session,
    *,
    actor: Principal,
    filename: str,
    fmt: str,
    dry_run: bool,
    on_duplicate: str,
    default_status: str,
    stored_path: str | None = None,
    columns: list[str] | None = None,
) -> ImportRun:
    """Record a pending import run of a file whose header has already been accepted."""
    actor.require("imports:write")
    check_options(fmt, on_duplicate, default_status)
    run = ImportRun(
        brand_id=actor.scope.require_brand(),
        kind="members",
        filename=filename[:255],
        format=fmt,
        stored_path=stored_path,
        status="pending",
        dry_run=dry_run,
        on_duplicate=on_duplicate,
        default_status=default_status,
        columns=columns or [],
        created_by=actor.label[:200],
    )
    session.add(run)
    session.flush()
    return run


def get_run(session: Session, run_id: int) -> ImportRun:
    """The import run with this id in the caller's scope, or 404."""
    run = ImportRepository(session).get(run_id)
    if run is None:
        raise NotFound(f"Import {run_id} was not found.")
    return run


def list_runs(session: Session, *, after_id: int | None, limit: int) -> list[ImportRun]:
    """Import runs in the caller's scope, newest first."""
    return ImportRepository(session).list_runs(after_id=after_id, limit=limit)


# -- the import ------------------------------------------------------------------------------------


def import_members(
    db: Database,
    *,
    actor: Principal,
    path: Path,
    fmt: str,
    dry_run: bool = False,
    on_duplicate: str = "skip",
    default_status: str = "prospect",
    progress: ProgressCallback | None = None,
    run_id: int | None = None,
    filename: str | None = None,
) -> ImportSummary:
    """Import members/prospects from a CSV or XLSX file, streaming, chunked, de-duplicated."""
    actor.require("imports:write")
    brand_id = actor.scope.require_brand()
    check_options(fmt, on_duplicate, default_status)
    started = time.perf_counter()
    with open_rows(Path(path), fmt) as source:  # an unknown header fails here, before any row
        with db.unit_of_work(actor.scope) as session:
            if run_id is None:
                run = create_run(
                    session,
                    actor=actor,
                    filename=filename or Path(path).name,
                    fmt=fmt,
                    dry_run=dry_run,
                    on_duplicate=on_duplicate,
                    default_status=default_status,
                    columns=[c.header for c in source.columns if c is not None],
                )
            else:
                run = get_run(session, run_id)
                ImportRepository(session).delete_errors(run.id)
            run.status = "running"
            run.started_at = utcnow()
            run.total_rows = source.estimated_rows or 0
            run_id = run.id
            tz = ZoneInfo(TenancyRepository(session).brand(brand_id).timezone)
            list_fields = frozenset(
                d.key
                for d in custom_fields.CustomFieldRepository(session).definitions(brand_id)
                if d.type == "multi_enum"
            )
        summary = ImportSummary(run_id=run_id, dry_run=dry_run, total_rows=source.estimated_rows or 0)
        writer = ChunkWriter(db, actor, summary, on_duplicate=on_duplicate, columns=source.columns)
        mapper = RowMapper(source.columns, default_status, tz, list_fields)
        try:
            chunk: list[PreparedRow] = []
            for number, cells in source.rows:
                if not any(cells):
                    continue  # blank lines and Excel's trailing empty rows are not rows
                chunk.append(writer.dedupe_in_file(mapper.prepare(number, cells), mapper))
                if len(chunk) >= CHUNK_ROWS:
                    writer.write(chunk, mapper)
                    chunk = []
                    _report(progress, summary, started)
            if chunk:
                writer.write(chunk, mapper)
            summary.total_rows = summary.processed_rows
            _report(progress, summary, started)
        except BaseException as exc:
            # Chunks already committed stay (re-running the file is safe); the run says where it ended.
            summary.status = "cancelled" if isinstance(exc, JobCancelled) else "failed"
            summary.error = exc.detail if isinstance(exc, AppError) else f"{type(exc).__name__}: {exc}"
            _finish(db, actor, summary)
            raise
    summary.status = "succeeded"
    summary.elapsed_seconds = time.perf_counter() - started
    _finish(db, actor, summary)
    return summary


def _report(progress: ProgressCallback | None, summary: ImportSummary, started: float) -> None:
    summary.elapsed_seconds = time.perf_counter() - started
    if progress is not None:
        progress(summary.processed_rows, max(summary.total_rows, summary.processed_rows), summary.message())


def _finish(db: Database, actor: Principal, summary: ImportSummary) -> None:
    with db.unit_of_work(actor.scope) as session:
        run = get_run(session, summary.run_id)
        apply_counts(run, summary)
        run.status = summary.status
        run.error = summary.error
        run.finished_at = utcnow()
        counts = {
            "status": summary.status,
            "dry_run": summary.dry_run,
            "rows": summary.processed_rows,
            "created": summary.created,
            "updated": summary.updated,
            "skipped": summary.skipped,
            "failed": summary.failed,
        }
        audit.record(
            session,
            actor=actor,
            action="import.finished",
            entity_type="import_run",
            entity_id=run.id,
            brand_id=run.brand_id,
            after={"kind": run.kind, "filename": run.filename, **counts},
            note=summary.error,
        )
        emit(
            session,
            type="import.finished",
            brand_id=run.brand_id,
            aggregate_type="import_run",
            aggregate_id=run.id,
            payload={"import_run_id": run.id, "kind": run.kind, **counts},
        )


def save_upload(stream: IO[bytes], filename: str) -> tuple[Path, str]:
    """Copy an uploaded file under ``data_dir/imports`` (bounded by ``max_body_bytes``) and return
    its path and format; the name on disk is random, the client's name is only metadata."""
    settings = get_settings()
    # Absolute, so that a worker started from another directory finds the file.
    folder = Path(settings.data_dir).resolve() / "imports"
    folder.mkdir(parents=True, exist_ok=True)
    head = stream.read(8)
    fmt = detect_format(filename, head)
    path = folder / f"{uuid.uuid4().hex}.{fmt}"
    written = len(head)
    with path.open("wb") as out:
        out.write(head)
        while chunk := stream.read(1024 * 1024):
            written += len(chunk)
            if written > settings.max_body_bytes:
                out.close()
                path.unlink(missing_ok=True)
                raise PayloadTooLarge(f"Import files are limited to {settings.max_body_bytes} bytes.")
            out.write(chunk)
    return path, fmt


def start_upload(
    session: Session,
    *,
    actor: Principal,
    stream: IO[bytes],
    filename: str,
    dry_run: bool,
    on_duplicate: str,
    default_status: str,
) -> ImportRun:
    """Keep an uploaded file, refuse it at once if its header is unknown, and record a pending run."""
    actor.require("imports:write")
    actor.scope.require_brand()
    check_options("csv", on_duplicate, default_status)
    path, fmt = save_upload(stream, filename)
    try:
        with open_rows(path, fmt) as source:
            headers = [c.header for c in source.columns if c is not None]
        return create_run(
            session,
            actor=actor,
            filename=filename,
            fmt=fmt,
            dry_run=dry_run,
            on_duplicate=on_duplicate,
            default_status=default_status,
            stored_path=str(path),
            columns=headers,
        )
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def submit_upload(
    session: Session,
    *,
    actor: Principal,
    stream: IO[bytes],
    filename: str,
    dry_run: bool,
    on_duplicate: str,
    default_status: str,
) -> ImportRun:
    """Accept an uploaded file and queue its import as a background job (started on commit)."""
    run = start_upload(
        session,
        actor=actor,
        stream=stream,
        filename=filename,
        dry_run=dry_run,
        on_duplicate=on_duplicate,
        default_status=default_status,
    )
    job = enqueue(session, actor=actor, kind=JOB_KIND, params={"import_run_id": run.id})
    run.job_id = job.id
    session.flush()
    return run


def run_pending(
    db: Database, *, actor: Principal, run_id: int, progress: ProgressCallback | None = None
) -> ImportSummary:
    """Carry out a run recorded by ``start_upload`` (the background job's body)."""
    with db.unit_of_work(actor.scope, write=False) as session:
        run = get_run(session, run_id)
    if run.status == "succeeded":  # a redelivered job must not import the file again
        return _summary_of(db, actor, run_id)
    if run.stored_path is None:
        raise ValidationFailed("This import has no stored file.")
    # A failed or interrupted run starts the file over: that is safe, rows already written match.
    try:
        return import_members(
            db,
            actor=actor,
            path=Path(run.stored_path),
            fmt=run.format,
            dry_run=run.dry_run,
            on_duplicate=run.on_duplicate,
            default_status=run.default_status,
            progress=progress,
            run_id=run_id,
        )
    except Exception as exc:
        _fail_unstarted(db, actor, run_id, exc)
        raise


def _fail_unstarted(db: Database, actor: Principal, run_id: int, exc: Exception) -> None:
    # A file that cannot even be opened (gone, unreadable) fails before the run is marked running.
    with db.unit_of_work(actor.scope) as session:
        run = get_run(session, run_id)
        if run.status == "pending":
            run.status = "failed"
            run.error = exc.detail if isinstance(exc, AppError) else f"{type(exc).__name__}: {exc}"
            run.finished_at = utcnow()


def _summary_of(db: Database, actor: Principal, run_id: int) -> ImportSummary:
    with db.unit_of_work(actor.scope, write=False) as session:
        run = get_run(session, run_id)
        return ImportSummary(
            run_id=run.id,
            dry_run=run.dry_run,
            status=run.status,
            total_rows=run.total_rows,
            processed_rows=run.processed_rows,
            created=run.created,
            updated=run.updated,
            skipped=run.skipped,
            failed=run.failed,
            error=run.error,
        )


# -- the error report ------------------------------------------------------------------------------

REPORT_PAGE = 1000


def iter_error_report(session: Session, *, actor: Principal, run_id: int) -> Iterator[str]:
    """The run's row errors as CSV text (BOM first, for Excel): row, column, code, message, then the
    row's original cells; phone, e-mail and identifier cells masked without ``members:pii``."""
    run = get_run(session, run_id)
    show_pii = actor.has("members:pii")
    columns = list(run.columns or [])
    kinds = {c.header: c.field for c in map_columns(columns) if c is not None} if columns else {}
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["row_number", "column", "code", "message", *columns])
    yield "\ufeff" + _drain(buffer)
    repo = ImportRepository(session)
    after: int | None = None
    while page := repo.errors(run_id, after_id=after, limit=REPORT_PAGE):
        for err in page:
            cells = dict(err.raw or {})
            if err.raw_pii_enc:
                for header, value in json.loads(pii.decrypt(err.raw_pii_enc)).items():
                    cells[header] = value if show_pii else pii.mask(kinds.get(header, "other"), value)
            writer.writerow(
                [
                    err.row_number,
                    err.column or "",
                    err.code,
                    err.message,
                    *(cells.get(c, "") for c in columns),
                ]
            )
        after = page[-1].id
        yield _drain(buffer)


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text

"""Member and prospect import from CSV and XLSX (A2/C6): every row goes through ``MemberEnroll`` and
``members.service`` exactly as an API call would, de-duplicated on its identifiers, written in chunks
of ``CHUNK_ROWS`` rows per transaction with a SAVEPOINT per row, so one bad row never undoes its
neighbours. A dry run does all of it and rolls every chunk back. Re-running a file is safe: rows
that match a member are skipped (or fill that member's empty fields), never created twice.

Owns the ``ImportRun`` lifecycle, its row errors and the error report. Must not re-implement member
validation, query outside the repositories, or commit inside a business verb.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import tzinfo
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from huiyuan.audit import service as audit
from huiyuan.jobs.service import enqueue
from huiyuan.kit import pii
from huiyuan.kit.clock import utcnow
from huiyuan.kit.db import Database
from huiyuan.kit.errors import AppError, NotFound, PayloadTooLarge, ValidationFailed, field_error
from huiyuan.kit.scope import Principal
from huiyuan.members import custom_fields, identity, service
from huiyuan.members.import_reader import (
    FORMATS,
    IDENTIFIER_COLUMNS,
    Column,
    detect_format,
    map_columns,
    open_rows,
)
from huiyuan.members.import_repository import ImportRepository
from huiyuan.members.models import ImportRowError, ImportRun
from huiyuan.members.schemas import MemberEnroll, MemberUpdate
from huiyuan.outbox.service import emit
from huiyuan.settings import get_settings
from huiyuan.tenancy.repository import TenancyRepository

CHUNK_ROWS = 500
ON_DUPLICATE = ("skip", "update")
DEFAULT_STATUSES = ("prospect", "active")
ProgressCallback = Callable[[int, int, str], None]  # (rows done, rows expected, message)

_GENDERS = {"男": "male", "女": "female", "m": "male", "f": "female", "未知": "unknown"}
_STATUSES = {"潜客": "prospect", "会员": "active", "正式会员": "active"}
_CHANNELS = {
    "门店": "store",
    "小程序": "mini_program",
    "抖音": "douyin",
    "导入": "import",
    "推荐": "referral",
}
_LIST_SPLIT = re.compile(r"[|;；]")
_CN_DATE = re.compile(r"^(\d{4})\s*[年/.]\s*(\d{1,2})\s*[月/.]\s*(\d{1,2})\s*日?$")
_FILL_FIELDS = ("name", "birthday", "province", "city", "occupation", "education", "income_band")


@dataclass
class ImportSummary:
    """Counts of one import run; in a dry run ``created``/``updated`` mean "would create/update"."""

    run_id: int
    dry_run: bool
    status: str = "running"
    total_rows: int = 0
    processed_rows: int = 0
    created: int = 0
    updated: int = 0
    skipped: int = 0
    failed: int = 0
    elapsed_seconds: float = 0.0
    error: str | None = None

    @property
    def rows_per_second(self) -> float:
        return self.processed_rows / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0

    def message(self) -> str:
        verb = "would create" if self.dry_run else "created"
        return (
            f"{self.processed_rows} rows: {self.created} {verb}, {self.updated} updated, "
            f"{self.skipped} skipped, {self.failed} failed"
        )


@dataclass
class RowError:
    column: str | None
    code: str
    message: str


@dataclass
class PreparedRow:
    number: int
    cells: list[str | None]
    data: MemberEnroll | None = None
    errors: list[RowError] = field(default_factory=list)
    keys: list[tuple[str, str]] = field(default_factory=list)  # (field, blind index or member number)


class _Mapper:
    """Turns one row's cells into a validated ``MemberEnroll`` plus its identifier keys."""

    def __init__(
        self, columns: list[Column | None], default_status: str, tz: tzinfo, list_fields: frozenset[str]
    ) -> None:
        self.columns = columns
        self.list_fields = list_fields  # custom fields whose values are lists (multi-enum)
        self.default_status = default_status
        self.tz = tz
        self.header_of = {c.field: c.header for c in columns if c is not None}

    def prepare(self, number: int, cells: list[str | None]) -> PreparedRow:
        row = PreparedRow(number=number, cells=cells)
        payload: dict[str, Any] = {"enroll_channel": "import", "status": self.default_status}
        identifiers: list[dict[str, str]] = []
        custom: dict[str, Any] = {}
        for col, text in zip(self.columns, cells, strict=False):
            if col is None or text is None:
                continue
            if col.field.startswith("custom."):
                key = col.field.removeprefix("custom.")
                custom[key] = _split_list(text) if key in self.list_fields else text
            elif col.field in IDENTIFIER_COLUMNS:
                identifiers += [
                    {"type": col.field, "value": v.strip(), "source": "import"}
                    for v in text.split("|")
                    if v.strip()
                ]
            else:
                payload[col.field] = _convert(col.field, text)
        if any(c is not None for c in cells[len(self.columns) :]):
            row.errors.append(RowError(None, "extra-cells", "the row has more cells than the header"))
            return row
        if identifiers:
            payload["identifiers"] = identifiers
        if custom:
            payload["custom"] = custom
        try:
            data = MemberEnroll.model_validate(payload)
        except ValidationError as exc:
            for e in exc.errors():
                row.errors.append(RowError(self._column(e["loc"], identifiers), e["type"], e["msg"]))
            return row
        if data.enrolled_at is not None and data.enrolled_at.tzinfo is None:
            data.enrolled_at = data.enrolled_at.replace(tzinfo=self.tz)  # the brand's business time
        row.data = data
        if data.member_number:
            row.keys.append(("member_number", data.member_number))
        for kind, value in (("phone", data.phone), ("email", data.email)):
            if value:
                row.keys.append((kind, pii.blind_index(kind, value)))
        row.keys += [(i.type, pii.blind_index(i.type, i.value)) for i in data.identifiers]
        if not row.keys:
            row.errors.append(
                RowError(
                    None,
                    "no-identifier",
                    "a row needs member_number, phone, email or an identifier column so that "
                    "re-running the import cannot create it twice",
                )
            )
        return row

    def _column(self, loc: tuple[Any, ...], identifiers: list[dict[str, str]]) -> str | None:
        if not loc:
            return None
        head = str(loc[0])
        if head == "identifiers" and len(loc) > 1 and isinstance(loc[1], int) and loc[1] < len(identifiers):
            return self.header_of.get(identifiers[loc[1]]["type"])
        if head == "custom" and len(loc) > 1:
            return self.header_of.get(f"custom.{loc[1]}", f"custom.{loc[1]}")
        return self.header_of.get(head, head)

    def error_column(self, app_field: str | None) -> str | None:
        """The file's header for a field named in a service error (``identifiers.card_number`` …)."""
        if not app_field:
            return None
        name = app_field.removeprefix("identifiers.")
        return self.header_of.get(name, app_field)


def _split_list(text: str) -> list[str]:
    return [p.strip() for p in _LIST_SPLIT.split(text) if p.strip()]


def _convert(field_name: str, text: str) -> Any:
    low = text.lower()
    if field_name == "gender":
        return _GENDERS.get(low, low)
    if field_name == "status":
        return _STATUSES.get(text, low)
    if field_name == "enroll_channel":
        return _CHANNELS.get(text, low)
    if field_name == "interests":
        return _split_list(text)
    if field_name == "birthday" and (m := _CN_DATE.match(text)):
        return f"{int(m[1]):04d}-{int(m[2]):02d}-{int(m[3]):02d}"
    return text


# -- runs ------------------------------------------------------------------------------------------


def _check_options(fmt: str, on_duplicate: str, default_status: str) -> None:
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
    _check_options(fmt, on_duplicate, default_status)
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


def save_upload(stream: IO[bytes], filename: str) -> tuple[Path, str]:
    """Copy an uploaded file under ``data_dir/imports`` (bounded by ``max_body_bytes``) and return
    its path and format; the name on disk is random, the client's name is only metadata."""
    settings = get_settings()
    folder = Path(settings.data_dir) / "imports"
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
    _check_options("csv", on_duplicate, default_status)
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
    job = enqueue(session, actor=actor, kind="members.import", params={"import_run_id": run.id})
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
    _check_options(fmt, on_duplicate, default_status)
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
        writer = _ChunkWriter(db, actor, summary, on_duplicate=on_duplicate, columns=source.columns)
        mapper = _Mapper(source.columns, default_status, tz, list_fields)
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
            summary.status = "failed"
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


def _apply_counts(run: ImportRun, summary: ImportSummary) -> None:
    run.processed_rows = summary.processed_rows
    run.total_rows = max(summary.total_rows, summary.processed_rows)
    run.created, run.updated = summary.created, summary.updated
    run.skipped, run.failed = summary.skipped, summary.failed


def _finish(db: Database, actor: Principal, summary: ImportSummary) -> None:
    with db.unit_of_work(actor.scope) as session:
        run = get_run(session, summary.run_id)
        _apply_counts(run, summary)
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


class _ChunkWriter:
    """Writes chunks of prepared rows: one transaction per chunk, one SAVEPOINT per row."""

    def __init__(
        self,
        db: Database,
        actor: Principal,
        summary: ImportSummary,
        *,
        on_duplicate: str,
        columns: list[Column | None],
    ) -> None:
        self.db = db
        self.actor = actor
        self.brand_id = actor.scope.require_brand()
        self.summary = summary
        self.on_duplicate = on_duplicate
        self.columns = columns
        # First row of each identifier seen in this file; keys are shortened blind indexes (80 bits
        # is ample against collisions and keeps a million-row file's memory modest).
        self.seen: dict[tuple[str, str], int] = {}

    def dedupe_in_file(self, row: PreparedRow, mapper: _Mapper) -> PreparedRow:
        if row.errors or row.data is None:
            return row
        short = [(kind, key if kind == "member_number" else key[:20]) for kind, key in row.keys]
        for (kind, _), skey in zip(row.keys, short, strict=True):
            first = self.seen.get(skey)
            if first is not None:
                row.errors.append(
                    RowError(
                        mapper.header_of.get(kind, kind), "duplicate-in-file", f"duplicate of row {first}"
                    )
                )
                return row
        for skey in short:
            self.seen[skey] = row.number
        return row

    def write(self, rows: list[PreparedRow], mapper: _Mapper) -> None:
        errors: list[ImportRowError] = []
        session = self.db.session(self.actor.scope, write=True)
        try:
            repo = ImportRepository(session)
            keys = [k for r in rows if not r.errors for k in r.keys]
            owners = repo.owners_by_bidx(self.brand_id, [k for k in keys if k[0] != "member_number"])
            numbers = repo.members_by_number(
                self.brand_id, [v for kind, v in keys if kind == "member_number"]
            )
            for row in rows:
                if not row.errors:
                    self._write_row(session, row, mapper, owners, numbers)
                self.summary.processed_rows += 1
                if row.errors:
                    self.summary.failed += 1
                    errors += self._error_rows(row)
            if self.summary.dry_run:
                session.rollback()
                with self.db.unit_of_work(self.actor.scope) as record:
                    self._record(record, errors)
            else:
                self._record(session, errors)
                session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def _record(self, session: Session, errors: list[ImportRowError]) -> None:
        _apply_counts(get_run(session, self.summary.run_id), self.summary)
        session.add_all(errors)

    def _write_row(
        self,
        session: Session,
        row: PreparedRow,
        mapper: _Mapper,
        owners: dict[str, int],
        numbers: dict[str, int],
    ) -> None:
        assert row.data is not None
        matches = {numbers.get(v) if kind == "member_number" else owners.get(v) for kind, v in row.keys} - {
            None
        }
        if len(matches) > 1:
            ids = ", ".join(str(m) for m in sorted(m for m in matches if m is not None))
            row.errors.append(
                RowError(
                    None, "ambiguous-match", f"the row's identifiers belong to different members ({ids})"
                )
            )
            return
        if matches and self.on_duplicate == "skip":
            self.summary.skipped += 1
            return
        try:
            with session.begin_nested():
                if not matches:
                    service.enroll_member(session, actor=self.actor, data=row.data)
                    outcome = "created"
                else:
                    member_id = matches.pop()
                    assert member_id is not None
                    changed = _fill_in(session, self.actor, member_id, row.data, owners)
                    outcome = "updated" if changed else "skipped"
            # Counted only once the savepoint is released: its final flush may still refuse the row.
            setattr(self.summary, outcome, getattr(self.summary, outcome) + 1)
        except AppError as exc:
            if not exc.errors:
                row.errors.append(RowError(None, exc.code, exc.detail))
            for e in exc.errors:
                row.errors.append(
                    RowError(
                        mapper.error_column(e.get("field")), e.get("code", exc.code), e.get("message", "")
                    )
                )
        except IntegrityError:
            row.errors.append(RowError(None, "conflict", "the row conflicts with a member written meanwhile"))

    def _error_rows(self, row: PreparedRow) -> list[ImportRowError]:
        plain: dict[str, Any] = {}
        secret: dict[str, Any] = {}
        for col, text in zip(self.columns, row.cells, strict=False):
            if col is not None and text is not None:
                (secret if col.is_pii else plain)[col.header] = text
        token = pii.encrypt(json.dumps(secret, ensure_ascii=False)) if secret else None
        return [
            ImportRowError(
                brand_id=self.brand_id,
                import_run_id=self.summary.run_id,
                row_number=row.number,
                column=(e.column or None) and e.column[:120],
                code=e.code[:40],
                message=e.message,
                raw=plain,
                raw_pii_enc=token,
            )
            for e in row.errors
        ]


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _fill_in(
    session: Session, actor: Principal, member_id: int, data: MemberEnroll, owners: dict[str, int]
) -> bool:
    """Fill the member's empty fields from the row (never overwrite, never blank); True if changed."""
    member = service.get_member(session, member_id)
    if member.status == "closed":
        return False
    fill: dict[str, Any] = {
        f: getattr(data, f)
        for f in _FILL_FIELDS
        if not _empty(getattr(data, f)) and _empty(getattr(member, f))
    }
    if data.gender and data.gender != "unknown" and member.gender in (None, "", "unknown"):
        fill["gender"] = data.gender
    if data.interests and not member.interests:
        fill["interests"] = data.interests
    if data.phone and not member.phone_enc:
        fill["phone"] = data.phone
    if data.email and not member.email_enc:
        fill["email"] = data.email
    custom = {k: v for k, v in (data.custom or {}).items() if _empty((member.custom or {}).get(k))}
    if custom:
        fill["custom"] = custom
    version = member.version
    if fill:
        service.update_member(session, actor=actor, member_id=member_id, data=MemberUpdate(**fill))
    changed = member.version != version
    for ident in data.identifiers:
        # Phone and e-mail were filled above; card numbers change only through the card verbs.
        if ident.type in identity.OWNED_ELSEWHERE or pii.blind_index(ident.type, ident.value) in owners:
            continue
        _ident, created = identity.add_identifier(
            session,
            actor=actor,
            member_id=member_id,
            type_=ident.type,
            value=ident.value,
            source=ident.source,
        )
        changed = changed or created
    return changed


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

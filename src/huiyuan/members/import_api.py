"""HTTP routes for member imports and the member CSV export: thin — permission, one service call,
response model. Uploads run as background jobs (``members.import``); the CSV downloads stream from
a session of their own because the request's session is closed before a streamed body is sent.

The export lives here with its full path so that it is matched before ``/api/v1/members/{id}``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from huiyuan.auth.deps import require
from huiyuan.kit.pagination import Page, check_limit, cursor_page, decode_cursor
from huiyuan.kit.scope import Principal
from huiyuan.kit.web import SessionDep, get_db
from huiyuan.members import export, importer
from huiyuan.members.models import ImportRun
from huiyuan.members.repository import MemberFilter
from huiyuan.members.schemas import Channel, Status
from huiyuan.settings import get_settings

router = APIRouter(tags=["imports"])

Importer = Annotated[Principal, require("imports:write")]
Reader = Annotated[Principal, require("members:read")]
CSV_TYPE = "text/csv; charset=utf-8"


class ImportRunOut(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": 7,
                    "kind": "members",
                    "filename": "prospects-2026-05.xlsx",
                    "format": "xlsx",
                    "status": "succeeded",
                    "dry_run": False,
                    "on_duplicate": "skip",
                    "default_status": "prospect",
                    "total_rows": 1200,
                    "processed_rows": 1200,
                    "created": 1150,
                    "updated": 0,
                    "skipped": 38,
                    "failed": 12,
                    "percent": 100.0,
                    "job_id": 42,
                    "created_by": "user:alice",
                    "errors_url": "/api/v1/imports/7/errors.csv",
                }
            ]
        },
    )

    id: int
    kind: str
    filename: str
    format: str
    status: str = Field(description="pending, running, succeeded, failed or cancelled")
    dry_run: bool
    on_duplicate: str
    default_status: str
    columns: list[str]
    total_rows: int
    processed_rows: int
    created: int = Field(description="Members created (in a dry run: would be created)")
    updated: int = Field(description="Existing members whose empty fields were filled")
    skipped: int = Field(description="Rows matching an existing member, left unchanged")
    failed: int = Field(description="Rows refused; see errors_url")
    percent: float | None = None
    job_id: int | None
    error: str | None
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    errors_url: str = ""


def _out(run: ImportRun) -> ImportRunOut:
    out = ImportRunOut.model_validate(run)
    if run.total_rows:
        out.percent = round(100.0 * min(run.processed_rows, run.total_rows) / run.total_rows, 1)
    out.errors_url = f"/api/v1/imports/{run.id}/errors.csv"
    return out


def _stream(request: Request, actor: Principal, produce: Callable[[Session], Iterator[str]]) -> Iterator[str]:
    db = get_db(request)

    def body() -> Iterator[str]:
        with db.unit_of_work(actor.scope, write=False) as session:
            yield from produce(session)

    return body()


@router.post(
    "/api/v1/imports/members",
    response_model=ImportRunOut,
    status_code=202,
    summary="Upload a CSV or XLSX file of members or prospects to import",
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "example": {
                        "file": "会员号,姓名,手机,性别,生日,城市,兴趣,openid\n"
                        "LX00001234,王芳,13800138000,女,1990/5/20,上海市,跑步|咖啡,o6_bmjrPTlm6_2sgVt7hMZOPfL2M\n"
                        "LX00001235,李强,13900139000,男,1985-11-02,杭州市,,\n",
                        "dry_run": False,
                        "on_duplicate": "skip",
                        "default_status": "active",
                    }
                }
            }
        }
    },
)
def upload_members(
    session: SessionDep,
    actor: Importer,
    file: Annotated[UploadFile, File(description="CSV (UTF-8 or GB18030) or XLSX; first row is the header")],
    dry_run: Annotated[bool, Form(description="Validate everything, write nothing")] = False,
    on_duplicate: Annotated[Literal["skip", "update"], Form()] = "skip",
    default_status: Annotated[Literal["prospect", "active"], Form()] = "prospect",
) -> ImportRunOut:
    run = importer.submit_upload(
        session,
        actor=actor,
        stream=file.file,
        filename=file.filename or "upload",
        dry_run=dry_run,
        on_duplicate=on_duplicate,
        default_status=default_status,
    )
    return _out(run)


@router.get("/api/v1/imports", response_model=Page[ImportRunOut], summary="List imports (newest first)")
def list_imports(
    session: SessionDep, actor: Importer, cursor: str | None = None, limit: int = 50
) -> Page[ImportRunOut]:
    limit = check_limit(limit, get_settings().max_page_size)
    rows = importer.list_runs(session, after_id=decode_cursor(cursor), limit=limit + 1)
    return cursor_page(rows, limit, lambda shown: [_out(r) for r in shown])


@router.get(
    "/api/v1/imports/{run_id:int}", response_model=ImportRunOut, summary="Get an import and its progress"
)
def get_import(run_id: int, session: SessionDep, actor: Importer) -> ImportRunOut:
    return _out(importer.get_run(session, run_id))


@router.get(
    "/api/v1/imports/{run_id:int}/errors.csv",
    response_class=StreamingResponse,
    summary="Download the row-level error report of an import (CSV)",
    responses={200: {"content": {"text/csv": {}}}},
)
def import_errors(run_id: int, request: Request, session: SessionDep, actor: Importer) -> StreamingResponse:
    run = importer.get_run(session, run_id)  # 404 before the stream starts
    body = _stream(request, actor, lambda s: importer.iter_error_report(s, actor=actor, run_id=run.id))
    headers = {"Content-Disposition": f'attachment; filename="import-{run.id}-errors.csv"'}
    return StreamingResponse(body, media_type=CSV_TYPE, headers=headers)


@router.get(
    "/api/v1/members/export.csv",
    response_class=StreamingResponse,
    tags=["members"],
    summary="Export members to CSV (PII masked without members:pii)",
    responses={200: {"content": {"text/csv": {}}}},
)
def export_members(
    request: Request,
    actor: Reader,
    status: Status | None = None,
    enroll_channel: Channel | None = None,
    q: Annotated[str | None, Query(max_length=100, description="Name prefix or member number")] = None,
    enrolled_from: datetime | None = None,
    enrolled_to: datetime | None = None,
) -> StreamingResponse:
    filters = MemberFilter(
        status=status,
        enroll_channel=enroll_channel,
        q=q,
        enrolled_from=enrolled_from,
        enrolled_to=enrolled_to,
    )
    # Recorded in a short write transaction of its own: the request itself only reads.
    with get_db(request).unit_of_work(actor.scope) as session:
        export.record_export(session, actor=actor, filters=filters)
    body = _stream(request, actor, lambda s: export.iter_members_csv(s, actor, filters))
    headers = {"Content-Disposition": 'attachment; filename="members.csv"'}
    return StreamingResponse(body, media_type=CSV_TYPE, headers=headers)

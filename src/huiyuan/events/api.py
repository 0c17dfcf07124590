"""HTTP routes of events under ``/api/v1`` (API keys and console sessions): thin.

Operators (``events:read`` / ``events:write``): event sources and their write keys, the tracking plan
(definitions and versions, status, settings, unplanned events and their approval, violation counts),
the event stream, and the quarantine. Systems (``events:collect``): ``POST /api/v1/events/batch``, a
Segment-style batch for one of the brand's sources, authenticated by API key — offline activities,
POS events, media delivery data. Errors here are problem details like the rest of ``/api/v1``.
"""

from __future__ import annotations

from datetime import timedelta
from enum import Enum
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from huiyuan.auth.deps import require
from huiyuan.events import repository, service, sources, spec
from huiyuan.events.models import EventDefinition, EventSource
from huiyuan.events.schemas import (
    ApproveIn,
    DefinitionIn,
    DefinitionOut,
    EventOut,
    IngestOut,
    QuarantinedOut,
    ReleaseIn,
    ReleaseOut,
    RevisionIn,
    SettingsIn,
    SettingsOut,
    SourceIn,
    SourceIssued,
    SourceOut,
    SourceUpdate,
    StatusIn,
    SystemBatchIn,
    UnplannedOut,
    ViolationStatOut,
)
from huiyuan.kit.clock import utcnow
from huiyuan.kit.errors import NotFound, ValidationFailed, field_error
from huiyuan.kit.pagination import Page, check_limit, cursor_page, decode_cursor
from huiyuan.kit.scope import Principal
from huiyuan.kit.web import SessionDep
from huiyuan.settings import get_settings

router = APIRouter(prefix="/api/v1")

Reader = Annotated[Principal, require("events:read")]
Writer = Annotated[Principal, require("events:write")]
Collector = Annotated[Principal, require("events:collect")]
SOURCE_TAGS: list[str | Enum] = ["event sources"]
PLAN_TAGS: list[str | Enum] = ["tracking plan"]
EVENT_TAGS: list[str | Enum] = ["events"]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "Not in this brand"}}


def _limit(limit: int) -> int:
    return check_limit(limit, get_settings().max_page_size)


# -- sources ----------------------------------------------------------------------------------------


def _source_out(source: EventSource) -> SourceOut:
    return SourceOut.model_validate(source, from_attributes=True)


@router.get("/event-sources", response_model=list[SourceOut], tags=SOURCE_TAGS, summary="List event sources")
def list_sources(session: SessionDep, actor: Reader) -> list[SourceOut]:
    return [_source_out(s) for s in sources.list_sources(session)]


@router.post(
    "/event-sources",
    response_model=SourceIssued,
    status_code=201,
    tags=SOURCE_TAGS,
    summary="Create an event source and its write key (shown once)",
)
def create_source(data: SourceIn, session: SessionDep, actor: Writer) -> SourceIssued:
    issued = sources.create_source(
        session, actor=actor, name=data.name, kind=data.kind, rate_limit=data.rate_limit, dedup=data.dedup
    )
    return SourceIssued(**_source_out(issued.source).model_dump(), write_key=issued.write_key)


@router.get(
    "/event-sources/{source_id}",
    response_model=SourceOut,
    tags=SOURCE_TAGS,
    summary="One event source",
    responses=NOT_FOUND,
)
def get_source(source_id: int, session: SessionDep, actor: Reader) -> SourceOut:
    return _source_out(sources.get_source(session, source_id))


@router.patch(
    "/event-sources/{source_id}",
    response_model=SourceOut,
    tags=SOURCE_TAGS,
    summary="Rename, change the rate limit or the de-duplication key, disable or enable",
    responses=NOT_FOUND,
)
def update_source(source_id: int, data: SourceUpdate, session: SessionDep, actor: Writer) -> SourceOut:
    source = sources.update_source(
        session,
        actor=actor,
        source_id=source_id,
        name=data.name,
        rate_limit=data.rate_limit or None,
        clear_rate_limit=data.rate_limit == "",
        status=data.status,
        dedup=data.dedup,
    )
    return _source_out(source)


@router.post(
    "/event-sources/{source_id}/revoke",
    response_model=SourceOut,
    tags=SOURCE_TAGS,
    summary="Revoke a source's write key for good",
    responses=NOT_FOUND,
)
def revoke_source(source_id: int, session: SessionDep, actor: Writer) -> SourceOut:
    return _source_out(sources.revoke_source(session, actor=actor, source_id=source_id))


# -- tracking plan ----------------------------------------------------------------------------------


def _definition_out(definition: EventDefinition) -> DefinitionOut:
    return DefinitionOut.model_validate(definition, from_attributes=True)


def _definition(session: SessionDep, definition_id: int) -> EventDefinition:
    definition = repository.definition_by_id(session, definition_id)
    if definition is None:
        raise NotFound("No such event definition.")
    return definition


@router.get(
    "/tracking-plan/settings", response_model=SettingsOut, tags=PLAN_TAGS, summary="Violation handling"
)
def get_plan_settings(session: SessionDep, actor: Reader) -> SettingsOut:
    row = service.event_settings(session, actor.scope.require_brand())
    return SettingsOut(
        brand_id=row.brand_id, violation_mode=row.violation_mode, unplanned_policy=row.unplanned_policy
    )


@router.put(
    "/tracking-plan/settings",
    response_model=SettingsOut,
    tags=PLAN_TAGS,
    summary="Flag or quarantine violations; whether unplanned events are violations",
)
def put_plan_settings(data: SettingsIn, session: SessionDep, actor: Writer) -> SettingsOut:
    row = service.update_settings(
        session, actor=actor, violation_mode=data.violation_mode, unplanned_policy=data.unplanned_policy
    )
    return SettingsOut(
        brand_id=row.brand_id, violation_mode=row.violation_mode, unplanned_policy=row.unplanned_policy
    )


@router.get(
    "/tracking-plan/events",
    response_model=list[DefinitionOut],
    tags=PLAN_TAGS,
    summary="The plan: the newest version of every planned event",
)
def list_definitions(
    session: SessionDep, actor: Reader, kind: str | None = None, status: str | None = None
) -> list[DefinitionOut]:
    return [_definition_out(d) for d in repository.current_definitions(session, kind=kind, status=status)]


@router.post(
    "/tracking-plan/events",
    response_model=DefinitionOut,
    status_code=201,
    tags=PLAN_TAGS,
    summary="Plan an event (version 1)",
    responses={409: {"description": "Already planned: publish a new version"}},
)
def define_event(data: DefinitionIn, session: SessionDep, actor: Writer) -> DefinitionOut:
    definition = service.define_event(
        session,
        actor=actor,
        name=data.name,
        kind=data.kind,
        properties=[p.model_dump(exclude_none=True) for p in data.properties],
        description=data.description,
        allow_additional=data.allow_additional,
    )
    return _definition_out(definition)


@router.get(
    "/tracking-plan/events/{definition_id}/versions",
    response_model=list[DefinitionOut],
    tags=PLAN_TAGS,
    summary="Every version of a planned event, newest first",
    responses=NOT_FOUND,
)
def list_versions(definition_id: int, session: SessionDep, actor: Reader) -> list[DefinitionOut]:
    definition = _definition(session, definition_id)
    return [
        _definition_out(d) for d in repository.versions(session, kind=definition.kind, name=definition.name)
    ]


@router.post(
    "/tracking-plan/events/{definition_id}/versions",
    response_model=DefinitionOut,
    status_code=201,
    tags=PLAN_TAGS,
    summary="Publish the next version of a planned event",
    responses=NOT_FOUND,
)
def revise_event(definition_id: int, data: RevisionIn, session: SessionDep, actor: Writer) -> DefinitionOut:
    definition = _definition(session, definition_id)
    revised = service.revise_event(
        session,
        actor=actor,
        name=definition.name,
        kind=definition.kind,
        properties=[p.model_dump(exclude_none=True) for p in data.properties],
        description=data.description,
        allow_additional=data.allow_additional,
    )
    return _definition_out(revised)


@router.post(
    "/tracking-plan/events/{definition_id}/status",
    response_model=DefinitionOut,
    tags=PLAN_TAGS,
    summary="Deprecate a planned event, or make it active again",
    responses=NOT_FOUND,
)
def set_status(definition_id: int, data: StatusIn, session: SessionDep, actor: Writer) -> DefinitionOut:
    definition = _definition(session, definition_id)
    changed = service.set_event_status(
        session, actor=actor, name=definition.name, kind=definition.kind, status=data.status
    )
    return _definition_out(changed)


@router.get(
    "/tracking-plan/unplanned",
    response_model=Page[UnplannedOut],
    tags=PLAN_TAGS,
    summary="Track events seen without a definition (waiting for approval)",
)
def list_unplanned(
    session: SessionDep,
    actor: Reader,
    status: str | None = "pending",
    cursor: str | None = None,
    limit: int = 50,
) -> Page[Any]:
    limit = _limit(limit)
    rows = repository.unplanned(
        session, status=status or None, after_id=decode_cursor(cursor), limit=limit + 1
    )
    return cursor_page(
        rows, limit, lambda shown: [UnplannedOut.model_validate(r, from_attributes=True) for r in shown]
    )


@router.post(
    "/tracking-plan/unplanned/{unplanned_id}/approve",
    response_model=DefinitionOut,
    status_code=201,
    tags=PLAN_TAGS,
    summary="Approve an unplanned event: it becomes a definition",
    responses={**NOT_FOUND, 409: {"description": "Already planned"}},
)
def approve_unplanned(
    unplanned_id: int, session: SessionDep, actor: Writer, data: ApproveIn | None = None
) -> DefinitionOut:
    data = data or ApproveIn()
    definition = service.approve_unplanned(
        session,
        actor=actor,
        unplanned_id=unplanned_id,
        properties=[p.model_dump(exclude_none=True) for p in data.properties]
        if data.properties is not None
        else None,
        description=data.description,
    )
    return _definition_out(definition)


@router.post(
    "/tracking-plan/unplanned/{unplanned_id}/ignore",
    response_model=UnplannedOut,
    tags=PLAN_TAGS,
    summary="Take an unplanned event off the approval list",
    responses=NOT_FOUND,
)
def ignore_unplanned(unplanned_id: int, session: SessionDep, actor: Writer) -> UnplannedOut:
    row = service.ignore_unplanned(session, actor=actor, unplanned_id=unplanned_id)
    return UnplannedOut.model_validate(row, from_attributes=True)


@router.get(
    "/tracking-plan/violations",
    response_model=list[ViolationStatOut],
    tags=PLAN_TAGS,
    summary="Violations per event, property and rule over the last days",
)
def violations(
    session: SessionDep, actor: Reader, days: Annotated[int, Query(ge=1, le=400)] = 7
) -> list[ViolationStatOut]:
    since = (utcnow() - timedelta(days=days - 1)).date()
    return [
        ViolationStatOut.model_validate(r, from_attributes=True)
        for r in repository.violation_stats(session, since=since)
    ]


# -- events -----------------------------------------------------------------------------------------


@router.get(
    "/events", response_model=Page[EventOut], tags=EVENT_TAGS, summary="The event stream, newest first"
)
def list_events(
    session: SessionDep,
    actor: Reader,
    type: str | None = None,
    event: str | None = None,
    user_id: str | None = None,
    anonymous_id: str | None = None,
    source_id: int | None = None,
    flagged: bool = False,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[Any]:
    limit = _limit(limit)
    rows = repository.events(
        session,
        type=type,
        event=event,
        user_id=user_id,
        anonymous_id=anonymous_id,
        source_id=source_id,
        flagged=flagged,
        before_id=decode_cursor(cursor),
        limit=limit + 1,
    )
    return cursor_page(
        rows, limit, lambda shown: [EventOut.model_validate(r, from_attributes=True) for r in shown]
    )


@router.get(
    "/events/quarantine",
    response_model=Page[QuarantinedOut],
    tags=EVENT_TAGS,
    summary="Quarantined events (kept out of the stream), newest first",
)
def list_quarantine(
    session: SessionDep, actor: Reader, event: str | None = None, cursor: str | None = None, limit: int = 50
) -> Page[Any]:
    limit = _limit(limit)
    rows = repository.quarantined(session, event=event, before_id=decode_cursor(cursor), limit=limit + 1)
    return cursor_page(
        rows, limit, lambda shown: [QuarantinedOut.model_validate(r, from_attributes=True) for r in shown]
    )


@router.post(
    "/events/quarantine/release",
    response_model=ReleaseOut,
    tags=EVENT_TAGS,
    summary="Move quarantined events into the stream (flagged if they still break the plan)",
)
def release(data: ReleaseIn, session: SessionDep, actor: Writer) -> ReleaseOut:
    return ReleaseOut(**service.release_quarantined(session, actor=actor, ids=data.ids, event=data.event))


async def _raw_body(request: Request) -> bytes:
    return await request.body()


@router.post(
    "/events/batch",
    response_model=IngestOut,
    tags=EVENT_TAGS,
    summary="Server-side events from a system (API key): a Segment batch for one of the brand's sources",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": SystemBatchIn.model_json_schema()}},
        }
    },
    responses={
        400: {"description": "Not JSON/gzip, over 500 KB, or a message over 32 KB"},
        404: {"description": "No such source in this brand"},
        429: {"description": "The source's rate limit; wait `Retry-After` seconds"},
    },
)
def system_batch(
    request: Request, session: SessionDep, actor: Collector, raw: Annotated[bytes, Depends(_raw_body)]
) -> IngestOut:
    body, size = spec.decode_body(raw, request.headers.get("content-encoding"))
    source_id = body.get("source_id")
    if not isinstance(source_id, int) or isinstance(source_id, bool):
        raise ValidationFailed("Name the source.", errors=[field_error("source_id", "an event source id")])
    env = spec.envelope(body, "batch", body_bytes=size)
    source = sources.source_for_system(session, source_id)
    plan = service.compiled_plan(session, source)
    return IngestOut(**service.ingest(session, source=source, env=env, plan=plan).body())

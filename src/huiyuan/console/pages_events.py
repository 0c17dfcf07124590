"""Console pages of events: the tracking plan (definitions with their typed properties and versions,
deprecate / reactivate), violations (counts per rule and the latest events that broke the plan,
flagged or quarantined), the quarantine (release), unplanned events awaiting approval (approve /
ignore, as HTMX row swaps), the live stream (a table polled every 3 s and events per minute over
the last hour as an ECharts bar chart) and the event sources (read-only).

Handlers call ``events.service`` verbs (which check ``events:write``, audit and change the plan
token) and the same ``events.repository`` reads as ``events.api``; the session's scope keeps every
read in the console's brand, so another brand's ids are 404. No queries or business rules here.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from huiyuan.console.deps import Console, requires
from huiyuan.console.forms import done, form_errors
from huiyuan.console.i18n import translate
from huiyuan.console.web import ConsoleRoute, is_htmx, render
from huiyuan.events import repository, service, sources
from huiyuan.events.models import DEFINITION_KINDS, MESSAGE_TYPES, UNPLANNED_STATUSES, EventDefinition
from huiyuan.events.plan import infer_properties
from huiyuan.kit.clock import utcnow
from huiyuan.kit.errors import AppError, NotFound

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

Reader = Annotated[Console, requires("events:read")]
Writer = Annotated[Console, requires("events:write")]

STREAM_ROWS = 50
RECENT_VIOLATIONS = 50
QUARANTINE_ROWS = 100
UNPLANNED_ROWS = 200
VIOLATION_DAYS = 7
CHART_MINUTES = 60


# -- helpers ---------------------------------------------------------------------------------------


def _has_brand(console: Console) -> bool:
    return console.brand_id is not None


def _clock(console: Console, value: datetime | None) -> str:
    """A stored UTC time to the second, in the brand's time zone (the stream needs seconds)."""
    if value is None:
        return "—"
    return value.astimezone(ZoneInfo(console.timezone())).strftime("%Y-%m-%d %H:%M:%S")


def _definition(console: Console, definition_id: int) -> EventDefinition:
    definition = repository.definition_by_id(console.session, definition_id)
    if definition is None:
        raise NotFound("No such event definition.")
    return definition


def _who(user_id: Any, anonymous_id: Any) -> dict[str, str | None]:
    return {
        "user_id": str(user_id) if user_id else None,
        "anonymous_id": str(anonymous_id) if anonymous_id else None,
    }


# -- tracking plan ---------------------------------------------------------------------------------


@router.get("/console/events")
def plan_page(request: Request, console: Reader, kind: str = "", status: str = "") -> Response:
    has_brand = _has_brand(console)
    rows = (
        repository.current_definitions(
            console.session,
            kind=kind if kind in DEFINITION_KINDS else None,
            status=status if status in ("active", "deprecated") else None,
        )
        if has_brand
        else []
    )
    settings = (
        service.event_settings(console.session, console.principal.scope.require_brand())
        if has_brand
        else None
    )
    context = {
        "has_brand": has_brand,
        "definitions": rows,
        "settings": settings,
        "kind": kind,
        "status": status,
        "kinds": DEFINITION_KINDS,
    }
    return render(request, "events_plan.html", context)


@router.get("/console/events/plan/{definition_id}")
def definition_page(request: Request, definition_id: int, console: Reader) -> Response:
    definition = _definition(console, definition_id)  # 404 for other brands' definitions
    versions = repository.versions(console.session, kind=definition.kind, name=definition.name)
    context = {
        "definition": definition,
        "versions": versions,
        "newest": versions[0] if versions else definition,
        "can_write": console.can("events:write"),
    }
    return render(request, "events_definition.html", context)


@router.post("/console/events/plan/{definition_id}/status")
def change_status(
    request: Request,
    definition_id: int,
    console: Writer,
    status: Annotated[str, Form(pattern="^(active|deprecated)$")],
) -> Response:
    definition = _definition(console, definition_id)
    newest = service.set_event_status(
        console.session, actor=console.principal, name=definition.name, kind=definition.kind, status=status
    )
    return done(request, f"/console/events/plan/{newest.id}")


# -- violations and the quarantine -----------------------------------------------------------------


@router.get("/console/events/violations")
def violations_page(request: Request, console: Reader) -> Response:
    has_brand = _has_brand(console)
    session = console.session
    stats: list[Any] = []
    recent: list[dict[str, Any]] = []
    if has_brand:
        since = (utcnow() - timedelta(days=VIOLATION_DAYS - 1)).date()
        stats = repository.violation_stats(session, since=since)
        for e in repository.events(session, flagged=True, limit=RECENT_VIOLATIONS):
            recent.append(
                {
                    "id": e.id,
                    "handling": "flagged",
                    "type": e.type,
                    "event": e.event,
                    **_who(e.user_id, e.anonymous_id),
                    "received_at": e.received_at,
                    "time": _clock(console, e.received_at),
                    "violations": e.violations or [],
                }
            )
        for q in repository.quarantined(session, event=None, before_id=None, limit=RECENT_VIOLATIONS):
            message = q.message if isinstance(q.message, dict) else {}
            recent.append(
                {
                    "id": q.id,
                    "handling": "quarantined",
                    "type": q.type,
                    "event": q.event,
                    **_who(message.get("userId"), message.get("anonymousId")),
                    "received_at": q.received_at,
                    "time": _clock(console, q.received_at),
                    "violations": q.violations or [],
                }
            )
        recent.sort(key=lambda r: r["received_at"], reverse=True)
    context = {
        "has_brand": has_brand,
        "stats": stats,
        "recent": recent[:RECENT_VIOLATIONS],
        "days": VIOLATION_DAYS,
    }
    return render(request, "events_violations.html", context)


def _quarantine_page(
    request: Request, console: Console, *, event: str = "", released: dict[str, int] | None = None
) -> Response:
    has_brand = _has_brand(console)
    rows = (
        repository.quarantined(console.session, event=event or None, before_id=None, limit=QUARANTINE_ROWS)
        if has_brand
        else []
    )
    context = {
        "has_brand": has_brand,
        "rows": [
            {"row": q, "time": _clock(console, q.received_at), "message": q.message or {}} for q in rows
        ],
        "event": event,
        "released": released,
        "can_write": console.can("events:write"),
        "limit": QUARANTINE_ROWS,
    }
    return render(request, "events_quarantine.html", context)


@router.get("/console/events/quarantine")
def quarantine_page(
    request: Request, console: Reader, event: Annotated[str, Query(max_length=200)] = ""
) -> Response:
    return _quarantine_page(request, console, event=event.strip())


@router.post("/console/events/quarantine/{quarantined_id}/release")
def release_quarantined(request: Request, quarantined_id: int, console: Writer) -> Response:
    found = repository.quarantined_for_release(console.session, ids=[quarantined_id], event=None, limit=1)
    if not found:
        raise NotFound("No such quarantined event.")  # also another brand's
    result = service.release_quarantined(console.session, actor=console.principal, ids=[quarantined_id])
    return _quarantine_page(request, console, released=result)


# -- unplanned events ------------------------------------------------------------------------------


def _unplanned_row(console: Console, row: Any, error: str | None = None) -> dict[str, Any]:
    return {
        "row": row,
        "inferred": infer_properties(row.sample),
        "can_write": console.can("events:write"),
        "error": error,
    }


@router.get("/console/events/unplanned")
def unplanned_page(request: Request, console: Reader, status: str = "pending") -> Response:
    has_brand = _has_brand(console)
    chosen = status if status in UNPLANNED_STATUSES else "pending"
    rows = (
        repository.unplanned(console.session, status=chosen, after_id=None, limit=UNPLANNED_ROWS)
        if has_brand
        else []
    )
    context = {
        "has_brand": has_brand,
        "status": chosen,
        "statuses": UNPLANNED_STATUSES,
        "items": [_unplanned_row(console, r) for r in rows],
    }
    return render(request, "events_unplanned.html", context)


def _decided(request: Request, console: Console, unplanned_id: int, error: AppError | None) -> Response:
    """After approve or ignore: the row again (HTMX), or back to the list."""
    if not is_htmx(request):
        if error is not None:
            raise error
        return RedirectResponse("/console/events/unplanned", status_code=303)
    row = repository.unplanned_by_id(console.session, unplanned_id)
    if row is None:
        raise NotFound("No such unplanned event.")
    # A refusal (already planned: 409) shows in the row; HTMX swaps only 2xx answers (and the
    # statuses console.js lets through), so the row comes back as 200 with the message.
    message = "; ".join(e["message"] for e in form_errors(error)) if error is not None else None
    return render(request, "events_unplanned_row.html", {"item": _unplanned_row(console, row, message)})


@router.post("/console/events/unplanned/{unplanned_id}/approve")
def approve_unplanned(request: Request, unplanned_id: int, console: Writer) -> Response:
    """Plan the event with the property types inferred from its sample (all optional)."""
    try:
        service.approve_unplanned(console.session, actor=console.principal, unplanned_id=unplanned_id)
    except AppError as exc:
        if isinstance(exc, NotFound) or not is_htmx(request):
            raise
        console.session.rollback()
        return _decided(request, console, unplanned_id, exc)
    return _decided(request, console, unplanned_id, None)


@router.post("/console/events/unplanned/{unplanned_id}/ignore")
def ignore_unplanned(request: Request, unplanned_id: int, console: Writer) -> Response:
    service.ignore_unplanned(console.session, actor=console.principal, unplanned_id=unplanned_id)
    return _decided(request, console, unplanned_id, None)


# -- live stream -----------------------------------------------------------------------------------


def _stream_rows(console: Console, type_: str, event: str) -> list[dict[str, Any]]:
    if not _has_brand(console):
        return []
    rows = repository.events(
        console.session,
        type=type_ if type_ in MESSAGE_TYPES else None,
        event=event or None,
        limit=STREAM_ROWS,
    )
    names = {s.id: s.name for s in sources.list_sources(console.session)}
    return [
        {
            "id": e.id,
            "type": e.type,
            "event": e.event,
            **_who(e.user_id, e.anonymous_id),
            "time": _clock(console, e.timestamp),
            "received": _clock(console, e.received_at),
            "source": names.get(e.source_id, str(e.source_id)),
            "violations": e.violations or [],
        }
        for e in rows
    ]


StreamType = Annotated[str, Query(max_length=16)]
StreamEvent = Annotated[str, Query(max_length=200)]


@router.get("/console/events/stream")
def stream_page(
    request: Request, console: Reader, type: StreamType = "", event: StreamEvent = ""
) -> Response:
    type_, event = type.strip(), event.strip()
    context = {
        "has_brand": _has_brand(console),
        "rows": _stream_rows(console, type_, event),
        "type": type_,
        "event": event,
        "types": MESSAGE_TYPES,
        "limit": STREAM_ROWS,
    }
    return render(request, "events_stream.html", context)


@router.get("/console/events/stream/rows")
def stream_rows(
    request: Request, console: Reader, type: StreamType = "", event: StreamEvent = ""
) -> Response:
    """The newest events alone (the table body), polled by the stream page every 3 seconds."""
    return render(
        request, "events_stream_rows.html", {"rows": _stream_rows(console, type.strip(), event.strip())}
    )


@router.get("/console/events/stream/minutes.json")
def stream_minutes(console: Reader) -> Response:
    """Chart data: the last hour's minutes (brand time) and the events received in each."""
    now = utcnow()
    last = int(now.timestamp()) // 60
    first = last - CHART_MINUTES + 1
    counts: dict[int, int] = {}
    if _has_brand(console):
        since = datetime.fromtimestamp(first * 60, tz=now.tzinfo)
        counts = dict(repository.events_per_minute(console.session, since=since))
    zone = ZoneInfo(console.timezone())
    minutes = list(range(first, last + 1))
    labels = [datetime.fromtimestamp(m * 60, tz=zone).strftime("%H:%M") for m in minutes]
    data = [counts.get(m, 0) for m in minutes]
    return JSONResponse(
        {
            "title": translate(console.lang, "events.per_minute"),
            "minutes": labels,
            "series": [{"name": translate(console.lang, "events.received"), "data": data}],
            "total": sum(data),
        }
    )


# -- sources ---------------------------------------------------------------------------------------


@router.get("/console/events/sources")
def sources_page(request: Request, console: Reader) -> Response:
    has_brand = _has_brand(console)
    rows = sources.list_sources(console.session) if has_brand else []
    return render(request, "events_sources.html", {"has_brand": has_brand, "sources": rows})

"""Journeys over the warehouse, as JSON or CSV: ``POST /api/v1/analytics/paths`` (event flows after
a start event or before an end event, shaped for a Sankey chart, with the top paths) and
``POST /api/v1/analytics/attribution`` (touches credited for goals under five models). The caller's
brand is the one analysed (``huiyuan.analytics.paths``, ``huiyuan.analytics.attribution``)."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel

from huiyuan.analytics import attribution as attr
from huiyuan.analytics import paths
from huiyuan.analytics.api import TAGS, Format, Reader, _events, _q
from huiyuan.kit import tables

router = APIRouter(prefix="/api/v1")
NOT_SYNCED: dict[int | str, dict[str, Any]] = {409: {"description": "The warehouse is not synced yet"}}


class NodeOut(BaseModel):
    name: str
    step: int
    event: str
    value: int
    people: int


class LinkOut(BaseModel):
    source: str
    target: str
    value: int
    people: int


class PathOut(BaseModel):
    events: list[str]
    sessions: int


class PathsOut(BaseModel):
    start: date
    end: date
    anchor: str
    direction: Literal["after", "before"]
    steps: int
    session_gap_minutes: int
    sessions: int
    people: int
    nodes: list[NodeOut]
    links: list[LinkOut]
    paths: list[PathOut]


@router.post(
    "/analytics/paths",
    response_model=PathsOut,
    tags=TAGS,
    summary="Event flow: top transitions after a start event or before an end event (Sankey; JSON or CSV)",
    responses={200: {"content": {"text/csv": {}}}, **NOT_SYNCED},
)
def paths_analysis(request: paths.PathsRequest, actor: Reader, format: Format = "json") -> Any:
    brand_id = actor.scope.require_brand()
    with _events() as events:
        chart = paths.sankey(_q(paths.flow, events, brand_id, request))
        path_rows = _q(paths.top_paths, events, brand_id, request) if request.top_paths else []
    top = paths.path_list(path_rows, request)
    if format == "csv":
        response: Response = tables.download(
            [
                (
                    "Links",
                    ("source", "target", "sessions", "people"),
                    [tuple(x.values()) for x in chart["links"]],
                ),
                (
                    "Nodes",
                    ("step", "event", "sessions", "people"),
                    [(n["step"], n["event"], n["value"], n["people"]) for n in chart["nodes"]],
                ),
                ("Top paths", ("path", "sessions"), [(" → ".join(p["events"]), p["sessions"]) for p in top]),
            ],
            f"paths-{request.start}-{request.end}",
            "csv",
        )
        return response
    return PathsOut(
        start=request.start,
        end=request.end,
        anchor=request.anchor.event,
        direction="after" if request.forwards else "before",
        steps=request.steps,
        session_gap_minutes=request.session_gap_minutes,
        sessions=chart["sessions"],
        people=chart["people"],
        nodes=chart["nodes"],
        links=chart["links"],
        paths=top,
    )


class SourceCreditOut(BaseModel):
    source: str
    touches: int
    conversions_touched: int
    first_touch_conversions: float
    first_touch_revenue: float
    last_touch_conversions: float
    last_touch_revenue: float
    linear_conversions: float
    linear_revenue: float
    position_based_conversions: float
    position_based_revenue: float
    time_decay_conversions: float
    time_decay_revenue: float


class GoalsOut(BaseModel):
    goals: int
    revenue: float
    attributed: int
    unattributed: int
    unattributed_revenue: float


class AttributionOut(BaseModel):
    start: date
    end: date
    goal: Literal["order", "event"]
    lookback_days: int
    half_life_days: float
    models: list[str]
    totals: GoalsOut
    items: list[SourceCreditOut]


def _rounded(row: dict[str, Any]) -> dict[str, Any]:
    """Revenue to the fen, credits to six places (floats; the credits are fractions)."""
    out: dict[str, Any] = {}
    for k, v in row.items():
        if k.endswith("revenue"):
            v = round(float(v or 0), 2)
        elif k.endswith("conversions"):
            v = round(float(v or 0), 6)
        out[k] = v
    return out


@router.post(
    "/analytics/attribution",
    response_model=AttributionOut,
    tags=TAGS,
    summary="Attribution: goals credited to touches (first, last, linear, position-based, time decay)",
    responses={200: {"content": {"text/csv": {}}}, **NOT_SYNCED},
)
def attribution_analysis(request: attr.AttributionRequest, actor: Reader, format: Format = "json") -> Any:
    brand_id = actor.scope.require_brand()
    with _events() as events:
        orders = events._find_backend().table("fact_orders")
        items = [_rounded(r) for r in _q(attr.attribution, events, orders, brand_id, request)]
        [row] = _q(attr.totals, events, orders, brand_id, request)
    totals = GoalsOut(
        goals=row["goals"] or 0,
        revenue=round(float(row["revenue"] or 0), 2),
        attributed=(row["goals"] or 0) - (row["unattributed"] or 0),
        unattributed=row["unattributed"] or 0,
        unattributed_revenue=round(float(row["unattributed_revenue"] or 0), 2),
    )
    if format == "csv":
        headers = tuple(SourceCreditOut.model_fields)
        response: Response = tables.download(
            [
                ("Attribution", headers, [tuple(r[h] for h in headers) for r in items]),
                ("Goals", tuple(GoalsOut.model_fields), [tuple(totals.model_dump().values())]),
            ],
            f"attribution-{request.start}-{request.end}",
            "csv",
        )
        return response
    return AttributionOut(
        start=request.start,
        end=request.end,
        goal=request.goal.kind,
        lookback_days=request.lookback_days,
        half_life_days=request.half_life_days,
        models=list(attr.MODELS),
        totals=totals,
        items=[SourceCreditOut(**r) for r in items],
    )

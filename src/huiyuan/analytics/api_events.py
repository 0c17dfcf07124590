"""Event analysis over the warehouse, as JSON or CSV: ``POST /api/v1/analytics/events`` (totals,
ranking, shares and the trend of each event series, optionally per property value or member
segment) and ``POST /api/v1/analytics/events/distribution`` (people per bucket of how often they did
an event). The caller's brand is the one analysed (``huiyuan.analytics.event_analysis``)."""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel

from huiyuan.analytics import event_analysis as ea
from huiyuan.analytics.api import TAGS, Format, Reader, _events, _plain, _q
from huiyuan.kit import tables

router = APIRouter(prefix="/api/v1")
TOTALS = ("series", "label", "group", "other", "value", "share", "overall", "rank")
WHOLE = ("count", "users", "distinct")  # measures that are whole numbers


class SeriesOut(BaseModel):
    series: int
    label: str
    event: str
    measure: str
    property: str | None


class TotalOut(BaseModel):
    series: int
    group: str | None
    other: bool
    value: int | float | None
    share: float | None
    overall: int | float | None
    rank: int


class TrendPointOut(BaseModel):
    series: int
    bucket: date
    group: str | None
    other: bool
    value: int | float | None


class EventAnalysisOut(BaseModel):
    start: date
    end: date
    granularity: str
    group_by: ea.GroupBy | None
    series: list[SeriesOut]
    totals: list[TotalOut]
    trend: list[TrendPointOut]


class BucketOut(BaseModel):
    bucket: int
    low: float
    high: float | None
    users: int
    share: float


class EventDistributionOut(BaseModel):
    event: str
    measure: str
    users: int
    items: list[BucketOut]


def _whole(rows: list[dict[str, Any]], request: ea.EventAnalysisRequest) -> list[dict[str, Any]]:
    for row in rows:
        if request.events[row["series"]].measure in WHOLE:
            for key in ("value", "overall"):
                if row.get(key) is not None:
                    row[key] = int(row[key])
    return rows


@router.post(
    "/analytics/events",
    response_model=EventAnalysisOut,
    tags=TAGS,
    summary="Event analysis: count, users, per user, sum / average / distinct of a property — totals, "
    "ranking, shares and trend, per property value or member segment (JSON or CSV)",
    responses={200: {"content": {"text/csv": {}}}, 409: {"description": "The warehouse is not synced yet"}},
)
def event_analysis(request: ea.EventAnalysisRequest, actor: Reader, format: Format = "json") -> Any:
    brand_id = actor.scope.require_brand()
    with _events() as events:
        extra = {}
        if request.group_by is not None and request.group_by.source == "member":
            extra["members"] = events._find_backend().table("dim_member")
        totals = _whole(_plain(_q(ea.totals, events, brand_id, request, **extra)), request)
        trend = _whole(_plain(_q(ea.trend, events, brand_id, request, **extra)), request)
    series = ea.series_info(request)
    if format == "csv":
        labels = [s["label"] for s in series]
        sections = [
            (
                "Event totals",
                TOTALS,
                [(t["series"], labels[t["series"]], *(t[k] for k in TOTALS[2:])) for t in totals],
            ),
            (
                "Event trend",
                ("series", "label", "bucket", "group", "other", "value"),
                [
                    (t["series"], labels[t["series"]], t["bucket"], t["group"], t["other"], t["value"])
                    for t in trend
                ],
            ),
        ]
        response: Response = tables.download(sections, f"events-{request.start}-{request.end}", "csv")
        return response
    return EventAnalysisOut(
        start=request.start,
        end=request.end,
        granularity=request.granularity,
        group_by=request.group_by,
        series=[SeriesOut(**s) for s in series],
        totals=[TotalOut(**t) for t in totals],
        trend=[TrendPointOut(**t) for t in trend],
    )


@router.post(
    "/analytics/events/distribution",
    response_model=EventDistributionOut,
    tags=TAGS,
    summary="People per bucket of how many times, on how many days, or for how much they did an event "
    "(JSON or CSV)",
    responses={200: {"content": {"text/csv": {}}}, 409: {"description": "The warehouse is not synced yet"}},
)
def event_distribution(request: ea.EventDistributionRequest, actor: Reader, format: Format = "json") -> Any:
    brand_id = actor.scope.require_brand()
    with _events() as events:
        rows = _plain(_q(ea.distribution, events, brand_id, request))
    if format == "csv":
        headers = ea.DISTRIBUTION_COLUMNS
        response: Response = tables.download(
            [("Event distribution", headers, [tuple(r[h] for h in headers) for r in rows])],
            f"events-distribution-{request.measure}-{request.start}-{request.end}",
            "csv",
        )
        return response
    return EventDistributionOut(
        event=request.event.event,
        measure=request.measure,
        users=sum(int(r["users"]) for r in rows),
        items=[BucketOut(**r) for r in rows],
    )

"""Analyses over the warehouse, as JSON or CSV: ``POST /api/v1/analytics/rfm`` (scores and segments
per member, with the segment summary), ``POST /api/v1/analytics/lifecycle``, the KPI family
``GET /api/v1/analytics/kpi[/trend|/breakdown|/contribution]``, ``POST /api/v1/analytics/funnel``,
``/retention``, ``/ltv/cohorts`` and ``/distribution``. The caller's brand
is the one analysed; the warehouse must have been synced (``huiyuan warehouse sync``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel

from huiyuan.analytics import engine, funnel, kpi, ltv, retention, rfm
from huiyuan.auth.deps import require
from huiyuan.kit import tables
from huiyuan.kit.errors import Conflict, ValidationFailed, field_error
from huiyuan.kit.scope import Principal
from huiyuan.settings import get_settings
from huiyuan.warehouse import connect

router = APIRouter(prefix="/api/v1")
Reader = Annotated[Principal, require("analytics:read")]
TAGS: list[str | Enum] = ["analytics"]
Format = Annotated[Literal["json", "csv"], Query(description="`csv` downloads the per-member table")]


class WarehouseNotReady(Conflict):
    code = "warehouse-not-ready"
    title = "The warehouse has not been synced yet"


@contextmanager
def _orders() -> Iterator[Any]:
    path = get_settings().warehouse_path
    if not Path(path).exists():
        raise WarehouseNotReady(
            f"No warehouse at {path}: run `huiyuan warehouse sync` (or wait for the job)."
        )
    con = connect(path)
    try:
        yield con.table("fact_orders")
    finally:
        con.disconnect()


def _records(expr: Any) -> list[dict[str, Any]]:
    return engine.records(expr)


def _q(fn: Any, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
    return engine.query(get_settings().warehouse_path, fn, *args, **kwargs)


class SegmentOut(BaseModel):
    segment: str
    label_zh: str
    label_en: str
    members: int
    share: float
    recency: float
    frequency: float
    monetary: float


class MemberRFMOut(BaseModel):
    member_id: int
    recency: int
    frequency: int
    monetary: float
    r: int
    f: int
    m: int
    segment: str


class RFMOut(BaseModel):
    as_of: str
    members: int
    segments: list[SegmentOut]
    items: list[MemberRFMOut]


LABELS = {code: (zh, en) for code, zh, en in rfm.SEGMENTS.values()}


@router.post(
    "/analytics/rfm",
    response_model=RFMOut,
    tags=TAGS,
    summary="RFM scores and the eight segments per member (JSON, or CSV of the members)",
    responses={200: {"content": {"text/csv": {}}}, 409: {"description": "The warehouse is not synced yet"}},
)
def rfm_analysis(request: rfm.RFMRequest, actor: Reader, format: Format = "json") -> Any:
    brand_id = actor.scope.require_brand()
    with _orders() as orders:
        scored = rfm.rfm(orders, brand_id, request)
        members = _q(rfm.rfm, orders, brand_id, request)
        summary = _records(rfm.segment_summary(scored))
    if format == "csv":
        headers = ("member_id", "recency_days", "frequency", "monetary", "r", "f", "m", "segment", "细分")
        rows = [
            (
                m["member_id"],
                m["recency"],
                m["frequency"],
                m["monetary"],
                m["r"],
                m["f"],
                m["m"],
                m["segment"],
                LABELS[m["segment"]][0],
            )
            for m in members
        ]
        response: Response = tables.download(
            [("RFM", headers, rows)], f"rfm-{request.as_of.isoformat()}", "csv"
        )
        return response
    return RFMOut(
        as_of=request.as_of.isoformat(),
        members=len(members),
        segments=[
            SegmentOut(label_zh=LABELS[s["segment"]][0], label_en=LABELS[s["segment"]][1], **s)
            for s in summary
        ],
        items=[MemberRFMOut(**m) for m in members],
    )


class StateOut(BaseModel):
    state: str
    label_zh: str
    label_en: str
    members: int


class MemberStateOut(BaseModel):
    member_id: int
    recency: int
    frequency: int
    monetary: float
    state: str


class LifecycleOut(BaseModel):
    as_of: str
    states: list[StateOut]
    items: list[MemberStateOut]


@router.post(
    "/analytics/lifecycle",
    response_model=LifecycleOut,
    tags=TAGS,
    summary="Lifecycle state per member (active, silent, sleeping, about to churn, churned)",
    responses={200: {"content": {"text/csv": {}}}, 409: {"description": "The warehouse is not synced yet"}},
)
def lifecycle_analysis(request: rfm.LifecycleRequest, actor: Reader, format: Format = "json") -> Any:
    brand_id = actor.scope.require_brand()
    with _orders() as orders:
        members = _q(rfm.lifecycle, orders, brand_id, request)
    if format == "csv":
        headers = ("member_id", "recency_days", "frequency", "monetary", "state", "状态")
        rows = [
            (
                m["member_id"],
                m["recency"],
                m["frequency"],
                m["monetary"],
                m["state"],
                rfm.LIFECYCLE_LABELS[m["state"]][0],
            )
            for m in members
        ]
        response: Response = tables.download(
            [("Lifecycle", headers, rows)], f"lifecycle-{request.as_of.isoformat()}", "csv"
        )
        return response
    counts = {state: 0 for state in rfm.LIFECYCLE}
    for m in members:
        counts[m["state"]] += 1
    return LifecycleOut(
        as_of=request.as_of.isoformat(),
        states=[
            StateOut(
                state=s, label_zh=rfm.LIFECYCLE_LABELS[s][0], label_en=rfm.LIFECYCLE_LABELS[s][1], members=n
            )
            for s, n in counts.items()
        ],
        items=[MemberStateOut(**m) for m in members],
    )


# -- KPI ---------------------------------------------------------------------------------------------

Start = Annotated[date, Query(description="First business day")]
End = Annotated[date, Query(description="Last business day (included)")]


def _period(start: date, end: date) -> kpi.Period:
    try:
        return kpi.Period(start=start, end=end)
    except ValueError as exc:
        raise ValidationFailed(
            "The period is not valid.", errors=[field_error("end", str(exc).split(", ", 1)[-1], "period")]
        ) from None


def _plain(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        clean: dict[str, Any] = {}
        for k, v in row.items():
            if isinstance(v, datetime):
                v = v.date()
            if isinstance(v, (float, Decimal)):
                v = round(float(v), 6)
            clean[k] = v
        out.append(clean)
    return out


def _table(name: str, rows: list[dict[str, Any]], filename: str) -> Response:
    headers = tuple(rows[0]) if rows else ("empty",)
    return tables.download([(name, headers, [tuple(r.values()) for r in rows])], filename, "csv")


class KPIOut(BaseModel):
    start: date
    end: date
    current: dict[str, Any]
    previous_period: dict[str, Any]
    previous_year: dict[str, Any]


@router.get(
    "/analytics/kpi",
    response_model=KPIOut,
    tags=TAGS,
    summary="Every KPI over a period, with the previous period and the same period a year before",
    responses={409: {"description": "The warehouse is not synced yet"}},
)
def kpi_totals(actor: Reader, start: Start, end: End) -> KPIOut:
    brand_id = actor.scope.require_brand()
    period = _period(start, end)
    with _orders() as orders:
        rows = {
            name: (_plain(_q(kpi.totals, orders, brand_id, p)) or [{}])[0]
            for name, p in (
                ("current", period),
                ("previous_period", period.previous("period")),
                ("previous_year", period.previous("year")),
            )
        }
    return KPIOut(start=start, end=end, **rows)


@router.get(
    "/analytics/kpi/trend",
    tags=TAGS,
    summary="KPIs per day, week (from Monday) or month (JSON or CSV)",
    responses={200: {"content": {"text/csv": {}}}, 409: {"description": "The warehouse is not synced yet"}},
)
def kpi_trend(
    actor: Reader, start: Start, end: End, grain: kpi.Grain = "day", format: Format = "json"
) -> Any:
    brand_id = actor.scope.require_brand()
    period = _period(start, end)
    with _orders() as orders:
        rows = _plain(_q(kpi.trend, orders, brand_id, period, grain))
    if format == "csv":
        return _table("KPI trend", rows, f"kpi-trend-{start}-{end}")
    return {"start": start, "end": end, "grain": grain, "items": rows}


@router.get(
    "/analytics/kpi/breakdown",
    tags=TAGS,
    summary="KPIs per channel, store or city (JSON or CSV)",
    responses={200: {"content": {"text/csv": {}}}, 409: {"description": "The warehouse is not synced yet"}},
)
def kpi_breakdown(
    actor: Reader,
    start: Start,
    end: End,
    dimension: Literal["channel", "store", "city"] = "channel",
    format: Format = "json",
) -> Any:
    brand_id = actor.scope.require_brand()
    period = _period(start, end)
    with _orders() as orders:
        stores = orders._find_backend().table("dim_store")
        rows = _plain(_q(kpi.breakdown, orders, brand_id, period, dimension, stores=stores))
    if format == "csv":
        return _table("KPI breakdown", rows, f"kpi-{dimension}-{start}-{end}")
    return {"start": start, "end": end, "dimension": dimension, "items": rows}


@router.get(
    "/analytics/kpi/contribution",
    tags=TAGS,
    summary="Which channels, stores or cities drove the change of sales, orders or units",
    responses={409: {"description": "The warehouse is not synced yet"}},
)
def kpi_contribution(
    actor: Reader,
    start: Start,
    end: End,
    dimension: Literal["channel", "store", "city"] = "channel",
    metric: Literal["sales", "orders", "units"] = "sales",
    against: Literal["period", "year"] = "period",
) -> Any:
    brand_id = actor.scope.require_brand()
    period = _period(start, end)
    with _orders() as orders:
        stores = orders._find_backend().table("dim_store")
        rows = _plain(
            _records(
                kpi.contribution(
                    orders, brand_id, period, dimension, metric=metric, against=against, stores=stores
                )
            )
        )
    return {
        "start": start,
        "end": end,
        "dimension": dimension,
        "metric": metric,
        "against": against,
        "items": rows,
    }


# -- funnel and retention ----------------------------------------------------------------------------


@contextmanager
def _events() -> Iterator[Any]:
    path = get_settings().warehouse_path
    if not Path(path).exists():
        raise WarehouseNotReady(
            f"No warehouse at {path}: run `huiyuan warehouse sync` (or wait for the job)."
        )
    con = connect(path)
    try:
        yield con.table("fact_events")
    finally:
        con.disconnect()


@router.post(
    "/analytics/funnel",
    tags=TAGS,
    summary="Funnel: people per step, overall and step-to-step rates, time to convert, trend (JSON or CSV)",
    responses={200: {"content": {"text/csv": {}}}, 409: {"description": "The warehouse is not synced yet"}},
)
def funnel_analysis(request: funnel.FunnelRequest, actor: Reader, format: Format = "json") -> Any:
    brand_id = actor.scope.require_brand()
    with _events() as events:
        rows = _plain(_q(funnel.funnel, events, brand_id, request))
        trend = _plain(_q(funnel.trend, events, brand_id, request, request.trend)) if request.trend else []
    steps = len(request.steps)
    rows = [{**r, **funnel.rates(r, steps)} for r in rows]
    if format == "csv":
        return _table("Funnel", rows, f"funnel-{request.start}-{request.end}")
    return {"steps": [s.event for s in request.steps], "mode": request.mode, "items": rows, "trend": trend}


@router.post(
    "/analytics/retention",
    tags=TAGS,
    summary="Retention: cohort table and the weighted curve (JSON, or CSV of the cohort table)",
    responses={200: {"content": {"text/csv": {}}}, 409: {"description": "The warehouse is not synced yet"}},
)
def retention_analysis(request: retention.RetentionRequest, actor: Reader, format: Format = "json") -> Any:
    brand_id = actor.scope.require_brand()
    with _events() as events:
        rows = _plain(_q(retention.retention, events, brand_id, request))
    if format == "csv":
        return _table("Retention", rows, f"retention-{request.start}-{request.end}")
    return {
        "unit": request.unit,
        "measure": request.measure,
        "cohort": request.cohort,
        "items": rows,
        "curve": retention.curve(rows, request.periods) if not request.breakdown else [],
    }


# -- LTV and distributions ---------------------------------------------------------------------------


@router.post(
    "/analytics/ltv/cohorts",
    tags=TAGS,
    summary="Cumulative net sales per member by months since joining, per enrolment month (JSON or CSV)",
    responses={200: {"content": {"text/csv": {}}}, 409: {"description": "The warehouse is not synced yet"}},
)
def ltv_cohorts(request: ltv.LTVRequest, actor: Reader, format: Format = "json") -> Any:
    brand_id = actor.scope.require_brand()
    with _orders() as orders:
        members = orders._find_backend().table("dim_member")
        rows = _plain(_q(ltv.cohort_ltv, orders, members, brand_id, request))
    if format == "csv":
        return _table("LTV", rows, f"ltv-{request.enrolled_from}-{request.enrolled_to}")
    return {"items": rows}


@router.post(
    "/analytics/distribution",
    tags=TAGS,
    summary="Members per bucket of their order count or net sales (JSON or CSV)",
    responses={200: {"content": {"text/csv": {}}}, 409: {"description": "The warehouse is not synced yet"}},
)
def member_distribution(request: ltv.DistributionRequest, actor: Reader, format: Format = "json") -> Any:
    brand_id = actor.scope.require_brand()
    with _orders() as orders:
        rows = _plain(_q(ltv.distribution, orders, brand_id, request))
    if format == "csv":
        return _table("Distribution", rows, f"distribution-{request.measure}-{request.start}-{request.end}")
    return {"measure": request.measure, "items": rows}

"""Console page of analyses over the warehouse: KPIs of a period against the period before and a
year before, the sales trend by week, the channel breakdown, RFM segments and lifecycle states
(ECharts), and the warehouse's freshness per table.

The page is static HTML; its charts fetch ``/console/analytics/data.json``, which calls the same
analysis functions as the API (``huiyuan.analytics.kpi`` and ``rfm``) for the console's brand.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import ibis
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from huiyuan.analytics import engine, kpi, rfm
from huiyuan.console.deps import Console, requires
from huiyuan.console.web import ConsoleRoute, render
from huiyuan.kit.clock import utcnow
from huiyuan.settings import get_settings
from huiyuan.warehouse import connect
from huiyuan.warehouse import sync as warehouse_sync

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
Reader = Annotated[Console, requires("analytics:read")]

KPI_CARDS = ("sales", "orders", "buyers", "aov", "aspt", "upt", "aspu", "discount_rate", "repurchase_rate")


def _default_period() -> tuple[date, date]:
    """The last 30 business days, in the platform's default time zone."""
    end = utcnow().astimezone(ZoneInfo(get_settings().default_timezone)).date()
    return end - timedelta(days=29), end


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (float, Decimal)):
        number = float(value)
        return None if number != number else round(number, 4)
    return value


def _rows(expr: Any) -> list[dict[str, Any]]:
    return [{k: _plain(v) for k, v in row.items()} for row in engine.records(expr)]


@router.get("/console/analytics")
def analytics_page(
    request: Request,
    console: Reader,
    start: Annotated[date | None, Query()] = None,
    end: Annotated[date | None, Query()] = None,
) -> Response:
    first, last = _default_period()
    start, end = start or first, end or last
    if end < start:
        start, end = end, start
    path = get_settings().warehouse_path
    return render(
        request,
        "analytics.html",
        {
            "has_brand": console.brand_id is not None,
            "start": start.isoformat(),
            "end": end.isoformat(),
            "freshness": warehouse_sync.freshness(path, brand_id=console.brand_id),
            "ready": Path(path).exists(),
            "cards": [(m, f"analytics.m.{m}") for m in KPI_CARDS],
        },
    )


@router.get("/console/analytics/data.json")
def analytics_data(
    console: Reader, start: Annotated[date, Query()], end: Annotated[date, Query()]
) -> Response:
    """Everything the page's charts draw, for the console's brand."""
    path = get_settings().warehouse_path
    if console.brand_id is None or not Path(path).exists():
        return JSONResponse({"ready": False})
    brand_id = console.brand_id
    period = kpi.Period(start=min(start, end), end=max(start, end))
    con = connect(path)
    try:
        orders = con.table("fact_orders")
        stores = con.table("dim_store")
        current = (_rows(kpi.totals(orders, brand_id, period)) or [{}])[0]
        previous = (_rows(kpi.totals(orders, brand_id, period.previous("period"))) or [{}])[0]
        year_ago = (_rows(kpi.totals(orders, brand_id, period.previous("year"))) or [{}])[0]
        trend = _rows(
            kpi.trend(orders, brand_id, period, "week" if (period.end - period.start).days > 62 else "day")
        )
        channels = _rows(kpi.breakdown(orders, brand_id, period, "channel", stores=stores))
        scored = rfm.rfm(orders, brand_id, rfm.RFMRequest(as_of=period.end))
        segments = _rows(rfm.segment_summary(scored))
        states = _rows(
            rfm.lifecycle(orders, brand_id, rfm.LifecycleRequest(as_of=period.end))
            .group_by("state")
            .aggregate(members=ibis._.member_id.count())
        )
    finally:
        con.disconnect()
    zh = console.lang == "zh"
    labels = {code: (z if zh else e) for code, z, e in rfm.SEGMENTS.values()}
    state_counts = {s["state"]: s["members"] for s in states}
    return JSONResponse(
        {
            "ready": True,
            "kpi": {"current": current, "previous": previous, "year_ago": year_ago},
            "trend": trend,
            "channels": channels,
            "segments": [{**s, "label": labels[s["segment"]]} for s in segments],
            "lifecycle": [
                {
                    "state": state,
                    "label": rfm.LIFECYCLE_LABELS[state][0 if zh else 1],
                    "members": state_counts.get(state, 0),
                }
                for state in rfm.LIFECYCLE
            ],
        }
    )

"""Console page of member tiers: the distribution of members per level over time (ECharts stacked
area), drawn from the daily snapshots through ``tiers.distribution``. No queries or
business rules here."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from huiyuan.console.deps import Console, requires
from huiyuan.console.i18n import translate
from huiyuan.console.web import ConsoleRoute, render
from huiyuan.tiers import distribution

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

Reader = Annotated[Console, requires("tiers:read")]


@router.get("/console/tiers")
def tiers_page(request: Request, console: Reader) -> Response:
    return render(request, "tiers.html", {"has_brand": console.brand_id is not None})


@router.get("/console/tiers/distribution.json")
def distribution_chart(
    console: Reader,
    from_: Annotated[date | None, Query(alias="from")] = None,
    to: Annotated[date | None, Query()] = None,
) -> Response:
    """Chart data: days on the x axis, one stacked series per level (base level first)."""
    if console.brand_id is None:
        return JSONResponse({"title": "", "days": [], "series": []})
    dist = distribution.distribution(console.session, actor=console.principal, start=from_, end=to)
    series = [
        {
            "code": lv.code,
            "name": lv.name_zh if console.lang == "zh" else lv.name_en,
            "data": dist.counts[lv.id],
        }
        for lv in dist.levels
    ]
    return JSONResponse(
        {
            "title": translate(console.lang, "tiers.chart_title"),
            "days": [d.isoformat() for d in dist.days],
            "series": series,
        }
    )

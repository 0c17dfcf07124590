"""Console page of click heatmaps (B3): for one page (or every page under a path prefix), its views
and click rate, the clicked elements, and the clicks binned into a grid over the page drawn as an
ECharts heatmap — with a CSV download of the same sections as ``POST
/api/v1/analytics/heatmap?format=csv``.

The handler builds ``heatmap.HeatmapRequest`` (the API's validation) and calls ``heatmap.summary``,
``elements`` and ``grid`` in-process for the console's brand. No queries or business rules here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError

from huiyuan.analytics import heatmap
from huiyuan.console.deps import Console, requires
from huiyuan.console.i18n import translate
from huiyuan.console.pages_analyses import blocked, errors_of, pct, query_string, today, warehouse
from huiyuan.console.web import ConsoleRoute, render
from huiyuan.kit import tables
from huiyuan.kit.errors import ValidationFailed

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
Reader = Annotated[Console, requires("analytics:read")]

MATCHES = ("exact", "prefix")
MODES = ("relative", "pixels")


@dataclass
class HeatmapForm:
    start: date | None = None
    end: date | None = None
    page: str = ""
    match: str = "exact"
    mode: str = "relative"
    cell: int = 50
    columns: int = 20
    rows: int = 30

    def complete(self, console: Console) -> HeatmapForm:
        end = self.end or today(console)
        return HeatmapForm(
            self.start or end - timedelta(days=29),
            end,
            self.page.strip(),
            self.match,
            self.mode,
            self.cell,
            self.columns,
            self.rows,
        )

    def request(self) -> heatmap.HeatmapRequest:
        return heatmap.HeatmapRequest.model_validate(
            {
                "start": self.start,
                "end": self.end,
                "page": self.page,
                "match": self.match,
                "grid": {"mode": self.mode, "cell": self.cell, "columns": self.columns, "rows": self.rows},
                "limit": 50,
            }
        )

    def query(self) -> str:
        return query_string({k: getattr(self, k) for k in self.__dataclass_fields__})


def heatmap_form(
    start: Annotated[date | None, Query()] = None,
    end: Annotated[date | None, Query()] = None,
    page: Annotated[str, Query(max_length=2000)] = "",
    match: Annotated[str, Query(max_length=10)] = "exact",
    mode: Annotated[str, Query(max_length=10)] = "relative",
    cell: Annotated[int, Query(ge=5, le=2000)] = 50,
    columns: Annotated[int, Query(ge=2, le=200)] = 20,
    rows: Annotated[int, Query(ge=2, le=1000)] = 30,
) -> HeatmapForm:
    return HeatmapForm(start, end, page, match, mode, cell, columns, rows)


def _run(
    form: HeatmapForm, brand_id: int
) -> tuple[heatmap.HeatmapRequest, dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    request = form.request()
    with warehouse() as wh:
        events = wh.table("fact_events")
        summary = (wh.rows(heatmap.summary, events, brand_id, request) or [{}])[0]
        elements = wh.rows(heatmap.elements, events, brand_id, request)
        cells = wh.rows(heatmap.grid, events, brand_id, request)
    return request, summary, elements, cells


def grid_option(lang: str, request: heatmap.HeatmapRequest, cells: list[dict[str, Any]]) -> dict[str, Any]:
    spec = request.grid
    if spec.mode == "relative":
        width, height = spec.columns, spec.rows
    else:
        width = max((c["cell_x"] for c in cells), default=0) + 1
        height = max((c["cell_y"] for c in cells), default=0) + 1
    return {
        "tooltip": {"position": "top"},
        "grid": {"left": 16, "right": 16, "top": 10, "bottom": 60, "containLabel": True},
        "xAxis": {"type": "category", "data": list(range(width)), "show": False},
        "yAxis": {"type": "category", "data": list(range(height)), "inverse": True, "show": False},
        "visualMap": {
            "min": 0,
            "max": max((c["clicks"] for c in cells), default=1),
            "calculable": True,
            "orient": "horizontal",
            "left": "center",
            "bottom": 0,
            "inRange": {"color": ["#fff7e6", "#f5a623", "#c0392b"]},
        },
        "series": [
            {
                "name": translate(lang, "analysis.clicks"),
                "type": "heatmap",
                "data": [[c["cell_x"], c["cell_y"], c["clicks"]] for c in cells],
            }
        ],
    }


@router.get("/console/analytics/heatmap")
def heatmap_page(
    request: Request, console: Reader, form: Annotated[HeatmapForm, Depends(heatmap_form)]
) -> Response:
    form = form.complete(console)
    context: dict[str, Any] = {"form": form, "matches": MATCHES, "modes": MODES, "blocked": blocked(console)}
    if context["blocked"] or console.brand_id is None:
        return render(request, "analytics_heatmap.html", context)
    if not form.page:
        return render(request, "analytics_heatmap.html", {**context, "prompt": True})
    try:
        req, summary, elements, cells = _run(form, console.brand_id)
    except ValidationError as exc:
        return render(request, "analytics_heatmap.html", {**context, "errors": errors_of(exc)}, status=422)
    return render(
        request,
        "analytics_heatmap.html",
        {
            **context,
            "summary": {
                **summary,
                "click_rate": pct(summary.get("click_rate")),
                "unique_click_rate": pct(summary.get("unique_click_rate")),
            },
            "elements": [
                {**e, "share": pct(e["share"]), "click_rate": pct(e["click_rate"])} for e in elements
            ],
            "empty": not summary.get("page_views") and not summary.get("clicks"),
            "option": grid_option(console.lang, req, cells) if cells else None,
            "csv": "/console/analytics/heatmap.csv?" + form.query(),
        },
    )


@router.get("/console/analytics/heatmap.csv")
def heatmap_csv(console: Reader, form: Annotated[HeatmapForm, Depends(heatmap_form)]) -> Response:
    form = form.complete(console)
    reason = blocked(console)
    if reason is not None or console.brand_id is None:
        raise ValidationFailed(translate(console.lang, reason or "common.choose_brand"))
    try:
        _, summary, elements, cells = _run(form, console.brand_id)
    except ValidationError as exc:
        raise ValidationFailed("; ".join(errors_of(exc))) from None
    return tables.download(
        [
            ("Summary", tuple(summary), [tuple(summary.values())]),
            (
                "Elements",
                tuple(elements[0]) if elements else ("selector",),
                [tuple(e.values()) for e in elements],
            ),
            ("Grid", tuple(cells[0]) if cells else ("cell_x",), [tuple(c.values()) for c in cells]),
        ],
        f"heatmap-{form.start}-{form.end}",
        "csv",
    )

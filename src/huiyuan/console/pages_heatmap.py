"""Console page of click heatmaps (B3): for one page (or every page under a path prefix), its views
and click rate, the clicked elements as a table, and an overlay in the page's shape — the clicks
binned into the grid as an ECharts heatmap, with each element's box drawn where the snippet saw it
and labelled with its selector, clicks and click rate — with a CSV download of the same sections
as ``POST /api/v1/analytics/heatmap?format=csv``.

The handler builds ``heatmap.HeatmapRequest`` (the API's validation) and calls ``heatmap.summary``,
``elements`` and ``grid`` in-process for the console's brand. No queries or business rules here.
"""

from __future__ import annotations

import math
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


MAX_ASPECT = 12.0  # the tallest page drawn in its own shape (height ÷ width); taller ones are squeezed
HEAT = ["#fff7e6", "#f5a623", "#c0392b"]


def _canvas(
    request: heatmap.HeatmapRequest,
    summary: dict[str, Any],
    elements: list[dict[str, Any]],
    cells: list[dict[str, Any]],
) -> tuple[int, int, float, float, float]:
    """Columns and rows of the grid, the extent of the page in the grid's units (``x_max``,
    ``y_max``) and its shape (height ÷ width): the grid's bands and the page span the same canvas,
    so a cell and a box at the same place in the page land on the same spot of the chart."""
    spec = request.grid
    page_w, page_h = summary.get("page_width"), summary.get("page_height")
    if spec.mode == "relative":
        aspect = page_h / page_w if page_w and page_h else spec.rows / spec.columns
        return spec.columns, spec.rows, 1.0, 1.0, min(aspect, MAX_ASPECT)
    boxes = [e for e in elements if e.get("left") is not None and e.get("width") is not None]
    right = max(
        [page_w or 0.0]
        + [(c["cell_x"] + 1) * spec.cell for c in cells]
        + [e["left"] + e["width"] for e in boxes]
    )
    bottom = max(
        [page_h or 0.0]
        + [(c["cell_y"] + 1) * spec.cell for c in cells]
        + [e["top"] + e["height"] for e in boxes if e.get("top") is not None and e.get("height") is not None]
    )
    columns, rows = max(1, math.ceil(right / spec.cell)), max(1, math.ceil(bottom / spec.cell))
    return columns, rows, float(columns * spec.cell), float(rows * spec.cell), min(rows / columns, MAX_ASPECT)


def _box_label(element: dict[str, Any]) -> str:
    selector = element["selector"] or "—"
    if len(selector) > 40:
        selector = "…" + selector[-39:]
    rate = pct(element["click_rate"])
    return f"{selector} · {element['clicks']}" + (f" · {rate:.1f}%" if rate is not None else "")


def box_text(element: dict[str, Any], mode: str) -> str:
    """An element's box for the table: ``left, top · width × height`` in pixels, or in percent of
    the page in ``relative`` mode; ``—`` when no click recorded it."""
    if any(element.get(k) is None for k in ("left", "top", "width", "height")):
        return "—"
    values = [float(element[k]) for k in ("left", "top", "width", "height")]
    if mode == "relative":
        left, top, width, height = (f"{v * 100:.1f}%" for v in values)
    else:
        left, top, width, height = (f"{v:,.0f}" for v in values)
    return f"{left}, {top} · {width} × {height}"


def overlay_option(
    lang: str,
    request: heatmap.HeatmapRequest,
    summary: dict[str, Any],
    elements: list[dict[str, Any]],
    cells: list[dict[str, Any]],
) -> tuple[dict[str, Any], float]:
    """The clicks over a page-shaped canvas: the grid's cells as a heatmap (category axes, one band
    per cell) and, on value axes spanning the same rectangle, each element's box drawn where the
    snippet saw it, labelled with its selector, clicks and click rate. With the page's shape
    (height ÷ width) for the chart's box."""
    columns, rows, x_max, y_max, aspect = _canvas(request, summary, elements, cells)
    frame = {"left": 1, "right": 1, "top": 1, "bottom": 1}
    boxes = [
        e
        for e in elements
        if all(e.get(k) is not None for k in ("left", "top", "width", "height")) and e["width"] > 0
    ]
    option = {
        "tooltip": {"trigger": "item"},
        "grid": [frame, {**frame, "show": True, "borderColor": "#c9ced6", "borderWidth": 1}],
        "xAxis": [
            {"type": "category", "data": list(range(columns)), "show": False, "gridIndex": 0},
            {"type": "value", "min": 0, "max": x_max, "show": False, "gridIndex": 1},
        ],
        "yAxis": [
            {"type": "category", "data": list(range(rows)), "inverse": True, "show": False, "gridIndex": 0},
            {"type": "value", "min": 0, "max": y_max, "inverse": True, "show": False, "gridIndex": 1},
        ],
        "visualMap": {
            "show": False,
            "seriesIndex": 0,
            "min": 0,
            "max": max((c["clicks"] for c in cells), default=1),
            "inRange": {"color": HEAT},
        },
        "series": [
            {
                "name": translate(lang, "analysis.clicks"),
                "type": "heatmap",
                "z": 1,  # under the element boxes and their labels
                "xAxisIndex": 0,
                "yAxisIndex": 0,
                "data": [[c["cell_x"], c["cell_y"], c["clicks"]] for c in cells],
            },
            {
                "name": translate(lang, "analysis.element_boxes"),
                "type": "scatter",
                "xAxisIndex": 1,
                "yAxisIndex": 1,
                "data": [],
                "z": 3,
                "markArea": {
                    "itemStyle": {
                        "color": "rgba(31, 111, 235, 0.06)",
                        "borderColor": "#1f6feb",
                        "borderWidth": 1,
                    },
                    "label": {
                        "show": True,
                        "position": "insideTopLeft",
                        "fontSize": 11,
                        "color": "#1f3a5f",
                        "backgroundColor": "rgba(255, 255, 255, 0.85)",
                        "padding": [1, 3],
                    },
                    "data": [
                        [
                            {"name": _box_label(e), "coord": [e["left"], e["top"]]},
                            {"coord": [round(e["left"] + e["width"], 6), round(e["top"] + e["height"], 6)]},
                        ]
                        for e in boxes
                    ],
                },
            },
        ],
    }
    return option, aspect


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
    option: dict[str, Any] | None = None
    aspect = 1.0
    if cells or any(e.get("width") for e in elements):
        option, aspect = overlay_option(console.lang, req, summary, elements, cells)
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
                {
                    **e,
                    "share": pct(e["share"]),
                    "click_rate": pct(e["click_rate"]),
                    "box": box_text(e, req.grid.mode),
                }
                for e in elements
            ],
            "empty": not summary.get("page_views") and not summary.get("clicks"),
            "option": option,
            "aspect": aspect,
            "max_clicks": max((c["clicks"] for c in cells), default=0),
            "heat": HEAT,
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

"""``POST /api/v1/analytics/heatmap``: a page's click heatmap from the synced warehouse — views and
click rate, the page's typical size, the clicked elements with their position and box, and the
clicks per grid cell (boxes and cells in the same units, so they overlay) — as JSON, or as CSV (the
summary, the element table, then the grid). The caller's brand is the one analysed."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict

from huiyuan.analytics import heatmap
from huiyuan.analytics.api import TAGS, Reader, _events, _plain, _q
from huiyuan.kit import tables

router = APIRouter(prefix="/api/v1")
Format = Annotated[
    Literal["json", "csv"], Query(description="`csv` downloads the element table, then the grid")
]


class HeatmapSummaryOut(BaseModel):
    page_views: int
    viewers: int
    clicks: int
    clickers: int
    click_rate: float | None
    unique_click_rate: float | None
    page_width: float | None
    page_height: float | None
    unplaced: int


class ElementOut(BaseModel):
    selector: str | None
    text: str
    clicks: int
    clickers: int
    click_rate: float | None
    share: float | None
    mean_x: float | None
    mean_y: float | None
    median_x: float | None
    median_y: float | None
    left: float | None
    top: float | None
    width: float | None
    height: float | None


class CellOut(BaseModel):
    cell_x: int
    cell_y: int
    left: float
    top: float
    clicks: int
    share: float


class HeatmapOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "page": "/",
                    "match": "exact",
                    "start": "2026-06-01",
                    "end": "2026-06-30",
                    "grid": {"mode": "pixels", "cell": 50, "columns": 20, "rows": 40},
                    "summary": {
                        "page_views": 1200,
                        "viewers": 800,
                        "clicks": 300,
                        "clickers": 210,
                        "click_rate": 0.25,
                        "unique_click_rate": 0.2625,
                        "page_width": 1280.0,
                        "page_height": 3400.0,
                        "unplaced": 0,
                    },
                    "elements": [
                        {
                            "selector": "#banner",
                            "text": "立即抢购",
                            "clicks": 120,
                            "clickers": 95,
                            "click_rate": 0.1,
                            "share": 0.4,
                            "mean_x": 410.5,
                            "mean_y": 182.0,
                            "median_x": 402.0,
                            "median_y": 180.0,
                            "left": 240.0,
                            "top": 120.0,
                            "width": 800.0,
                            "height": 120.0,
                        }
                    ],
                    "cells": [
                        {"cell_x": 8, "cell_y": 3, "left": 400, "top": 150, "clicks": 96, "share": 0.32}
                    ],
                }
            ]
        }
    )

    page: str
    match: str
    start: str
    end: str
    grid: heatmap.Grid
    summary: HeatmapSummaryOut
    elements: list[ElementOut]
    cells: list[CellOut]


SUMMARY_COLUMNS = tuple(k for k in HeatmapSummaryOut.model_fields if k != "unplaced")
ELEMENT_COLUMNS = tuple(ElementOut.model_fields)
CELL_COLUMNS = tuple(CellOut.model_fields)


@router.post(
    "/analytics/heatmap",
    response_model=HeatmapOut,
    tags=TAGS,
    summary="Click heatmap of a page: views, click rate, clicked elements with their boxes, and clicks "
    "per grid cell",
    responses={200: {"content": {"text/csv": {}}}, 409: {"description": "The warehouse is not synced yet"}},
)
def heatmap_analysis(request: heatmap.HeatmapRequest, actor: Reader, format: Format = "json") -> Any:
    brand_id = actor.scope.require_brand()
    with _events() as events:
        [summary] = _plain(_q(heatmap.summary, events, brand_id, request))
        elements = _plain(_q(heatmap.elements, events, brand_id, request))
        cells = _plain(_q(heatmap.grid, events, brand_id, request))
    if format == "csv":
        sections: list[tables.Section] = [
            ("Summary", SUMMARY_COLUMNS, [tuple(summary[k] for k in SUMMARY_COLUMNS)]),
            ("Elements", ELEMENT_COLUMNS, [tuple(e[k] for k in ELEMENT_COLUMNS) for e in elements]),
            ("Grid", CELL_COLUMNS, [tuple(c[k] for k in CELL_COLUMNS) for c in cells]),
        ]
        return tables.download(sections, f"heatmap-{request.start}-{request.end}", "csv")
    placed = sum(c["clicks"] for c in cells)
    return HeatmapOut(
        page=request.page,
        match=request.match,
        start=request.start.isoformat(),
        end=request.end.isoformat(),
        grid=request.grid,
        summary=HeatmapSummaryOut(**summary, unplaced=summary["clicks"] - placed),
        elements=[ElementOut(**e) for e in elements],
        cells=[CellOut(**c) for c in cells],
    )

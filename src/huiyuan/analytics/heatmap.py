"""Click heatmaps over the warehouse's ``fact_events``, written once with Ibis: for one page (or every
page under a path prefix) and a range of business days, how often it was viewed, which elements were
clicked how often and where, and the clicks binned into a grid over the page.

What the browser snippet sends (``huiyuan.events.snippet``): page views (``page_view``, the page's
``path`` and ``url`` in the properties) and ``Element Clicked`` events with the element's CSS
``selector`` and ``text``, the page position ``x``/``y`` and the viewport and page size.

* **The page of a click** is its ``path`` property, else ``context.page.path``, else the path of the
  person's latest page view before it (by time, then event id) inside the range: clicks sent without
  page information (older snippets, the demo's data) belong to the page the person was on.
* **Page views** are ``page_view`` events whose ``path`` property (else ``context.page.path``) is
  the page; **click rate** = clicks ÷ page views, **unique click rate** = clickers ÷ viewers
  (distinct ``person_key``).
* **Elements** are (selector, text) pairs; their position is the mean and median of the clicks'
  ``x``/``y`` (page pixels). Their **box** is where the snippet saw the element: per click
  ``x − offset_x``, ``y − offset_y``, ``element_width``, ``element_height``, in the grid's units
  (pixels, or fractions of that click's page width and height in ``relative``); an element's box
  is the median of each of the four over its clicks (null when no click recorded it).
* **The page's size** (for drawing the overlay with the page's shape) is the median page width
  (else viewport width) and page height over the clicks that recorded them.
* **Grid**: ``pixels`` bins ``x``/``y`` into squares of ``cell`` pixels; ``relative`` bins
  ``x ÷ page width`` (the viewport width when the page width is missing) into ``columns`` and
  ``y ÷ page height`` into ``rows``, so screens of different sizes fall on the same grid. Clicks
  without the position (or, in ``relative``, without the page size) are left out of the grid.

The brand is filtered here from the caller's scope (``brand_id``), like every analysis; the module
never reads OLTP tables.
"""

from __future__ import annotations

from datetime import date
from typing import Literal
from urllib.parse import urlsplit

import ibis
import ibis.expr.types as ir
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

CLICK_EVENT = "Element Clicked"
PAGE_VIEW_EVENT = "page_view"


class Grid(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["pixels", "relative"] = "pixels"
    cell: int = Field(default=50, ge=5, le=2_000, description="pixels: the side of a square cell")
    columns: int = Field(default=20, ge=2, le=200, description="relative: cells across the page width")
    rows: int = Field(default=40, ge=2, le=1_000, description="relative: cells down the page height")


class HeatmapRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "start": "2026-06-01",
                    "end": "2026-06-30",
                    "page": "/",
                    "match": "exact",
                    "grid": {"mode": "pixels", "cell": 50},
                    "limit": 100,
                }
            ]
        },
    )

    start: date
    end: date
    page: str = Field(
        min_length=1,
        max_length=2_000,
        description="A path (``/p/123``) or a full URL, of which only the path is compared",
    )
    match: Literal["exact", "prefix"] = Field(
        default="exact", description="prefix: every page whose path starts with ``page``"
    )
    grid: Grid = Field(default_factory=Grid)
    limit: int = Field(default=100, ge=1, le=1_000, description="The most clicked elements returned")

    @field_validator("page")
    @classmethod
    def _path_only(cls, value: str) -> str:
        if "://" in value:
            value = urlsplit(value).path or "/"
        if not value.startswith("/"):
            raise ValueError("page must be a path starting with / or a full URL")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> HeatmapRequest:
        if self.end < self.start:
            raise ValueError("end must not be before start")
        return self


def _key(day: date) -> int:
    return day.year * 10_000 + day.month * 100 + day.day


def _ratio(part: ir.NumericValue, whole: ir.NumericValue | int) -> ir.FloatingValue:
    """``part ÷ whole`` as a float (PostgreSQL divides integers as integers), null when whole is 0."""
    denominator = whole if isinstance(whole, int) else whole.nullif(0)
    return part.cast("float64") / denominator


def _own_path(t: ir.Table) -> ir.StringValue:
    return ibis.coalesce(t.properties["path"].str, t.context["page"]["path"].str)


def _on_page(path: ir.StringValue, request: HeatmapRequest) -> ir.BooleanValue:
    if request.match == "prefix":
        return path.startswith(request.page)
    return path == request.page


def _in_range(events: ir.Table, brand_id: int, request: HeatmapRequest) -> ir.Table:
    brand = events.filter(
        events.brand_id == brand_id,
        events.date_key >= _key(request.start),
        events.date_key <= _key(request.end),
    )
    return brand.filter(brand.event.isin([PAGE_VIEW_EVENT, CLICK_EVENT]))


def page_views(events: ir.Table, brand_id: int, request: HeatmapRequest) -> ir.Table:
    """One row per view of the page: ``person``."""
    t = _in_range(events, brand_id, request)
    views = t.filter(t.event == PAGE_VIEW_EVENT)
    views = views.filter(_on_page(_own_path(views), request))
    return views.select(person=views.person_key)


def clicks(events: ir.Table, brand_id: int, request: HeatmapRequest) -> ir.Table:
    """One row per click on the page: ``person``, ``selector``, ``text`` (empty when none), page
    position ``x``/``y``, ``width``/``height`` of the page (width falling back to the viewport's),
    and the element's box in page pixels ``box_left``, ``box_top``, ``box_width``, ``box_height``."""
    t = _in_range(events, brand_id, request)
    t = t.mutate(own_path=_own_path(t), is_view=(t.event == PAGE_VIEW_EVENT).ifelse(1, 0))
    # Each event carries the number of page views the person has had so far in the range; a click
    # without a path of its own takes the path of the view with the same number (the latest before).
    t = t.mutate(view_no=t.is_view.cumsum(group_by=t.person_key, order_by=[t.ts, t.event_id]))
    views = t.filter(t.is_view == 1)
    views = views.select(v_person=views.person_key, v_no=views.view_no, v_path=views.own_path)
    raw = t.filter(t.is_view == 0)
    joined = raw.left_join(views, [raw.person_key == views.v_person, raw.view_no == views.v_no])
    p = joined.properties
    placed = joined.select(
        person=joined.person_key,
        path=ibis.coalesce(joined.own_path, joined.v_path),
        selector=p["selector"].str,
        text=ibis.coalesce(p["text"].str, ""),
        x=p["x"].float,
        y=p["y"].float,
        width=ibis.coalesce(p["page_width"].float, p["viewport_width"].float),
        height=p["page_height"].float,
        box_left=p["x"].float - p["offset_x"].float,
        box_top=p["y"].float - p["offset_y"].float,
        box_width=p["element_width"].float,
        box_height=p["element_height"].float,
    )
    return placed.filter(_on_page(placed.path, request)).drop("path")


def summary(events: ir.Table, brand_id: int, request: HeatmapRequest) -> ir.Table:
    """One row: ``page_views``, ``viewers``, ``clicks``, ``clickers``, ``click_rate`` (clicks ÷
    page views) and ``unique_click_rate`` (clickers ÷ viewers), null without views; the page's
    median ``page_width`` and ``page_height`` (pixels; null when no click recorded them)."""
    v = page_views(events, brand_id, request)
    c = clicks(events, brand_id, request)
    seen = v.aggregate(page_views=v.count(), viewers=v.person.nunique())
    clicked = c.aggregate(
        clicks=c.count(),
        clickers=c.person.nunique(),
        page_width=c.width.quantile(0.5),
        page_height=c.height.quantile(0.5),
    )
    both = seen.cross_join(clicked)
    return both.select(
        "page_views",
        "viewers",
        "clicks",
        "clickers",
        click_rate=_ratio(both.clicks, both.page_views),
        unique_click_rate=_ratio(both.clickers, both.viewers),
        page_width=both.page_width.cast("float64"),
        page_height=both.page_height.cast("float64"),
    )


def elements(events: ir.Table, brand_id: int, request: HeatmapRequest) -> ir.Table:
    """Per element (``selector``, ``text``), the most clicked first (at most ``limit``): ``clicks``,
    ``clickers``, ``click_rate`` (÷ the page's views), ``share`` of the page's clicks, the mean
    and median position ``mean_x``, ``mean_y``, ``median_x``, ``median_y``, and the element's box
    ``left``, ``top``, ``width``, ``height`` in the grid's units."""
    v = page_views(events, brand_id, request)
    c = clicks(events, brand_id, request)
    if request.grid.mode == "pixels":
        box = {"left": c.box_left, "top": c.box_top, "width": c.box_width, "height": c.box_height}
    else:
        page_w, page_h = c.width.nullif(0), c.height.nullif(0)
        box = {
            "left": c.box_left / page_w,
            "top": c.box_top / page_h,
            "width": c.box_width / page_w,
            "height": c.box_height / page_h,
        }
    per = c.group_by(["selector", "text"]).aggregate(
        clicks=c.count(),
        clickers=c.person.nunique(),
        mean_x=c.x.mean(),
        mean_y=c.y.mean(),
        median_x=c.x.quantile(0.5),
        median_y=c.y.quantile(0.5),
        **{f"box_{k}": value.quantile(0.5) for k, value in box.items()},
    )
    totals = v.aggregate(views=v.count()).cross_join(c.aggregate(total=c.count()))
    out = per.cross_join(totals)
    out = out.select(
        "selector",
        "text",
        "clicks",
        "clickers",
        click_rate=_ratio(out.clicks, out.views),
        share=_ratio(out.clicks, out.total),
        mean_x=out.mean_x,
        mean_y=out.mean_y,
        median_x=out.median_x,
        median_y=out.median_y,
        left=out.box_left.cast("float64"),
        top=out.box_top.cast("float64"),
        width=out.box_width.cast("float64"),
        height=out.box_height.cast("float64"),
    )
    return out.order_by([ibis.desc("clicks"), "selector", "text"]).limit(request.limit)


def grid(events: ir.Table, brand_id: int, request: HeatmapRequest) -> ir.Table:
    """Clicks per grid cell: ``cell_x``, ``cell_y`` (from 0, left to right and top to bottom),
    ``left``/``top`` of the cell (pixels, or fractions of the page in ``relative`` mode), ``clicks``
    and ``share`` of the placed clicks; only cells with clicks, top row first."""
    c = clicks(events, brand_id, request)
    spec = request.grid
    c = c.filter(c.x.notnull(), c.y.notnull())
    if spec.mode == "pixels":
        cx = (c.x.clip(lower=0) / spec.cell).floor()
        cy = (c.y.clip(lower=0) / spec.cell).floor()
    else:
        c = c.filter(c.width > 0, c.height > 0)
        # A click on the last pixel (x = width) still falls in the last column.
        cx = (c.x.clip(lower=0) / c.width * spec.columns).floor().clip(upper=spec.columns - 1)
        cy = (c.y.clip(lower=0) / c.height * spec.rows).floor().clip(upper=spec.rows - 1)
    binned = c.mutate(cell_x=cx.cast("int64"), cell_y=cy.cast("int64"))
    cells = binned.group_by(["cell_x", "cell_y"]).aggregate(clicks=binned.count())
    cells = cells.mutate(share=_ratio(cells.clicks, cells.clicks.sum().over()))
    if spec.mode == "pixels":
        left, top = cells.cell_x * spec.cell, cells.cell_y * spec.cell
    else:
        left, top = _ratio(cells.cell_x, spec.columns), _ratio(cells.cell_y, spec.rows)
    cells = cells.select("cell_x", "cell_y", left=left, top=top, clicks=cells.clicks, share=cells.share)
    return cells.order_by(["cell_y", "cell_x"])

"""Console page of retention (B3): the cohort table as a heatmap, the weighted retention curve and,
optionally, a breakdown by a property of the cohort-defining start event — per value its people,
cohort sizes and retention by period (a table and one curve per value) — with CSV downloads.

The handlers build ``retention.RetentionRequest`` (the API's validation) and call
``retention.retention`` in-process for the console's brand, as ``POST /api/v1/analytics/retention``
does; a value's curve is ``retention.curve`` over that value's cohort rows. The page keeps the
values with the most people and folds the rest into one "other" group: every cohort entry has one
value, so its rows simply join the others' (counts add up, the curve stays weighted by cohort size).
No queries or business rules here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError

from huiyuan.analytics import retention
from huiyuan.console.deps import Console
from huiyuan.console.i18n import translate
from huiyuan.console.pages_analyses import (
    UNITS,
    Reader,
    _brand,
    _page,
    bar_option,
    blocked,
    breakdown_label,
    csv,
    errors_of,
    event_names,
    pct,
    query_string,
    today,
    warehouse,
)
from huiyuan.console.web import ConsoleRoute
from huiyuan.kit.errors import ValidationFailed

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

MEASURES = ("on", "on_or_after")
TOP_VALUES = 10


@dataclass
class RetentionForm:
    start: date | None = None
    end: date | None = None
    as_of: date | None = None
    start_event: str = ""
    return_event: str = ""
    unit: str = "week"
    periods: int = 8
    measure: str = "on"
    breakdown: str = ""
    top: int = TOP_VALUES

    def complete(self, console: Console) -> RetentionForm:
        now = today(console)
        end = self.end or now
        return RetentionForm(
            start=self.start or end - timedelta(days=55),
            end=end,
            as_of=self.as_of or max(end, now),
            start_event=self.start_event.strip(),
            return_event=self.return_event.strip(),
            unit=self.unit,
            periods=self.periods,
            measure=self.measure,
            breakdown=self.breakdown.strip(),
            top=self.top,
        )

    def request(self, *, breakdown: bool = False) -> retention.RetentionRequest:
        """The cohort table, or (``breakdown``) the cohort table per value of the chosen property."""
        return retention.RetentionRequest.model_validate(
            {
                "start": self.start,
                "end": self.end,
                "as_of": self.as_of,
                "start_event": {"event": self.start_event},
                "return_event": {"event": self.return_event},
                "unit": self.unit,
                "periods": self.periods,
                "measure": self.measure,
                **({"breakdown": self.breakdown} if breakdown else {}),
            }
        )

    def query(self, *, breakdown: bool = True) -> str:
        values = {k: getattr(self, k) for k in self.__dataclass_fields__}
        if not (breakdown and self.breakdown):
            values.update(breakdown="", top="")
        return query_string(values)


def retention_form(
    start: Annotated[date | None, Query()] = None,
    end: Annotated[date | None, Query()] = None,
    as_of: Annotated[date | None, Query()] = None,
    start_event: Annotated[str, Query(max_length=200)] = "",
    return_event: Annotated[str, Query(max_length=200)] = "",
    unit: Annotated[str, Query(max_length=10)] = "week",
    periods: Annotated[int, Query(ge=1, le=120)] = 8,
    measure: Annotated[str, Query(max_length=20)] = "on",
    breakdown: Annotated[str, Query(max_length=120)] = "",
    top: Annotated[int, Query(ge=1, le=50)] = TOP_VALUES,
) -> RetentionForm:
    return RetentionForm(start, end, as_of, start_event, return_event, unit, periods, measure, breakdown, top)


def _retention_rows(request: retention.RetentionRequest, brand_id: int) -> list[dict[str, Any]]:
    with warehouse() as wh:
        return wh.rows(retention.retention, wh.table("fact_events"), brand_id, request)


def breakdown_groups(rows: list[dict[str, Any]], periods: int, top: int) -> list[dict[str, Any]]:
    """The breakdown's cohort rows grouped by value, most people first (ties by value, no value last),
    the first ``top`` values as they are and the rest in one ``other`` group: ``value``, ``other``,
    ``values``, ``size`` (people), ``cohort_sizes`` ({cohort: people}) and ``rates`` for periods
    1…``periods`` (in %, None where no cohort is old enough)."""
    by_value: dict[Any, list[dict[str, Any]]] = {}
    for r in rows:
        by_value.setdefault(r["value"], []).append(r)

    def size(rs: list[dict[str, Any]]) -> int:
        return sum(int(r["size"]) for r in rs)

    ranked = sorted(by_value, key=lambda v: (-size(by_value[v]), v is None, str(v or "")))
    parts = [(v, False, 1, by_value[v]) for v in ranked[:top]]
    rest = ranked[top:]
    if rest:
        parts.append((None, True, len(rest), [r for v in rest for r in by_value[v]]))
    groups = []
    for value, other, count, rs in parts:
        cohort_sizes: dict[str, int] = {}
        for r in rs:
            cohort_sizes[r["cohort"]] = cohort_sizes.get(r["cohort"], 0) + int(r["size"])
        groups.append(
            {
                "value": value,
                "other": other,
                "values": count,
                "size": size(rs),
                "cohort_sizes": cohort_sizes,
                "rates": [pct(c["rate"]) for c in retention.curve(rs, periods)],
            }
        )
    return groups


def _breakdown_view(
    lang: str, form: RetentionForm, rows: list[dict[str, Any]], period_labels: list[str]
) -> dict[str, Any]:
    groups = breakdown_groups(rows, form.periods, form.top)
    cohorts = sorted({r["cohort"] for r in rows})
    for g in groups:
        g["label"] = (
            translate(lang, "analysis.breakdown_other", n=g["values"])
            if g["other"]
            else breakdown_label(lang, g["value"])
        )
        g["sizes"] = [g["cohort_sizes"].get(c) for c in cohorts]
    option = bar_option(
        period_labels,
        [
            {"name": g["label"], "type": "line", "data": [100.0 if g["size"] else None, *g["rates"]]}
            for g in groups
        ],
    )
    option["legend"] = {"top": 0, "type": "scroll"}
    option["yAxis"]["axisLabel"] = {"formatter": "{value}%"}
    return {
        "breakdown_groups": groups,
        "breakdown_cohorts": cohorts,
        "breakdown_option": option,
        "breakdown_title": translate(lang, "analysis.retention_breakdown", property=form.breakdown),
        "breakdown_csv": "/console/analytics/retention.csv?" + form.query(),
    }


@router.get("/console/analytics/retention")
def retention_page(
    request: Request, console: Reader, form: Annotated[RetentionForm, Depends(retention_form)]
) -> Response:
    form = form.complete(console)
    context: dict[str, Any] = {"form": form, "units": UNITS, "measures": MEASURES, "events": []}
    if blocked(console) or console.brand_id is None:
        return _page(request, console, "analytics_retention.html", context)
    context["events"] = event_names(console.brand_id)
    if not form.start_event or not form.return_event:
        return _page(request, console, "analytics_retention.html", {**context, "prompt": True})
    try:
        req = form.request()
        split = form.request(breakdown=True) if form.breakdown else None
    except ValidationError as exc:
        return _page(request, console, "analytics_retention.html", {**context, "errors": errors_of(exc)}, 422)
    rows = _retention_rows(req, console.brand_id)
    periods = req.periods
    cohorts = []
    heat: list[list[Any]] = []
    for y, row in enumerate(rows):
        size = int(row["size"])
        rates = [
            pct(int(row[f"n{k}"] or 0) / size) if row.get(f"e{k}") and size else None
            for k in range(1, periods + 1)
        ]
        cohorts.append({"cohort": row["cohort"], "size": size, "rates": rates})
        heat.append([0, y, 100.0])
        heat += [[k, y, r] for k, r in enumerate(rates, start=1) if r is not None]
    curve = [{"period": 0, "rate": 1.0 if rows else None}, *retention.curve(rows, periods)]
    lang = console.lang
    period_labels = [translate(lang, f"analysis.unit_n.{req.unit}", n=k) for k in range(periods + 1)]
    heatmap = {
        "tooltip": {"position": "top"},
        "grid": {"left": 16, "right": 16, "top": 10, "bottom": 60, "containLabel": True},
        "xAxis": {"type": "category", "data": period_labels, "splitArea": {"show": True}},
        "yAxis": {"type": "category", "data": [c["cohort"] for c in cohorts], "inverse": True},
        "visualMap": {
            "min": 0,
            "max": 100,
            "calculable": True,
            "orient": "horizontal",
            "left": "center",
            "bottom": 0,
            "inRange": {"color": ["#f5f7fa", "#2d6cdf"]},
        },
        "series": [
            {
                "name": translate(lang, "analysis.retention_rate"),
                "type": "heatmap",
                "data": heat,
                "label": {"show": True, "formatter": "{@[2]}%"},
            }
        ],
    }
    line = bar_option(
        period_labels,
        [
            {
                "name": translate(lang, "analysis.retention_rate"),
                "type": "line",
                "data": [pct(c["rate"]) for c in curve],
                "label": {"show": True, "formatter": "{c}%"},
            }
        ],
    )
    if split is not None and rows:
        context.update(_breakdown_view(lang, form, _retention_rows(split, console.brand_id), period_labels))
    return _page(
        request,
        console,
        "analytics_retention.html",
        {
            **context,
            "cohorts": cohorts,
            "period_labels": period_labels,
            "curve": [{**c, "rate": pct(c["rate"])} for c in curve],
            "empty": not rows,
            "heatmap": heatmap,
            "line": line,
            "csv": "/console/analytics/retention.csv?" + form.query(breakdown=False),
        },
    )


@router.get("/console/analytics/retention.csv")
def retention_csv(console: Reader, form: Annotated[RetentionForm, Depends(retention_form)]) -> Response:
    """The cohort table, or with a breakdown every (cohort, value) row (none folded), as the API's
    CSV."""
    form = form.complete(console)
    brand_id = _brand(console)
    try:
        request = form.request(breakdown=bool(form.breakdown))
    except ValidationError as exc:
        raise ValidationFailed("; ".join(errors_of(exc))) from None
    rows = _retention_rows(request, brand_id)
    if not form.breakdown:
        return csv("Retention", rows, f"retention-{form.start}-{form.end}")
    return csv("Retention breakdown", rows, f"retention-{form.breakdown}-{form.start}-{form.end}")

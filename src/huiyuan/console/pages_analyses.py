"""Console pages of the analysis models over the warehouse (B3): funnel, retention, cohort LTV and the
distribution of members by orders or sales — each a GET form, the result as a table and an ECharts
chart, and a CSV download of the same result.

Handlers build the same request models as ``/api/v1/analytics`` (so the same validation applies) and
call the same analysis functions in-process through ``engine.query``, for the console's brand only.
The charts' ECharts options are built here and embedded in the page as JSON; the page's script only
hands them to ECharts. No queries or business rules here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import ibis.expr.types as ir
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError

from huiyuan.analytics import engine, funnel, ltv, retention, scenes
from huiyuan.console.deps import Console, requires
from huiyuan.console.i18n import translate
from huiyuan.console.web import ConsoleRoute, render
from huiyuan.kit import tables
from huiyuan.kit.clock import utcnow
from huiyuan.kit.errors import ValidationFailed
from huiyuan.settings import get_settings
from huiyuan.warehouse import connect

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
Reader = Annotated[Console, requires("analytics:read")]

MAX_STEPS = 6
FUNNEL_MODES = ("sequential", "strict", "any_order")
UNITS = ("day", "week", "month")
MEASURES = ("on", "on_or_after")
DISTRIBUTION_MEASURES = ("orders", "sales")


# -- shared by the analysis and insight pages -------------------------------------------------------


def today(console: Console) -> date:
    """The business day now in the brand's time zone."""
    return utcnow().astimezone(ZoneInfo(console.timezone())).date()


def plain(value: Any) -> Any:
    """A warehouse value as JSON can carry it (dates as ISO text, numbers as floats)."""
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (float, Decimal)):
        number = float(value)
        return None if number != number else round(number, 4)
    return value


def blocked(console: Console) -> str | None:
    """Why no analysis can run for this console: the locale key of the notice, or None."""
    if console.brand_id is None:
        return "common.choose_brand"
    if not Path(get_settings().warehouse_path).exists():
        return "analytics.not_ready"
    return None


@dataclass
class Warehouse:
    """The warehouse tables of one request and a runner that returns plain rows."""

    con: Any
    path: str

    def table(self, name: str) -> ir.Table:
        return self.con.table(name)

    def rows(self, fn: Callable[..., ir.Expr], *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        return [{k: plain(v) for k, v in row.items()} for row in engine.query(self.path, fn, *args, **kwargs)]


@contextmanager
def warehouse() -> Iterator[Warehouse]:
    path = get_settings().warehouse_path
    con = connect(path)
    try:
        yield Warehouse(con=con, path=path)
    finally:
        con.disconnect()


def label(lang: str, prefix: str, value: Any) -> str:
    """The catalog label of an enumerated value, else the value itself."""
    if value is None or value == "":
        return "—"
    key = f"{prefix}.{value}"
    text = translate(lang, key)
    return str(value) if text == key else text


def errors_of(exc: ValidationError) -> list[str]:
    out = []
    for e in exc.errors():
        where = ".".join(str(p) for p in e.get("loc", ()))
        message = str(e.get("msg", "")).removeprefix("Value error, ")
        out.append(f"{where}: {message}" if where else message)
    return out


def csv(name: str, rows: list[dict[str, Any]], filename: str) -> Response:
    headers = tuple(rows[0]) if rows else ("empty",)
    return tables.download([(name, headers, [tuple(r.values()) for r in rows])], filename, "csv")


def pct(value: float | None) -> float | None:
    return None if value is None else round(value * 100, 1)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} d"


def bar_option(
    categories: list[Any], series: list[dict[str, Any]], *, horizontal: bool = False
) -> dict[str, Any]:
    """An ECharts bar (and line) chart; each series ``{name, data, type?, axis?, label?}``."""
    category = {"type": "category", "data": categories}
    value: Any = {"type": "value"}
    if any(s.get("axis") == 1 for s in series):
        value = [value, {"type": "value", "splitLine": {"show": False}}]
    return {
        "tooltip": {"trigger": "axis"},
        "legend": {"top": 0},
        "grid": {"left": 16, "right": 24, "top": 40, "bottom": 24, "containLabel": True},
        "xAxis": value if horizontal else category,
        "yAxis": category if horizontal else value,
        "series": [
            {
                "name": s["name"],
                "type": s.get("type", "bar"),
                "data": s["data"],
                **({"yAxisIndex": 1} if s.get("axis") == 1 else {}),
                **({"label": s["label"]} if "label" in s else {}),
                **({"stack": s["stack"]} if "stack" in s else {}),
            }
            for s in series
        ],
    }


def pie_option(name: str, items: list[tuple[str, Any]]) -> dict[str, Any]:
    return {
        "tooltip": {"trigger": "item", "formatter": "{b}: {c} ({d}%)"},
        "legend": {"bottom": 0},
        "series": [
            {
                "name": name,
                "type": "pie",
                "radius": ["35%", "65%"],
                "data": [{"name": n, "value": v} for n, v in items],
            }
        ],
    }


def _page(
    request: Request, console: Console, template: str, context: dict[str, Any], status: int = 200
) -> Response:
    return render(request, template, {"blocked": blocked(console), **context}, status=status)


def query_string(values: dict[str, Any]) -> str:
    """A form's fields as a URL query: lists repeat their key, blank fields are left out."""
    pairs: list[tuple[str, Any]] = []
    for key, value in values.items():
        for item in value if isinstance(value, list) else [value]:
            if item is not None and item != "":
                pairs.append((key, item))
    return urlencode(pairs)


# -- funnel ----------------------------------------------------------------------------------------


@dataclass
class FunnelForm:
    start: date | None = None
    end: date | None = None
    steps: list[str] = field(default_factory=list)
    mode: str = "sequential"
    window_hours: int = 24
    grain: str = "day"

    def complete(self, console: Console) -> FunnelForm:
        last = self.end or today(console)
        return FunnelForm(
            start=self.start or last - timedelta(days=29),
            end=last,
            steps=[s.strip() for s in self.steps if s.strip()][:MAX_STEPS],
            mode=self.mode,
            window_hours=self.window_hours,
            grain=self.grain if self.grain in UNITS else "day",
        )

    def request(self) -> funnel.FunnelRequest:
        return funnel.FunnelRequest.model_validate(
            {
                "start": self.start,
                "end": self.end,
                "steps": [{"event": s} for s in self.steps],
                "mode": self.mode,
                "window_seconds": self.window_hours * 3600,
            }
        )

    def query(self) -> str:
        return query_string(
            {
                "start": self.start,
                "end": self.end,
                "step": self.steps,
                "mode": self.mode,
                "window_hours": self.window_hours,
                "grain": self.grain,
            }
        )


def funnel_form(
    start: Annotated[date | None, Query()] = None,
    end: Annotated[date | None, Query()] = None,
    step: Annotated[list[str] | None, Query(max_length=200)] = None,
    mode: Annotated[str, Query(max_length=20)] = "sequential",
    window_hours: Annotated[int, Query(ge=1, le=90 * 24)] = 24,
    grain: Annotated[str, Query(max_length=10)] = "day",
) -> FunnelForm:
    return FunnelForm(
        start=start, end=end, steps=step or [], mode=mode, window_hours=window_hours, grain=grain
    )


def _funnel_rows(form: FunnelForm, brand_id: int) -> list[dict[str, Any]]:
    request = form.request()
    with warehouse() as wh:
        rows = wh.rows(funnel.funnel, wh.table("fact_events"), brand_id, request)
    return [{**r, **funnel.rates(r, len(request.steps))} for r in rows]


def _funnel_trend(form: FunnelForm, brand_id: int) -> list[dict[str, Any]]:
    """People entering and converting (reaching the last step) per entry day, week or month."""
    request = form.request()
    with warehouse() as wh:
        return wh.rows(funnel.trend, wh.table("fact_events"), brand_id, request, form.grain)


def _event_names(brand_id: int) -> list[str]:
    with warehouse() as wh:
        return [r["event"] for r in wh.rows(scenes.event_names, wh.table("fact_events"), brand_id)]


@router.get("/console/analytics/funnel")
def funnel_page(
    request: Request, console: Reader, form: Annotated[FunnelForm, Depends(funnel_form)]
) -> Response:
    form = form.complete(console)
    context: dict[str, Any] = {
        "form": form,
        "modes": FUNNEL_MODES,
        "units": UNITS,
        "max_steps": MAX_STEPS,
        "events": [],
    }
    if blocked(console) or console.brand_id is None:
        return _page(request, console, "analytics_funnel.html", context)
    context["events"] = _event_names(console.brand_id)
    if len(form.steps) < 2:
        return _page(request, console, "analytics_funnel.html", {**context, "prompt": True})
    try:
        rows = _funnel_rows(form, console.brand_id)
    except ValidationError as exc:
        return _page(request, console, "analytics_funnel.html", {**context, "errors": errors_of(exc)}, 422)
    row = rows[0] if rows else {}
    steps = [
        {
            "event": event,
            "people": int(row.get(f"step_{k}") or 0),
            "overall": pct(row.get(f"overall_{k}")),
            "from_previous": pct(row.get(f"from_previous_{k}")),
            "median": duration(row.get(f"median_s_{k}")) if k > 1 else "",
            "p90": duration(row.get(f"p90_s_{k}")) if k > 1 else "",
        }
        for k, event in enumerate(form.steps, start=1)
    ]
    empty = not steps or steps[0]["people"] == 0
    lang = console.lang
    option = bar_option(
        [f"{k}. {s['event']}" for k, s in enumerate(steps, start=1)],
        [
            {
                "name": translate(lang, "analysis.people"),
                "data": [s["people"] for s in steps],
                "label": {"show": True, "position": "top"},
            },
            {
                "name": translate(lang, "analysis.step_rate"),
                "type": "line",
                "axis": 1,
                "data": [s["from_previous"] for s in steps],
                "label": {"show": True, "formatter": "{c}%"},
            },
        ],
    )
    trend = [] if empty else _funnel_trend(form, console.brand_id)
    trend_option = bar_option(
        [r["bucket"] for r in trend],
        [
            {"name": translate(lang, "analysis.entered"), "data": [int(r["entered"]) for r in trend]},
            {
                "name": translate(lang, "analysis.converted"),
                "data": [int(r["converted"] or 0) for r in trend],
            },
            {
                "name": translate(lang, "analysis.conversion_rate"),
                "type": "line",
                "axis": 1,
                "data": [
                    pct(int(r["converted"] or 0) / int(r["entered"])) if r["entered"] else None for r in trend
                ],
            },
        ],
    )
    return _page(
        request,
        console,
        "analytics_funnel.html",
        {
            **context,
            "steps": steps,
            "empty": empty,
            "option": option,
            "trend": trend,
            "trend_option": trend_option,
            "csv": "/console/analytics/funnel.csv?" + form.query(),
        },
    )


@router.get("/console/analytics/funnel.csv")
def funnel_csv(console: Reader, form: Annotated[FunnelForm, Depends(funnel_form)]) -> Response:
    form = form.complete(console)
    brand_id = _brand(console)
    try:
        rows = _funnel_rows(form, brand_id)
    except ValidationError as exc:
        raise ValidationFailed("; ".join(errors_of(exc))) from None
    return csv("Funnel", rows, f"funnel-{form.start}-{form.end}")


def _brand(console: Console) -> int:
    reason = blocked(console)
    if reason is not None or console.brand_id is None:
        raise ValidationFailed(translate(console.lang, reason or "common.choose_brand"))
    return console.brand_id


# -- retention -------------------------------------------------------------------------------------


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
        )

    def request(self) -> retention.RetentionRequest:
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
            }
        )

    def query(self) -> str:
        return query_string({k: getattr(self, k) for k in self.__dataclass_fields__})


def retention_form(
    start: Annotated[date | None, Query()] = None,
    end: Annotated[date | None, Query()] = None,
    as_of: Annotated[date | None, Query()] = None,
    start_event: Annotated[str, Query(max_length=200)] = "",
    return_event: Annotated[str, Query(max_length=200)] = "",
    unit: Annotated[str, Query(max_length=10)] = "week",
    periods: Annotated[int, Query(ge=1, le=120)] = 8,
    measure: Annotated[str, Query(max_length=20)] = "on",
) -> RetentionForm:
    return RetentionForm(start, end, as_of, start_event, return_event, unit, periods, measure)


def _retention_rows(
    form: RetentionForm, brand_id: int
) -> tuple[retention.RetentionRequest, list[dict[str, Any]]]:
    request = form.request()
    with warehouse() as wh:
        return request, wh.rows(retention.retention, wh.table("fact_events"), brand_id, request)


@router.get("/console/analytics/retention")
def retention_page(
    request: Request, console: Reader, form: Annotated[RetentionForm, Depends(retention_form)]
) -> Response:
    form = form.complete(console)
    context: dict[str, Any] = {"form": form, "units": UNITS, "measures": MEASURES, "events": []}
    if blocked(console) or console.brand_id is None:
        return _page(request, console, "analytics_retention.html", context)
    context["events"] = _event_names(console.brand_id)
    if not form.start_event or not form.return_event:
        return _page(request, console, "analytics_retention.html", {**context, "prompt": True})
    try:
        req, rows = _retention_rows(form, console.brand_id)
    except ValidationError as exc:
        return _page(request, console, "analytics_retention.html", {**context, "errors": errors_of(exc)}, 422)
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
            "csv": "/console/analytics/retention.csv?" + form.query(),
        },
    )


@router.get("/console/analytics/retention.csv")
def retention_csv(console: Reader, form: Annotated[RetentionForm, Depends(retention_form)]) -> Response:
    form = form.complete(console)
    brand_id = _brand(console)
    try:
        _, rows = _retention_rows(form, brand_id)
    except ValidationError as exc:
        raise ValidationFailed("; ".join(errors_of(exc))) from None
    return csv("Retention", rows, f"retention-{form.start}-{form.end}")


# -- LTV -------------------------------------------------------------------------------------------


@dataclass
class LTVForm:
    enrolled_from: date | None = None
    enrolled_to: date | None = None
    as_of: date | None = None
    months: int = 12

    def complete(self, console: Console) -> LTVForm:
        now = today(console)
        to = self.enrolled_to or now
        year, month = (to.year, to.month - 11) if to.month > 11 else (to.year - 1, to.month + 1)
        return LTVForm(
            enrolled_from=self.enrolled_from or date(year, month, 1),
            enrolled_to=to,
            as_of=self.as_of or max(to, now),
            months=self.months,
        )

    def request(self) -> ltv.LTVRequest:
        return ltv.LTVRequest.model_validate(
            {
                "enrolled_from": self.enrolled_from,
                "enrolled_to": self.enrolled_to,
                "as_of": self.as_of,
                "months": self.months,
            }
        )

    def query(self) -> str:
        return query_string({k: getattr(self, k) for k in self.__dataclass_fields__})


def ltv_form(
    enrolled_from: Annotated[date | None, Query()] = None,
    enrolled_to: Annotated[date | None, Query()] = None,
    as_of: Annotated[date | None, Query()] = None,
    months: Annotated[int, Query(ge=0, le=120)] = 12,
) -> LTVForm:
    return LTVForm(enrolled_from, enrolled_to, as_of, months)


def ltv_rows(wh: Warehouse, brand_id: int, request: ltv.LTVRequest) -> list[dict[str, Any]]:
    return wh.rows(ltv.cohort_ltv, wh.table("fact_orders"), wh.table("dim_member"), brand_id, request)


def ltv_chart(
    lang: str, rows: list[dict[str, Any]], months: int
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Cohorts with their LTV per month (None before the month has begun) and the line chart."""
    by_cohort: dict[str, dict[str, Any]] = {}
    for r in rows:
        cohort = by_cohort.setdefault(
            r["cohort"], {"cohort": r["cohort"][:7], "size": r["size"], "ltv": [None] * (months + 1)}
        )
        cohort["ltv"][r["k"]] = r["ltv"] if r["ltv"] is None else round(r["ltv"], 2)
    cohorts = list(by_cohort.values())
    option = bar_option(
        [translate(lang, "analysis.unit_n.month", n=k) for k in range(months + 1)],
        [{"name": c["cohort"], "type": "line", "data": c["ltv"]} for c in cohorts],
    )
    option["legend"] = {"top": 0, "type": "scroll"}
    return cohorts, option


@router.get("/console/analytics/ltv")
def ltv_page(request: Request, console: Reader, form: Annotated[LTVForm, Depends(ltv_form)]) -> Response:
    form = form.complete(console)
    context: dict[str, Any] = {"form": form}
    if blocked(console) or console.brand_id is None:
        return _page(request, console, "analytics_ltv.html", context)
    try:
        req = form.request()
    except ValidationError as exc:
        return _page(request, console, "analytics_ltv.html", {**context, "errors": errors_of(exc)}, 422)
    with warehouse() as wh:
        rows = ltv_rows(wh, console.brand_id, req)
    cohorts, option = ltv_chart(console.lang, rows, req.months)
    return _page(
        request,
        console,
        "analytics_ltv.html",
        {
            **context,
            "cohorts": cohorts,
            "month_labels": [
                translate(console.lang, "analysis.unit_n.month", n=k) for k in range(req.months + 1)
            ],
            "empty": not rows,
            "option": option,
            "csv": "/console/analytics/ltv.csv?" + form.query(),
        },
    )


@router.get("/console/analytics/ltv.csv")
def ltv_csv(console: Reader, form: Annotated[LTVForm, Depends(ltv_form)]) -> Response:
    form = form.complete(console)
    brand_id = _brand(console)
    try:
        req = form.request()
    except ValidationError as exc:
        raise ValidationFailed("; ".join(errors_of(exc))) from None
    with warehouse() as wh:
        rows = ltv_rows(wh, brand_id, req)
    return csv("LTV", rows, f"ltv-{form.enrolled_from}-{form.enrolled_to}")


# -- distribution ----------------------------------------------------------------------------------


@dataclass
class DistributionForm:
    start: date | None = None
    end: date | None = None
    measure: str = "orders"
    buckets: int = 10
    edges: str = ""

    def complete(self, console: Console) -> DistributionForm:
        end = self.end or today(console)
        return DistributionForm(
            start=self.start or end - timedelta(days=364),
            end=end,
            measure=self.measure,
            buckets=self.buckets,
            edges=self.edges.strip(),
        )

    def request(self) -> ltv.DistributionRequest:
        edges: list[Any] | None = None
        if self.edges:
            edges = [e.strip() for e in self.edges.replace("，", ",").split(",") if e.strip()]
        return ltv.DistributionRequest.model_validate(
            {
                "start": self.start,
                "end": self.end,
                "measure": self.measure,
                "buckets": self.buckets,
                "edges": edges,
            }
        )

    def query(self) -> str:
        return query_string({k: getattr(self, k) for k in self.__dataclass_fields__})


def distribution_form(
    start: Annotated[date | None, Query()] = None,
    end: Annotated[date | None, Query()] = None,
    measure: Annotated[str, Query(max_length=10)] = "orders",
    buckets: Annotated[int, Query(ge=1, le=100)] = 10,
    edges: Annotated[str, Query(max_length=500)] = "",
) -> DistributionForm:
    return DistributionForm(start, end, measure, buckets, edges)


def _distribution_rows(form: DistributionForm, brand_id: int) -> list[dict[str, Any]]:
    req = form.request()
    with warehouse() as wh:
        return wh.rows(ltv.distribution, wh.table("fact_orders"), brand_id, req)


def _range(low: float | None, high: float | None, measure: str) -> str:
    def show(v: float) -> str:
        return f"{v:,.0f}" if measure == "orders" or v >= 100 else f"{v:,.2f}"

    if low is None:
        return "—"
    return f"≥ {show(low)}" if high is None else f"{show(low)} – {show(high)}"


@router.get("/console/analytics/distribution")
def distribution_page(
    request: Request, console: Reader, form: Annotated[DistributionForm, Depends(distribution_form)]
) -> Response:
    form = form.complete(console)
    context: dict[str, Any] = {"form": form, "measures": DISTRIBUTION_MEASURES}
    if blocked(console) or console.brand_id is None:
        return _page(request, console, "analytics_distribution.html", context)
    try:
        rows = _distribution_rows(form, console.brand_id)
    except ValidationError as exc:
        return _page(
            request, console, "analytics_distribution.html", {**context, "errors": errors_of(exc)}, 422
        )
    total = sum(int(r["members"]) for r in rows)
    buckets = [
        {
            "range": _range(r["low"], r["high"], form.measure),
            "members": int(r["members"]),
            "share": pct(int(r["members"]) / total) if total else None,
        }
        for r in rows
    ]
    option = bar_option(
        [b["range"] for b in buckets],
        [
            {
                "name": translate(console.lang, "analytics.members"),
                "data": [b["members"] for b in buckets],
                "label": {"show": True, "position": "top"},
            }
        ],
    )
    return _page(
        request,
        console,
        "analytics_distribution.html",
        {
            **context,
            "buckets": buckets,
            "total": total,
            "empty": not rows,
            "option": option,
            "csv": "/console/analytics/distribution.csv?" + form.query(),
        },
    )


@router.get("/console/analytics/distribution.csv")
def distribution_csv(
    console: Reader, form: Annotated[DistributionForm, Depends(distribution_form)]
) -> Response:
    form = form.complete(console)
    brand_id = _brand(console)
    try:
        rows = _distribution_rows(form, brand_id)
    except ValidationError as exc:
        raise ValidationFailed("; ".join(errors_of(exc))) from None
    return csv("Distribution", rows, f"distribution-{form.measure}-{form.start}-{form.end}")

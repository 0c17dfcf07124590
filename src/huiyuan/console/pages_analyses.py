"""Console pages of the analysis models over the warehouse (B3): cohort LTV and the distribution of
members by orders or sales — each a GET form, the result as a table and an ECharts chart, and a CSV
download of the same result — and the helpers every analysis page shares (the warehouse of a request,
the brand check, chart options, CSV). The funnel and retention pages live in ``pages_funnel`` and
``pages_retention``.

Handlers build the same request models as ``/api/v1/analytics`` (so the same validation applies) and
call the same analysis functions in-process through ``engine.query``, for the console's brand only.
The charts' ECharts options are built here and embedded in the page as JSON; the page's script only
hands them to ECharts. No queries or business rules here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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

from huiyuan.analytics import engine, ltv, scenes
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

UNITS = ("day", "week", "month")
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


def _brand(console: Console) -> int:
    reason = blocked(console)
    if reason is not None or console.brand_id is None:
        raise ValidationFailed(translate(console.lang, reason or "common.choose_brand"))
    return console.brand_id


def event_names(brand_id: int) -> list[str]:
    """The brand's event names, most frequent first (the analysis forms' suggestions)."""
    with warehouse() as wh:
        return [r["event"] for r in wh.rows(scenes.event_names, wh.table("fact_events"), brand_id)]


def breakdown_label(lang: str, value: Any) -> str:
    """A breakdown value as shown: people without the property fall under "not set"."""
    if value is None:
        return translate(lang, "analysis.breakdown_none")
    return str(value) if value != "" else '""'


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

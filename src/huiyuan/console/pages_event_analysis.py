"""Console page of event analysis (B3), in two modes.

* **Trend**: up to three event series (count, people, per person, or the sum / average / distinct
  values of a property), per day / week / month, optionally grouped by an event property or a
  member field — a trend chart, the totals with ranking and shares, and a CSV download with the same
  sections as ``POST /api/v1/analytics/events?format=csv``.
* **Distribution**: people per bucket of how many times (or on how many days) they did the first
  series' event, or of the sum of its property — automatic buckets or the given edges — as a bar
  chart, a table and the CSV of ``POST /api/v1/analytics/events/distribution?format=csv``.

The handler builds ``event_analysis.EventAnalysisRequest`` / ``EventDistributionRequest`` (the API's
validation) and calls ``event_analysis.totals``, ``trend`` and ``distribution`` in-process for the
console's brand. No queries or business rules here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError

from huiyuan.analytics import event_analysis as ea
from huiyuan.analytics import scenes
from huiyuan.console.deps import Console, requires
from huiyuan.console.i18n import translate
from huiyuan.console.pages_analyses import (
    bar_option,
    blocked,
    errors_of,
    pct,
    query_string,
    today,
    warehouse,
)
from huiyuan.console.web import ConsoleRoute, render
from huiyuan.kit import tables
from huiyuan.kit.errors import ValidationFailed

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
Reader = Annotated[Console, requires("analytics:read")]

SERIES = 3
MEASURES = ("count", "users", "per_user", "sum", "avg", "distinct")
GRANULARITIES = ("day", "week", "month", "total")
GROUP_SOURCES = ("event", "member")
MODES = ("trend", "distribution")
DISTRIBUTION_MEASURES = ("times", "days", "sum")


@dataclass
class EventForm:
    start: date | None = None
    end: date | None = None
    events: list[str] = field(default_factory=list)
    measures: list[str] = field(default_factory=list)
    properties: list[str] = field(default_factory=list)
    granularity: str = "day"
    group_source: str = ""
    group_field: str = ""
    top: int = 5
    mode: str = "trend"
    dist_measure: str = "times"
    buckets: int = 10
    edges: str = ""

    def complete(self, console: Console) -> EventForm:
        end = self.end or today(console)
        rows = [
            (e.strip(), self._at(self.measures, i) or "count", self._at(self.properties, i).strip())
            for i, e in enumerate(self.events[:SERIES])
        ]
        rows = [r for r in rows if r[0]]
        return EventForm(
            start=self.start or end - timedelta(days=29),
            end=end,
            events=[r[0] for r in rows],
            measures=[r[1] for r in rows],
            properties=[r[2] for r in rows],
            granularity=self.granularity,
            group_source=self.group_source,
            group_field=self.group_field.strip(),
            top=self.top,
            mode=self.mode if self.mode in MODES else "trend",
            dist_measure=self.dist_measure,
            buckets=self.buckets,
            edges=self.edges.strip(),
        )

    @property
    def distribution(self) -> bool:
        return self.mode == "distribution"

    @staticmethod
    def _at(values: list[str], i: int) -> str:
        return values[i] if i < len(values) else ""

    def row(self, i: int) -> dict[str, str]:
        """The i-th series as the form shows it (blank past the chosen ones)."""
        return {
            "event": self._at(self.events, i),
            "measure": self._at(self.measures, i) or "count",
            "property": self._at(self.properties, i),
        }

    def request(self) -> ea.EventAnalysisRequest:
        return ea.EventAnalysisRequest.model_validate(
            {
                "start": self.start,
                "end": self.end,
                "events": [
                    {"event": e, "measure": m, **({"property": p} if p else {})}
                    for e, m, p in zip(self.events, self.measures, self.properties, strict=True)
                ],
                "granularity": self.granularity,
                "group_by": (
                    {"source": self.group_source, "field": self.group_field}
                    if self.group_source and self.group_field
                    else None
                ),
                "top": self.top,
            }
        )

    def distribution_request(self) -> ea.EventDistributionRequest:
        """The first series' event, with the distribution's measure (its property for ``sum``)."""
        edges = [e.strip() for e in self.edges.replace("，", ",").split(",") if e.strip()]
        prop = self._at(self.properties, 0) if self.dist_measure == "sum" else ""
        return ea.EventDistributionRequest.model_validate(
            {
                "start": self.start,
                "end": self.end,
                "event": {"event": self._at(self.events, 0)},
                "measure": self.dist_measure,
                **({"property": prop} if prop else {}),
                "edges": edges or None,
                "buckets": self.buckets,
            }
        )

    def query(self) -> str:
        return query_string(
            {
                "start": self.start,
                "end": self.end,
                "event": self.events,
                "measure": self.measures,
                "property": [p or "-" for p in self.properties],
                "granularity": self.granularity,
                "group_source": self.group_source,
                "group_field": self.group_field,
                "top": self.top,
                "mode": self.mode,
                "dist_measure": self.dist_measure,
                "buckets": self.buckets,
                "edges": self.edges,
            }
        )


def event_form(
    start: Annotated[date | None, Query()] = None,
    end: Annotated[date | None, Query()] = None,
    event: Annotated[list[str] | None, Query(max_length=200)] = None,
    measure: Annotated[list[str] | None, Query(max_length=20)] = None,
    property: Annotated[list[str] | None, Query(max_length=120)] = None,
    granularity: Annotated[str, Query(max_length=10)] = "day",
    group_source: Annotated[str, Query(max_length=10)] = "",
    group_field: Annotated[str, Query(max_length=120)] = "",
    top: Annotated[int, Query(ge=1, le=100)] = 5,
    mode: Annotated[str, Query(max_length=20)] = "trend",
    dist_measure: Annotated[str, Query(max_length=10)] = "times",
    buckets: Annotated[int, Query(ge=1, le=100)] = 10,
    edges: Annotated[str, Query(max_length=500)] = "",
) -> EventForm:
    # A blank property travels as "-" so that the lists stay aligned in the CSV link.
    props = [("" if p == "-" else p) for p in property or []]
    return EventForm(
        start,
        end,
        event or [],
        measure or [],
        props,
        granularity,
        group_source,
        group_field,
        top,
        mode,
        dist_measure,
        buckets,
        edges,
    )


def _run(
    form: EventForm, brand_id: int
) -> tuple[ea.EventAnalysisRequest, list[dict[str, Any]], list[dict[str, Any]]]:
    request = form.request()
    with warehouse() as wh:
        events = wh.table("fact_events")
        extra: dict[str, Any] = {}
        if request.group_by is not None and request.group_by.source == "member":
            extra["members"] = wh.table("dim_member")
        totals = wh.rows(ea.totals, events, brand_id, request, **extra)
        trend = wh.rows(ea.trend, events, brand_id, request, **extra)
    return request, totals, trend


def _distribution(form: EventForm, brand_id: int) -> list[dict[str, Any]]:
    request = form.distribution_request()
    with warehouse() as wh:
        return wh.rows(ea.distribution, wh.table("fact_events"), brand_id, request)


def bucket_label(low: float, high: float | None, whole: bool) -> str:
    """``[low, high)`` as people read it: ``1``, ``3 – 4`` (counts between whole edges, both ends
    included), ``20.50 – 85.25`` (sums, or counts between fractional edges), ``≥ 10`` (the open last
    bucket)."""
    whole = whole and float(low).is_integer() and (high is None or float(high).is_integer())

    def show(v: float) -> str:
        return f"{v:,.0f}" if whole or v >= 100 else f"{v:,.2f}"

    if high is None:
        return f"≥ {show(low)}"
    if whole:
        last = high - 1
        return show(low) if last <= low else f"{show(low)} – {show(last)}"
    return f"{show(low)} – {show(high)}"


def _distribution_page(
    request: Request, lang: str, brand_id: int, form: EventForm, context: dict[str, Any]
) -> Response:
    """The distribution mode: people per bucket as a bar chart and a table."""
    try:
        rows = _distribution(form, brand_id)
    except ValidationError as exc:
        return render(request, "analytics_events.html", {**context, "errors": errors_of(exc)}, status=422)
    whole = form.dist_measure != "sum"
    buckets = [
        {
            "range": bucket_label(r["low"], r["high"], whole),
            "users": int(r["users"]),
            "share": pct(r["share"]),
        }
        for r in rows
    ]
    option = bar_option(
        [b["range"] for b in buckets],
        [
            {
                "name": translate(lang, "analysis.people"),
                "data": [b["users"] for b in buckets],
                "label": {"show": True, "position": "top"},
            }
        ],
    )
    option["xAxis"]["name"] = translate(lang, f"analysis.event_distribution_measure.{form.dist_measure}")
    option["xAxis"]["nameLocation"] = "middle"
    option["xAxis"]["nameGap"] = 28
    return render(
        request,
        "analytics_events.html",
        {
            **context,
            "buckets": buckets,
            "total": sum(b["users"] for b in buckets),
            "empty": not rows,
            "option": option,
            "csv": "/console/analytics/events.csv?" + form.query(),
        },
    )


def _value(measure: str, value: Any) -> Any:
    """Counts of events, people and values are whole numbers; the warehouse hands back floats."""
    return int(value) if value is not None and measure in ("count", "users", "distinct") else value


def _group(lang: str, row: dict[str, Any]) -> str:
    if row.get("other"):
        return translate(lang, "analysis.other")
    return "—" if row.get("group") is None else str(row["group"])


@router.get("/console/analytics/events")
def event_page(
    request: Request, console: Reader, form: Annotated[EventForm, Depends(event_form)]
) -> Response:
    form = form.complete(console)
    context: dict[str, Any] = {
        "form": form,
        "series_rows": [form.row(i) for i in range(SERIES)],
        "measures": MEASURES,
        "granularities": GRANULARITIES,
        "group_sources": GROUP_SOURCES,
        "modes": MODES,
        "distribution_measures": DISTRIBUTION_MEASURES,
        "events": [],
        "blocked": blocked(console),
    }
    if context["blocked"] or console.brand_id is None:
        return render(request, "analytics_events.html", context)
    with warehouse() as wh:
        context["events"] = [
            r["event"] for r in wh.rows(scenes.event_names, wh.table("fact_events"), console.brand_id)
        ]
    if not form.events:
        return render(request, "analytics_events.html", {**context, "prompt": True})
    if form.distribution:
        return _distribution_page(request, console.lang, console.brand_id, form, context)
    try:
        req, totals, trend = _run(form, console.brand_id)
    except ValidationError as exc:
        return render(request, "analytics_events.html", {**context, "errors": errors_of(exc)}, status=422)
    lang = console.lang
    labels = [s["label"] for s in ea.series_info(req)]
    grouped = req.group_by is not None
    buckets = sorted({r["bucket"] for r in trend})
    lines: dict[tuple[int, str], dict[str, Any]] = {}
    for r in trend:
        name = labels[r["series"]] + (f" · {_group(lang, r)}" if grouped else "")
        lines.setdefault((r["series"], name), {})[r["bucket"]] = _value(
            req.events[r["series"]].measure, r["value"]
        )
    option = bar_option(
        buckets,
        [
            {
                "name": name,
                "type": "bar" if req.granularity == "total" else "line",
                "data": [cells.get(b) for b in buckets],
            }
            for (_, name), cells in lines.items()
        ],
    )
    option["legend"] = {"top": 0, "type": "scroll"}
    rows = [
        {
            "series": labels[t["series"]],
            "group": _group(lang, t),
            "rank": t["rank"],
            "value": _value(req.events[t["series"]].measure, t["value"]),
            "share": pct(t["share"]),
        }
        for t in totals
    ]
    return render(
        request,
        "analytics_events.html",
        {
            **context,
            "grouped": grouped,
            "rows": rows,
            "empty": not trend,
            "option": option,
            "csv": "/console/analytics/events.csv?" + form.query(),
        },
    )


@router.get("/console/analytics/events.csv")
def event_csv(console: Reader, form: Annotated[EventForm, Depends(event_form)]) -> Response:
    form = form.complete(console)
    reason = blocked(console)
    if reason is not None or console.brand_id is None:
        raise ValidationFailed(translate(console.lang, reason or "common.choose_brand"))
    if form.distribution:
        try:
            rows = _distribution(form, console.brand_id)
        except ValidationError as exc:
            raise ValidationFailed("; ".join(errors_of(exc))) from None
        return tables.download(
            [
                (
                    "Event distribution",
                    ea.DISTRIBUTION_COLUMNS,
                    [tuple(r[c] for c in ea.DISTRIBUTION_COLUMNS) for r in rows],
                )
            ],
            f"events-distribution-{form.dist_measure}-{form.start}-{form.end}",
            "csv",
        )
    try:
        req, totals, trend = _run(form, console.brand_id)
    except ValidationError as exc:
        raise ValidationFailed("; ".join(errors_of(exc))) from None
    labels = [s["label"] for s in ea.series_info(req)]
    return tables.download(
        [
            (
                "Event totals",
                ("series", "label", "group", "other", "value", "share", "overall", "rank"),
                [
                    (
                        t["series"],
                        labels[t["series"]],
                        t["group"],
                        t["other"],
                        t["value"],
                        t["share"],
                        t["overall"],
                        t["rank"],
                    )
                    for t in totals
                ],
            ),
            (
                "Event trend",
                ("series", "label", "bucket", "group", "other", "value"),
                [
                    (t["series"], labels[t["series"]], t["bucket"], t["group"], t["other"], t["value"])
                    for t in trend
                ],
            ),
        ],
        f"events-{req.start}-{req.end}",
        "csv",
    )

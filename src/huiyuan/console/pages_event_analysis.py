"""Console page of event analysis (B3): up to three event series (count, people, per person, or the
sum / average / distinct values of a property), per day / week / month, optionally grouped by an
event property or a member field — a trend chart, the totals with ranking and shares, and a CSV
download with the same sections as ``POST /api/v1/analytics/events?format=csv``.

The handler builds ``event_analysis.EventAnalysisRequest`` (the API's validation) and calls
``event_analysis.totals`` and ``trend`` in-process for the console's brand. No queries or business
rules here.
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
        )

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
) -> EventForm:
    # A blank property travels as "-" so that the lists stay aligned in the CSV link.
    props = [("" if p == "-" else p) for p in property or []]
    return EventForm(
        start, end, event or [], measure or [], props, granularity, group_source, group_field, top
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

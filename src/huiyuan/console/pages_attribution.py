"""Console page of multi-touch attribution (B3): which touches (campaign or banner clicks, message
opens) get the credit for paid orders or a goal event, under the five models side by side — a
grouped bar chart, the credits per source and model, the goals left unattributed, and a CSV download
with the same sections as ``POST /api/v1/analytics/attribution?format=csv``.

The handler builds ``attribution.AttributionRequest`` (the API's validation) and calls
``attribution.attribution`` and ``totals`` in-process for the console's brand. No queries or
business rules here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError

from huiyuan.analytics import attribution as attr
from huiyuan.analytics import scenes
from huiyuan.console.deps import Console, requires
from huiyuan.console.i18n import translate
from huiyuan.console.pages_analyses import bar_option, blocked, errors_of, query_string, today, warehouse
from huiyuan.console.web import ConsoleRoute, render
from huiyuan.kit import tables
from huiyuan.kit.errors import ValidationFailed

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
Reader = Annotated[Console, requires("analytics:read")]

TOUCH_ROWS = 3
GOALS = ("order", "event")


@dataclass
class AttributionForm:
    start: date | None = None
    end: date | None = None
    touches: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    goal: str = "order"
    goal_event: str = ""
    revenue_property: str = ""
    lookback_days: int = 7
    half_life_days: float = 7

    def complete(self, console: Console) -> AttributionForm:
        end = self.end or today(console)
        rows = [
            (t.strip(), (self.sources[i] if i < len(self.sources) else "").strip())
            for i, t in enumerate(self.touches)
        ]
        rows = [(t, s or "campaign") for t, s in rows[:TOUCH_ROWS] if t]
        return AttributionForm(
            start=self.start or end - timedelta(days=29),
            end=end,
            touches=[t for t, _ in rows],
            sources=[s for _, s in rows],
            goal=self.goal,
            goal_event=self.goal_event.strip(),
            revenue_property=self.revenue_property.strip(),
            lookback_days=self.lookback_days,
            half_life_days=self.half_life_days,
        )

    def row(self, i: int) -> dict[str, str]:
        inside = i < len(self.touches)
        return {
            "event": self.touches[i] if inside else "",
            "source": self.sources[i] if inside else "campaign",
        }

    def request(self) -> attr.AttributionRequest:
        goal: dict[str, Any] = {"kind": self.goal}
        if self.goal == "event":
            goal["event"] = self.goal_event or None
            if self.revenue_property:
                goal["revenue_property"] = self.revenue_property
        return attr.AttributionRequest.model_validate(
            {
                "start": self.start,
                "end": self.end,
                "touches": [
                    {"event": t, "source_property": s}
                    for t, s in zip(self.touches, self.sources, strict=True)
                ],
                "goal": goal,
                "lookback_days": self.lookback_days,
                "half_life_days": self.half_life_days,
            }
        )

    def query(self) -> str:
        return query_string(
            {
                "start": self.start,
                "end": self.end,
                "touch": self.touches,
                "source": self.sources,
                "goal": self.goal,
                "goal_event": self.goal_event,
                "revenue_property": self.revenue_property,
                "lookback_days": self.lookback_days,
                "half_life_days": self.half_life_days,
            }
        )


def attribution_form(
    start: Annotated[date | None, Query()] = None,
    end: Annotated[date | None, Query()] = None,
    touch: Annotated[list[str] | None, Query(max_length=200)] = None,
    source: Annotated[list[str] | None, Query(max_length=120)] = None,
    goal: Annotated[str, Query(max_length=10)] = "order",
    goal_event: Annotated[str, Query(max_length=200)] = "",
    revenue_property: Annotated[str, Query(max_length=120)] = "",
    lookback_days: Annotated[int, Query(ge=1, le=90)] = 7,
    half_life_days: Annotated[float, Query(gt=0, le=90)] = 7,
) -> AttributionForm:
    return AttributionForm(
        start,
        end,
        touch or [],
        source or [],
        goal,
        goal_event,
        revenue_property,
        lookback_days,
        half_life_days,
    )


def _run(form: AttributionForm, brand_id: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    request = form.request()
    with warehouse() as wh:
        events, orders = wh.table("fact_events"), wh.table("fact_orders")
        items = wh.rows(attr.attribution, events, orders, brand_id, request)
        total = (wh.rows(attr.totals, events, orders, brand_id, request) or [{}])[0]
    return items, total


@router.get("/console/analytics/attribution")
def attribution_page(
    request: Request, console: Reader, form: Annotated[AttributionForm, Depends(attribution_form)]
) -> Response:
    form = form.complete(console)
    context: dict[str, Any] = {
        "form": form,
        "touch_rows": [form.row(i) for i in range(TOUCH_ROWS)],
        "goals": GOALS,
        "models": attr.MODELS,
        "events": [],
        "blocked": blocked(console),
    }
    if context["blocked"] or console.brand_id is None:
        return render(request, "analytics_attribution.html", context)
    with warehouse() as wh:
        context["events"] = [
            r["event"] for r in wh.rows(scenes.event_names, wh.table("fact_events"), console.brand_id)
        ]
    if not form.touches:
        return render(request, "analytics_attribution.html", {**context, "prompt": True})
    try:
        items, total = _run(form, console.brand_id)
    except ValidationError as exc:
        return render(
            request, "analytics_attribution.html", {**context, "errors": errors_of(exc)}, status=422
        )
    lang = console.lang
    names = [
        translate(lang, "analysis.not_set") if r["source"] == attr.NOT_SET else r["source"] for r in items
    ]
    option = bar_option(
        names,
        [
            {
                "name": translate(lang, f"analysis.model.{m}"),
                "data": [round(float(r[f"{m}_conversions"] or 0), 2) for r in items],
            }
            for m in attr.MODELS
        ],
    )
    goals = int(total.get("goals") or 0)
    unattributed = int(total.get("unattributed") or 0)
    return render(
        request,
        "analytics_attribution.html",
        {
            **context,
            "items": [{**r, "name": n} for r, n in zip(items, names, strict=True)],
            "total": {
                "goals": goals,
                "revenue": round(float(total.get("revenue") or 0), 2),
                "attributed": goals - unattributed,
                "unattributed": unattributed,
            },
            "empty": goals == 0,
            "option": option if items else None,
            "csv": "/console/analytics/attribution.csv?" + form.query(),
        },
    )


@router.get("/console/analytics/attribution.csv")
def attribution_csv(console: Reader, form: Annotated[AttributionForm, Depends(attribution_form)]) -> Response:
    form = form.complete(console)
    reason = blocked(console)
    if reason is not None or console.brand_id is None:
        raise ValidationFailed(translate(console.lang, reason or "common.choose_brand"))
    try:
        items, total = _run(form, console.brand_id)
    except ValidationError as exc:
        raise ValidationFailed("; ".join(errors_of(exc))) from None
    headers = tuple(items[0]) if items else ("source",)
    return tables.download(
        [
            ("Attribution", headers, [tuple(r.values()) for r in items]),
            ("Goals", tuple(total), [tuple(total.values())]),
        ],
        f"attribution-{form.start}-{form.end}",
        "csv",
    )

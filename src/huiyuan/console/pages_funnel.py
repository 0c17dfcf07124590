"""Console page of the funnel (B3): people per step, step-to-step conversion, time to convert, the
conversion trend by entry period and, optionally, a breakdown by an event property (the value on the
step-1 event, or on the step-N event) — tables, ECharts charts and CSV downloads.

The handlers build ``funnel.FunnelRequest`` (the API's validation) and call ``funnel.funnel`` and
``funnel.trend`` in-process for the console's brand, as ``POST /api/v1/analytics/funnel`` does. The
page keeps the largest breakdown values and folds the rest into one "other" row: each person falls
under exactly one value, so the folded step counts are plain sums (the times to convert are not, and
are not shown for it). No queries or business rules here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError

from huiyuan.analytics import funnel
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
    duration,
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

MAX_STEPS = 6
FUNNEL_MODES = ("sequential", "strict", "any_order")
TOP_VALUES = 10


@dataclass
class FunnelForm:
    start: date | None = None
    end: date | None = None
    steps: list[str] = field(default_factory=list)
    mode: str = "sequential"
    window_hours: int = 24
    grain: str = "day"
    breakdown: str = ""
    attribution: str = "first_touch"
    top: int = TOP_VALUES

    def complete(self, console: Console) -> FunnelForm:
        last = self.end or today(console)
        return FunnelForm(
            start=self.start or last - timedelta(days=29),
            end=last,
            steps=[s.strip() for s in self.steps if s.strip()][:MAX_STEPS],
            mode=self.mode,
            window_hours=self.window_hours,
            grain=self.grain if self.grain in UNITS else "day",
            breakdown=self.breakdown.strip(),
            attribution=self.attribution.strip() or "first_touch",
            top=self.top,
        )

    def request(self, *, breakdown: bool = False) -> funnel.FunnelRequest:
        """The overall funnel, or (``breakdown``) the funnel per value of the chosen property."""
        split = {"breakdown": self.breakdown, "attribution": self.attribution} if breakdown else {}
        return funnel.FunnelRequest.model_validate(
            {
                "start": self.start,
                "end": self.end,
                "steps": [{"event": s} for s in self.steps],
                "mode": self.mode,
                "window_seconds": self.window_hours * 3600,
                **split,
            }
        )

    def query(self, *, breakdown: bool = True) -> str:
        split = {"breakdown": self.breakdown, "attribution": self.attribution, "top": self.top}
        return query_string(
            {
                "start": self.start,
                "end": self.end,
                "step": self.steps,
                "mode": self.mode,
                "window_hours": self.window_hours,
                "grain": self.grain,
                **(split if breakdown and self.breakdown else {}),
            }
        )

    def attributions(self) -> list[str]:
        """The choices of where the breakdown value is read: the step-1 event, or step N's."""
        return ["first_touch", *(f"step:{k}" for k in range(2, max(len(self.steps), 2) + 1))]


def funnel_form(
    start: Annotated[date | None, Query()] = None,
    end: Annotated[date | None, Query()] = None,
    step: Annotated[list[str] | None, Query(max_length=200)] = None,
    mode: Annotated[str, Query(max_length=20)] = "sequential",
    window_hours: Annotated[int, Query(ge=1, le=90 * 24)] = 24,
    grain: Annotated[str, Query(max_length=10)] = "day",
    breakdown: Annotated[str, Query(max_length=120)] = "",
    attribution: Annotated[str, Query(max_length=20)] = "first_touch",
    top: Annotated[int, Query(ge=1, le=50)] = TOP_VALUES,
) -> FunnelForm:
    return FunnelForm(
        start=start,
        end=end,
        steps=step or [],
        mode=mode,
        window_hours=window_hours,
        grain=grain,
        breakdown=breakdown,
        attribution=attribution,
        top=top,
    )


def _funnel_rows(request: funnel.FunnelRequest, brand_id: int) -> list[dict[str, Any]]:
    with warehouse() as wh:
        rows = wh.rows(funnel.funnel, wh.table("fact_events"), brand_id, request)
    return [{**r, **funnel.rates(r, len(request.steps))} for r in rows]


def _funnel_trend(request: funnel.FunnelRequest, brand_id: int, grain: str) -> list[dict[str, Any]]:
    """People entering and converting (reaching the last step) per entry day, week or month."""
    with warehouse() as wh:
        return wh.rows(funnel.trend, wh.table("fact_events"), brand_id, request, grain)


def breakdown_groups(rows: list[dict[str, Any]], steps: int, top: int) -> list[dict[str, Any]]:
    """The breakdown rows, most entries first (ties by value, no value last), the first ``top`` as
    they are and the rest summed into one ``other`` group: ``value``, ``other``, ``values`` (how many
    values it holds), ``counts`` per step, ``rates`` (overall, in %) and ``median_s`` to the last step."""
    ranked = sorted(
        rows,
        key=lambda r: (-int(r["step_1"] or 0), r["breakdown"] is None, str(r["breakdown"] or "")),
    )
    groups = [
        {
            "value": r["breakdown"],
            "other": False,
            "values": 1,
            "counts": [int(r[f"step_{k}"] or 0) for k in range(1, steps + 1)],
            "median_s": r.get(f"median_s_{steps}"),
        }
        for r in ranked[:top]
    ]
    rest = ranked[top:]
    if rest:
        groups.append(
            {
                "value": None,
                "other": True,
                "values": len(rest),
                "counts": [sum(int(r[f"step_{k}"] or 0) for r in rest) for k in range(1, steps + 1)],
                "median_s": None,
            }
        )
    for g in groups:
        first = g["counts"][0]
        g["rates"] = [pct(c / first) if first else None for c in g["counts"]]
    return groups


def _breakdown_view(lang: str, form: FunnelForm, rows: list[dict[str, Any]]) -> dict[str, Any]:
    groups = breakdown_groups(rows, len(form.steps), form.top)
    for g in groups:
        g["label"] = (
            translate(lang, "analysis.breakdown_other", n=g["values"])
            if g["other"]
            else breakdown_label(lang, g["value"])
        )
        g["median"] = duration(g["median_s"]) if not g["other"] else "—"
    last = len(form.steps)
    option = bar_option(
        [g["label"] for g in groups],
        [
            {
                "name": translate(lang, "analysis.conversion_to_step", n=k) + f" · {form.steps[k - 1]}",
                "data": [g["rates"][k - 1] for g in groups],
                **({"label": {"show": True, "position": "top", "formatter": "{c}%"}} if k == last else {}),
            }
            for k in range(2, last + 1)
        ],
    )
    option["legend"] = {"top": 0, "type": "scroll"}
    option["yAxis"]["axisLabel"] = {"formatter": "{value}%"}
    return {
        "breakdown_groups": groups,
        "breakdown_option": option,
        "breakdown_title": translate(lang, "analysis.funnel_breakdown", property=form.breakdown),
        "breakdown_csv": "/console/analytics/funnel.csv?" + form.query(),
    }


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
    context["events"] = event_names(console.brand_id)
    if len(form.steps) < 2:
        return _page(request, console, "analytics_funnel.html", {**context, "prompt": True})
    try:
        whole = form.request()
        split = form.request(breakdown=True) if form.breakdown else None
    except ValidationError as exc:
        return _page(request, console, "analytics_funnel.html", {**context, "errors": errors_of(exc)}, 422)
    rows = _funnel_rows(whole, console.brand_id)
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
    trend = [] if empty else _funnel_trend(whole, console.brand_id, form.grain)
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
    if split is not None and not empty:
        context.update(_breakdown_view(lang, form, _funnel_rows(split, console.brand_id)))
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
            "csv": "/console/analytics/funnel.csv?" + form.query(breakdown=False),
        },
    )


@router.get("/console/analytics/funnel.csv")
def funnel_csv(console: Reader, form: Annotated[FunnelForm, Depends(funnel_form)]) -> Response:
    """The overall funnel, or with a breakdown every value's row (none folded), as the API's CSV."""
    form = form.complete(console)
    brand_id = _brand(console)
    try:
        request = form.request(breakdown=bool(form.breakdown))
    except ValidationError as exc:
        raise ValidationFailed("; ".join(errors_of(exc))) from None
    rows = _funnel_rows(request, brand_id)
    if not form.breakdown:
        return csv("Funnel", rows, f"funnel-{form.start}-{form.end}")
    return csv("Funnel breakdown", rows, f"funnel-{form.breakdown}-{form.start}-{form.end}")

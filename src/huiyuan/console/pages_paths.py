"""Console page of event flows (paths, B3): what people do in the steps after a start event, or before
an end event, inside one session — an ECharts Sankey, the top paths as a table and a CSV download
of the links, nodes and paths (the same sections as ``POST /api/v1/analytics/paths?format=csv``).

The handler builds ``paths.PathsRequest`` (the API's validation) and calls ``paths.flow`` and
``paths.top_paths`` in-process for the console's brand. No queries or business rules here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError

from huiyuan.analytics import paths, scenes
from huiyuan.console.deps import Console, requires
from huiyuan.console.i18n import translate
from huiyuan.console.pages_analyses import blocked, errors_of, query_string, today, warehouse
from huiyuan.console.web import ConsoleRoute, render
from huiyuan.kit import tables
from huiyuan.kit.errors import ValidationFailed

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
Reader = Annotated[Console, requires("analytics:read")]

DIRECTIONS = ("after", "before")


@dataclass
class PathsForm:
    start: date | None = None
    end: date | None = None
    event: str = ""
    direction: str = "after"
    steps: int = 4
    session_gap_minutes: int = 30
    top_k: int = 5
    top_paths: int = 10
    exclude: str = ""

    def complete(self, console: Console) -> PathsForm:
        end = self.end or today(console)
        return PathsForm(
            start=self.start or end - timedelta(days=6),
            end=end,
            event=self.event.strip(),
            direction=self.direction,
            steps=self.steps,
            session_gap_minutes=self.session_gap_minutes,
            top_k=self.top_k,
            top_paths=self.top_paths,
            exclude=self.exclude.strip(),
        )

    def request(self) -> paths.PathsRequest:
        anchor = {"event": self.event}
        return paths.PathsRequest.model_validate(
            {
                "start": self.start,
                "end": self.end,
                "start_event": anchor if self.direction != "before" else None,
                "end_event": anchor if self.direction == "before" else None,
                "steps": self.steps,
                "session_gap_minutes": self.session_gap_minutes,
                "top_k": self.top_k,
                "top_paths": self.top_paths,
                "exclude_events": [e.strip() for e in self.exclude.split(",") if e.strip()],
            }
        )

    def query(self) -> str:
        return query_string({k: getattr(self, k) for k in self.__dataclass_fields__})


def paths_form(
    start: Annotated[date | None, Query()] = None,
    end: Annotated[date | None, Query()] = None,
    event: Annotated[str, Query(max_length=200)] = "",
    direction: Annotated[str, Query(max_length=10)] = "after",
    steps: Annotated[int, Query(ge=1, le=10)] = 4,
    session_gap_minutes: Annotated[int, Query(ge=1, le=24 * 60)] = 30,
    top_k: Annotated[int, Query(ge=1, le=50)] = 5,
    top_paths: Annotated[int, Query(ge=0, le=100)] = 10,
    exclude: Annotated[str, Query(max_length=1000)] = "",
) -> PathsForm:
    return PathsForm(start, end, event, direction, steps, session_gap_minutes, top_k, top_paths, exclude)


def _run(form: PathsForm, brand_id: int) -> tuple[paths.PathsRequest, dict[str, Any], list[dict[str, Any]]]:
    request = form.request()
    with warehouse() as wh:
        events = wh.table("fact_events")
        chart = paths.sankey(wh.rows(paths.flow, events, brand_id, request))
        rows = wh.rows(paths.top_paths, events, brand_id, request) if request.top_paths else []
    return request, chart, paths.path_list(rows, request)


def _node(lang: str, step: int, event: str) -> str:
    """A Sankey node's (unique) name: the step and the event, ``other`` in the page's language."""
    shown = translate(lang, "analysis.other") if event == paths.OTHER else event
    return f"{step:+d} {shown}" if step else shown


def sankey_option(lang: str, chart: dict[str, Any], forwards: bool) -> dict[str, Any]:
    names = {
        paths.node_name(n["step"], n["event"]): _node(lang, n["step"], n["event"]) for n in chart["nodes"]
    }
    return {
        "tooltip": {"trigger": "item", "triggerOn": "mousemove"},
        "series": [
            {
                "type": "sankey",
                "nodeAlign": "left" if forwards else "right",
                "emphasis": {"focus": "adjacency"},
                "lineStyle": {"color": "gradient", "curveness": 0.5},
                "data": [{"name": names[n["name"]], "value": n["value"]} for n in chart["nodes"]],
                "links": [
                    {"source": names[link["source"]], "target": names[link["target"]], "value": link["value"]}
                    for link in chart["links"]
                ],
            }
        ],
    }


@router.get("/console/analytics/paths")
def paths_page(
    request: Request, console: Reader, form: Annotated[PathsForm, Depends(paths_form)]
) -> Response:
    form = form.complete(console)
    context: dict[str, Any] = {
        "form": form,
        "directions": DIRECTIONS,
        "events": [],
        "blocked": blocked(console),
    }
    if context["blocked"] or console.brand_id is None:
        return render(request, "analytics_paths.html", context)
    with warehouse() as wh:
        context["events"] = [
            r["event"] for r in wh.rows(scenes.event_names, wh.table("fact_events"), console.brand_id)
        ]
    if not form.event:
        return render(request, "analytics_paths.html", {**context, "prompt": True})
    try:
        req, chart, top = _run(form, console.brand_id)
    except ValidationError as exc:
        return render(request, "analytics_paths.html", {**context, "errors": errors_of(exc)}, status=422)
    return render(
        request,
        "analytics_paths.html",
        {
            **context,
            "chart": chart,
            "top": [
                {
                    "path": " → ".join(
                        translate(console.lang, "analysis.other") if e == paths.OTHER else e
                        for e in p["events"]
                    ),
                    "sessions": p["sessions"],
                }
                for p in top
            ],
            "empty": not chart["sessions"],
            "option": sankey_option(console.lang, chart, req.forwards),
            "csv": "/console/analytics/paths.csv?" + form.query(),
        },
    )


@router.get("/console/analytics/paths.csv")
def paths_csv(console: Reader, form: Annotated[PathsForm, Depends(paths_form)]) -> Response:
    form = form.complete(console)
    reason = blocked(console)
    if reason is not None or console.brand_id is None:
        raise ValidationFailed(translate(console.lang, reason or "common.choose_brand"))
    try:
        _, chart, top = _run(form, console.brand_id)
    except ValidationError as exc:
        raise ValidationFailed("; ".join(errors_of(exc))) from None
    return tables.download(
        [
            (
                "Links",
                ("source", "target", "sessions", "people"),
                [tuple(x.values()) for x in chart["links"]],
            ),
            (
                "Nodes",
                ("step", "event", "sessions", "people"),
                [(n["step"], n["event"], n["value"], n["people"]) for n in chart["nodes"]],
            ),
            ("Top paths", ("path", "sessions"), [(" → ".join(p["events"]), p["sessions"]) for p in top]),
        ],
        f"paths-{form.start}-{form.end}",
        "csv",
    )

"""Console pages of shared point programmes (联盟积分): the programmes list and the clearing between
brands for a period (table, chart data; the files are the API's export).

The platform (no brand chosen) sees every programme with its host, point type and every brand's
participation (earn rate, status); a brand user sees, read-only, the programmes its brand takes or
took part in, with its own participation only and how many of its members are linked and what they
hold. The clearing page is for the platform and for a brand of the programme, like the API's.

Handlers call ``points.program_admin``, ``points.programs`` and ``points.program_clearing`` (the
same verbs as ``points.programs_api``), so tenancy is the services' own: a brand outside a
programme gets 404 here as there. No queries or business rules here.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from huiyuan.console.deps import Console, requires
from huiyuan.console.forms import problems, span
from huiyuan.console.i18n import translate
from huiyuan.console.web import ConsoleRoute, render
from huiyuan.kit.errors import ValidationFailed
from huiyuan.points import clearing, program_admin, program_clearing, programs

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

Reader = Annotated[Console, requires("points:read")]
FromDate = Annotated[date | None, Query(alias="from")]
ToDate = Annotated[date | None, Query()]

BASE = "/console/points/programs"


@router.get(BASE)
def programs_page(request: Request, console: Reader) -> Response:
    session, actor = console.session, console.principal
    rows: list[dict[str, Any]] = []
    for program in program_admin.list_programs(session, actor=actor):
        row: dict[str, Any] = {"program": program_admin.program_out(session, program), "holdings": None}
        if actor.scope.brand_id is not None:
            row["holdings"] = programs.linked_holdings(session, actor=actor, code=program.code)
        rows.append(row)
    return render(
        request,
        "programs.html",
        {"rows": rows, "platform": actor.scope.is_platform_wide},
    )


def _settle(console: Console, code: str, from_: date | None, to: date | None) -> tuple[Any, Any]:
    chosen = span(console, from_, to)
    settlement = program_clearing.settle(
        console.session, actor=console.principal, code=code, start=chosen["start"], end=chosen["end"]
    )
    return chosen, settlement


@router.get(BASE + "/{code}/clearing")
def clearing_page(
    request: Request, code: str, console: Reader, from_: FromDate = None, to: ToDate = None
) -> Response:
    program = program_admin.get_program(console.session, actor=console.principal, code=code)
    chosen = span(console, from_, to)
    context: dict[str, Any] = {
        "program": program_admin.program_out(console.session, program),
        "span": chosen,
        "query": urlencode({"from": chosen["from"].isoformat(), "to": chosen["to"].isoformat()}),
        "export_query": urlencode({"from": chosen["start"].isoformat(), "to": chosen["end"].isoformat()}),
        "settlement": None,
        "errors": [],
    }
    status = 200
    try:
        _, context["settlement"] = _settle(console, code, from_, to)
    except ValidationFailed as exc:
        context["errors"], status = problems(exc), exc.status
    return render(request, "programs_clearing.html", context, status=status)


@router.get(BASE + "/{code}/clearing.json")
def clearing_chart(console: Reader, code: str, from_: FromDate = None, to: ToDate = None) -> Response:
    """Chart data: the programme's brands on the x axis, each one's net position (yuan; positive:
    the others owe it)."""
    _, s = _settle(console, code, from_, to)
    positions: list[clearing.PositionLine] = s.positions
    series = [
        {
            "name": translate(console.lang, "programs.net"),
            "data": [float(p.net) for p in positions],
        }
    ]
    return JSONResponse(
        {
            "title": translate(console.lang, "programs.net_chart"),
            "months": [s.name_of(p.party) for p in positions],
            "series": series if positions else [],
        }
    )

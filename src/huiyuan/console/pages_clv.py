"""Console page of predictive CLV per member (``analytics.member_clv``): the fitted BG/NBD and
Gamma-Gamma parameters, the brand's expected purchases and value over the horizon, members per
P(alive) band as a chart, and the members ranked by CLV, P(alive) or expected purchases, each linked
to the member's page; CSV of every member."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError

from huiyuan.analytics import clv, member_clv
from huiyuan.console.i18n import translate
from huiyuan.console.pages_analyses import (
    Reader,
    _brand,
    _page,
    bar_option,
    blocked,
    csv,
    errors_of,
    query_string,
    warehouse,
)
from huiyuan.console.web import ConsoleRoute
from huiyuan.kit.errors import ValidationFailed

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
ORDER_BY = ("clv", "p_alive", "expected_purchases")


@dataclass
class CLVForm:
    calibration_end: date | None = None
    horizon_days: int = 365
    order_by: str = "clv"
    limit: int = 50

    def request(self) -> member_clv.MemberCLVRequest:
        return member_clv.MemberCLVRequest.model_validate(
            {
                "calibration_end": self.calibration_end,
                "horizon_days": self.horizon_days,
                "order_by": self.order_by,
                "limit": self.limit,
            }
        )

    def query(self) -> str:
        return query_string({k: getattr(self, k) for k in self.__dataclass_fields__})


def clv_form(
    calibration_end: Annotated[date | None, Query()] = None,
    horizon_days: Annotated[int, Query()] = 365,
    order_by: Annotated[str, Query(max_length=20)] = "clv",
    limit: Annotated[int, Query()] = 50,
) -> CLVForm:
    return CLVForm(calibration_end, horizon_days, order_by, limit)


def _predict(form: CLVForm, brand_id: int) -> tuple[member_clv.Prediction, dict[int, str]]:
    req = form.request()
    with warehouse() as wh:
        return member_clv.run(wh.table("fact_orders"), wh.table("dim_member"), brand_id, req, wh.rows)


@router.get("/console/analytics/clv")
def clv_page(request: Request, console: Reader, form: Annotated[CLVForm, Depends(clv_form)]) -> Response:
    context: dict[str, Any] = {"form": form, "orders": ORDER_BY}
    if blocked(console) or console.brand_id is None:
        return _page(request, console, "analytics_clv.html", context)
    try:
        prediction, numbers = _predict(form, console.brand_id)
    except ValidationError as exc:
        return _page(request, console, "analytics_clv.html", {**context, "errors": errors_of(exc)}, 422)
    except clv.CLVInputError as exc:
        return _page(request, console, "analytics_clv.html", {**context, "thin": str(exc)})
    totals = prediction.totals()
    bands = [f"{b['from']:.1f}–{b['to']:.1f}" for b in totals["p_alive_buckets"]]
    option = bar_option(
        bands,
        [
            {
                "name": translate(console.lang, "analytics.members"),
                "data": [b["members"] for b in totals["p_alive_buckets"]],
                "label": {"show": True, "position": "top"},
            }
        ],
    )
    rows = [
        {"member_number": numbers.get(r["member_id"]), **r}
        for r in prediction.rows(form.order_by, form.limit)
    ]
    return _page(
        request,
        console,
        "analytics_clv.html",
        {
            **context,
            "calibration_end": prediction.calibration_end,
            "parameters": prediction.parameters(),
            "totals": totals,
            "rows": rows,
            "option": option,
            "csv": "/console/analytics/clv.csv?" + form.query(),
        },
    )


@router.get("/console/analytics/clv.csv")
def clv_csv(console: Reader, form: Annotated[CLVForm, Depends(clv_form)]) -> Response:
    brand_id = _brand(console)
    try:
        prediction, numbers = _predict(form, brand_id)
    except ValidationError as exc:
        raise ValidationFailed("; ".join(errors_of(exc))) from None
    except clv.CLVInputError as exc:
        raise ValidationFailed(str(exc)) from None
    rows = [{"member_number": numbers.get(r["member_id"]), **r} for r in prediction.rows(form.order_by)]
    return csv("CLV", rows, f"clv-{prediction.calibration_end}-{form.horizon_days}d")

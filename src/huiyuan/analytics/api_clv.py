"""``POST /api/v1/analytics/clv``: predictive CLV per member (BG/NBD + Gamma-Gamma fitted on the
brand's orders in the synced warehouse) — the fitted parameters, totals with the P(alive)
distribution, and the members ranked by CLV, P(alive) or expected purchases; as JSON, or as CSV of
every member. The caller's brand is the one analysed."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel

from huiyuan.analytics import clv, member_clv
from huiyuan.analytics.api import TAGS, Reader, _orders, _q, _table
from huiyuan.kit.errors import ValidationFailed, field_error

router = APIRouter(prefix="/api/v1")
Format = Annotated[Literal["json", "csv"], Query(description="`csv` downloads every member's prediction")]


class CLVTotalsOut(BaseModel):
    members: int
    expected_purchases: float
    clv: float
    mean_p_alive: float
    p_alive_buckets: list[dict[str, Any]]


class MemberCLVOut(BaseModel):
    member_id: int
    member_number: str | None
    x: int
    t_x: float
    T: float
    monetary: float
    p_alive: float
    expected_purchases: float
    expected_spend: float
    clv: float


class CLVOut(BaseModel):
    calibration_end: date
    horizon_days: int
    parameters: dict[str, float]
    totals: CLVTotalsOut
    items: list[MemberCLVOut]


def _run(brand_id: int, request: member_clv.MemberCLVRequest) -> tuple[member_clv.Prediction, dict[int, str]]:
    with _orders() as orders:
        members = orders._find_backend().table("dim_member")
        try:
            return member_clv.run(orders, members, brand_id, request, _q)
        except clv.CLVInputError as exc:
            raise ValidationFailed(
                "The orders cannot be fitted.",
                errors=[field_error("calibration_end", str(exc), "not_enough_history")],
            ) from exc


@router.post(
    "/analytics/clv",
    response_model=CLVOut,
    tags=TAGS,
    summary="Predictive CLV per member: BG/NBD P(alive) and purchases, Gamma-Gamma spend (JSON or CSV)",
    responses={
        200: {"content": {"text/csv": {}}},
        409: {"description": "The warehouse is not synced yet"},
        422: {"description": "Invalid request, or too little purchase history to fit"},
    },
)
def member_clv_analysis(request: member_clv.MemberCLVRequest, actor: Reader, format: Format = "json") -> Any:
    brand_id = actor.scope.require_brand()
    prediction, numbers = _run(brand_id, request)
    if format == "csv":
        rows = [
            {"member_number": numbers.get(r["member_id"]), **r} for r in prediction.rows(request.order_by)
        ]
        return _table("CLV", rows, f"clv-{prediction.calibration_end}-{request.horizon_days}d")
    return {
        "calibration_end": prediction.calibration_end,
        "horizon_days": prediction.horizon_days,
        "parameters": prediction.parameters(),
        "totals": prediction.totals(),
        "items": [
            {"member_number": numbers.get(r["member_id"]), **r}
            for r in prediction.rows(request.order_by, request.limit)
        ],
    }

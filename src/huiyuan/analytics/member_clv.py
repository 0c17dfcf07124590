"""Predictive CLV per member over the warehouse: the brand's members' orders up to a calibration end,
BG/NBD and Gamma-Gamma fitted on them (``analytics.clv``), and for every member P(alive), the
purchases expected over the next ``horizon_days``, the expected value of a purchase and the CLV.

The data step is Ibis (one row per member and business day: the day's net sales), so it runs where
the warehouse runs; fitting and prediction are numpy/scipy on those rows, one array per quantity.

* A **purchase** is a business day (``date_key``) with at least one order of the member that is
  neither cancelled nor fully refunded; its value is the day's paid amount less refunds (a zero-value
  order, e.g. a gift, is a purchase of value 0, as in the CDNOW data).
* Anonymous orders (no ``member_id``) are left out: CLV is per member.
* ``calibration_end`` defaults to the brand's last order day in the warehouse; members whose first
  purchase is on that very day have ``T = 0`` and count as new customers (``x = 0``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

import ibis.expr.types as ir
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from huiyuan.analytics import clv

# Below this many repeat buyers Gamma-Gamma has too little to go on; the API says so instead of fitting.
MIN_REPEAT_BUYERS = 10
P_ALIVE_EDGES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


class MemberCLVRequest(BaseModel):
    """What to fit and predict; ``limit`` bounds the members listed in JSON (CSV lists all)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"calibration_end": "2026-09-30", "horizon_days": 365, "limit": 20, "order_by": "clv"}
            ]
        },
    )

    calibration_end: date | None = Field(
        None, description="Last day of the calibration period; default: the brand's last order day"
    )
    horizon_days: int = Field(365, ge=1, le=3650, description="Prediction horizon in days")
    monthly_discount_rate: float = Field(0.0, ge=0, le=1, description="Discount per 30-day month")
    limit: int = Field(100, ge=1, le=10_000)
    order_by: Literal["clv", "p_alive", "expected_purchases"] = "clv"


def purchase_days(orders: ir.Table, brand_id: int, calibration_end: date | None) -> ir.Table:
    """One row per (member, business day) with the day's net value, up to ``calibration_end``."""
    t = orders.filter(
        orders.brand_id == brand_id,
        orders.member_id.notnull(),
        orders.status != "cancelled",
        orders.date_key.notnull(),
    )
    if calibration_end is not None:
        t = t.filter(t.date_key <= int(calibration_end.strftime("%Y%m%d")))
    refunded = t.refunded.fill_null(0)
    # A fully refunded order is no purchase; a zero-value one (a gift order) still is.
    t = t.filter((t.amount <= 0) | (refunded < t.amount))
    net = (t.amount - refunded).cast("float64")
    days = t.group_by([t.member_id, t.date_key]).aggregate(value=net.sum())
    return days.order_by([days.member_id, days.date_key])


def last_day(orders: ir.Table, brand_id: int) -> ir.Table:
    """The brand's last order day (``date_key``) in the warehouse, null when it has none."""
    t = orders.filter(orders.brand_id == brand_id, orders.status != "cancelled")
    return t.aggregate(last=t.date_key.max())


def member_numbers(members: ir.Table, brand_id: int) -> ir.Table:
    t = members.filter(members.brand_id == brand_id)
    return t.select(t.member_id, t.member_number)


@dataclass(frozen=True, slots=True)
class Prediction:
    """The fitted models and, per member (same order as ``member_ids``), the summary and predictions."""

    calibration_end: date
    horizon_days: int
    bgnbd: clv.BGNBD
    gamma_gamma: clv.GammaGamma
    member_ids: list[int]
    summary: clv.Summary
    p_alive: np.ndarray[Any, Any]
    expected_purchases: np.ndarray[Any, Any]
    expected_spend: np.ndarray[Any, Any]
    value: np.ndarray[Any, Any]

    def parameters(self) -> dict[str, Any]:
        b, g = self.bgnbd, self.gamma_gamma
        return {
            "r": b.r,
            "alpha": b.alpha,
            "a": b.a,
            "b": b.b,
            "p": g.p,
            "q": g.q,
            "v": g.v,
            "customers": b.customers,
            "repeat_buyers": g.customers,
            "bgnbd_log_likelihood": b.log_likelihood,
            "gamma_gamma_log_likelihood": g.log_likelihood,
        }

    def totals(self) -> dict[str, Any]:
        counts, _ = np.histogram(self.p_alive, bins=np.array(P_ALIVE_EDGES))
        return {
            "members": len(self.member_ids),
            "expected_purchases": float(self.expected_purchases.sum()),
            "clv": float(self.value.sum()),
            "mean_p_alive": float(self.p_alive.mean()),
            "p_alive_buckets": [
                {"from": lo, "to": hi, "members": int(n)}
                for lo, hi, n in zip(P_ALIVE_EDGES, P_ALIVE_EDGES[1:], counts, strict=False)
            ],
        }

    def rows(self, order_by: str, limit: int | None = None) -> list[dict[str, Any]]:
        key = {"clv": self.value, "p_alive": self.p_alive, "expected_purchases": self.expected_purchases}[
            order_by
        ]
        # Highest first; ties by member id, so pages are stable.
        order = np.lexsort((np.asarray(self.member_ids), -key))
        if limit is not None:
            order = order[:limit]
        s = self.summary
        return [
            {
                "member_id": self.member_ids[i],
                "x": int(s.x[i]),
                "t_x": round(float(s.t_x[i]), 4),
                "T": round(float(s.T[i]), 4),
                "monetary": round(float(s.monetary[i]), 2),
                "p_alive": round(float(self.p_alive[i]), 6),
                "expected_purchases": round(float(self.expected_purchases[i]), 6),
                "expected_spend": round(float(self.expected_spend[i]), 2),
                "clv": round(float(self.value[i]), 2),
            }
            for i in order
        ]


def _key_to_date(key: int) -> date:
    return date(key // 10_000, key // 100 % 100, key % 100)


def predict(days: list[dict[str, Any]], calibration_end: date, request: MemberCLVRequest) -> Prediction:
    """Fit on ``days`` (rows of ``purchase_days``) and predict per member; ``clv.CLVInputError`` when
    there is nothing to fit or too few repeat buyers."""
    summary = clv.summarise(
        ((str(r["member_id"]), _key_to_date(int(r["date_key"])), float(r["value"])) for r in days),
        calibration_end,
    )
    repeaters = int((summary.x > 0).sum())
    if repeaters < MIN_REPEAT_BUYERS:
        raise clv.CLVInputError(
            f"{repeaters} members bought on more than one day up to {calibration_end}; "
            f"at least {MIN_REPEAT_BUYERS} are needed to fit the spend model."
        )
    bgnbd = clv.fit_bgnbd(summary)
    gamma_gamma = clv.fit_gamma_gamma(summary)
    weeks = request.horizon_days / 7
    return Prediction(
        calibration_end=calibration_end,
        horizon_days=request.horizon_days,
        bgnbd=bgnbd,
        gamma_gamma=gamma_gamma,
        member_ids=[int(c) for c in summary.customers],
        summary=summary,
        p_alive=bgnbd.p_alive(summary.x, summary.t_x, summary.T),
        expected_purchases=bgnbd.expected_purchases(weeks, summary.x, summary.t_x, summary.T),
        expected_spend=gamma_gamma.expected_spend(summary.x, summary.monetary),
        value=clv.clv(
            bgnbd,
            gamma_gamma,
            summary,
            days=request.horizon_days,
            monthly_discount_rate=request.monthly_discount_rate,
        ),
    )


def run(
    orders: ir.Table, members: ir.Table, brand_id: int, request: MemberCLVRequest, fetch: Any
) -> tuple[Prediction, dict[int, str]]:
    """The whole analysis: ``fetch`` runs an Ibis expression to rows (``engine.records`` or the
    cached ``engine.query`` path). Returns the prediction and the member numbers of every member."""
    end = request.calibration_end
    if end is None:
        [row] = fetch(last_day, orders, brand_id)
        if row["last"] is None:
            raise clv.CLVInputError("The brand has no orders in the warehouse.")
        end = _key_to_date(int(row["last"]))
    days = fetch(purchase_days, orders, brand_id, end)
    prediction = predict(days, end, request)
    numbers = {int(r["member_id"]): r["member_number"] for r in fetch(member_numbers, members, brand_id)}
    return prediction, numbers

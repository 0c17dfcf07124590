"""RFM scoring, the eight classic RFM segments and lifecycle states, over the warehouse's
``fact_orders`` — written once with Ibis, so the same expression runs on DuckDB (default) and on
PostgreSQL, ClickHouse or Spark.

Per member of the brand with a paid order in the window ``(as_of − window_days, as_of]`` (business
days, ``date_key``):

* **R** recency: days from the last order's business day to ``as_of``;
* **F** frequency: orders in the window;
* **M** monetary: paid amount less refunds in the window.

Scores are 1–``levels`` (5 by default):

* ``quantiles``: the member's cumulative share in the brand, ``ceil(cume_dist × levels)`` — ties get
  the same score; R is ranked so that the most recent buyers score highest;
* ``thresholds``: 1 + the number of thresholds passed (R: days at most; F and M: at least).

**Segments.** Each score is *high* when above the brand's mean score (or a fixed ``split``):

| R | F | M | segment |
|---|---|---|---|
| high | high | high | 重要价值 important value |
| high | low | high | 重要发展 important development |
| low | high | high | 重要保持 important retention |
| low | low | high | 重要挽留 important win-back |
| high | high | low | 一般价值 general value |
| high | low | low | 一般发展 general development |
| low | high | low | 一般保持 general retention |
| low | low | low | 一般挽留 general win-back |

**Lifecycle** (every member who ever bought before ``as_of``), by days since the last order and the
brand's thresholds (default 30 / 90 / 180 / 365): active, silent, sleeping, about to churn, churned.
"""

from __future__ import annotations

import itertools
from datetime import date, timedelta
from typing import Any, Literal

import ibis
import ibis.expr.types as ir
from pydantic import BaseModel, ConfigDict, Field, model_validator

SEGMENTS: dict[tuple[bool, bool, bool], tuple[str, str, str]] = {
    (True, True, True): ("important_value", "重要价值", "Important value"),
    (True, False, True): ("important_development", "重要发展", "Important development"),
    (False, True, True): ("important_retention", "重要保持", "Important retention"),
    (False, False, True): ("important_win_back", "重要挽留", "Important win-back"),
    (True, True, False): ("general_value", "一般价值", "General value"),
    (True, False, False): ("general_development", "一般发展", "General development"),
    (False, True, False): ("general_retention", "一般保持", "General retention"),
    (False, False, False): ("general_win_back", "一般挽留", "General win-back"),
}
LIFECYCLE = ("active", "silent", "sleeping", "about_to_churn", "churned")
LIFECYCLE_LABELS = {
    "active": ("活跃", "Active"),
    "silent": ("沉默", "Silent"),
    "sleeping": ("睡眠", "Sleeping"),
    "about_to_churn": ("即将流失", "About to churn"),
    "churned": ("流失", "Churned"),
}


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    recency_days: list[int] = Field(min_length=1, max_length=9, description="Days at most, ascending")
    frequency: list[int] = Field(min_length=1, max_length=9, description="Orders at least, ascending")
    monetary: list[float] = Field(min_length=1, max_length=9, description="Amount at least, ascending")

    @model_validator(mode="after")
    def _ascending(self) -> Thresholds:
        for name in ("recency_days", "frequency", "monetary"):
            values = getattr(self, name)
            if any(b <= a for a, b in itertools.pairwise(values)):
                raise ValueError(f"{name} must be strictly ascending")
        lengths = {len(self.recency_days), len(self.frequency), len(self.monetary)}
        if len(lengths) != 1:
            raise ValueError("recency_days, frequency and monetary need the same number of thresholds")
        return self


class RFMRequest(BaseModel):
    """What to score: the brand, the day it is scored on and how."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"as_of": "2026-06-30", "window_days": 365, "scoring": "quantiles", "levels": 5},
                {
                    "as_of": "2026-06-30",
                    "scoring": "thresholds",
                    "thresholds": {
                        "recency_days": [30, 90, 180, 365],
                        "frequency": [2, 3, 5, 8],
                        "monetary": [200, 500, 1000, 3000],
                    },
                },
            ]
        },
    )

    as_of: date
    window_days: int = Field(default=365, ge=1, le=3660)
    scoring: Literal["quantiles", "thresholds"] = "quantiles"
    levels: int = Field(default=5, ge=2, le=10, description="Score levels for quantile scoring")
    thresholds: Thresholds | None = None
    split: float | None = Field(
        default=None, description="A score above this is high; default: above the brand's mean score"
    )

    @model_validator(mode="after")
    def _thresholds_given(self) -> RFMRequest:
        if self.scoring == "thresholds" and self.thresholds is None:
            raise ValueError("thresholds scoring needs thresholds")
        return self


class LifecycleRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"as_of": "2026-06-30"},
                {"as_of": "2026-06-30", "thresholds_days": [45, 120, 240, 540]},
            ]
        },
    )

    as_of: date
    thresholds_days: list[int] = Field(
        default=[30, 90, 180, 365],
        min_length=4,
        max_length=4,
        description="Upper bounds (days since the last order) of active, silent, sleeping, about to churn",
    )

    @model_validator(mode="after")
    def _ascending(self) -> LifecycleRequest:
        t = self.thresholds_days
        if any(b <= a for a, b in itertools.pairwise(t)):
            raise ValueError("thresholds_days must be strictly ascending")
        return self


def _key(day: date) -> int:
    return day.year * 10_000 + day.month * 100 + day.day


def _day(date_key: ir.IntegerValue) -> ir.DateValue:
    return ibis.date(date_key // 10_000, (date_key // 100) % 100, date_key % 100)


def _per_member(orders: ir.Table, brand_id: int, since: date | None, as_of: date) -> ir.Table:
    paid = orders.filter(
        orders.brand_id == brand_id,
        orders.member_id.notnull(),
        orders.date_key <= _key(as_of),
        orders.status != "cancelled",
    )
    if since is not None:
        paid = paid.filter(paid.date_key > _key(since))
    per = paid.group_by(paid.member_id).aggregate(
        last_key=paid.date_key.max(),
        frequency=paid.order_id.count(),
        monetary=(paid.amount - paid.refunded.fill_null(0)).sum(),
    )
    return per.mutate(recency=ibis.literal(as_of).delta(_day(per.last_key), unit="day")).drop("last_key")


def _quantile(value: ir.NumericValue, levels: int, *, descending: bool) -> ir.IntegerValue:
    order = ibis.desc(value) if descending else ibis.asc(value)
    share = ibis.cume_dist().over(order_by=order)
    # cume_dist is the share of members at or below the value: ties share one score.
    return (share * levels - 1e-9).ceil().clip(lower=1, upper=levels).cast("int32")


def _passed(value: ir.NumericValue, thresholds: list[Any], *, at_most: bool) -> ir.IntegerValue:
    total: ir.IntegerValue = ibis.literal(1)
    for t in thresholds:
        total = total + ((value <= t) if at_most else (value >= t)).cast("int32")
    return total.cast("int32")


def rfm(orders: ir.Table, brand_id: int, request: RFMRequest) -> ir.Table:
    """One row per member who bought in the window: recency, frequency, monetary, r/f/m scores,
    whether each is high, and the segment code. Order is by member id."""
    since = request.as_of - timedelta(days=request.window_days)
    per = _per_member(orders, brand_id, since, request.as_of)
    if request.scoring == "quantiles":
        scored = per.mutate(
            r=_quantile(per.recency, request.levels, descending=True),
            f=_quantile(per.frequency, request.levels, descending=False),
            m=_quantile(per.monetary, request.levels, descending=False),
        )
    else:
        assert request.thresholds is not None
        t = request.thresholds
        scored = per.mutate(
            r=_passed(per.recency, t.recency_days, at_most=True),
            f=_passed(per.frequency, t.frequency, at_most=False),
            m=_passed(per.monetary, t.monetary, at_most=False),
        )
    if request.split is not None:
        cut_r = cut_f = cut_m = ibis.literal(request.split)
    else:
        whole = ibis.window()
        cut_r, cut_f, cut_m = (scored[c].mean().over(whole) for c in ("r", "f", "m"))
    flagged = scored.mutate(r_high=scored.r > cut_r, f_high=scored.f > cut_f, m_high=scored.m > cut_m)
    segment = ibis.cases(
        *(
            ((flagged.r_high == r) & (flagged.f_high == f) & (flagged.m_high == m), code)
            for (r, f, m), (code, _zh, _en) in SEGMENTS.items()
        )
    )
    return flagged.mutate(segment=segment).order_by("member_id")


def segment_summary(scored: ir.Table) -> ir.Table:
    """Members, share, and mean recency/frequency/monetary per segment."""
    total = scored.count()
    return (
        scored.group_by("segment")
        .aggregate(
            members=scored.member_id.count(),
            recency=scored.recency.mean(),
            frequency=scored.frequency.mean(),
            monetary=scored.monetary.sum(),
        )
        .mutate(share=ibis._.members.cast("float64") / total.as_scalar().cast("float64"))
        .order_by("segment")
    )


def lifecycle(orders: ir.Table, brand_id: int, request: LifecycleRequest) -> ir.Table:
    """One row per member who ever bought before ``as_of``: days since the last order and state."""
    per = _per_member(orders, brand_id, None, request.as_of)
    active, silent, sleeping, about = request.thresholds_days
    state = ibis.cases(
        (per.recency <= active, "active"),
        (per.recency <= silent, "silent"),
        (per.recency <= sleeping, "sleeping"),
        (per.recency <= about, "about_to_churn"),
        else_="churned",
    )
    return (
        per.mutate(state=state)
        .select("member_id", "recency", "frequency", "monetary", "state")
        .order_by("member_id")
    )

"""Retention over the warehouse's ``fact_events``, written once with Ibis.

* **Cohorts.** ``first_time``: a person's first start event inside ``[start, end]`` puts them in the
  cohort of its day / week (from Monday) / month; ``recurring``: every period in which the person
  did the start event is a cohort entry of its own.
* **Period n** of an entry is the n-th day / week / month after its cohort's (business days in the
  brand's time zone, ``date_key``). Period 0 is the cohort itself (everyone in it, by definition).
* **Measures.** ``on``: the entry did the return event in period n; ``on_or_after``: in period n or
  any later one (up to ``as_of``); ``between n and m`` (``interval``): in any period n…m.
* **Old enough.** A cohort counts for period n only when that period has begun by ``as_of``; the
  overall curve at n is Σ returned ÷ Σ cohort size over those cohorts (weighted by size).
* **Breakdown** by a property of the start event (the cohort-defining one).
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

import ibis
import ibis.expr.types as ir
from pydantic import BaseModel, ConfigDict, Field, model_validator

from huiyuan.analytics.funnel import Step, _matches, _text
from huiyuan.analytics.kpi import business_day

Unit = Literal["day", "week", "month"]


class RetentionRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "start": "2026-06-01",
                    "end": "2026-06-30",
                    "as_of": "2026-07-31",
                    "start_event": {"event": "Signed Up"},
                    "return_event": {"event": "Order Completed"},
                    "unit": "week",
                    "periods": 8,
                    "cohort": "first_time",
                    "measure": "on",
                }
            ]
        },
    )

    start: date
    end: date
    as_of: date
    start_event: Step
    return_event: Step
    unit: Unit = "day"
    periods: int = Field(default=7, ge=1, le=120)
    cohort: Literal["first_time", "recurring"] = "first_time"
    measure: Literal["on", "on_or_after"] = "on"
    interval: tuple[int, int] | None = Field(
        default=None, description="Also count people who returned in any period n…m (n ≥ 1, m ≤ periods)"
    )
    breakdown: str | None = Field(default=None, max_length=120, pattern=r"^[A-Za-z0-9_.$-]+$")

    @model_validator(mode="after")
    def _consistent(self) -> RetentionRequest:
        if self.end < self.start:
            raise ValueError("end must not be before start")
        if self.as_of < self.end:
            raise ValueError("as_of must not be before end")
        if self.interval is not None and not 1 <= self.interval[0] <= self.interval[1] <= self.periods:
            raise ValueError("interval must be n…m with 1 ≤ n ≤ m ≤ periods")
        return self


def _key(day: date) -> int:
    return day.year * 10_000 + day.month * 100 + day.day


def _bucket(day: ir.DateValue, unit: Unit) -> ir.DateValue:
    return day if unit == "day" else day.truncate("W" if unit == "week" else "M")


def _index(later: ir.DateValue, earlier: ir.DateValue, unit: Unit) -> ir.IntegerValue:
    """Whole periods from ``earlier``'s bucket to ``later``'s bucket."""
    if unit == "month":
        return (later.year() * 12 + later.month()) - (earlier.year() * 12 + earlier.month())
    days = later.delta(earlier, unit="day")
    return days if unit == "day" else days // 7


def _literal_bucket(day: date, unit: Unit) -> ir.DateValue:
    return _bucket(ibis.literal(day), unit)


def cohorts(events: ir.Table, brand_id: int, request: RetentionRequest) -> ir.Table:
    """One row per cohort entry: person, cohort bucket, breakdown value, and for each period
    1…``periods`` whether the entry returned then (``r1`` …)."""
    brand = events.filter(events.brand_id == brand_id, events.date_key <= _key(request.as_of))
    unit = request.unit
    starts = brand.filter(
        _matches(brand, request.start_event),
        brand.date_key >= _key(request.start),
        brand.date_key <= _key(request.end),
    )
    # Only the columns the cohorts need go further: a window over the wide event rows (properties,
    # context) costs several times the query.
    starts = starts.select(
        person=starts.person_key,
        ts=starts.ts,
        event_id=starts.event_id,
        cohort=_bucket(business_day(starts.date_key), unit),
        value=_text(starts, request.breakdown) if request.breakdown else ibis.null("string"),
    )
    if request.breakdown is None:
        # Without a breakdown an entry is its person and bucket: the first-time cohort is the earliest
        # bucket (buckets follow the event time), a recurring one every bucket — plain aggregates.
        if request.cohort == "first_time":
            entries = starts.group_by("person").aggregate(cohort=starts.cohort.min())
        else:
            entries = starts.select("person", "cohort").distinct()
        entries = entries.mutate(value=ibis.null("string"))
    else:
        # The breakdown value is the entry event's: the first event of the person (or of the bucket).
        by = ["person"] if request.cohort == "first_time" else ["person", "cohort"]
        ranked = starts.mutate(_n=ibis.row_number().over(group_by=by, order_by=[starts.ts, starts.event_id]))
        entries = ranked.filter(ranked._n == 0).select("person", "cohort", "value")
    returns = brand.filter(_matches(brand, request.return_event))
    returns = returns.select(
        rp=returns.person_key, rbucket=_bucket(business_day(returns.date_key), unit)
    ).distinct()
    # One pass over the entries: those that never returned keep a row with null periods.
    joined = entries.left_join(returns, entries.person == returns.rp)
    joined = joined.mutate(n=_index(joined.rbucket, joined.cohort, unit))
    later = joined.n >= 1
    return joined.group_by(["person", "cohort", "value"]).aggregate(
        **{f"r{k}": (joined.n == k).any() for k in range(1, request.periods + 1)},
        last_n=joined.n.max(where=later),
    )


def retention(events: ir.Table, brand_id: int, request: RetentionRequest) -> ir.Table:
    """The cohort table: per cohort (and breakdown value) its size and, for n = 1…``periods``, the
    people counted at n (``n1`` …) and whether the cohort is old enough for n (``e1`` …); with an
    interval, ``between`` and ``e_between`` (old enough once period m has begun)."""
    c = cohorts(events, brand_id, request)
    unit = request.unit
    as_of = _literal_bucket(request.as_of, unit)
    aggs = {"size": c.person.count()}
    for k in range(1, request.periods + 1):
        if request.measure == "on_or_after":
            counted = c.last_n.fill_null(0) >= k
        else:
            counted = c[f"r{k}"].fill_null(False)
        aggs[f"n{k}"] = counted.sum()
    if request.interval is not None:
        lo, hi = request.interval
        between = ibis.literal(False)
        for j in range(lo, min(hi, request.periods) + 1):
            between = between | c[f"r{j}"].fill_null(False)
        aggs["between"] = between.sum()
    keys = ["cohort", "value"] if request.breakdown else ["cohort"]
    table = c.group_by(keys).aggregate(**aggs)
    age = _index(as_of, table.cohort, unit)
    eligible = {f"e{k}": age >= k for k in range(1, request.periods + 1)}
    if request.interval is not None:
        eligible["e_between"] = age >= request.interval[1]
    return table.mutate(**eligible).order_by(keys)


def curve(table: list[dict[str, Any]], periods: int) -> list[dict[str, Any]]:
    """The overall curve from a computed cohort table: at n, Σ counted ÷ Σ size over the cohorts
    old enough for n (None when none is)."""
    out: list[dict[str, Any]] = []
    for k in range(1, periods + 1):
        rows = [r for r in table if r.get(f"e{k}")]
        size = sum(int(r["size"]) for r in rows)
        counted = sum(int(r[f"n{k}"] or 0) for r in rows)
        out.append(
            {"period": k, "cohorts": len(rows), "size": size, "rate": counted / size if size else None}
        )
    return out

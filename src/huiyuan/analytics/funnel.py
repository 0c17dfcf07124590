"""Funnels over the warehouse's ``fact_events``, written once with Ibis (DuckDB by default; the same
expression runs on PostgreSQL, ClickHouse or Spark).

Semantics, per person (``person_key``):

* **Entries.** Every step-1 event (matching its filters, inside ``[start, end]`` business days) is an
  entry; its window is ``[t₁, t₁ + window]``.
* **sequential** (default): step k+1 is the first matching event at or after step k's time, still
  inside the entry's window; other events may happen in between.
* **strict**: step k+1 must be the person's *very next* event after step k (the person's events of
  the brand ordered by time, then event id), inside the window.
* **any_order**: step k (k ≥ 2) is done when a matching event happens inside the window, in any
  order; the entry reaches step k when steps 1…k are all done.
* **Exclusions**: an exclusion event strictly between step i and step i + 1 of an entry stops that
  entry at step i.
* **One entry per person**: the entry that reaches the furthest step, the earliest on ties (the
  "uniques" counting of Mixpanel and Amplitude). The person counts once at every step up to it.
* **Breakdown** by an event property: ``first_touch`` takes the value on the step-1 event, ``step:N``
  the value on the step-N event (people who did not reach step N fall under ``null``).
* **Time to convert** to step k: seconds from step 1; median and 90th percentile over the people who
  reached it.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

import ibis
import ibis.expr.types as ir
from pydantic import BaseModel, ConfigDict, Field, model_validator

from huiyuan.analytics.kpi import business_day

Op = Literal["eq", "neq", "in", "gt", "lt"]


class PropertyFilter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    property: str = Field(min_length=1, max_length=120, pattern=r"^[A-Za-z0-9_.$-]+$")
    op: Op = "eq"
    value: str | float | list[str] | list[float]


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event: str = Field(min_length=1, max_length=200)
    filters: list[PropertyFilter] = Field(default_factory=list, max_length=10)


class Exclusion(Step):
    after_step: int = Field(ge=1, description="Between this step and the next")


class FunnelRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "start": "2026-06-01",
                    "end": "2026-06-30",
                    "steps": [
                        {"event": "Product Viewed"},
                        {
                            "event": "Product Added",
                            "filters": [{"property": "price", "op": "gt", "value": 100}],
                        },
                        {"event": "Order Completed"},
                    ],
                    "window_seconds": 86400,
                    "mode": "sequential",
                    "breakdown": "channel",
                    "attribution": "first_touch",
                }
            ]
        },
    )

    start: date
    end: date
    steps: list[Step] = Field(min_length=2, max_length=10)
    window_seconds: int = Field(default=86_400, ge=1, le=90 * 86_400)
    mode: Literal["sequential", "strict", "any_order"] = "sequential"
    exclusions: list[Exclusion] = Field(default_factory=list, max_length=5)
    breakdown: str | None = Field(default=None, max_length=120, pattern=r"^[A-Za-z0-9_.$-]+$")
    attribution: str = Field(default="first_touch", pattern=r"^(first_touch|step:[0-9]+)$")
    trend: Literal["day", "week", "month"] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> FunnelRequest:
        if self.end < self.start:
            raise ValueError("end must not be before start")
        for ex in self.exclusions:
            if ex.after_step >= len(self.steps):
                raise ValueError("an exclusion's after_step must be before the last step")
        if self.attribution.startswith("step:") and not 1 <= int(self.attribution[5:]) <= len(self.steps):
            raise ValueError("attribution step out of range")
        return self


def _property(t: ir.Table, name: str) -> ir.Value:
    return t.properties[name]


def _on_spark(t: ir.Table) -> bool:
    return bool(t._find_backend().name == "pyspark")


def _text(t: ir.Table, name: str) -> ir.StringValue:
    """A property's string value. Spark's ``get_json_object`` hands a string back without its
    quotes, which Ibis 12's pyspark backend parses as JSON again (and fails on): there the value is
    cast instead (a number or an object then reads as its JSON text, not null)."""
    raw = _property(t, name)
    return raw.cast("string") if _on_spark(t) else raw.str


def _number(t: ir.Table, name: str) -> ir.FloatingValue:
    """A property's numeric value (null when it is not a number; on Spark, see ``_text``, a string
    holding a number reads as that number)."""
    raw = _property(t, name)
    return raw.cast("string").try_cast("float64") if _on_spark(t) else raw.float


def _matches(t: ir.Table, step: Step) -> ir.BooleanValue:
    cond = t.event == step.event
    for f in step.filters:
        numeric = isinstance(f.value, (int, float)) or (
            isinstance(f.value, list) and f.value and isinstance(f.value[0], (int, float))
        )
        value = _number(t, f.property) if numeric else _text(t, f.property)
        if f.op == "eq":
            cond &= value == f.value
        elif f.op == "neq":
            cond &= (value != f.value) | value.isnull()
        elif f.op == "in":
            cond &= value.isin(list(f.value) if isinstance(f.value, list) else [f.value])
        elif f.op == "gt":
            cond &= value > f.value
        else:
            cond &= value < f.value
    return cond


def _key(day: date) -> int:
    return day.year * 10_000 + day.month * 100 + day.day


def entries(events: ir.Table, brand_id: int, request: FunnelRequest) -> ir.Table:
    """One row per person: the chosen entry's step times ``t1 … tN`` (null past the reached step),
    ``reached`` and the breakdown value.

    Only entries that reach step 2 are carried through the later steps (``_converting``): most
    entries go nowhere, and a person none of whose entries converts is one hash aggregate over the
    step-1 events (``_pick``)."""
    brand = events.filter(events.brand_id == brand_id)
    n = len(request.steps)
    if request.mode == "strict":
        brand = brand.mutate(
            seq=ibis.row_number().over(group_by=brand.person_key, order_by=[brand.ts, brand.event_id])
        )
    else:
        brand = brand.mutate(seq=brand.event_id)
    by_step = [brand.filter(_matches(brand, step)) for step in request.steps]
    first = by_step[0].filter(
        by_step[0].date_key >= _key(request.start), by_step[0].date_key <= _key(request.end)
    )
    bk = request.breakdown
    entry = first.select(
        person=first.person_key,
        entry_id=first.event_id,
        t1=first.ts,
        d1=first.date_key,
        seq1=first.seq,
        b1=_text(first, bk) if bk else ibis.null("string"),
    )
    conv = _converting(entry, brand, by_step, request)
    reached = ibis.literal(2)
    alive = ibis.literal(True)
    for k in range(3, n + 1):
        alive = alive & conv[f"t{k}"].notnull()
        reached = reached + alive.cast("int32")
    conv = conv.mutate(reached=reached.cast("int32"))
    for ex in request.exclusions:
        x = brand.filter(_matches(brand, ex)).select(xp=brand.person_key, xt=brand.ts)
        lo, hi = f"t{ex.after_step}", f"t{ex.after_step + 1}"
        hit = (
            conv.join(x, [conv.person == x.xp, x.xt > conv[lo], x.xt < conv[hi]])
            .select("entry_id")
            .distinct()
        )
        hits = hit.select(hit_id=hit.entry_id)
        flagged = conv.left_join(hits, conv.entry_id == hits.hit_id)
        conv = flagged.mutate(
            reached=ibis.cases(
                (flagged.hit_id.notnull() & (flagged.reached > ex.after_step), ex.after_step),
                else_=flagged.reached,
            )
        ).drop("hit_id")
    chosen = _pick(entry, conv, n, exact_first=bool(bk))
    if request.attribution == "first_touch":
        value = chosen.b1
    else:
        k = int(request.attribution[5:])
        value = ibis.cases((chosen.reached >= k, chosen[f"b{k}"]), else_=ibis.null("string"))
    return chosen.mutate(breakdown=value)


def _converting(
    entry: ir.Table, brand: ir.Table, by_step: list[ir.Table], request: FunnelRequest
) -> ir.Table:
    """The entries that reach step 2, with ``t2, seq2, b2`` and, left-joined, the later steps.

    Each step joins the entries to the step's events on the person (hash joins), applies the tie
    rule as a filter after the join, and keeps each entry's earliest match (ties: the lower sequence
    number): a join with an OR in its condition makes DuckDB fall back to a nested loop (96 s instead
    of well under one on 400k events). When nothing after a step needs its sequence number or
    property value (the last step, no breakdown on it), the earliest match is a plain ``min``."""
    window = ibis.interval(seconds=request.window_seconds)
    n = len(request.steps)
    bk = request.breakdown
    attributed = int(request.attribution[5:]) if request.attribution.startswith("step:") else 1
    cur = entry
    for k in range(2, n + 1):
        prev_t, prev_seq = f"t{k - 1}", f"seq{k - 1}"
        nxt = by_step[k - 1]
        cand = nxt.select(
            p=nxt.person_key,
            tk=nxt.ts,
            seqk=nxt.seq,
            bk=_text(nxt, bk) if bk and attributed == k else ibis.null("string"),
        )
        # Step 2 carries every column of the entry through the join (no join back: only the entries
        # that reach it go on); later steps join their match back to the converting entries.
        keep = cur.columns if k == 2 else ["entry_id", "person", "t1", prev_t, prev_seq]
        left = (cur if k == 2 else cur.filter(cur[prev_t].notnull())).select(*dict.fromkeys(keep))
        if request.mode == "any_order":
            cond = [left.person == cand.p, cand.tk >= left.t1, cand.tk <= left.t1 + window]
        elif request.mode == "strict":
            cond = [left.person == cand.p, cand.seqk == left[prev_seq] + 1, cand.tk <= left.t1 + window]
        else:
            cond = [left.person == cand.p, cand.tk >= left[prev_t], cand.tk <= left.t1 + window]
        pairs = left.join(cand, cond)
        if request.mode == "sequential":
            pairs = pairs.filter((pairs.tk > pairs[prev_t]) | (pairs.seqk > pairs[prev_seq]))
        if k == n and attributed != k:
            # Group by what is read after this step only: the previous step's sequence number and a
            # breakdown value nobody asked for come back as nulls (fewer keys, a cheaper aggregate).
            needed = [c for c in left.columns if c != prev_seq and not (c == "b1" and not bk)]
            best = pairs.group_by(*needed).aggregate(
                tk=pairs.tk.min(), seqk=ibis.null("int64"), bk=ibis.null("string")
            )
            best = best.mutate(
                **{
                    c: ibis.null(left.schema()[c].copy(nullable=True))
                    for c in left.columns
                    if c not in needed
                }
            )
            best = best.select(*left.columns, "tk", "seqk", "bk")
        else:
            ranked = pairs.mutate(
                _rank=ibis.row_number().over(group_by=pairs.entry_id, order_by=[pairs.tk, pairs.seqk])
            )
            best = ranked.filter(ranked._rank == 0).select(*left.columns, "tk", "seqk", "bk")
        step = {f"t{k}": "tk", f"seq{k}": "seqk", f"b{k}": "bk"}
        if k == 2:
            cur = best.rename(**step)
            continue
        best = best.select(best_entry=best.entry_id, tk=best.tk, seqk=best.seqk, bk=best.bk)
        joined = cur.left_join(best, cur.entry_id == best.best_entry)
        cur = joined.select(
            *[c for c in cur.columns],
            **{f"t{k}": joined.tk, f"seq{k}": joined.seqk, f"b{k}": joined.bk},
        )
    return cur


def _pick(entry: ir.Table, conv: ir.Table, n: int, exact_first: bool) -> ir.Table:
    """One entry per person: the furthest, then the earliest (``t1``), then the lowest id.

    People with an entry that reached step 2 or further: the first of their converting entries (a
    ``row_number()`` over those few). Everyone else reached step 1 only: their earliest entry, which
    is one hash aggregate over the step-1 events (the earliest ``t1`` and its day; days follow the
    time) — a ``row_number()`` over every entry sorts them all by person (2.1 of 3.3 s on 10M
    events). Only when that entry's own breakdown value is needed (``exact_first``) are all entries
    ranked."""

    def ranked(t: ir.Table) -> ir.Table:
        r = t.mutate(
            _pick=ibis.row_number().over(group_by=t.person, order_by=[ibis.desc(t.reached), t.t1, t.entry_id])
        )
        return r.filter(r._pick == 0).drop("_pick")

    converting = ranked(conv.filter(conv.reached >= 2))
    if exact_first:
        earliest = ranked(entry.mutate(reached=ibis.literal(1, "int32")))
    else:
        earliest = entry.group_by("person").aggregate(t1=entry.t1.min(), d1=entry.d1.min())
    # Everyone who entered, with their converting entry where they have one (a left join, so the
    # converting entries are computed once).
    c = converting.rename(**{f"c_{name}": name for name in converting.columns})
    both = earliest.left_join(c, earliest.person == c.c_person)
    has = both.c_person.notnull()
    schema = converting.schema()
    cols: dict[str, ir.Value] = {}
    for name in converting.columns:
        mine = both[f"c_{name}"]
        if name == "person":
            cols[name] = both.person
        elif name == "reached":
            cols[name] = ibis.cases((has, mine), else_=ibis.literal(1, schema[name]))
        elif name in earliest.columns:
            cols[name] = ibis.cases((has, mine), else_=both[name].cast(schema[name]))
        else:
            cols[name] = mine
    return both.select(**cols)


def funnel(events: ir.Table, brand_id: int, request: FunnelRequest) -> ir.Table:
    """Per breakdown value (or one row when there is none): people at each step ``step_1 …
    step_N`` and the median / p90 seconds to each step ``median_s_k``, ``p90_s_k``."""
    e = entries(events, brand_id, request)
    n = len(request.steps)
    aggs: dict[str, Any] = {}
    for k in range(1, n + 1):
        aggs[f"step_{k}"] = (e.reached >= k).sum()
    for k in range(2, n + 1):
        secs = (e[f"t{k}"].epoch_seconds() - e.t1.epoch_seconds()).cast("float64")
        reached = e.reached >= k
        aggs[f"median_s_{k}"] = secs.quantile(0.5, where=reached)
        aggs[f"p90_s_{k}"] = secs.quantile(0.9, where=reached)
    keys = ["breakdown"] if request.breakdown else []
    out = e.group_by(keys).aggregate(**aggs) if keys else e.aggregate(**aggs)
    out = out.mutate(**{f"step_{k}": out[f"step_{k}"].fill_null(0) for k in range(1, n + 1)})  # no entries
    return out.order_by([ibis.desc("step_1"), "breakdown"]) if keys else out


def trend(
    events: ir.Table, brand_id: int, request: FunnelRequest, grain: Literal["day", "week", "month"]
) -> ir.Table:
    """People entering and converting (reaching the last step) per entry day / week / month."""
    e = entries(events, brand_id, request)
    n = len(request.steps)
    day = business_day(e.d1)
    bucket = day if grain == "day" else day.truncate("W" if grain == "week" else "M")
    e = e.mutate(bucket=bucket)
    return (
        e.group_by("bucket")
        .aggregate(entered=e.person.count(), converted=(e.reached >= n).sum())
        .order_by("bucket")
    )


def rates(row: dict[str, Any], steps: int) -> dict[str, Any]:
    """Overall (from step 1) and step-to-step conversion rates of one result row."""
    first = row.get("step_1") or 0
    out = {}
    for k in range(1, steps + 1):
        here = row.get(f"step_{k}") or 0
        before = row.get(f"step_{k - 1}") or 0 if k > 1 else here
        out[f"overall_{k}"] = here / first if first else None
        out[f"from_previous_{k}"] = here / before if before else None
    return out

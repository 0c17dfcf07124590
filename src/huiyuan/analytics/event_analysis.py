"""Event analysis over the warehouse's ``fact_events`` (and ``dim_member`` for member dimensions),
written once with Ibis: how often events happen, to how many people, and what their properties add
up to — per day / week / month or over the whole range, per property value or member segment.

Semantics (business days ``[start, end]`` in the brand's time zone, ``date_key``):

* A **series** is one event name with optional property filters (as in funnels) and a measure:
  ``count`` (events), ``users`` (distinct ``person_key``), ``per_user`` (events ÷ users),
  ``sum`` / ``avg`` of a numeric property (events without it are left out of ``avg``) and
  ``distinct`` (distinct values of a property).
* **Granularity** ``day``, ``week`` (from Monday) or ``month`` cuts the range into buckets; ``total``
  is one bucket, named by ``start``. Buckets without events are absent.
* **Group by** an event property (its value on each event; missing → ``null``) or a member
  dimension (``dim_member`` through the event's ``member_id``; events of no member → ``null``).
  Every measure is computed from the events of the group, so a person with events in two groups
  counts once in each.
* **Top N and "other".** Per series, groups are ranked by their value over the whole range (largest
  first, ties by value name); groups past the first ``top`` fold into one ``other`` row whose
  measure is computed again from its events (users of ``other`` are distinct over all of them,
  never a sum of the groups' users).
* **Share** (composition) = a group's value ÷ the series' value with no grouping, for ``count``,
  ``sum``, ``users`` and ``distinct``: count and sum shares add up to 1; users and distinct shares
  may add up to more, because one person (or value) can fall into several groups. Averages have
  no share (``null``).
* **Distribution** (``distribution``): per person who did the event in the range, how many times
  (``times``), on how many business days (``days``), or the sum of a property (``sum``); people are
  counted per bucket. ``edges`` e₀ < … < eₙ give ``[eᵢ, eᵢ₊₁)`` buckets, the last open-ended (values
  below e₀ are left out); otherwise ``buckets`` automatic buckets from the smallest to the largest
  value, of a whole-number width for ``times`` and ``days`` (``huiyuan.analytics.buckets``, shared
  with the members' distribution).

The caller passes the brand; the expressions filter every table on it and never read another one.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal, get_args

import ibis
import ibis.expr.types as ir
from pydantic import BaseModel, ConfigDict, Field, model_validator

from huiyuan.analytics.buckets import bucketed
from huiyuan.analytics.funnel import Step, _matches, _property
from huiyuan.analytics.kpi import Period, business_day

Measure = Literal["count", "users", "per_user", "sum", "avg", "distinct"]
Granularity = Literal["day", "week", "month", "total"]
MemberField = Literal["tier", "city", "province", "gender", "enroll_channel", "status", "birth_year"]
PROPERTY_MEASURES = ("sum", "avg", "distinct")
SHARED = ("count", "users", "sum", "distinct")  # measures with a share of the series' value


class EventSeries(Step):
    """One line of the analysis: an event (with filters) and what to measure of it."""

    measure: Measure = "count"
    property: str | None = Field(
        default=None, max_length=120, pattern=r"^[A-Za-z0-9_.$-]+$", description="For sum, avg, distinct"
    )
    label: str | None = Field(default=None, max_length=120)

    @model_validator(mode="after")
    def _property_when_needed(self) -> EventSeries:
        if self.measure in PROPERTY_MEASURES and not self.property:
            raise ValueError(f"the measure {self.measure!r} needs a property")
        if self.measure not in PROPERTY_MEASURES and self.property:
            raise ValueError(f"the measure {self.measure!r} takes no property")
        return self

    def title(self) -> str:
        if self.label:
            return self.label
        return f"{self.event} · {self.measure}" + (f"({self.property})" if self.property else "")


class GroupBy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: Literal["event", "member"] = "event"
    field: str = Field(min_length=1, max_length=120, pattern=r"^[A-Za-z0-9_.$-]+$")

    @model_validator(mode="after")
    def _known_member_field(self) -> GroupBy:
        if self.source == "member" and self.field not in get_args(MemberField):
            raise ValueError(f"member fields: {', '.join(get_args(MemberField))}")
        return self


class EventAnalysisRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "start": "2026-06-01",
                    "end": "2026-06-30",
                    "events": [
                        {"event": "Product Viewed", "measure": "users"},
                        {
                            "event": "Order Completed",
                            "measure": "sum",
                            "property": "revenue",
                            "filters": [{"property": "channel", "op": "eq", "value": "app"}],
                        },
                    ],
                    "granularity": "week",
                    "group_by": {"source": "member", "field": "tier"},
                    "top": 5,
                }
            ]
        },
    )

    start: date
    end: date
    events: list[EventSeries] = Field(min_length=1, max_length=10)
    granularity: Granularity = "day"
    group_by: GroupBy | None = None
    top: int = Field(default=10, ge=1, le=100, description="Groups kept per series; the rest is `other`")

    @model_validator(mode="after")
    def _valid(self) -> EventAnalysisRequest:
        Period(start=self.start, end=self.end)
        if self.granularity == "day" and (self.end - self.start).days > 731:
            raise ValueError("a daily trend covers at most two years")
        return self


def _key(day: date) -> int:
    return day.year * 10_000 + day.month * 100 + day.day


def _in_range(events: ir.Table, brand_id: int, start: date, end: date, names: list[str]) -> ir.Table:
    return events.filter(
        events.brand_id == brand_id,
        events.date_key >= _key(start),
        events.date_key <= _key(end),
        events.event.isin(names),
    )


def _with_group(
    events: ir.Table, brand_id: int, group_by: GroupBy | None, members: ir.Table | None
) -> ir.Table:
    """The events with a ``grp`` column (string; null when there is no grouping or no value)."""
    if group_by is None:
        return events.mutate(grp=ibis.null("string"))
    if group_by.source == "event":
        return events.mutate(grp=_text(_property(events, group_by.field)))
    if members is None:
        raise ValueError("grouping by a member field needs dim_member")
    m = members.filter(members.brand_id == brand_id)
    m = m.select(dim_member_id=m.member_id, dim_value=m[group_by.field].cast("string"))
    joined = events.left_join(m, events.member_id == m.dim_member_id)
    return joined.select(*events.columns, grp=joined.dim_value)


def _text(value: ir.Value) -> ir.StringValue:
    """A property as text: a JSON string's value, a number or boolean as written (``3``, ``2.5``,
    ``true``); null when missing or JSON null."""
    raw = value.cast("string")
    return value.str.coalesce(ibis.cases((raw == "null", ibis.null("string")), else_=raw))


def _bucket(day: ir.DateValue, granularity: Granularity, start: date) -> ir.DateValue:
    if granularity == "total":
        return ibis.literal(start)
    return day if granularity == "day" else day.truncate("W" if granularity == "week" else "M")


def _measure(t: ir.Table, measure: Measure) -> ir.FloatingValue:
    if measure == "count":
        value: ir.Value = t.person.count()
    elif measure == "users":
        value = t.person.nunique()
    elif measure == "per_user":
        value = t.person.count().cast("float64") / t.person.nunique().cast("float64")
    elif measure == "sum":
        value = t.num.sum()
    elif measure == "avg":
        value = t.num.mean()
    else:
        value = t.text.nunique()
    return value.cast("float64")


def _rows(base: ir.Table, series: EventSeries, granularity: Granularity, start: date) -> ir.Table:
    e = base.filter(_matches(base, series))
    prop = _property(e, series.property) if series.property else None
    return e.select(
        person=e.person_key,
        bucket=_bucket(business_day(e.date_key), granularity, start),
        grp=e.grp,
        num=prop.float if prop is not None else ibis.null("float64"),
        text=_text(prop) if prop is not None else ibis.null("string"),
    )


def _folded(rows: ir.Table, measure: Measure, top: int) -> ir.Table:
    """The rows with ``grp`` kept for the ``top`` groups by value and null with ``other`` true for
    the rest, and ``rank`` (0-based) of the kept groups."""
    per_group = rows.group_by("grp").aggregate(value=_measure(rows, measure))
    ranked = per_group.mutate(
        rank=ibis.row_number().over(
            order_by=[
                ibis.desc(per_group.value, nulls_first=False),
                ibis.asc(per_group.grp, nulls_first=False),
            ]
        )
    )
    kept = ranked.filter(ranked["rank"] < top).select(kept_grp=ranked.grp, kept_rank=ranked["rank"])
    # Null-safe equality as two plain equalities, so that every backend can hash-join on them
    # (PostgreSQL cannot with IS NOT DISTINCT FROM).
    joined = rows.left_join(
        kept,
        [
            rows.grp.fill_null("") == kept.kept_grp.fill_null(""),
            rows.grp.isnull() == kept.kept_grp.isnull(),
        ],
    )
    other = joined.kept_rank.isnull()
    return joined.select(
        person=joined.person,
        bucket=joined.bucket,
        num=joined.num,
        text=joined.text,
        grp=ibis.ifelse(other, ibis.null("string"), joined.grp),
        other=other,
        rank=joined.kept_rank.cast("int64"),
    )


def _prepared(
    events: ir.Table, brand_id: int, request: EventAnalysisRequest, members: ir.Table | None
) -> list[ir.Table]:
    names = sorted({s.event for s in request.events})
    base = _with_group(
        _in_range(events, brand_id, request.start, request.end, names), brand_id, request.group_by, members
    )
    out = []
    for series in request.events:
        rows = _rows(base, series, request.granularity, request.start)
        if request.group_by is None:
            rows = rows.mutate(other=ibis.literal(False), rank=ibis.literal(0, "int64"))
        else:
            rows = _folded(rows, series.measure, request.top)
        out.append(rows)
    return out


def totals(
    events: ir.Table, brand_id: int, request: EventAnalysisRequest, *, members: ir.Table | None = None
) -> ir.Table:
    """Per series and group over the whole range: ``value``, ``rank`` (1 = largest; ``other``
    last), ``share`` of the series' ungrouped value and that ``overall`` value; by series, then rank."""
    parts = []
    for i, (series, rows) in enumerate(
        zip(request.events, _prepared(events, brand_id, request, members), strict=True)
    ):
        grouped = rows.group_by(["grp", "other"]).aggregate(
            value=_measure(rows, series.measure), rank=rows["rank"].max()
        )
        overall = rows.aggregate(overall=_measure(rows, series.measure))
        joined = grouped.cross_join(overall)
        share = (
            ibis.cases((joined.overall == 0, ibis.null("float64")), else_=joined.value / joined.overall)
            if series.measure in SHARED
            else ibis.null("float64")
        )
        parts.append(
            joined.select(
                series=ibis.literal(i, "int64"),
                group=joined.grp,
                other=joined.other,
                value=joined.value,
                share=share.cast("float64"),
                overall=joined.overall,
                rank=ibis.ifelse(joined.other, ibis.literal(request.top + 1, "int64"), joined["rank"] + 1),
            )
        )
    union = ibis.union(*parts, distinct=False) if len(parts) > 1 else parts[0]
    return union.order_by(["series", "rank"])


def trend(
    events: ir.Table, brand_id: int, request: EventAnalysisRequest, *, members: ir.Table | None = None
) -> ir.Table:
    """Per series, bucket and group: ``value`` (``other`` as in ``totals``); by series, bucket, rank."""
    parts = []
    for i, (series, rows) in enumerate(
        zip(request.events, _prepared(events, brand_id, request, members), strict=True)
    ):
        grouped = rows.group_by(["bucket", "grp", "other"]).aggregate(
            value=_measure(rows, series.measure), rank=rows["rank"].max()
        )
        parts.append(
            grouped.select(
                series=ibis.literal(i, "int64"),
                bucket=grouped.bucket,
                group=grouped.grp,
                other=grouped.other,
                value=grouped.value,
                _order=ibis.ifelse(
                    grouped.other, ibis.literal(request.top + 1, "int64"), grouped["rank"] + 1
                ),
            )
        )
    union = ibis.union(*parts, distinct=False) if len(parts) > 1 else parts[0]
    return union.order_by(["series", "bucket", "_order"]).drop("_order")


# -- distribution -----------------------------------------------------------------------------------


class EventDistributionRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "start": "2026-06-01",
                    "end": "2026-06-30",
                    "event": {"event": "Product Viewed"},
                    "measure": "times",
                    "edges": [1, 2, 3, 5, 10],
                }
            ]
        },
    )

    start: date
    end: date
    event: Step
    measure: Literal["times", "days", "sum"] = "times"
    property: str | None = Field(default=None, max_length=120, pattern=r"^[A-Za-z0-9_.$-]+$")
    edges: list[float] | None = Field(default=None, min_length=1, max_length=50)
    buckets: int = Field(default=10, ge=1, le=100)

    @model_validator(mode="after")
    def _valid(self) -> EventDistributionRequest:
        Period(start=self.start, end=self.end)
        if (self.measure == "sum") != bool(self.property):
            raise ValueError("a property is needed for, and only for, the measure 'sum'")
        if self.edges is not None and any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError("edges must be strictly ascending")
        return self


def per_person(events: ir.Table, brand_id: int, request: EventDistributionRequest) -> ir.Table:
    """One row per person who did the event in the range: ``person`` and ``value``."""
    e = _in_range(events, brand_id, request.start, request.end, [request.event.event])
    e = e.filter(_matches(e, request.event))
    if request.measure == "times":
        value: ir.Value = e.event_id.count()
    elif request.measure == "days":
        value = e.date_key.nunique()
    else:
        assert request.property is not None
        value = _property(e, request.property).float.sum().fill_null(0)
    return e.group_by(person=e.person_key).aggregate(value=value.cast("float64"))


DISTRIBUTION_COLUMNS = ("bucket", "low", "high", "users", "share")


def distribution(events: ir.Table, brand_id: int, request: EventDistributionRequest) -> ir.Table:
    """People per bucket: ``bucket`` (0-based), ``low``, ``high`` (null for an open last bucket),
    ``users`` and their ``share`` of the people counted, lowest bucket first."""
    values = per_person(events, brand_id, request)
    out = bucketed(
        values,
        edges=request.edges,
        buckets=request.buckets,
        whole=request.measure != "sum",
        counted="users",
    )
    total = out.users.sum().over(ibis.window())
    return out.select(
        bucket=out.bucket.cast("int64"),
        low=out.low,
        high=out.high,
        users=out.users,
        share=out.users.cast("float64") / total.cast("float64"),
    ).order_by("bucket")


def series_info(request: EventAnalysisRequest) -> list[dict[str, Any]]:
    """What each series index of the results stands for."""
    return [
        {"series": i, "label": s.title(), "event": s.event, "measure": s.measure, "property": s.property}
        for i, s in enumerate(request.events)
    ]

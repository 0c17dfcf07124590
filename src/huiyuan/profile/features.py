"""Salient features: what sets one person apart from the population of their brand.

The population is the brand's members who bought (at least one order that was not fully refunded);
the person is the members of one OneID together. Every comparison is a *lift*: the person's share of
something divided by the brand's share of it, both with additive (Laplace) smoothing so a thin
history cannot produce a wild ratio::

    share(x)  = (x + α) / (total + α·K)          K = the number of values the brand has (categories,
    lift      = share_person / share_brand        hours = 24, channels, stores)

* **Categories** — x is the net spend (paid − refunded, fully refunded orders left out) of the
  category's lines; α = ``CATEGORY_ALPHA`` yuan per category; shown only with support of at least
  ``MIN_CATEGORY_ORDERS`` orders of the person containing the category. Lines without a category
  are left out of both sides.
* **Active hours** — x is events plus orders in an hour of the day (brand time zone); α = 1; an
  hour needs ``MIN_HOUR_COUNT`` of the person's events/orders. The person's events are their newest
  ``PERSON_EVENTS``, the brand's its newest ``POPULATION_EVENTS`` (the event store has no time index).
* **Preferred channel and store** — the one with most of the person's orders, with its lift (α = 1).
* **AOV, frequency, recency** — mid-rank percentiles among the brand's buyers:
  100 × (buyers below + ½ × buyers equal) / buyers.

The brand's aggregates are read once per request (cached on the session) by bounded aggregate
queries: one pass over the brand's member orders and their lines (O(brand orders)) and a capped scan
of its newest events. The warehouse is where these belong at scale (see docs/profile.md).

Pure arithmetic (``smoothed_share``, ``lift``, ``percentile``) is separate from the reads so it can
be checked by hand.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from huiyuan.kit.clock import utcnow
from huiyuan.orders.models import Order
from huiyuan.profile.repository import ProfileRepository
from huiyuan.profile.schemas import (
    CategoryFeature,
    FeaturesOut,
    HourFeature,
    PreferenceFeature,
    RankFeature,
)
from huiyuan.tenancy.repository import TenancyRepository

CATEGORY_ALPHA = 10.0  # yuan of pseudo-spend per category
HOUR_ALPHA = 1.0
CHOICE_ALPHA = 1.0
MIN_CATEGORY_ORDERS = 2
MIN_HOUR_COUNT = 2
TOP_CATEGORIES = 5
TOP_HOURS = 3
PERSON_EVENTS = 2_000
POPULATION_EVENTS = 50_000
_CACHE_KEY = "profile.population"

K = TypeVar("K")


# -- arithmetic ------------------------------------------------------------------------------------


def smoothed_share(x: float, total: float, k: int, alpha: float) -> float:
    """(x + α) / (total + α·K): additive (Laplace) smoothing of a share over K values."""
    return (x + alpha) / (total + alpha * max(k, 1))


def lift(x: float, total: float, pop_x: float, pop_total: float, k: int, alpha: float) -> float:
    """The person's smoothed share over the brand's smoothed share."""
    return smoothed_share(x, total, k, alpha) / smoothed_share(pop_x, pop_total, k, alpha)


def percentile(ordered: Sequence[Any], value: Any) -> float:
    """Mid-rank percentile of ``value`` in ascending ``ordered``: 100 × (below + ½ equal) / n."""
    if not ordered:
        return 0.0
    below = bisect_left(ordered, value)
    equal = bisect_right(ordered, value) - below
    return 100.0 * (below + 0.5 * equal) / len(ordered)


def local_hours(epoch_hours: Iterable[tuple[int, int]], zone: ZoneInfo) -> list[int]:
    """Counts per local hour of day (0–23) from ``(hours since the epoch, count)`` pairs."""
    out = [0] * 24
    for hour, n in epoch_hours:
        out[datetime.fromtimestamp(hour * 3600, UTC).astimezone(zone).hour] += n
    return out


# -- the brand's population ------------------------------------------------------------------------


@dataclass
class Population:
    """The brand's aggregates the features compare a person with."""

    brand_id: int
    zone: ZoneInfo
    buyers: int
    orders: int
    aovs: list[Decimal]  # ascending, one per buyer
    frequencies: list[int]
    last_orders: list[datetime]
    category_spend: dict[int, Decimal]
    channel_orders: dict[str, int]
    store_orders: dict[int, int]
    hours: list[int]


def population(session: Session, brand_id: int, *, include_events: bool) -> Population:
    """The brand's aggregates, read once per request (cached on the request's session)."""
    cache: dict[tuple[int, bool], Population] = session.info.setdefault(_CACHE_KEY, {})
    key = (brand_id, include_events)
    if key not in cache:
        cache[key] = _read_population(session, brand_id, include_events=include_events)
    return cache[key]


def _read_population(session: Session, brand_id: int, *, include_events: bool) -> Population:
    repo = ProfileRepository(session)
    zone = ZoneInfo(TenancyRepository(session).brand(brand_id).timezone)
    stats = repo.buyer_stats(brand_id)
    hours = local_hours(repo.order_hours(brand_id), zone)
    if include_events:
        event_hours = local_hours(repo.event_hours(brand_id, scan_limit=POPULATION_EVENTS), zone)
        hours = [a + b for a, b in zip(hours, event_hours, strict=True)]
    return Population(
        brand_id=brand_id,
        zone=zone,
        buyers=len(stats),
        orders=sum(n for _m, n, _s, _l in stats),
        aovs=sorted(spend / n for _m, n, spend, _l in stats),
        frequencies=sorted(n for _m, n, _s, _l in stats),
        last_orders=sorted(last for _m, _n, _s, last in stats),
        category_spend={cat: max(spend, Decimal(0)) for cat, _n, spend in repo.category_spend(brand_id)},
        channel_orders={str(k): n for k, n in repo.order_counts_by(brand_id, Order.channel).items()},
        store_orders={int(k): n for k, n in repo.order_counts_by(brand_id, Order.store_id).items()},
        hours=hours,
    )


# -- one person ------------------------------------------------------------------------------------


@dataclass
class Activity:
    """One person's aggregates (all the members of their OneID together)."""

    orders: int = 0
    spend: Decimal = Decimal(0)
    last_order: datetime | None = None
    categories: dict[int, tuple[int, Decimal]] = field(default_factory=dict)  # orders, net spend
    channel_orders: dict[str, int] = field(default_factory=dict)
    store_orders: dict[int, int] = field(default_factory=dict)
    hours: list[int] = field(default_factory=lambda: [0] * 24)


def activity(
    session: Session,
    brand_id: int,
    zone: ZoneInfo,
    *,
    member_ids: Sequence[int],
    user_ids: Sequence[str],
    anonymous_ids: Sequence[str],
    include_events: bool,
) -> Activity:
    """The person's orders, spend, categories, channels, stores and active hours."""
    repo = ProfileRepository(session)
    out = Activity()
    if member_ids:
        mine = set(member_ids)
        for member_id, n, spend, last in repo.buyer_stats(brand_id, member_ids):
            if member_id in mine:
                out.orders += n
                out.spend += spend
                out.last_order = last if out.last_order is None else max(out.last_order, last)
        out.categories = {
            cat: (n, max(spend, Decimal(0))) for cat, n, spend in repo.category_spend(brand_id, member_ids)
        }
        out.channel_orders = {
            str(k): n for k, n in repo.order_counts_by(brand_id, Order.channel, member_ids).items()
        }
        out.store_orders = {
            int(k): n for k, n in repo.order_counts_by(brand_id, Order.store_id, member_ids).items()
        }
        out.hours = local_hours(repo.order_hours(brand_id, member_ids), zone)
    if include_events:
        for at in repo.event_times(user_ids=user_ids, anonymous_ids=anonymous_ids, limit=PERSON_EVENTS):
            out.hours[at.astimezone(zone).hour] += 1
    return out


def _r(x: float) -> float:
    return round(x, 4)


def _categories(session: Session, person: Activity, pop: Population) -> list[CategoryFeature]:
    k = len(pop.category_spend)
    total = float(sum(spend for _n, spend in person.categories.values()))
    pop_total = float(sum(pop.category_spend.values()))
    supported = {cat: v for cat, v in person.categories.items() if v[0] >= MIN_CATEGORY_ORDERS}
    names = ProfileRepository(session).categories(supported)
    out = []
    for cat, (n, spend) in supported.items():
        x, pop_x = float(spend), float(pop.category_spend.get(cat, Decimal(0)))
        category = names.get(cat)
        out.append(
            CategoryFeature(
                category_id=cat,
                code=category.code if category else str(cat),
                name=category.name if category else str(cat),
                orders=n,
                spend=spend,
                share=_r(smoothed_share(x, total, k, CATEGORY_ALPHA)),
                brand_share=_r(smoothed_share(pop_x, pop_total, k, CATEGORY_ALPHA)),
                lift=_r(lift(x, total, pop_x, pop_total, k, CATEGORY_ALPHA)),
            )
        )
    out.sort(key=lambda c: (-c.lift, -c.orders, c.category_id))
    return out[:TOP_CATEGORIES]


def _hours(person: Activity, pop: Population) -> list[HourFeature]:
    total, pop_total = sum(person.hours), sum(pop.hours)
    return [
        HourFeature(
            hour=h,
            count=person.hours[h],
            share=_r(smoothed_share(person.hours[h], total, 24, HOUR_ALPHA)),
            brand_share=_r(smoothed_share(pop.hours[h], pop_total, 24, HOUR_ALPHA)),
            lift=_r(lift(person.hours[h], total, pop.hours[h], pop_total, 24, HOUR_ALPHA)),
        )
        for h in range(24)
    ]


def _preferred(mine: Mapping[K, int], brand: Mapping[K, int]) -> tuple[K, int, float, float, float] | None:
    """The value with most of the person's orders: (value, orders, share, brand share, lift)."""
    if not mine:
        return None
    k = len(brand) or len(mine)
    total, pop_total = sum(mine.values()), sum(brand.values())

    def lift_of(key: K) -> float:
        return lift(mine[key], total, brand.get(key, 0), pop_total, k, CHOICE_ALPHA)

    best = max(mine, key=lambda key: (mine[key], lift_of(key), str(key)))
    return (
        best,
        mine[best],
        _r(mine[best] / total),
        _r(smoothed_share(brand.get(best, 0), pop_total, k, CHOICE_ALPHA)),
        _r(lift_of(best)),
    )


def salient(
    session: Session,
    brand_id: int,
    *,
    member_ids: Sequence[int],
    user_ids: Sequence[str],
    anonymous_ids: Sequence[str],
    include_events: bool,
) -> FeaturesOut:
    """What sets this person apart from the brand's buyers (see the module docstring)."""
    pop = population(session, brand_id, include_events=include_events)
    person = activity(
        session,
        brand_id,
        pop.zone,
        member_ids=member_ids,
        user_ids=user_ids,
        anonymous_ids=anonymous_ids,
        include_events=include_events,
    )
    hours = _hours(person, pop)
    top_hours = sorted(
        (h for h in hours if h.count >= MIN_HOUR_COUNT and h.lift > 1), key=lambda h: (-h.lift, h.hour)
    )[:TOP_HOURS]
    channel = _preferred(person.channel_orders, pop.channel_orders)
    store = _preferred(person.store_orders, pop.store_orders)
    store_row = TenancyRepository(session).store(store[0]) if store else None
    aov = frequency = recency = None
    if person.orders and person.last_order is not None:
        mean = person.spend / person.orders
        aov = RankFeature(
            value=float(mean.quantize(Decimal("0.01"))), percentile=_r(percentile(pop.aovs, mean))
        )
        frequency = RankFeature(
            value=person.orders, percentile=_r(percentile(pop.frequencies, person.orders))
        )
        days = (utcnow() - person.last_order).total_seconds() / 86400
        recency = RankFeature(
            value=round(days, 1), percentile=_r(percentile(pop.last_orders, person.last_order))
        )
    return FeaturesOut(
        buyers=pop.buyers,
        orders=person.orders,
        categories=_categories(session, person, pop),
        active_hours=top_hours,
        hours=hours,
        preferred_channel=PreferenceFeature(
            key=channel[0], orders=channel[1], share=channel[2], brand_share=channel[3], lift=channel[4]
        )
        if channel
        else None,
        preferred_store=PreferenceFeature(
            key=store_row.code if store_row else str(store[0]),
            name=store_row.name if store_row else None,
            orders=store[1],
            share=store[2],
            brand_share=store[3],
            lift=store[4],
        )
        if store
        else None,
        aov=aov,
        frequency=frequency,
        recency=recency,
        method={
            "lift": "additive (Laplace) smoothing: ((x + α) / (total + α·K)) / ((X + α) / (TOTAL + α·K))",
            "category_alpha_yuan": CATEGORY_ALPHA,
            "min_category_orders": MIN_CATEGORY_ORDERS,
            "hour_alpha": HOUR_ALPHA,
            "min_hour_count": MIN_HOUR_COUNT,
            "choice_alpha": CHOICE_ALPHA,
            "percentile": "mid-rank among the brand's buyers: 100 × (below + ½ × equal) / buyers",
            "person_events": PERSON_EVENTS if include_events else 0,
            "population_events": POPULATION_EVENTS if include_events else 0,
            "timezone": str(pop.zone),
        },
    )

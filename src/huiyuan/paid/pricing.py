"""The arithmetic of paid membership, as pure functions: terms, benefit periods, upgrade credit and
refunds. Amounts are ``Decimal`` yuan; fractions of a fen are always dropped (in the brand's favour,
and never more than one fen), so every figure can be checked by hand.

* Term: a level valid for *n* months ends ``n`` calendar months after it starts
  (``dateutil.relativedelta``: 31 January + 1 month = 28/29 February); for *n* days, ``n × 24 h``.
* Benefit period *k* (0, 1, …) of a subscription starts at ``starts_at + k months`` (or weeks); it
  is due once it has started and only if it starts before the subscription ends.
* Upgrade credit: ``credit = floor_fen(value × remaining / term)`` where ``value`` is what the current
  subscription is worth (amount paid into it plus credit it carried), ``term = ends_at − starts_at``
  and ``remaining = ends_at − now``, both to the microsecond. ``due = max(0, new_price − credit)``;
  the new subscription starts now for the new level's full validity.
* Refund on cancellation: the whole ``value`` within ``cooling_off_days`` of ``starts_at`` as long as
  no periodic benefit has been granted; otherwise
  ``floor_fen(value × unused_days / term_days)`` with ``unused_days`` the whole days left before
  ``ends_at`` and ``term_days`` the whole days of the term (at least 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal

from dateutil.relativedelta import relativedelta

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
DAY = timedelta(days=1)
_MICROSECOND = timedelta(microseconds=1)


def floor_fen(value: Decimal) -> Decimal:
    return value.quantize(CENT, ROUND_FLOOR)


def term_end(start: datetime, unit: str, count: int) -> datetime:
    """When a term of ``count`` months (or days) that begins at ``start`` ends."""
    if unit == "month":
        return start + relativedelta(months=count)
    return start + timedelta(days=count)


def period_start(anchor: datetime, period: str, n: int) -> datetime:
    """Start of benefit period ``n`` of a subscription that started at ``anchor``."""
    if period == "month":
        return anchor + relativedelta(months=n)
    return anchor + timedelta(weeks=n)


@dataclass(frozen=True)
class UpgradeQuote:
    credit: Decimal
    due: Decimal
    remaining_us: int
    term_us: int


def upgrade_quote(
    *, value: Decimal, starts_at: datetime, ends_at: datetime, now: datetime, new_price: Decimal
) -> UpgradeQuote:
    """Credit for the unused part of the current subscription and what the upgrade costs."""
    term_us = max(1, (ends_at - starts_at) // _MICROSECOND)
    remaining_us = min(term_us, max(0, (ends_at - now) // _MICROSECOND))
    credit = floor_fen(value * remaining_us / term_us)
    return UpgradeQuote(
        credit=credit, due=max(ZERO, new_price - credit), remaining_us=remaining_us, term_us=term_us
    )


@dataclass(frozen=True)
class RefundQuote:
    amount: Decimal
    rule: str  # "cooling_off" | "pro_rata"
    unused_days: int
    term_days: int


def refund_quote(
    *,
    value: Decimal,
    starts_at: datetime,
    ends_at: datetime,
    now: datetime,
    cooling_off_days: int,
    periods_granted: int,
) -> RefundQuote:
    """What cancelling now gives back (see the module docstring for the policy)."""
    term_days = max(1, (ends_at - starts_at) // DAY)
    unused_days = min(term_days, max(0, (ends_at - now) // DAY))
    if periods_granted == 0 and now < starts_at + timedelta(days=cooling_off_days):
        return RefundQuote(amount=value, rule="cooling_off", unused_days=unused_days, term_days=term_days)
    amount = floor_fen(value * unused_days / term_days)
    return RefundQuote(amount=amount, rule="pro_rata", unused_days=unused_days, term_days=term_days)

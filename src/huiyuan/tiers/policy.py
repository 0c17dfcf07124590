"""The rules of a tier program as pure functions: qualification windows, ends of validity, when an
end is settled, whether a condition is met, and the progress shown to operators.

Times are UTC in and out; calendar rules (calendar years, anniversaries, fixed dates) are applied in
the brand's time zone. Ends of validity are exclusive instants: "valid to 12-31" ends at 00:00 of
01-01 local time. No database access here.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from dateutil.relativedelta import relativedelta

EPSILON = timedelta(microseconds=1)


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime

    def as_dict(self) -> dict[str, str]:
        return {"from": self.start.isoformat(), "to": self.end.isoformat()}


@dataclass(frozen=True)
class Basis:
    """A member's values in one qualification window."""

    growth: int
    spend: Decimal
    single_order: Decimal
    rfm_score: Decimal | None
    window: Window

    def value(self, basis: str) -> Decimal | None:
        if basis == "growth":
            return Decimal(self.growth)
        if basis == "spend":
            return self.spend
        if basis == "single_order":
            return self.single_order
        return self.rfm_score

    def as_dict(self) -> dict[str, Any]:
        return {
            "growth": self.growth,
            "spend": str(self.spend),
            "single_order": str(self.single_order),
            "rfm_score": None if self.rfm_score is None else str(self.rfm_score),
            "window": self.window.as_dict(),
        }


# -- windows ---------------------------------------------------------------------------------------


def qualification_window(window: dict[str, Any], *, end: datetime, anchor: datetime, tz: ZoneInfo) -> Window:
    """The window ending at ``end``: the last N months, or the calendar year of ``anchor`` (an end of
    validity settled after a grace period still counts the year that validity ended in)."""
    if window["kind"] == "rolling_months":
        return Window(end - relativedelta(months=int(window["months"])), end)
    year = anchor.astimezone(tz).year
    return Window(datetime(year, 1, 1, tzinfo=tz).astimezone(UTC), end)


# -- validity and settlement -----------------------------------------------------------------------


def _local_midnight(year: int, month: int, day: int, tz: ZoneInfo) -> datetime:
    # 02-29 falls on 02-28 in other years.
    day = min(day, calendar.monthrange(year, month)[1])
    return datetime(year, month, day, tzinfo=tz)


def next_yearly(month: int, day: int, *, after: datetime, tz: ZoneInfo, days_later: int = 0) -> datetime:
    """The first local midnight of ``month``-``day`` (plus ``days_later``) strictly after ``after``."""
    year = after.astimezone(tz).year - 1
    while True:
        candidate = (_local_midnight(year, month, day, tz) + timedelta(days=days_later)).astimezone(UTC)
        if candidate > after:
            return candidate
        year += 1


def validity_end(
    validity: dict[str, Any] | None, *, start: datetime, enrolled_at: datetime, tz: ZoneInfo
) -> datetime | None:
    """When a level held from ``start`` stops being valid (``None``: it does not expire)."""
    if validity is None:
        return None
    kind = validity["kind"]
    if kind == "months":
        return start + relativedelta(months=int(validity["months"]))
    if kind == "anniversary":
        enrolled = enrolled_at.astimezone(tz)
        return next_yearly(enrolled.month, enrolled.day, after=start, tz=tz)
    # fixed_date: valid through that day, so the end is the next midnight.
    return next_yearly(int(validity["month"]), int(validity["day"]), after=start, tz=tz, days_later=1)


def review_moment(
    valid_until: datetime | None, *, settlement: dict[str, Any], grace_days: int, tz: ZoneInfo
) -> datetime | None:
    """When an end of validity is settled: after the grace period, and for programs that settle on a
    set date, on the first such date from then on."""
    if valid_until is None:
        return None
    due = valid_until + timedelta(days=grace_days)
    if settlement["mode"] == "fixed_date":
        return next_yearly(int(settlement["month"]), int(settlement["day"]), after=due - EPSILON, tz=tz)
    return due


# -- conditions ------------------------------------------------------------------------------------


def is_met(condition: dict[str, Any] | None, basis: Basis) -> bool:
    """Whether a stored condition holds; a missing condition never holds."""
    if condition is None:
        return False
    if "all" in condition:
        return all(is_met(c, basis) for c in condition["all"])
    if "any" in condition:
        return any(is_met(c, basis) for c in condition["any"])
    value = basis.value(condition["basis"])
    return value is not None and value >= Decimal(str(condition["min"]))


def progress(condition: dict[str, Any] | None, basis: Basis) -> dict[str, Any] | None:
    """The condition tree annotated with the member's values and what is met."""
    if condition is None:
        return None
    if "all" in condition or "any" in condition:
        op = "all" if "all" in condition else "any"
        parts = [progress(c, basis) for c in condition[op]]
        return {op: parts, "met": is_met(condition, basis)}
    value = basis.value(condition["basis"])
    return {
        "basis": condition["basis"],
        "min": condition["min"],
        "value": None if value is None else (basis.growth if condition["basis"] == "growth" else str(value)),
        "met": is_met(condition, basis),
    }

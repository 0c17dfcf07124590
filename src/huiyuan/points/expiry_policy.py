"""Expiry policies of point types and the date arithmetic that turns them into lot expiry instants.

A point type stores its policy as JSON; ``parse_policy`` validates it into one of three models,
discriminated by ``kind``:

- ``never``: lots never expire.
- ``relative``: earned_at + a period of days, months or years, optionally rounded up to the end of
  the local day, month, quarter or year.
- ``yearly_clearing``: lots expire at the end of a fixed local clearing day, ``years_after`` years
  after the cycle they were earned in. The cycle is the local calendar year (``cycle:
  "calendar_year"``, the default) or runs from one clearing to the next (``cycle: "clearing_day"``:
  a lot earned before the clearing of year Y, i.e. up to the end of the clearing day, belongs to
  cycle Y). 29 February is refused as a clearing day, since it would clear only one year in four;
  so is any day the month does not have.

All calendar arithmetic happens on local wall time in the brand's business timezone; inputs may be
any timezone-aware instant, results are UTC. Expiry instants are exclusive bounds (a lot is usable
while ``now < expires_at``), so "end of day" is 00:00 local of the next day. Grace days are local
calendar days added to the nominal expiry to give the effective one. Month and year periods use
``dateutil.relativedelta`` because it clamps to the last day of a shorter month (31 January + 1
month = 28 or 29 February) instead of overflowing into the next month or failing.

This module owns the policy shape and the arithmetic only: it reads no database, no clock and no
settings, and knows nothing of lots, balances or the ledger.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from dateutil.relativedelta import relativedelta
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

RoundTo = Literal["none", "end_of_day", "end_of_month", "end_of_quarter", "end_of_year"]
ClearingCycle = Literal["calendar_year", "clearing_day"]

# Caps keep every computed instant far inside datetime's range (year 9999).
_MAX_DAYS = 36_600
_MAX_MONTHS = 1_200
_MAX_YEARS = 100

_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


class _Policy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class NeverExpires(_Policy):
    """Lots never expire."""

    kind: Literal["never"] = "never"


class _Expiring(_Policy):
    grace_days: int = Field(default=0, ge=0, le=_MAX_DAYS)
    decay_ratio: float = Field(default=0.0, ge=0, lt=1, allow_inf_nan=False)


class RelativeExpiry(_Expiring):
    """Lots expire a fixed period after they were earned, optionally rounded up."""

    kind: Literal["relative"] = "relative"
    days: int | None = Field(default=None, gt=0, le=_MAX_DAYS)
    months: int | None = Field(default=None, gt=0, le=_MAX_MONTHS)
    years: int | None = Field(default=None, gt=0, le=_MAX_YEARS)
    round_to: RoundTo = "none"

    @model_validator(mode="after")
    def _one_period(self) -> RelativeExpiry:
        given = [name for name in ("days", "months", "years") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of days, months or years (got {', '.join(given) or 'none'})")
        return self

    def period(self) -> relativedelta:
        """The period as a relativedelta."""
        return relativedelta(days=self.days or 0, months=self.months or 0, years=self.years or 0)


class YearlyClearing(_Expiring):
    """Lots expire at the end of a fixed local day, some years after the cycle they were earned in."""

    kind: Literal["yearly_clearing"] = "yearly_clearing"
    month: int = Field(ge=1, le=12)
    day: int = Field(ge=1, le=31)
    years_after: int = Field(default=1, ge=0, le=_MAX_YEARS)
    cycle: ClearingCycle = "calendar_year"

    @model_validator(mode="after")
    def _valid_clearing_day(self) -> YearlyClearing:
        if self.month == 2 and self.day == 29:
            raise ValueError("29 February does not occur every year; use 28 February or 1 March")
        if self.day > _DAYS_IN_MONTH[self.month - 1]:
            raise ValueError(f"month {self.month} has no day {self.day}")
        if self.cycle == "calendar_year" and self.years_after == 0 and (self.month, self.day) != (12, 31):
            # Points earned after the clearing day would expire before they were earned.
            raise ValueError(
                "years_after 0 with the calendar-year cycle needs the clearing day 31 December; "
                'use cycle "clearing_day" for an earlier clearing in the same year'
            )
        return self


ExpiryPolicy = Annotated[NeverExpires | RelativeExpiry | YearlyClearing, Field(discriminator="kind")]

_ADAPTER: TypeAdapter[ExpiryPolicy] = TypeAdapter(ExpiryPolicy)


@dataclass(frozen=True, slots=True)
class LotExpiry:
    """When a lot expires (exclusive bounds, UTC); ``effective`` includes the grace days."""

    nominal: datetime | None
    effective: datetime | None


def parse_policy(data: dict[str, Any]) -> ExpiryPolicy:
    """Validate a stored policy; raises pydantic ``ValidationError``."""
    return _ADAPTER.validate_python(data)


def expiry_for(policy: ExpiryPolicy, earned_at: datetime, tz: str) -> LotExpiry:
    """The nominal and effective expiry of a lot earned at ``earned_at``."""
    zone = ZoneInfo(tz)
    _require_aware(earned_at, "earned_at")
    if isinstance(policy, NeverExpires):
        return LotExpiry(nominal=None, effective=None)
    if isinstance(policy, RelativeExpiry):
        nominal = _relative_expiry(policy, earned_at, zone)
    else:
        nominal = _clearing_expiry(policy, earned_at, zone)
    return with_grace(policy, nominal, tz)


def with_grace(policy: ExpiryPolicy, nominal: datetime | None, tz: str) -> LotExpiry:
    """A lot's expiry from its nominal instant, adding the policy's grace days in local days."""
    if nominal is None or isinstance(policy, NeverExpires) or policy.grace_days == 0:
        return LotExpiry(nominal=nominal, effective=nominal)
    zone = ZoneInfo(tz)
    _require_aware(nominal, "nominal")
    wall = _wall(nominal, zone) + timedelta(days=policy.grace_days)
    return LotExpiry(nominal=nominal, effective=_at_wall(wall, zone))


def carry_over(
    policy: ExpiryPolicy, expiring_amount: int, expired_at: datetime, tz: str
) -> tuple[int, datetime | None]:
    """Points carried into a new lot at expiry and that lot's nominal expiry; (0, None) if none."""
    if expiring_amount < 0:
        raise ValueError("expiring_amount must not be negative")
    _require_aware(expired_at, "expired_at")
    if isinstance(policy, NeverExpires):
        return 0, None
    # Through the decimal text of the ratio, so 100 x 0.29 is 29, not the float 28.999….
    carried = math.floor(Decimal(expiring_amount) * Decimal(repr(policy.decay_ratio)))
    if carried == 0:
        return 0, None
    zone = ZoneInfo(tz)
    if isinstance(policy, RelativeExpiry):
        return carried, _relative_expiry(policy, expired_at, zone)
    year = _wall(expired_at, zone).year
    following = _clearing_instant(policy, year, zone)
    if following <= expired_at:
        following = _clearing_instant(policy, year + 1, zone)
    return carried, following


def _relative_expiry(policy: RelativeExpiry, start: datetime, zone: ZoneInfo) -> datetime:
    unrounded = _at_wall(_wall(start, zone) + policy.period(), zone)
    if policy.round_to == "none":
        return unrounded
    local = unrounded.astimezone(zone).date()
    if policy.round_to == "end_of_day":
        boundary = local + timedelta(days=1)
    elif policy.round_to == "end_of_month":
        boundary = date(local.year, local.month, 1) + relativedelta(months=1)
    elif policy.round_to == "end_of_quarter":
        boundary = date(local.year, local.month - (local.month - 1) % 3, 1) + relativedelta(months=3)
    else:
        boundary = date(local.year + 1, 1, 1)
    return _start_of_day_after(boundary, unrounded, zone)


def _clearing_expiry(policy: YearlyClearing, earned_at: datetime, zone: ZoneInfo) -> datetime:
    cycle = _wall(earned_at, zone).year
    if policy.cycle == "clearing_day" and earned_at >= _clearing_instant(policy, cycle, zone):
        cycle += 1
    return _clearing_instant(policy, cycle + policy.years_after, zone)


def _clearing_instant(policy: YearlyClearing, year: int, zone: ZoneInfo) -> datetime:
    """The end of the clearing day of ``year``: 00:00 local of the day after."""
    return _at_wall(datetime.combine(date(year, policy.month, policy.day) + timedelta(days=1), time()), zone)


def _start_of_day_after(day: date, after: datetime, zone: ZoneInfo) -> datetime:
    """00:00 local of ``day``, as the first such instant later than ``after``."""
    midnight = datetime.combine(day, time())
    start = _at_wall(midnight, zone)
    if start <= after:
        # A clock set back across midnight repeats the end of the previous day: take the later 00:00.
        start = _at_wall(midnight.replace(fold=1), zone)
    return start


def _wall(instant: datetime, zone: ZoneInfo) -> datetime:
    """Local wall time (naive) of an instant."""
    return instant.astimezone(zone).replace(tzinfo=None)


def _at_wall(wall: datetime, zone: ZoneInfo) -> datetime:
    """The UTC instant of a local wall time.

    A wall time skipped by a clock change maps with the offset before the change, so a missing
    00:00 becomes the moment the day actually starts; a repeated one takes its first occurrence
    unless ``fold`` says otherwise.
    """
    return wall.replace(tzinfo=zone).astimezone(UTC)


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")

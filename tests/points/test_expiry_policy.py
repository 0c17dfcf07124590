from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any, get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from huiyuan.points.expiry_policy import (
    LotExpiry,
    NeverExpires,
    RelativeExpiry,
    RoundTo,
    YearlyClearing,
    carry_over,
    expiry_for,
    parse_policy,
    with_grace,
)

SH = "Asia/Shanghai"
NY = "America/New_York"


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def relative(**fields: Any) -> RelativeExpiry:
    policy = parse_policy({"kind": "relative", **fields})
    assert isinstance(policy, RelativeExpiry)
    return policy


def clearing(**fields: Any) -> YearlyClearing:
    policy = parse_policy({"kind": "yearly_clearing", **fields})
    assert isinstance(policy, YearlyClearing)
    return policy


def nominal(policy: Any, earned_at: datetime, tz: str = SH) -> datetime | None:
    return expiry_for(policy, earned_at, tz).nominal


# --- never ---


def test_never_expires() -> None:
    policy = parse_policy({"kind": "never"})
    assert policy == NeverExpires()
    assert expiry_for(policy, utc(2026, 5, 1), SH) == LotExpiry(nominal=None, effective=None)
    assert carry_over(policy, 100, utc(2026, 5, 1), SH) == (0, None)


# --- relative: month clamping ---


@pytest.mark.parametrize(
    ("year", "february_end"),
    [(2027, 28), (2028, 29)],  # 2028 is a leap year
)
def test_31_january_plus_one_month_is_end_of_february(year: int, february_end: int) -> None:
    # 31 Jan 10:00 local in Shanghai is 02:00 UTC.
    earned = utc(year, 1, 31, 2)
    assert nominal(relative(months=1), earned) == utc(year, 2, february_end, 2)
    # Rounded to the end of that day: 00:00 local of 1 March is 16:00 UTC the day before.
    assert nominal(relative(months=1, round_to="end_of_day"), earned) == utc(year, 2, february_end, 16)


def test_29_february_plus_one_year_clamps_to_28_february() -> None:
    assert nominal(relative(years=1), utc(2028, 2, 29, 2)) == utc(2029, 2, 28, 2)


# --- relative: days with each rounding ---


@pytest.mark.parametrize(
    ("round_to", "expected"),
    [
        # earned 2026-05-10 14:00 local (06:00 UTC) + 30 days = 2026-06-09 14:00 local
        ("none", utc(2026, 6, 9, 6)),
        ("end_of_day", utc(2026, 6, 9, 16)),  # 2026-06-10 00:00 local
        ("end_of_month", utc(2026, 6, 30, 16)),  # 2026-07-01 00:00 local
        ("end_of_quarter", utc(2026, 6, 30, 16)),  # Q2 ends with June
        ("end_of_year", utc(2026, 12, 31, 16)),  # 2027-01-01 00:00 local
    ],
)
def test_relative_days_with_each_rounding(round_to: str, expected: datetime) -> None:
    assert nominal(relative(days=30, round_to=round_to), utc(2026, 5, 10, 6)) == expected


@pytest.mark.parametrize(
    ("local_month", "quarter_end"),
    [
        (1, utc(2026, 3, 31, 16)),
        (3, utc(2026, 3, 31, 16)),
        (4, utc(2026, 6, 30, 16)),
        (6, utc(2026, 6, 30, 16)),
        (7, utc(2026, 9, 30, 16)),
        (9, utc(2026, 9, 30, 16)),
        (10, utc(2026, 12, 31, 16)),
        (12, utc(2026, 12, 31, 16)),
    ],
)
def test_end_of_quarter_for_each_quarter(local_month: int, quarter_end: datetime) -> None:
    # Earned on the 14th at noon local; 1 day later is still in the same month.
    earned = utc(2026, local_month, 14, 4)
    assert nominal(relative(days=1, round_to="end_of_quarter"), earned) == quarter_end


def test_rounding_uses_the_local_date_not_the_utc_date() -> None:
    # 2026-01-30T20:00Z is 2026-01-31 04:00 local; + 1 day is 1 February local.
    policy = relative(days=1, round_to="end_of_month")
    assert nominal(policy, utc(2026, 1, 30, 20)) == utc(2026, 2, 28, 16)
    # In UTC the same instant + 1 day is still January.
    assert nominal(policy, utc(2026, 1, 30, 20), "UTC") == utc(2026, 2, 1)


def test_an_instant_already_on_a_boundary_rounds_to_the_end_of_its_day() -> None:
    # Earned at 00:00 local; + 1 day is 00:00 local, which is the start of that day, not its end.
    assert nominal(relative(days=1, round_to="end_of_day"), utc(2026, 3, 31, 16)) == utc(2026, 4, 2, 16)


def test_accepts_any_aware_input_and_returns_utc() -> None:
    earned = datetime(2026, 5, 10, 14, tzinfo=timezone(timedelta(hours=8)))
    result = nominal(relative(days=30), earned)
    assert result == utc(2026, 6, 9, 6)
    assert result is not None and result.tzinfo is UTC


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        expiry_for(relative(days=1), datetime(2026, 1, 1), SH)
    with pytest.raises(ValueError, match="timezone-aware"):
        carry_over(relative(days=1, decay_ratio=0.5), 10, datetime(2026, 1, 1), SH)


# --- a zone with daylight saving time ---


def test_end_of_day_in_new_york_across_spring_forward() -> None:
    # DST starts 2026-03-08 02:00 local. Earned 2026-03-07 07:00 EST (12:00Z) + 1 day.
    policy = relative(days=1, round_to="end_of_day")
    # End of 8 March is 00:00 EDT on 9 March = 04:00Z (05:00Z before the change).
    assert nominal(policy, utc(2026, 3, 7, 12), NY) == utc(2026, 3, 9, 4)
    # Before the change the same rounding gives 05:00Z.
    assert nominal(policy, utc(2026, 3, 1, 12), NY) == utc(2026, 3, 3, 5)


def test_end_of_day_in_new_york_across_fall_back() -> None:
    # DST ends 2026-11-01 02:00 local. End of 1 November is 00:00 EST on 2 November = 05:00Z.
    policy = relative(days=1, round_to="end_of_day")
    assert nominal(policy, utc(2026, 10, 31, 14), NY) == utc(2026, 11, 2, 5)
    # End of 31 October is still 00:00 EDT = 04:00Z.
    assert nominal(policy, utc(2026, 10, 30, 14), NY) == utc(2026, 11, 1, 4)


def test_days_are_local_calendar_days_across_dst() -> None:
    # 10:00 EST on 7 March + 1 day is 10:00 EDT on 8 March: 23 hours later.
    earned = utc(2026, 3, 7, 15)
    assert nominal(relative(days=1), earned, NY) == earned + timedelta(hours=23)


def test_grace_days_are_local_calendar_days_across_dst() -> None:
    # Nominal 00:00 EST on 8 March (05:00Z); 1 grace day ends at 00:00 EDT on 9 March (04:00Z).
    policy = relative(days=1, round_to="end_of_day", grace_days=1)
    result = expiry_for(policy, utc(2026, 3, 6, 15), NY)
    assert result == LotExpiry(nominal=utc(2026, 3, 8, 5), effective=utc(2026, 3, 9, 4))


# --- yearly clearing ---


def test_yearly_clearing_uses_the_local_year() -> None:
    policy = clearing(month=12, day=31, years_after=1)
    # 2026-12-31T17:00Z is 2027-01-01 01:00 local: cycle 2027, usable until 2028-12-31 24:00 local.
    assert nominal(policy, utc(2026, 12, 31, 17)) == utc(2028, 12, 31, 16)
    # One minute before local midnight is still 2026: usable until 2027-12-31 24:00 local.
    assert nominal(policy, utc(2026, 12, 31, 15, 59)) == utc(2027, 12, 31, 16)
    # Earned any time in 2026 gives the same instant.
    assert nominal(policy, utc(2025, 12, 31, 16)) == utc(2027, 12, 31, 16)


def test_yearly_clearing_years_after_zero() -> None:
    policy = clearing(month=12, day=31, years_after=0)
    assert nominal(policy, utc(2026, 3, 1)) == utc(2026, 12, 31, 16)
    assert nominal(policy, utc(2026, 12, 31, 15, 59)) == utc(2026, 12, 31, 16)
    assert nominal(policy, utc(2026, 12, 31, 16)) == utc(2027, 12, 31, 16)


def test_yearly_clearing_years_after_defaults_to_one() -> None:
    assert clearing(month=12, day=31).years_after == 1


def test_calendar_year_cycle_with_an_earlier_clearing_day() -> None:
    # Earned any time in 2026 (local) → cleared at the end of 31 March 2027.
    policy = clearing(month=3, day=31, years_after=1)
    assert nominal(policy, utc(2026, 1, 1)) == utc(2027, 3, 31, 16)
    assert nominal(policy, utc(2026, 11, 1)) == utc(2027, 3, 31, 16)


def test_cycle_anchored_on_the_clearing_day() -> None:
    policy = clearing(month=6, day=30, years_after=0, cycle="clearing_day")
    # Up to the end of 30 June local belongs to this year's cycle.
    assert nominal(policy, utc(2026, 6, 30, 15, 59)) == utc(2026, 6, 30, 16)
    # From 00:00 local on 1 July it belongs to next year's.
    assert nominal(policy, utc(2026, 6, 30, 16)) == utc(2027, 6, 30, 16)
    assert nominal(policy, utc(2026, 1, 1)) == utc(2026, 6, 30, 16)
    with_one_year = clearing(month=6, day=30, years_after=1, cycle="clearing_day")
    assert nominal(with_one_year, utc(2026, 7, 15)) == utc(2028, 6, 30, 16)


def test_clearing_day_cycle_on_31_december_matches_the_calendar_year() -> None:
    calendar = clearing(month=12, day=31, years_after=1)
    anchored = clearing(month=12, day=31, years_after=1, cycle="clearing_day")
    for earned in (utc(2026, 1, 1), utc(2026, 12, 31, 15, 59), utc(2026, 12, 31, 16), utc(2026, 7, 1)):
        assert nominal(calendar, earned) == nominal(anchored, earned)


def test_yearly_clearing_grace_days() -> None:
    policy = clearing(month=12, day=31, years_after=1, grace_days=30)
    result = expiry_for(policy, utc(2026, 6, 1), SH)
    assert result == LotExpiry(nominal=utc(2027, 12, 31, 16), effective=utc(2028, 1, 30, 16))


def test_relative_grace_days() -> None:
    policy = relative(months=12, round_to="end_of_month", grace_days=7)
    result = expiry_for(policy, utc(2026, 5, 10, 6), SH)
    assert result == LotExpiry(nominal=utc(2027, 5, 31, 16), effective=utc(2027, 6, 7, 16))


def test_without_grace_effective_equals_nominal() -> None:
    result = expiry_for(relative(days=10), utc(2026, 5, 10, 6), SH)
    assert result.effective == result.nominal == utc(2026, 5, 20, 6)


def test_with_grace_for_a_carried_lot() -> None:
    policy = clearing(month=12, day=31, grace_days=1)
    assert with_grace(policy, utc(2028, 12, 31, 16), SH) == LotExpiry(
        nominal=utc(2028, 12, 31, 16), effective=utc(2029, 1, 1, 16)
    )
    assert with_grace(policy, None, SH) == LotExpiry(nominal=None, effective=None)


# --- decay: carry over ---


@pytest.mark.parametrize(
    ("amount", "ratio", "carried"),
    [
        (101, 0.5, 50),
        (100, 0.29, 29),  # 100 x 0.29 in binary floating point is 28.999…
        (3, 0.3, 0),
        (999, 0.999, 998),
        (0, 0.5, 0),
    ],
)
def test_carry_over_amount_rounds_down(amount: int, ratio: float, carried: int) -> None:
    policy = relative(days=30, decay_ratio=ratio)
    assert carry_over(policy, amount, utc(2026, 6, 1), SH)[0] == carried


def test_nothing_carried_has_no_expiry() -> None:
    assert carry_over(relative(days=30), 1000, utc(2026, 6, 1), SH) == (0, None)
    assert carry_over(relative(days=30, decay_ratio=0.5), 1, utc(2026, 6, 1), SH) == (0, None)


def test_carry_over_relative_runs_the_period_again_rounded() -> None:
    policy = relative(months=12, round_to="end_of_month", decay_ratio=0.5)
    # Expired at 2027-02-01 00:00 local; + 12 months is 2028-02-01, the end of that month 1 March.
    assert carry_over(policy, 101, utc(2027, 1, 31, 16), SH) == (50, utc(2028, 2, 29, 16))


def test_carry_over_yearly_clearing_is_the_next_clearing() -> None:
    policy = clearing(month=12, day=31, years_after=1, decay_ratio=0.1)
    assert carry_over(policy, 1000, utc(2027, 12, 31, 16), SH) == (100, utc(2028, 12, 31, 16))
    mid_year = clearing(month=6, day=30, cycle="clearing_day", decay_ratio=0.25)
    assert carry_over(mid_year, 10, utc(2027, 6, 30, 16), SH) == (2, utc(2028, 6, 30, 16))
    # Expired later than the clearing itself (e.g. after grace): still the next clearing.
    assert carry_over(mid_year, 10, utc(2027, 7, 30, 16), SH) == (2, utc(2028, 6, 30, 16))


def test_carry_over_refuses_a_negative_amount() -> None:
    with pytest.raises(ValueError, match="negative"):
        carry_over(relative(days=1, decay_ratio=0.5), -1, utc(2026, 1, 1), SH)


# --- validation ---


def _errors(data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        parse_policy(data)
    return str(info.value)


def test_two_periods_are_refused() -> None:
    assert "exactly one of days, months or years (got days, months)" in _errors(
        {"kind": "relative", "days": 30, "months": 1}
    )


def test_no_period_is_refused() -> None:
    assert "exactly one of days, months or years (got none)" in _errors({"kind": "relative"})


@pytest.mark.parametrize("days", [0, -5])
def test_non_positive_days_are_refused(days: int) -> None:
    assert "greater than 0" in _errors({"kind": "relative", "days": days})


def test_negative_grace_is_refused() -> None:
    assert "greater than or equal to 0" in _errors({"kind": "relative", "days": 1, "grace_days": -1})


@pytest.mark.parametrize("ratio", [1, 1.5, -0.1, float("nan")])
def test_decay_ratio_out_of_range_is_refused(ratio: float) -> None:
    assert "decay_ratio" in _errors({"kind": "relative", "days": 1, "decay_ratio": ratio})


def test_unknown_kind_is_refused() -> None:
    assert "union_tag_invalid" in _errors({"kind": "monthly"})


def test_missing_kind_is_refused() -> None:
    assert "union_tag_not_found" in _errors({"days": 30})


@pytest.mark.parametrize(
    "data",
    [
        {"kind": "never", "days": 30},
        {"kind": "relative", "days": 30, "round": "end_of_day"},
        {"kind": "yearly_clearing", "month": 12, "day": 31, "round_to": "end_of_day"},
    ],
)
def test_extra_fields_are_refused(data: dict[str, Any]) -> None:
    assert "extra_forbidden" in _errors(data)


def test_unknown_rounding_is_refused() -> None:
    assert "round_to" in _errors({"kind": "relative", "days": 1, "round_to": "end_of_week"})


def test_strings_and_booleans_are_not_numbers() -> None:
    _errors({"kind": "relative", "days": "30"})
    _errors({"kind": "relative", "days": True})


def test_29_february_is_refused() -> None:
    assert "29 February does not occur every year" in _errors(
        {"kind": "yearly_clearing", "month": 2, "day": 29}
    )


@pytest.mark.parametrize(("month", "day"), [(4, 31), (2, 30), (13, 1), (0, 1), (1, 0)])
def test_impossible_clearing_days_are_refused(month: int, day: int) -> None:
    _errors({"kind": "yearly_clearing", "month": month, "day": day})


def test_calendar_year_with_years_after_zero_needs_31_december() -> None:
    assert "needs the clearing day 31 December" in _errors(
        {"kind": "yearly_clearing", "month": 3, "day": 31, "years_after": 0}
    )
    # The clearing-day cycle never makes a lot born expired.
    clearing(month=3, day=31, years_after=0, cycle="clearing_day")


def test_policies_round_trip_through_json() -> None:
    for policy in (
        NeverExpires(),
        relative(months=6, round_to="end_of_quarter", grace_days=3, decay_ratio=0.2),
        clearing(month=6, day=30, years_after=2, cycle="clearing_day"),
    ):
        assert parse_policy(policy.model_dump(exclude_none=True)) == policy


# --- property ---

ZONES = [
    "UTC",
    SH,
    NY,
    "Europe/London",
    "Australia/Lord_Howe",  # 30-minute DST shift
    "America/Santiago",  # DST changes at midnight
    "Asia/Kolkata",
    "Pacific/Apia",  # skipped 30 December 2011
]


@st.composite
def relative_policies(draw: st.DrawFn) -> RelativeExpiry:
    unit, bound = draw(st.sampled_from([("days", 3_000), ("months", 120), ("years", 10)]))
    return relative(
        **{unit: draw(st.integers(1, bound))},
        round_to=draw(st.sampled_from(get_args(RoundTo))),
        grace_days=draw(st.integers(0, 400)),
    )


@given(
    policy=relative_policies(),
    earned_at=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2080, 1, 1), timezones=st.just(UTC)
    ),
    tz=st.sampled_from(ZONES),
)
def test_relative_expiry_is_after_earning_and_rounding_only_moves_later(
    policy: RelativeExpiry, earned_at: datetime, tz: str
) -> None:
    result = expiry_for(policy, earned_at, tz)
    unrounded = expiry_for(policy.model_copy(update={"round_to": "none"}), earned_at, tz).nominal
    assert result.nominal is not None and result.effective is not None and unrounded is not None
    assert result.effective >= result.nominal > earned_at
    assert result.nominal >= unrounded

"""The arithmetic of terms, periods, upgrade credit and refunds, to the fen."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from huiyuan.paid import pricing

T0 = datetime(2026, 1, 31, 8, 30, tzinfo=UTC)


def test_terms_and_periods() -> None:
    assert pricing.term_end(T0, "month", 1) == datetime(2026, 2, 28, 8, 30, tzinfo=UTC)
    assert pricing.term_end(T0, "month", 12) == datetime(2027, 1, 31, 8, 30, tzinfo=UTC)
    assert pricing.term_end(T0, "day", 30) == T0 + timedelta(days=30)
    # Periods count from the start, so a short month does not shift the later ones.
    assert [pricing.period_start(T0, "month", n).day for n in range(4)] == [31, 28, 31, 30]
    assert pricing.period_start(T0, "week", 3) == T0 + timedelta(weeks=3)


def test_upgrade_quote_to_the_fen() -> None:
    start = datetime(2026, 3, 1, tzinfo=UTC)
    end = pricing.term_end(start, "month", 12)
    q = pricing.upgrade_quote(
        value=Decimal("120.00"),
        starts_at=start,
        ends_at=end,
        now=start + timedelta(days=100, hours=7),
        new_price=Decimal("240.00"),
    )
    assert (q.credit, q.due, q.remaining_us, q.term_us) == (
        Decimal("87.02"),
        Decimal("152.98"),
        22_870_800_000_000,
        31_536_000_000_000,
    )
    # One second in: credit = floor(199.00 × 31,535,999 / 31,536,000) = floor(198.99999…) = 198.99.
    q = pricing.upgrade_quote(
        value=Decimal("199.00"),
        starts_at=start,
        ends_at=end,
        now=start + timedelta(seconds=1),
        new_price=Decimal("99.00"),
    )
    assert (q.credit, q.due) == (Decimal("198.99"), Decimal("0.00"))


def test_refund_quote() -> None:
    start = datetime(2026, 3, 1, tzinfo=UTC)
    end = pricing.term_end(start, "month", 12)
    price = Decimal("120.00")

    def quote(after: timedelta, periods: int = 0, cooling: int = 7) -> tuple[Decimal, str, int]:
        q = pricing.refund_quote(
            value=price,
            starts_at=start,
            ends_at=end,
            now=start + after,
            cooling_off_days=cooling,
            periods_granted=periods,
        )
        return q.amount, q.rule, q.unused_days

    assert quote(timedelta(days=6, hours=23, minutes=59)) == (Decimal("120.00"), "cooling_off", 358)
    assert quote(timedelta(days=7)) == (Decimal("117.69"), "pro_rata", 358)  # 120 × 358/365 = 117.698…
    assert quote(timedelta(days=3), periods=1) == (Decimal("119.01"), "pro_rata", 362)
    assert quote(timedelta(hours=1), cooling=0) == (Decimal("119.67"), "pro_rata", 364)
    assert quote(timedelta(days=400)) == (Decimal("0.00"), "pro_rata", 0)


@given(
    value=st.decimals(min_value=0, max_value=100_000, places=2),
    elapsed=st.integers(min_value=0, max_value=400 * 86_400),
)
def test_credit_and_refund_never_exceed_what_was_paid(value: Decimal, elapsed: int) -> None:
    start = datetime(2026, 3, 1, tzinfo=UTC)
    end = pricing.term_end(start, "month", 12)
    now = start + timedelta(seconds=elapsed)
    q = pricing.upgrade_quote(value=value, starts_at=start, ends_at=end, now=now, new_price=value)
    r = pricing.refund_quote(
        value=value, starts_at=start, ends_at=end, now=now, cooling_off_days=7, periods_granted=1
    )
    assert Decimal("0") <= q.credit <= value and q.credit == q.credit.quantize(Decimal("0.01"))
    assert Decimal("0") <= r.amount <= value and r.amount == r.amount.quantize(Decimal("0.01"))
    assert q.due == value - q.credit

"""Appointment benefits: book, change, cancel, verify at the visit; slot rules, capacity, period
limits counted with open bookings, the member's change deadline, and the hold on uses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from huiyuan.benefits import appointments
from huiyuan.benefits.appointments import AppointmentClosed, ChangeTooLate, SlotUnavailable
from huiyuan.benefits.verification import BenefitUnavailable, OutsideTimeWindow, PeriodLimitReached
from huiyuan.kit.clock import FrozenClock
from huiyuan.kit.errors import IdempotencyMismatch
from tests.benefits.helpers import BenefitBrand

SHANGHAI = ZoneInfo("Asia/Shanghai")
SPA = {
    "code": "SPA-60",
    "name": "贵宾护理",
    "kind": "custom",
    "verification": "appointment",
    "appointment": {"slot_minutes": 30, "capacity": 1, "min_notice_minutes": 60, "change_until_minutes": 120},
    "limits": {
        "uses_per_entitlement": 3,
        "per_period": [{"period": "day", "count": 1}],
        "time_windows": [{"days": [1, 2, 3, 4, 5], "start": "09:00", "end": "18:00"}],
        "duration_minutes": 60,
    },
    "unit_cost": "80.00",
}


def local(day: int, hour: int, minute: int = 0) -> datetime:
    """March 2026, Shanghai time (2 March is a Monday)."""
    return datetime(2026, 3, day, hour, minute, tzinfo=SHANGHAI).astimezone(UTC)


def test_book_change_cancel_and_verify(bb: BenefitBrand, clock: FrozenClock) -> None:
    d = bb.define(SPA)
    m0, m1 = bb.members[0], bb.members[1]
    mine = bb.grant(d.code, m0, "spa-0").entitlement
    theirs = bb.grant(d.code, m1, "spa-1").entitlement
    assert mine is not None and theirs is not None

    def book(mb: int, at: datetime, key: str, member: int | None = None) -> appointments.BookingResult:
        return bb.run(appointments.book, member_benefit_id=mb, starts_at=at, key=key, member_id=member)

    refused = [
        (local(2, 10, 15), SlotUnavailable, "not-a-slot"),
        (local(2, 10, 30), SlotUnavailable, "too-soon"),
        (local(7, 10), OutsideTimeWindow, None),  # Saturday
        (local(3, 17, 30), OutsideTimeWindow, None),  # would end at 18:30
        (local(2, 10) + timedelta(days=61), SlotUnavailable, "too-far"),
    ]
    for at, error, reason in refused:
        with pytest.raises(error) as exc:
            book(mine.id, at, f"bad-{at.isoformat()}", m0)
        assert reason is None or exc.value.extra["reason"] == reason
    tuesday = book(mine.id, local(3, 14), "b1", m0)
    assert book(mine.id, local(3, 14), "b1", m0).replayed
    with pytest.raises(IdempotencyMismatch):
        book(mine.id, local(3, 15), "b1", m0)
    assert tuesday.appointment.ends_at - tuesday.appointment.starts_at == timedelta(minutes=60)
    with pytest.raises(SlotUnavailable) as full:
        book(theirs.id, local(3, 14), "t1", m1)
    assert full.value.extra["reason"] == "full"
    with pytest.raises(PeriodLimitReached):  # one a day, counting open bookings
        book(mine.id, local(3, 16), "b2", m0)
    book(mine.id, local(4, 10), "b3", m0)
    thursday = book(mine.id, local(5, 10), "b4", m0)
    with pytest.raises(BenefitUnavailable):  # three uses, three held
        book(mine.id, local(6, 10), "b5", m0)
    assert bb.entitlement(mine.id).reserved == 3
    # Another member's appointment is not the member's to change.
    with pytest.raises(Exception) as other:
        bb.run(appointments.cancel, appointment_id=tuesday.appointment.id, member_id=m1)
    assert type(other.value).__name__ == "NotFound"

    moved = bb.run(
        appointments.rebook, appointment_id=tuesday.appointment.id, starts_at=local(6, 11), member_id=m0
    )
    assert moved.changes == 1 and moved.starts_at == local(6, 11)
    book(theirs.id, local(3, 14), "t1", m1)  # the slot is free again

    clock.advance(hours=70, minutes=30)  # Thursday 08:30: 90 minutes before the 10:00 visit
    with pytest.raises(ChangeTooLate):
        bb.run(appointments.cancel, appointment_id=thursday.appointment.id, member_id=m0)
    used = bb.run(appointments.verify, appointment_id=thursday.appointment.id, store_id=bb.store_id)
    assert used.usage.method == "appointment" and used.usage.appointment_id == thursday.appointment.id
    with pytest.raises(AppointmentClosed):
        bb.run(appointments.verify, appointment_id=thursday.appointment.id)
    staff_cancel = bb.run(appointments.cancel, appointment_id=moved.id, reason="closed for repairs")
    assert staff_cancel.status == "cancelled"
    after = bb.entitlement(mine.id)
    assert (after.remaining, after.reserved, after.used) == (2, 1, 1)
    assert bb.event_kinds(mine.id) == [
        "issued", "booked", "booked", "booked", "rebooked", "verified", "cancelled",
    ]  # fmt: skip

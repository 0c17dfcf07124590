"""Appointment benefits: book a slot, change it, cancel it, verify it at the visit.

Policies:

* A booking **holds one use** of the entitlement (``reserved``) until it is verified (the use is
  taken from the hold) or cancelled (the hold is released). A member can therefore never book more
  visits than uses left.
* A slot starts on a multiple of ``slot_minutes`` from local midnight, at least
  ``min_notice_minutes`` from now and at most ``horizon_days`` ahead; it lasts the definition's
  ``duration_minutes`` (else one slot), must end inside the entitlement's validity and fit inside
  one of the time windows. Period limits count verified uses plus open bookings in the slot's
  period; ``capacity`` caps the open bookings of one slot across members.
* Members may change or cancel until ``change_until_minutes`` before the start; staff at any time.
  Changing a cancelled or verified appointment is refused (``benefit-appointment-closed``).
* Locks, in one order everywhere: the member's use of the definition (advisory lock
  ``benefit-use:…``), then the entitlement row, then the slot (``benefit-slot:…``, only with a
  capacity), then the appointment row. Verification and scan verification take the same first lock.
* Booking is idempotent on the client's key (unique per brand): a retry returns the first booking,
  the key with another request is ``idempotency-key-reused``.

Nothing here commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from huiyuan.benefits.entitlements import add_event, get_entitlement
from huiyuan.benefits.limits import (
    is_slot_start,
    parse_appointment,
    parse_limits,
    period_bounds,
    slot_in_window,
)
from huiyuan.benefits.models import BenefitAppointment, BenefitDefinition, MemberBenefit
from huiyuan.benefits.repository import BenefitRepository
from huiyuan.benefits.schemas import AppointmentOut
from huiyuan.benefits.verification import (
    BenefitUnavailable,
    OutsideTimeWindow,
    PeriodLimitReached,
    UseResult,
    WrongMethod,
    record_use,
    require_store,
    require_usable,
)
from huiyuan.kit.clock import utcnow
from huiyuan.kit.db import advisory_lock
from huiyuan.kit.errors import Conflict, IdempotencyMismatch, NotFound, field_error
from huiyuan.kit.idempotency import request_hash
from huiyuan.kit.scope import Principal
from huiyuan.outbox.service import emit


class SlotUnavailable(Conflict):
    code = "benefit-slot-unavailable"
    title = "This slot cannot be booked"


class AppointmentClosed(Conflict):
    code = "benefit-appointment-closed"
    title = "The appointment was cancelled or verified already"


class ChangeTooLate(Conflict):
    code = "benefit-change-too-late"
    title = "The appointment can no longer be changed or cancelled by the member"


@dataclass
class BookingResult:
    appointment: BenefitAppointment
    replayed: bool = False


def _definition(session: Session, definition_id: int) -> BenefitDefinition:
    d = BenefitRepository(session).definition(definition_id)
    assert d is not None  # definitions are never deleted
    if d.verification != "appointment":
        raise WrongMethod(f"Benefit '{d.code}' is verified by {d.verification}.", verification=d.verification)
    return d


def _queue(session: Session, brand_id: int, member_id: int, definition_id: int) -> None:
    advisory_lock(session, f"benefit-use:{brand_id}:{member_id}:{definition_id}")


def _check_slot(
    session: Session,
    mb: MemberBenefit,
    d: BenefitDefinition,
    starts_at: datetime,
    now: datetime,
    *,
    excluding: int | None,
) -> datetime:
    """Refuse a slot the rules do not allow; returns its end."""
    repo = BenefitRepository(session)
    rules, limits = parse_appointment(d.appointment), parse_limits(d.limits)
    zone = repo.zone(mb.brand_id)
    if not is_slot_start(starts_at, rules.slot_minutes, zone):
        raise SlotUnavailable(
            f"Slots start every {rules.slot_minutes} minutes.",
            reason="not-a-slot",
            errors=[field_error("starts_at", f"a multiple of {rules.slot_minutes} minutes", "not-a-slot")],
        )
    if starts_at < now + timedelta(minutes=rules.min_notice_minutes):
        raise SlotUnavailable(f"Book at least {rules.min_notice_minutes} minutes ahead.", reason="too-soon")
    if starts_at > now + timedelta(days=rules.horizon_days):
        raise SlotUnavailable(f"Book at most {rules.horizon_days} days ahead.", reason="too-far")
    ends_at = starts_at + timedelta(minutes=limits.duration_minutes or rules.slot_minutes)
    if mb.valid_to is not None and ends_at > mb.valid_to:
        raise SlotUnavailable("The slot ends after the entitlement does.", reason="after-validity")
    if not slot_in_window(limits.time_windows, starts_at, ends_at, zone):
        raise OutsideTimeWindow("The slot is outside the benefit's time windows.", reason="outside-window")
    for limit in limits.per_period:
        start, end = period_bounds(limit.period, starts_at, zone)
        taken = repo.uses_between(mb.member_id, d.id, start, end) + repo.booked_between(
            mb.member_id, d.id, start, end, excluding=excluding
        )
        if taken >= limit.count:
            raise PeriodLimitReached(
                f"At most {limit.count} use(s) per {limit.period}.", period=limit.period, limit=limit.count
            )
    if rules.capacity is not None:
        advisory_lock(session, f"benefit-slot:{d.id}:{starts_at.isoformat()}")
        if repo.booked_in_slot(d.id, starts_at, excluding=excluding) >= rules.capacity:
            raise SlotUnavailable("The slot is full.", reason="full")
    return ends_at


def book(
    session: Session,
    *,
    actor: Principal,
    member_benefit_id: int,
    starts_at: datetime,
    key: str,
    store_id: int | None = None,
    note: str | None = None,
    member_id: int | None = None,
) -> BookingResult:
    """Book a slot for an appointment entitlement (``member_id``: the member's own only)."""
    brand_id = actor.scope.require_brand()
    repo = BenefitRepository(session)
    digest = request_hash(
        "benefit.book",
        {"member_benefit_id": member_benefit_id, "starts_at": starts_at.isoformat(), "store_id": store_id},
    )
    advisory_lock(session, f"benefit-book:{brand_id}:{key}")
    done = repo.appointment_by_key(brand_id, key)
    if done is not None:
        if done.request_hash != digest:
            raise IdempotencyMismatch(
                "This idempotency key was already used for another booking.",
                errors=[field_error("idempotency_key", "already used with another request", "reused")],
            )
        return BookingResult(done, replayed=True)
    found = get_entitlement(session, member_benefit_id, member_id=member_id)
    d = _definition(session, found.definition_id)
    _queue(session, brand_id, found.member_id, d.id)
    mb = repo.entitlement(found.id, for_update=True)
    assert mb is not None
    now = utcnow()
    require_usable(mb, now)
    require_store(session, store_id)
    ends_at = _check_slot(session, mb, d, starts_at, now, excluding=None)
    if not repo.hold_use(mb.id):
        raise BenefitUnavailable("No use is left to book.", reason="no-uses-left")
    appointment = BenefitAppointment(
        brand_id=brand_id,
        member_benefit_id=mb.id,
        definition_id=d.id,
        member_id=mb.member_id,
        store_id=store_id,
        starts_at=starts_at,
        ends_at=ends_at,
        status="booked",
        booking_key=key,
        request_hash=digest,
        note=note,
        changes=0,
        booked_at=now,
    )
    session.add(appointment)
    session.flush()
    add_event(
        session,
        actor,
        mb,
        "booked",
        quantity=1,
        detail={"appointment_id": appointment.id, "starts_at": starts_at.isoformat(), "store_id": store_id},
        at=now,
    )
    _announce(session, "benefit.booked", appointment)
    return BookingResult(appointment)


def _open(
    session: Session, appointment_id: int, member_id: int | None
) -> tuple[BenefitAppointment, MemberBenefit, BenefitDefinition]:
    """The appointment and its entitlement, locked in the shared order, re-read under the locks."""
    repo = BenefitRepository(session)
    appointment = repo.appointment(appointment_id)
    if appointment is None or (member_id is not None and appointment.member_id != member_id):
        raise NotFound(f"Appointment {appointment_id} was not found.")
    d = _definition(session, appointment.definition_id)
    _queue(session, appointment.brand_id, appointment.member_id, d.id)
    mb = repo.entitlement(appointment.member_benefit_id, for_update=True)
    assert mb is not None
    fresh = repo.appointment(appointment_id)
    assert fresh is not None
    return fresh, mb, d


def _member_deadline(appointment: BenefitAppointment, d: BenefitDefinition, now: datetime) -> None:
    rules = parse_appointment(d.appointment)
    if now > appointment.starts_at - timedelta(minutes=rules.change_until_minutes):
        raise ChangeTooLate(
            f"Changes are possible until {rules.change_until_minutes} minutes before the start.",
            change_until_minutes=rules.change_until_minutes,
        )


def rebook(
    session: Session,
    *,
    actor: Principal,
    appointment_id: int,
    starts_at: datetime,
    store_id: int | None = None,
    member_id: int | None = None,
) -> BenefitAppointment:
    """Move a booked appointment to another slot (``member_id``: by the member, within the deadline)."""
    appointment, mb, d = _open(session, appointment_id, member_id)
    if appointment.status != "booked":
        raise AppointmentClosed(
            f"The appointment is {appointment.status}.", appointment_status=appointment.status
        )
    now = utcnow()
    if member_id is not None:
        _member_deadline(appointment, d, now)
    require_usable(mb, now, from_reservation=True)
    require_store(session, store_id)
    ends_at = _check_slot(session, mb, d, starts_at, now, excluding=appointment.id)
    before = appointment.starts_at
    appointment.starts_at, appointment.ends_at = starts_at, ends_at
    if store_id is not None:
        appointment.store_id = store_id
    appointment.changes += 1
    session.flush()
    add_event(
        session,
        actor,
        mb,
        "rebooked",
        detail={"appointment_id": appointment.id, "from": before.isoformat(), "to": starts_at.isoformat()},
        at=now,
    )
    _announce(session, "benefit.rebooked", appointment)
    return appointment


def cancel(
    session: Session,
    *,
    actor: Principal,
    appointment_id: int,
    reason: str | None = None,
    member_id: int | None = None,
) -> BenefitAppointment:
    """Cancel a booked appointment and give its use back; cancelling twice is a no-op."""
    appointment, mb, d = _open(session, appointment_id, member_id)
    if appointment.status == "cancelled":
        return appointment
    if appointment.status != "booked":
        raise AppointmentClosed(
            f"The appointment is {appointment.status}.", appointment_status=appointment.status
        )
    now = utcnow()
    if member_id is not None:
        _member_deadline(appointment, d, now)
    repo = BenefitRepository(session)
    repo.close_appointment(appointment.id, "cancelled", now)
    repo.release_use(mb.id)
    add_event(
        session,
        actor,
        mb,
        "cancelled",
        quantity=1,
        detail={"appointment_id": appointment.id, "reason": reason},
    )
    fresh = repo.appointment(appointment.id)
    assert fresh is not None
    _announce(session, "benefit.cancelled", fresh)
    return fresh


def verify(
    session: Session,
    *,
    actor: Principal,
    appointment_id: int,
    store_id: int | None = None,
    note: str | None = None,
) -> UseResult:
    """The member came: the appointment is verified and its held use taken."""
    appointment, mb, d = _open(session, appointment_id, None)
    now = utcnow()
    if not BenefitRepository(session).close_appointment(appointment.id, "verified", now):
        raise AppointmentClosed(
            f"The appointment is {appointment.status}.", appointment_status=appointment.status
        )
    return record_use(
        session,
        actor=actor,
        mb=mb,
        definition=d,
        method="appointment",
        now=now,
        store_id=store_id if store_id is not None else appointment.store_id,
        note=note,
        appointment_id=appointment.id,
    )


def _announce(session: Session, type_: str, appointment: BenefitAppointment) -> None:
    emit(
        session,
        type=type_,
        brand_id=appointment.brand_id,
        aggregate_type="benefit_appointment",
        aggregate_id=appointment.id,
        payload={
            "appointment_id": appointment.id,
            "member_benefit_id": appointment.member_benefit_id,
            "member_id": appointment.member_id,
            "starts_at": appointment.starts_at.isoformat(),
            "status": appointment.status,
        },
    )


def get_appointment(
    session: Session, appointment_id: int, *, member_id: int | None = None
) -> BenefitAppointment:
    appointment = BenefitRepository(session).appointment(appointment_id)
    if appointment is None or (member_id is not None and appointment.member_id != member_id):
        raise NotFound(f"Appointment {appointment_id} was not found.")
    return appointment


def appointment_out(appointment: BenefitAppointment) -> AppointmentOut:
    return AppointmentOut.model_validate(appointment, from_attributes=True)

"""HTTP routes of the verification desk and of bookings (mounted by ``benefits.api``): thin.

Staff holding ``benefits:verify`` submit a scanned code, verify a manual or identity-check
entitlement, or verify an appointment at the visit. Bookings made for a member by an operator need
``benefits:write``; the usage log and the appointment calendar ``benefits:read``.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import AwareDatetime

from huiyuan.auth.deps import require
from huiyuan.benefits import appointments, entitlements, verification
from huiyuan.benefits.repository import BenefitRepository
from huiyuan.benefits.schemas import (
    AppointmentOut,
    AppointmentStatus,
    AppointmentVerifyIn,
    BookIn,
    CancelBookingIn,
    DeskVerifyIn,
    RebookIn,
    ScanVerifyIn,
    UsageOut,
    VerifyOut,
)
from huiyuan.kit.idempotency import IdempotencyKey
from huiyuan.kit.pagination import Page, check_limit, cursor_page, decode_cursor
from huiyuan.kit.scope import Principal
from huiyuan.kit.web import SessionDep
from huiyuan.points.service import operation_key
from huiyuan.settings import get_settings

router = APIRouter()

Reader = Annotated[Principal, require("benefits:read")]
Writer = Annotated[Principal, require("benefits:write")]
Verifier = Annotated[Principal, require("benefits:verify")]
TAGS: list[str | Enum] = ["benefits desk"]

VERIFY_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such entitlement, appointment or store in this brand"},
    409: {
        "description": "Used up, expired or voided (`benefit-unavailable`), outside the time windows "
        "(`benefit-outside-window`), over a period limit (`benefit-period-limit`), verified another way "
        "(`benefit-wrong-method`), a spent code (`benefit-code-used`) or a closed appointment "
        "(`benefit-appointment-closed`)"
    },
    422: {
        "description": "An invalid or expired code (`benefit-code-invalid`, `benefit-code-expired`), "
        "a missing note or ID reference, or more minutes than one use covers"
    },
}
BOOKING_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "A retry under the same idempotency key: the first booking"},
    404: {"description": "No such entitlement or appointment"},
    409: {
        "description": "The slot cannot be booked (`benefit-slot-unavailable`: not a slot, too soon, "
        "too far, after validity, full), outside the windows, over a period limit, no use left, or the "
        "appointment is closed (`benefit-appointment-closed`) or too close to change "
        "(`benefit-change-too-late`)"
    },
}


def _verified(session: SessionDep, result: verification.UseResult) -> VerifyOut:
    return VerifyOut(
        usage=UsageOut.model_validate(result.usage, from_attributes=True),
        entitlement=entitlements.entitlement_outs(session, [result.entitlement])[0],
    )


# -- verification desk ------------------------------------------------------------------------------


@router.post(
    "/benefits/verify/scan",
    response_model=VerifyOut,
    tags=TAGS,
    summary="Verify a member's scanned one-time code",
    responses=VERIFY_RESPONSES,
)
def verify_scan(data: ScanVerifyIn, session: SessionDep, actor: Verifier) -> VerifyOut:
    result = verification.verify_scan(
        session, actor=actor, token=data.code, store_id=data.store_id, minutes=data.minutes, note=data.note
    )
    return _verified(session, result)


@router.post(
    "/benefits/entitlements/{member_benefit_id}/verify",
    response_model=VerifyOut,
    tags=TAGS,
    summary="Verify a manual or identity-check entitlement at the desk",
    responses=VERIFY_RESPONSES,
)
def verify_at_desk(
    member_benefit_id: int, data: DeskVerifyIn, session: SessionDep, actor: Verifier
) -> VerifyOut:
    result = verification.verify_at_desk(
        session,
        actor=actor,
        member_benefit_id=member_benefit_id,
        note=data.note,
        id_reference=data.id_reference,
        reference=data.reference,
        store_id=data.store_id,
        minutes=data.minutes,
    )
    return _verified(session, result)


@router.get(
    "/benefits/usages",
    response_model=Page[UsageOut],
    tags=TAGS,
    summary="Verified uses, newest first (by member, benefit or entitlement)",
)
def usages(
    session: SessionDep,
    actor: Reader,
    member_id: int | None = None,
    definition_id: int | None = None,
    member_benefit_id: int | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[Any]:
    limit = check_limit(limit, get_settings().max_page_size)
    rows = verification.usage_list(
        session,
        member_id=member_id,
        definition_id=definition_id,
        member_benefit_id=member_benefit_id,
        after_id=decode_cursor(cursor),
        limit=limit + 1,
    )
    return cursor_page(
        rows, limit, lambda shown: [UsageOut.model_validate(u, from_attributes=True) for u in shown]
    )


# -- bookings ---------------------------------------------------------------------------------------


@router.get(
    "/benefits/appointments",
    response_model=list[AppointmentOut],
    tags=TAGS,
    summary="The appointment calendar, by slot start (at most 500)",
)
def list_appointments(
    session: SessionDep,
    actor: Reader,
    definition_id: int | None = None,
    member_id: int | None = None,
    status: AppointmentStatus | None = None,
    start: Annotated[
        AwareDatetime | None, Query(alias="from", description="Slots from (with a time zone)")
    ] = None,
    end: Annotated[
        AwareDatetime | None, Query(alias="to", description="Slots before (with a time zone)")
    ] = None,
) -> list[AppointmentOut]:
    rows = BenefitRepository(session).appointments(
        definition_id=definition_id, member_id=member_id, status=status, start=start, end=end, limit=500
    )
    return [appointments.appointment_out(a) for a in rows]


@router.post(
    "/benefits/entitlements/{member_benefit_id}/appointments",
    response_model=AppointmentOut,
    status_code=201,
    tags=TAGS,
    summary="Book a slot for a member",
    responses=BOOKING_RESPONSES,
)
def book(
    member_benefit_id: int,
    data: BookIn,
    response: Response,
    session: SessionDep,
    actor: Writer,
    idempotency_key: IdempotencyKey = None,
) -> AppointmentOut:
    key = operation_key(data.idempotency_key, idempotency_key, max_length=150)
    result = appointments.book(
        session,
        actor=actor,
        member_benefit_id=member_benefit_id,
        starts_at=data.starts_at,
        key=f"op:{key}",
        store_id=data.store_id,
        note=data.note,
    )
    response.status_code = 200 if result.replayed else 201
    if result.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return appointments.appointment_out(result.appointment)


@router.get(
    "/benefits/appointments/{appointment_id}",
    response_model=AppointmentOut,
    tags=TAGS,
    summary="Get an appointment",
    responses={404: {"description": "No such appointment"}},
)
def get_appointment(appointment_id: int, session: SessionDep, actor: Reader) -> AppointmentOut:
    return appointments.appointment_out(appointments.get_appointment(session, appointment_id))


@router.patch(
    "/benefits/appointments/{appointment_id}",
    response_model=AppointmentOut,
    tags=TAGS,
    summary="Move an appointment to another slot",
    responses=BOOKING_RESPONSES,
)
def rebook(appointment_id: int, data: RebookIn, session: SessionDep, actor: Writer) -> AppointmentOut:
    moved = appointments.rebook(
        session, actor=actor, appointment_id=appointment_id, starts_at=data.starts_at, store_id=data.store_id
    )
    return appointments.appointment_out(moved)


@router.post(
    "/benefits/appointments/{appointment_id}/cancel",
    response_model=AppointmentOut,
    tags=TAGS,
    summary="Cancel an appointment (its use comes back)",
    responses=BOOKING_RESPONSES,
)
def cancel(appointment_id: int, data: CancelBookingIn, session: SessionDep, actor: Writer) -> AppointmentOut:
    return appointments.appointment_out(
        appointments.cancel(session, actor=actor, appointment_id=appointment_id, reason=data.reason)
    )


@router.post(
    "/benefits/appointments/{appointment_id}/verify",
    response_model=VerifyOut,
    tags=TAGS,
    summary="The member came: verify the appointment",
    responses=VERIFY_RESPONSES,
)
def verify_appointment(
    appointment_id: int, data: AppointmentVerifyIn, session: SessionDep, actor: Verifier
) -> VerifyOut:
    result = appointments.verify(
        session, actor=actor, appointment_id=appointment_id, store_id=data.store_id, note=data.note
    )
    return _verified(session, result)

"""Checkout holds through a shared point programme: quote, reserve, confirm and release programme
points for a participant brand's linked member.

The hold is an ordinary reservation of the host brand's ledger (``points.service.quote`` for the
arithmetic, ``ledger.reserve`` / ``ledger.confirm`` / ``ledger.release`` for the moves), made through
the programme bridge (``programs.host_scope``) after the calling brand's standing and the member's
link were checked. What this module adds:

* the reservation key is the brand's idempotency key, namespaced per programme and brand in the
  host ledger (``program:<programme>:<brand>:<key>``), so two brands may use the same key, and a
  brand can neither confirm nor release another brand's reservation: it names a different one;
* each step is a programme operation of the calling brand (``reserve``, then ``confirm`` under
  ``<key>#confirm`` or ``release`` under ``<key>#release``), which records where the points were
  consumed: programme clearing attributes a confirm to the brand whose ``confirm`` operation it is,
  like a spend, and ``programs.refund`` gives back points of a confirmed reservation like of a spend;
* a reservation that times out is released by the host ledger's own sweep
  (``points.release_reservations``, run per brand, so for the host's rows by the host's run): the
  points go back, and a later confirm answers ``reservation-closed``.

Quote and reserve need what a spend needs (an active participation in a programme that is not
closed); confirm too, since it is the spend; a release is always allowed: giving points back is
always due. Nothing here commits.
"""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy.orm import Session

from huiyuan.kit.errors import NotFound
from huiyuan.kit.scope import Principal
from huiyuan.points import ledger
from huiyuan.points import service as points
from huiyuan.points.program_models import PointProgramOperation
from huiyuan.points.program_repository import ProgramRepository
from huiyuan.points.program_schemas import ProgramQuoteOut, ProgramReservationOut
from huiyuan.points.programs import (
    ProgramResult,
    _check_replay,
    _digest,
    _host_actor,
    _ledger_key,
    _link,
    _record,
    _store_id,
    host_scope,
    operation_out,
    standing,
)
from huiyuan.points.schemas import QuoteIn

CONFIRM, RELEASE = "confirm", "release"


def settle_key(key: str, outcome: str) -> str:
    """The brand's operation key of a reservation's confirm or release ("#" is outside client keys)."""
    return f"{key}#{outcome}"


def quote(
    session: Session,
    *,
    actor: Principal,
    code: str,
    member_id: int,
    cart_amount: Decimal,
    max_points: int | None = None,
) -> ProgramQuoteOut:
    """How many programme points the linked member may pay this cart with at the calling brand."""
    st = standing(session, actor, code, verb="spend")
    _member, link = _link(session, st, member_id)
    with host_scope(session, st.program):
        pt = ProgramRepository(session).point_type_by_id(st.program.point_type_id)
        assert pt is not None
        found = points.quote(
            session,
            actor=_host_actor(actor, st.brand.code, st.program),
            data=QuoteIn(
                member_id=link.host_member_id,
                point_type=pt.code,
                cart_amount=cart_amount,
                max_points=max_points,
            ),
        )
    return ProgramQuoteOut(program=st.program.code, **{**found.model_dump(), "member_id": member_id})


def reserve(
    session: Session,
    *,
    actor: Principal,
    code: str,
    member_id: int,
    key: str,
    amount: int,
    order_ref: str | None = None,
    store: str | None = None,
    ttl_minutes: int | None = None,
) -> ProgramResult:
    """Hold a linked member's programme points for a checkout at the calling brand; ``key`` names
    the reservation for confirm and release."""
    st = standing(session, actor, code, verb="spend")
    _member, link = _link(session, st, member_id)
    store_id = _store_id(session, st.brand.id, store)
    digest = _digest(
        "reserve", member=member_id, points=amount, order=order_ref, store=store_id, ttl=ttl_minutes
    )
    _check_replay(session, st, key, "reserve", digest)
    with host_scope(session, st.program):
        pt = ProgramRepository(session).point_type_by_id(st.program.point_type_id)
        assert pt is not None
        result = ledger.reserve(
            session,
            actor=_host_actor(actor, st.brand.code, st.program),
            member_id=link.host_member_id,
            point_type=pt.code,
            amount=amount,
            key=_ledger_key(st.program, st.brand.id, key),
            order_ref=order_ref,
            store_id=store_id,
            ttl_minutes=ttl_minutes,
        )
    return _record(
        session,
        st,
        actor=actor,
        result=result,
        key=key,
        kind="reserve",
        digest=digest,
        link=link,
        order_ref=order_ref,
        store_id=store_id,
    )


def _reservation_of(session: Session, program_id: int, brand_id: int, key: str) -> PointProgramOperation:
    held = ProgramRepository(session).operation_by_key(program_id, brand_id, key)
    if held is None or held.kind != "reserve":
        # Another brand's reservation under the same key is another reservation: not found here.
        raise NotFound(f"No reservation '{key}' in this programme.")
    return held


def settle(
    session: Session, *, actor: Principal, code: str, reservation_key: str, confirm: bool
) -> ProgramResult:
    """Confirm (spend at the calling brand) or release (give back) one of the brand's reservations;
    repeating either returns the first result."""
    outcome = CONFIRM if confirm else RELEASE
    st = standing(session, actor, code, verb="confirm" if confirm else None)
    held = _reservation_of(session, st.program.id, st.brand.id, reservation_key)
    _member, link = _link(session, st, held.member_id)
    key = settle_key(reservation_key, outcome)
    digest = _digest(outcome, reservation=held.id)
    _check_replay(session, st, key, outcome, digest)
    verb = ledger.confirm if confirm else ledger.release
    with host_scope(session, st.program):
        result = verb(
            session,
            actor=_host_actor(actor, st.brand.code, st.program),
            reservation_key=_ledger_key(st.program, st.brand.id, reservation_key),
        )
    return _record(
        session,
        st,
        actor=actor,
        result=result,
        key=key,
        kind=outcome,
        digest=digest,
        link=link,
        refunds_id=held.id,
        order_ref=held.order_ref,
        store_id=held.store_id,
    )


def reservation_out(result: ProgramResult, reservation_key: str) -> ProgramReservationOut:
    """The operation with the reservation it made or settled."""
    extra = result.ledger.extra
    return ProgramReservationOut(
        **operation_out(result).model_dump(),
        reservation_key=reservation_key,
        reservation_id=int(extra["reservation_id"]),
        status=str(extra.get("status", "held")),
        expires_at=extra.get("expires_at"),
    )

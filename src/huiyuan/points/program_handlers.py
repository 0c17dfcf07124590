"""Automatic programme earning: a brand's paid orders earn the points of every shared programme it
takes part in, at its participation's earn rate (``order.paid`` → ``programs.earn``), and refunds
take the refunded share back (``order.refunded`` → ``programs.take_back_for_refund``).

Only members the brand has linked to a programme earn (linking is the member's consent to share an
account across brands; nothing is linked behind their back). The earn is keyed on the order
(``order#<id>#earned``, outside the characters client keys may use), so a retried event earns once
per programme; a rate of 0 turns automatic earning off for that brand. The brand's own point earning
(``points.earning``) is separate and unchanged.

Most brands take part in no programme: ``program_cache`` remembers that per process for a short
time, so their paid orders cost no extra query (see there for how the memory is kept fresh).
Refunds need no such care: taking back looks up the order's earns by key, one indexed query.
"""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy.orm import Session

from huiyuan.kit.scope import system_for_brand
from huiyuan.outbox.handlers import on
from huiyuan.outbox.models import OutboxEvent
from huiyuan.points import program_cache, programs
from huiyuan.points.program_repository import ProgramRepository


@on("order.paid")
def earn_programme_points_on_order_paid(session: Session, event: OutboxEvent) -> None:
    payload = event.payload or {}
    member_id, order_id = payload.get("member_id"), payload.get("order_id")
    if event.brand_id is None or not isinstance(member_id, int) or not isinstance(order_id, int):
        return
    paid = Decimal(str(payload.get("paid_amount") or "0"))
    if paid <= 0:
        return
    if program_cache.known_outside(event.brand_id):
        return  # the common case: a brand in no programme, answered without a query
    repo = ProgramRepository(session)
    actor = system_for_brand(event.brand_id)
    active = repo.active_participations_of_brand(event.brand_id)
    program_cache.remember(event.brand_id, participates=bool(active))
    for participation, program in active:
        if participation.earn_rate <= 0 or programs.points_for(paid, participation.earn_rate) <= 0:
            continue
        if repo.link_of_member(program.id, member_id) is None:
            continue
        number = payload.get("order_number")
        programs.earn(
            session,
            actor=actor,
            code=program.code,
            member_id=member_id,
            key=programs.order_earn_key(order_id),
            paid_amount=paid,
            order_ref=str(number)[:64] if number else None,
        )


@on("order.refunded")
def take_back_programme_points_on_order_refunded(session: Session, event: OutboxEvent) -> None:
    payload = event.payload or {}
    order_id, refund_id = payload.get("order_id"), payload.get("refund_id")
    if event.brand_id is None or not isinstance(order_id, int) or not isinstance(refund_id, int):
        return
    programs.take_back_for_refund(
        session, actor=system_for_brand(event.brand_id), order_id=order_id, refund_id=refund_id
    )

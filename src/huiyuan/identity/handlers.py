"""Real-time linking from domain events: member records and orders feed the identity graph as they
change. Runs inside the dispatcher's savepoint for the event's brand (``outbox.handlers``);
idempotent, since linking the same identifiers again only touches ``last_seen_at``. A refused link
becomes a conflict row, never an exception, so the member or order event is never held up.

New members arrive through a *preparer* of ``member.enrolled`` (all enrollments of a dispatch
batch, per brand, in one go) rather than a per-event handler: the member domain's contract is that
an enrollment reaches exactly its own member handlers, and a preparer is not one of them. If the
preparer fails, those members are linked at their next change (every member handler re-syncs the
whole record) or by the ``identity.sync_members`` job.

Paid orders are looked at together by a preparer of ``order.paid`` (``find_orders_to_link``): one
query for the batch tells which orders carry no checkout identifiers (a member's order never does),
and their handler returns at once. Orders with identifiers are linked by their own handler, in
event order among the member handlers of the batch, exactly as without the preparer. The answer is
kept for the session: no handler changes an order's checkout identifiers.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from huiyuan.identity import config
from huiyuan.identity.ingest import link_order, orders_without_identifiers, sync_member_by_id
from huiyuan.outbox.handlers import on, prepare
from huiyuan.outbox.models import OutboxEvent

ACTOR = "system:oneid"
MEMBER_CHANGES = (
    "member.updated",
    "member.closed",
    "member.erased",
    "member.identifier_added",
    "member.identifier_removed",
    "member.card_bound",
    "member.card_lost",
    "member.card_replaced",
)
# Orders of this session's dispatch batch found to have nothing to link (``find_orders_to_link``).
_NOTHING_TO_LINK = "huiyuan.identity.orders_without_identifiers"


def _sync(session: Session, event: OutboxEvent) -> None:
    member_id = (event.payload or {}).get("member_id")
    if event.brand_id is None or not isinstance(member_id, int):
        return
    writer = config.writer(session, event.brand_id, ACTOR)
    sync_member_by_id(writer, session, member_id)


@prepare("member.enrolled")
def link_enrolled_members(session: Session, events: list[OutboxEvent]) -> None:
    """Bring newly enrolled members' identifiers into the graph (one brand's batch)."""
    brand_id = events[0].brand_id
    if brand_id is None:
        return
    writer = config.writer(session, brand_id, ACTOR)
    for event in events:
        member_id = (event.payload or {}).get("member_id")
        if isinstance(member_id, int):
            sync_member_by_id(writer, session, member_id)


def link_member_record(session: Session, event: OutboxEvent) -> None:
    """Bring the member's identifiers into the graph (and drop the ones it no longer has)."""
    _sync(session, event)


for _event_type in MEMBER_CHANGES:
    on(_event_type)(link_member_record)


@prepare("order.paid", lookahead=True)
def find_orders_to_link(session: Session, events: list[OutboxEvent]) -> None:
    """Tell, for one brand's batch of paid orders in one query, which have nothing to link; their
    ``link_order_buyer`` then returns without reading the order."""
    brand_id = events[0].brand_id
    if brand_id is None:
        return
    order_ids = [i for e in events if isinstance(i := (e.payload or {}).get("order_id"), int)]
    idle = orders_without_identifiers(session, order_ids)
    session.info.setdefault(_NOTHING_TO_LINK, set()).update((brand_id, i) for i in idle)


@on("order.paid")
def link_order_buyer(session: Session, event: OutboxEvent) -> None:
    """Link the buyer's member number with the identifiers given at checkout."""
    order_id = (event.payload or {}).get("order_id")
    if event.brand_id is None or not isinstance(order_id, int):
        return
    if (event.brand_id, order_id) in session.info.get(_NOTHING_TO_LINK, ()):
        return
    brand_id = event.brand_id
    link_order(lambda: config.writer(session, brand_id, ACTOR), session, order_id)

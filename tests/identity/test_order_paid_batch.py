"""Orders linked from a dispatch batch (the ``order.paid`` preparer ``find_orders_to_link``) give
the same graph as one event at a time without it, through a failing event, a failing preparer and
events dispatched again."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, aliased

from huiyuan.identity import handlers as identity_handlers
from huiyuan.identity.models import IdentifierNode, IdentityConflict, IdentityLink, OneIdChange
from huiyuan.kit.clock import utcnow
from huiyuan.kit.db import Database
from huiyuan.kit.scope import system_for_brand
from huiyuan.outbox import handlers as outbox_handlers
from huiyuan.outbox.dispatcher import dispatch_pending
from huiyuan.outbox.models import OutboxEvent
from tests.conftest import BrandFixture, World
from tests.factories import enroll
from tests.identity.helpers import partition
from tests.orders.helpers import order_body

# Checkout identifiers of each order (none: a member's order, or an anonymous one without any).
BUYERS: list[list[tuple[str, str]]] = [
    [("phone", "13800138001"), ("email", "a1@example.cn")],
    [],
    [("phone", "13800138001"), ("wechat_openid", "oOpen-1")],
    [("email", "b2@example.cn")],
    [],
    [("wechat_openid", "oOpen-1"), ("email", "c3@example.cn"), ("phone", "13800138003")],
    [("phone", "13800138004")],
]
FAILING = "POS-2"  # the order whose event fails once in the batch run (it has identifiers)


def _place_orders(client: Any, brand: BrandFixture) -> None:
    member = enroll(client, brand.headers, phone="13900139000")
    for n, idents in enumerate(BUYERS):
        body = order_body(f"POS-{n}", store=f"{brand.code}-s1")
        if idents:
            body["identifiers"] = [{"type": t, "value": v} for t, v in idents]
        elif n == 1:
            body["member_id"] = member["id"]
        r = client.post("/api/v1/orders", json=body, headers=brand.headers)
        assert r.status_code == 201, r.text


def _key(type_: str, bidx: str) -> str:
    # Member numbers differ between brands; each brand has one member here.
    return "member_number" if type_ == "member_number" else f"{type_}:{bidx}"


def _graph(db: Database, brand_id: int) -> dict[str, Any]:
    """What the graph holds, without ids or times (comparable across brands)."""
    groups = {frozenset(_key(*k.split(":", 1)) for k in group) for group in partition(db, brand_id)}
    with db.unit_of_work(system_for_brand(brand_id).scope, write=False) as s:
        left, right = aliased(IdentifierNode), aliased(IdentifierNode)
        links = sorted(
            (_key(a, ab), _key(b, bb), source, rule, status)
            for a, ab, b, bb, source, rule, status in s.execute(
                select(
                    left.type,
                    left.value_bidx,
                    right.type,
                    right.value_bidx,
                    IdentityLink.source,
                    IdentityLink.rule,
                    IdentityLink.status,
                )
                .join(left, left.id == IdentityLink.left_id)
                .join(right, right.id == IdentityLink.right_id)
            )
        )
        changes = sorted((c.kind, c.cause, len(c.others)) for c in s.scalars(select(OneIdChange)))
        conflicts = sorted(c.reason for c in s.scalars(select(IdentityConflict)))
    return {"groups": groups, "links": links, "changes": changes, "conflicts": conflicts}


def _fail_once(session: Session, event: OutboxEvent) -> None:
    if event.payload.get("order_number") == FAILING:
        raise RuntimeError("refused once")


def _retry(db: Database) -> None:
    """An hour later: the failed event is retried (with what the batch emitted meanwhile)."""
    later = utcnow() + timedelta(hours=1)
    failed = 0
    while (stats := dispatch_pending(db, batch=1, now=later)).taken:
        failed += stats.failed
    assert failed == 0


def _dispatch_again(db: Database, brand_id: int) -> None:
    """Every paid order of the brand dispatched once more (a retry after a crash before commit)."""
    with db.unit_of_work() as s:
        s.execute(
            update(OutboxEvent)
            .where(OutboxEvent.brand_id == brand_id, OutboxEvent.type == "order.paid")
            .values(dispatched_at=None, next_attempt_at=None)
        )
    assert dispatch_pending(db, batch=500).failed == 0


def _one_at_a_time(
    client: Any, world: World, brand: BrandFixture, monkeypatch: pytest.MonkeyPatch, *, fail: bool
) -> None:
    """The reference: the identity preparer left out, one event a batch; with ``fail``, the
    ``FAILING`` order's event fails once and is retried after the others, as in the batch run."""
    with monkeypatch.context() as m:
        outbox_handlers.load_handler_modules()
        kept = [
            (t, f) for t, f in outbox_handlers._preparers if f is not identity_handlers.find_orders_to_link
        ]
        m.setattr(outbox_handlers, "_preparers", kept)
        _place_orders(client, brand)
        if fail:
            outbox_handlers.subscribe("order.paid", _fail_once)
        try:
            while dispatch_pending(world.db, batch=1).taken:
                pass
        finally:
            outbox_handlers.unsubscribe(_fail_once)
        if fail:
            _retry(world.db)


@pytest.mark.parametrize("trouble", ["failing_event", "failing_preparer"])
def test_a_batch_links_orders_as_one_at_a_time(
    client: Any, world: World, monkeypatch: pytest.MonkeyPatch, trouble: str
) -> None:
    alpha, beta = world.brands
    _one_at_a_time(client, world, alpha, monkeypatch, fail=trouble == "failing_event")
    expected = _graph(world.db, alpha.id)
    assert len(expected["links"]) >= 5 and expected["changes"]  # the scenario does link

    _place_orders(client, beta)
    with monkeypatch.context() as m:
        if trouble == "failing_event":
            outbox_handlers.subscribe("order.paid", _fail_once)
        else:

            def broken(session: Session, order_ids: Any) -> set[int]:
                raise RuntimeError("preparer down")

            m.setattr(identity_handlers, "orders_without_identifiers", broken)
        try:
            stats = dispatch_pending(world.db, batch=500)
        finally:
            outbox_handlers.unsubscribe(_fail_once)
    assert stats.taken >= len(BUYERS)
    assert stats.failed == (1 if trouble == "failing_event" else 0)
    if trouble == "failing_event":  # the failed order waits for its retry, the others are linked
        assert _graph(world.db, beta.id) != expected
        _retry(world.db)
    assert _graph(world.db, beta.id) == expected

    _dispatch_again(world.db, beta.id)  # idempotent: linking again changes nothing but times
    assert _graph(world.db, beta.id) == expected


def test_the_preparer_answers_only_for_orders_without_identifiers(client: Any, world: World) -> None:
    from huiyuan.identity.ingest import orders_without_identifiers
    from huiyuan.orders.models import Order

    alpha, beta = world.brands
    _place_orders(client, alpha)
    _place_orders(client, beta)
    with world.db.unit_of_work(system_for_brand(alpha.id).scope, write=False) as s:
        ids = {o.order_number: o.id for o in s.scalars(select(Order))}
        idle = orders_without_identifiers(s, [*ids.values(), ids["POS-0"], 10**9])
    assert idle == {ids["POS-1"], ids["POS-4"], 10**9}  # an unknown order has nothing to link either

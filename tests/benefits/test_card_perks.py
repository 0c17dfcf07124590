"""A benefit card's points multiplier reaches order earning: through the outbox's batch preparer
(set-based, ``points.bulk``) and through ``earning.member_facts`` for one member; only while the
card covers the payment time, and the best card wins (cards do not add up)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from huiyuan.kit.scope import system_for_brand
from huiyuan.members.models import Member
from huiyuan.outbox.dispatcher import dispatch_pending
from huiyuan.points import earning
from tests.conftest import World
from tests.factories import enroll
from tests.points.test_earning import PER_YUAN, _account, _order, _setup, clock  # noqa: F401

PRODUCTS = "/api/v1/benefits/cards/products"


def _card_product(client: Any, h: dict[str, str], code: str, multiplier: str) -> int:
    body = {
        "code": code,
        "name": f"{code} 卡",
        "price": "99.00",
        "validity_months": 1,
        "lines": [
            {
                "benefit": {"kind": "points", "point_type": "points", "amount": 10},
                "every": "once",
                "value": "1",
            }
        ],
        "perks": {"points_multiplier": multiplier},
        "rules": {},
    }
    r = client.post(PRODUCTS, json=body, headers=h)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def test_card_multiplier_feeds_order_earning(client: Any, world: World, clock: Any) -> None:  # noqa: F811
    _setup(world, rules=[PER_YUAN])
    a = world.brands[0]
    h = a.headers
    with_card, without = enroll(client, h)["id"], enroll(client, h)["id"]
    x15 = _card_product(client, h, "X15", "1.5")
    x2 = _card_product(client, h, "X2", "2")
    for n, product in enumerate((x15, x2)):
        buy = {"product_id": product, "payment_reference": f"WX-{n}"}
        r = client.post(f"/api/v1/members/{with_card}/benefit-cards", json=buy, headers=h)
        assert r.status_code == 201, r.text
    dispatch_pending(world.db)
    before = _account(world, with_card).available  # type: ignore[union-attr]
    assert before == 20  # the two cards' welcome points

    _order(client, world, with_card, "C-1", paid_at="2026-03-15T08:00:00Z")
    _order(client, world, without, "C-2", paid_at="2026-03-15T08:00:00Z")
    _order(client, world, with_card, "C-0", paid_at="2026-03-15T06:30:00Z")  # before the cards
    dispatch_pending(world.db)
    before += 180
    # 180.00 paid → 180 points; the best card (×2) applies, the ×1.5 card does not add to it.
    assert _account(world, with_card).available - before == 360  # type: ignore[union-attr]
    assert _account(world, without).available == 180  # type: ignore[union-attr]

    actor = system_for_brand(a.id)
    with world.db.unit_of_work(actor.scope, write=False) as s:
        member = s.scalars(select(Member).where(Member.id == with_card)).one()
        inside = earning.member_facts(s, member, datetime(2026, 3, 20, tzinfo=UTC))
        assert [(m.source, m.factor) for m in inside.multipliers] == [("card:X2", Decimal("2"))]
        # The cards last one calendar month from 2026-03-15: none covers May.
        after = earning.member_facts(s, member, datetime(2026, 5, 1, tzinfo=UTC))
        assert after.multipliers == []

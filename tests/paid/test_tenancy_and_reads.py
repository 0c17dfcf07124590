"""Brand beta cannot see or change alpha's plans or alpha's members' subscriptions, nor sell alpha's
levels; ``active_plan`` answers for any moment of a member's history."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select

from huiyuan.kit.clock import FrozenClock
from huiyuan.kit.scope import system_for_brand
from huiyuan.paid.models import Subscription, SubscriptionEvent
from huiyuan.paid.service import active_plan
from tests.conftest import World
from tests.factories import enroll
from tests.paid.conftest import START
from tests.paid.helpers import buy, make_plans


def test_beta_cannot_touch_alpha(client: Any, world: World, clock: FrozenClock) -> None:
    a, b = world.brands
    plans = make_plans(client, a.headers)
    m = enroll(client, a.headers)
    assert buy(client, a.headers, m["id"], plans.silver, "P-1").status_code == 201
    mine = enroll(client, b.headers)

    for path in (
        f"/api/v1/paid/categories/{plans.family}",
        f"/api/v1/paid/levels/{plans.silver}",
        f"/api/v1/members/{m['id']}/paid",
        f"/api/v1/members/{m['id']}/paid/upgrade-quote/{plans.gold}",
    ):
        assert client.get(path, headers=a.headers).status_code == 200, path
        r = client.get(path, headers=b.headers)
        assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json"), path
    assert client.get("/api/v1/paid/categories", headers=b.headers).json() == []
    assert client.get("/api/v1/paid/levels", headers=b.headers).json() == []
    r = client.patch(f"/api/v1/paid/levels/{plans.silver}", json={"price": "1"}, headers=b.headers)
    assert r.status_code == 404
    for verb, body in (
        ("buy", {"level_id": plans.gold, "payment_reference": "B-1"}),
        ("renew", {"payment_reference": "B-2"}),
        ("upgrade", {"level_id": plans.gold, "payment_reference": "B-3"}),
        ("cancel", {"refund_reference": "B-4"}),
    ):
        r = client.post(f"/api/v1/members/{m['id']}/paid/{verb}", json=body, headers=b.headers)
        assert r.status_code == 404, (verb, r.text)
    # Alpha's level means nothing to beta's own member; alpha's payment reference is free in beta.
    r = buy(client, b.headers, mine["id"], plans.silver, "P-1")
    assert r.status_code == 422 and r.json()["errors"][0]["code"] == "unknown-level"
    r = client.post(
        "/api/v1/paid/levels",
        json={
            "category_id": plans.family,
            "code": "x",
            "name": "x",
            "rank": 5,
            "price": "1",
            "validity": {"unit": "day", "count": 1},
        },
        headers=b.headers,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "category_id"
    with world.db.unit_of_work(write=False) as s:
        assert s.scalar(select(func.count()).select_from(Subscription)) == 1
        assert set(s.scalars(select(SubscriptionEvent.brand_id))) == {a.id}
    got = client.get(f"/api/v1/members/{m['id']}/paid", headers=a.headers).json()
    assert got["current"]["status"] == "active" and got["current"]["amount_paid"] == "120.00"


def test_active_plan_over_a_members_history(client: Any, world: World, clock: FrozenClock) -> None:
    a, b = world.brands
    h = a.headers
    plans = make_plans(client, h)
    m = enroll(client, h)
    with world.db.unit_of_work(system_for_brand(a.id).scope, write=False) as s:
        assert active_plan(s, m["id"], START) is None
    buy(client, h, m["id"], plans.silver, "P-1")
    clock.advance(days=40)
    client.post(
        f"/api/v1/members/{m['id']}/paid/upgrade",
        json={"level_id": plans.gold, "payment_reference": "P-2"},
        headers=h,
    )
    upgraded_at = clock.now()
    clock.advance(days=10)
    client.post(f"/api/v1/members/{m['id']}/paid/cancel", json={"refund_reference": "R-1"}, headers=h)

    with world.db.unit_of_work(system_for_brand(a.id).scope, write=False) as s:
        before = active_plan(s, m["id"], START - timedelta(seconds=1))
        silver = active_plan(s, m["id"], START)
        still_silver = active_plan(s, m["id"], upgraded_at - timedelta(microseconds=1))
        gold = active_plan(s, m["id"], upgraded_at)
        after_cancel = active_plan(s, m["id"], clock.now())
    assert before is None and after_cancel is None
    assert silver is not None and still_silver is not None and gold is not None
    assert (silver.plan_code, silver.level_code, silver.points_multiplier) == (
        "family",
        "silver",
        Decimal("1.5"),
    )
    assert silver.ends_at == upgraded_at and still_silver.subscription_id == silver.subscription_id
    assert (gold.level_code, gold.points_multiplier, gold.ends_at) == ("gold", Decimal(2), clock.now())
    # Another brand's scope does not see the member's plans.
    with world.db.unit_of_work(system_for_brand(b.id).scope, write=False) as s:
        assert active_plan(s, m["id"], START) is None

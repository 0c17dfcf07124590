"""A member's paid plan through the API, with a frozen clock: buy, idempotent replays, renew (active
and lapsed), upgrade paying the difference pro rata, cancel with refunds, and the history."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from huiyuan.audit.models import AuditEntry
from huiyuan.kit.clock import FrozenClock
from huiyuan.outbox.models import OutboxEvent
from huiyuan.paid.models import Subscription, SubscriptionEvent
from tests.conftest import World
from tests.factories import enroll
from tests.paid.conftest import START, granted_keys
from tests.paid.helpers import buy, make_plans


def _outbox(world: World, prefix: str = "paid.", subscription_id: int | None = None) -> list[str]:
    with world.db.unit_of_work(write=False) as s:
        stmt = select(OutboxEvent.type).where(OutboxEvent.type.startswith(prefix)).order_by(OutboxEvent.id)
        if subscription_id is not None:
            stmt = stmt.where(OutboxEvent.aggregate_id == str(subscription_id))
        return list(s.scalars(stmt))


def _post(client: Any, h: dict[str, str], member_id: int, verb: str, body: dict[str, Any]) -> Any:
    return client.post(f"/api/v1/members/{member_id}/paid/{verb}", json=body, headers=h)


def test_buy_grants_one_time_benefits_and_replays(client: Any, world: World, clock: FrozenClock) -> None:
    h = world.brands[0].headers
    plans = make_plans(client, h)
    m = enroll(client, h)
    r = buy(client, h, m["id"], plans.silver, "PAY-1", amount="120")
    assert r.status_code == 201, r.text
    sub, event = r.json()["subscription"], r.json()["event"]
    assert sub["status"] == "active" and sub["level_code"] == "silver" and sub["category_code"] == "family"
    assert sub["starts_at"] == "2026-03-01T00:00:00Z" and sub["ends_at"] == "2027-03-01T00:00:00Z"
    assert sub["amount_paid"] == "120.00" and sub["points_multiplier"] == "1.5000"
    assert (event["kind"], event["amount"], event["reference"]) == ("bought", "120.00", "PAY-1")

    # The same request again: the first result, 200; the same reference for another body: refused.
    r = buy(client, h, m["id"], plans.silver, "PAY-1", amount="120.00")
    assert r.status_code == 200 and r.json()["event"]["id"] == event["id"]
    r = buy(client, h, m["id"], plans.gold, "PAY-1")
    assert r.status_code == 422 and r.json()["code"] == "idempotency-key-reused"
    assert r.json()["existing_subscription_id"] == sub["id"]
    other = enroll(client, h)
    r = buy(client, h, other["id"], plans.silver, "PAY-1", amount="120")
    assert r.status_code == 422 and r.json()["code"] == "idempotency-key-reused"

    with world.db.unit_of_work(write=False) as s:
        assert granted_keys(s) == [f"paid:{sub['id']}:one_time:0"]
        assert s.scalar(select(func.count()).select_from(Subscription)) == 1
    assert _outbox(world) == ["paid.bought"]
    got = client.get(f"/api/v1/members/{m['id']}/paid", headers=h).json()
    assert got["current"]["id"] == sub["id"]
    assert [e["kind"] for e in got["events"]] == ["benefit_granted", "bought"]
    assert got["events"][0]["detail"]["key"] == f"paid:{sub['id']}:one_time:0"


def test_buy_refusals(client: Any, world: World, clock: FrozenClock) -> None:
    h = world.brands[0].headers
    plans = make_plans(client, h)
    m = enroll(client, h)
    r = buy(client, h, m["id"], plans.silver, "P-1", amount="100.00")
    assert r.status_code == 422 and r.json()["errors"][0]["code"] == "amount-mismatch"
    r = buy(client, h, m["id"], 999999, "P-1")
    assert r.status_code == 422 and r.json()["errors"][0] == {
        "field": "level_id",
        "message": "no such level",
        "code": "unknown-level",
    }
    r = _post(client, h, m["id"], "buy", {"level_id": plans.silver, "payment_reference": "has space"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "payment_reference"
    assert buy(client, h, 999999, plans.silver, "P-1").status_code == 404
    client.patch(f"/api/v1/paid/levels/{plans.gold}", json={"status": "retired"}, headers=h)
    r = buy(client, h, m["id"], plans.gold, "P-1")
    assert r.status_code == 409 and r.json()["code"] == "paid-level-retired"
    closed = enroll(client, h)
    client.post(f"/api/v1/members/{closed['id']}/close", json={"reason": "x"}, headers=h)
    r = buy(client, h, closed["id"], plans.silver, "P-1")
    assert r.status_code == 409 and r.json()["code"] == "member-not-active"

    assert buy(client, h, m["id"], plans.silver, "P-1").status_code == 201
    # A member closed since still gets the first result of a retried purchase, and nothing new.
    client.post(f"/api/v1/members/{m['id']}/close", json={"reason": "x"}, headers=h)
    assert buy(client, h, m["id"], plans.silver, "P-1").status_code == 200
    assert _post(client, h, m["id"], "renew", {"payment_reference": "P-9"}).status_code == 409
    m = enroll(client, h)
    assert buy(client, h, m["id"], plans.silver, "P-0").status_code == 201
    r = buy(client, h, m["id"], plans.week_pass, "P-2")
    assert r.status_code == 409 and r.json()["code"] == "paid-plan-active"
    r = _post(client, h, enroll(client, h)["id"], "renew", {"payment_reference": "P-3"})
    assert r.status_code == 409 and r.json()["code"] == "no-active-paid-plan"
    with world.db.unit_of_work(write=False) as s:
        assert s.scalar(select(func.count()).select_from(Subscription)) == 2
    assert _outbox(world) == ["paid.bought", "paid.bought"]


def test_renew_active_and_lapsed(client: Any, world: World, clock: FrozenClock) -> None:
    h = world.brands[0].headers
    plans = make_plans(client, h)
    m = enroll(client, h)
    first = buy(client, h, m["id"], plans.silver, "P-1").json()["subscription"]

    # Buying the level already held renews it from its end.
    clock.advance(days=30)
    r = buy(client, h, m["id"], plans.silver, "P-2")
    assert r.status_code == 201 and r.json()["event"]["kind"] == "renewed"
    assert r.json()["subscription"]["id"] == first["id"]
    assert r.json()["subscription"]["ends_at"] == "2028-03-01T00:00:00Z"
    r = _post(client, h, m["id"], "renew", {"payment_reference": "P-3", "amount": "120.00"})
    assert r.status_code == 201, r.text
    renewed = r.json()["subscription"]
    assert renewed["ends_at"] == "2029-03-01T00:00:00Z" and renewed["amount_paid"] == "360.00"
    assert (
        _post(client, h, m["id"], "renew", {"payment_reference": "P-3", "amount": "120.00"}).status_code
        == 200
    )

    # Past the end (no expire job has run): renewing starts a new subscription now.
    clock.advance(days=3 * 366)
    got = client.get(f"/api/v1/members/{m['id']}/paid", headers=h).json()
    assert got["current"] is None and got["subscriptions"][0]["status"] == "active"
    r = _post(client, h, m["id"], "renew", {"payment_reference": "P-4"})
    assert r.status_code == 201, r.text
    new = r.json()["subscription"]
    assert new["id"] != first["id"] and new["starts_at"] == (
        START + timedelta(days=30 + 3 * 366)
    ).isoformat().replace("+00:00", "Z")
    assert r.json()["event"]["detail"]["previous_subscription_id"] == first["id"]
    got = client.get(f"/api/v1/members/{m['id']}/paid", headers=h).json()
    assert [s["status"] for s in got["subscriptions"]] == ["active", "expired"]
    assert got["subscriptions"][1]["ended_at"] == "2029-03-01T00:00:00Z"
    assert got["subscriptions"][1]["periods_granted"] == 36  # every month of the three years, at expiry
    assert _outbox(world) == ["paid.bought", "paid.renewed", "paid.renewed", "paid.expired", "paid.renewed"]
    with world.db.unit_of_work(write=False) as s:
        keys = granted_keys(s)
    assert f"paid:{new['id']}:one_time:0" in keys and f"paid:{first['id']}:period:35:0" in keys
    assert f"paid:{first['id']}:period:36:0" not in keys


def test_upgrade_pays_the_difference_to_the_fen(client: Any, world: World, clock: FrozenClock) -> None:
    h = world.brands[0].headers
    plans = make_plans(client, h)
    m = enroll(client, h)
    silver = buy(client, h, m["id"], plans.silver, "P-1").json()["subscription"]
    clock.advance(days=100, hours=7)  # 2026-06-09T07:00Z
    # term 365 d = 31,536,000 s; remaining 264 d 17 h = 22,870,800 s
    # credit = floor(120.00 × 22,870,800 / 31,536,000) = floor(87.0273…) = 87.02; due = 240.00 − 87.02
    quote = client.get(f"/api/v1/members/{m['id']}/paid/upgrade-quote/{plans.gold}", headers=h)
    assert quote.status_code == 200, quote.text
    assert (quote.json()["credit"], quote.json()["due"]) == ("87.02", "152.98")
    assert quote.json()["ends_at"] == "2027-06-09T07:00:00Z"

    r = _post(client, h, m["id"], "upgrade", {"level_id": plans.gold, "payment_reference": "P-2"})
    assert r.status_code == 201, r.text
    gold, event = r.json()["subscription"], r.json()["event"]
    assert (event["kind"], event["amount"], event["detail"]["credit"]) == ("upgraded", "152.98", "87.02")
    assert gold["amount_paid"] == "152.98" and gold["credit_applied"] == "87.02"
    assert gold["starts_at"] == "2026-06-09T07:00:00Z" and gold["ends_at"] == "2027-06-09T07:00:00Z"
    assert gold["upgraded_from_id"] == silver["id"] and gold["points_multiplier"] == "2.0000"
    r2 = _post(client, h, m["id"], "upgrade", {"level_id": plans.gold, "payment_reference": "P-2"})
    assert r2.status_code == 200 and r2.json()["event"]["id"] == event["id"]

    got = client.get(f"/api/v1/members/{m['id']}/paid", headers=h).json()
    old = got["subscriptions"][1]
    assert (old["status"], old["ended_at"]) == ("upgraded", "2026-06-09T07:00:00Z")
    assert old["periods_granted"] == 4  # March, April, May and June had started
    with world.db.unit_of_work(write=False) as s:
        assert granted_keys(s) == [
            f"paid:{silver['id']}:one_time:0",
            *[f"paid:{silver['id']}:period:{n}:0" for n in range(4)],
            f"paid:{gold['id']}:one_time:0",
        ]
    assert _outbox(world) == ["paid.bought", "paid.upgraded"]

    # Only upward, within the category.
    r = _post(client, h, m["id"], "upgrade", {"level_id": plans.silver, "payment_reference": "P-3"})
    assert r.status_code == 422 and r.json()["errors"][0]["code"] == "not-higher"
    r = _post(client, h, m["id"], "upgrade", {"level_id": plans.week_pass, "payment_reference": "P-3"})
    assert r.status_code == 422 and r.json()["errors"][0]["code"] == "other-category"
    r = _post(
        client, h, enroll(client, h)["id"], "upgrade", {"level_id": plans.gold, "payment_reference": "P-3"}
    )
    assert r.status_code == 409 and r.json()["code"] == "no-active-paid-plan"

    # Cancelling the upgraded plan in its cooling-off refunds its whole value: paid + credit carried.
    clock.advance(days=1)
    r = _post(client, h, m["id"], "cancel", {"refund_reference": "RF-1"})
    assert r.status_code == 200, r.text
    assert r.json()["event"]["detail"] == {
        "refund": "240.00",
        "rule": "cooling_off",
        "unused_days": 364,
        "term_days": 365,
    }


def test_cancel_in_cooling_off_refunds_everything(client: Any, world: World, clock: FrozenClock) -> None:
    h = world.brands[0].headers
    plans = make_plans(client, h)
    m = enroll(client, h)
    sub = buy(client, h, m["id"], plans.silver, "P-1").json()["subscription"]
    clock.advance(days=6, hours=23)
    r = _post(client, h, m["id"], "cancel", {"refund_reference": "RF-1", "reason": "changed mind"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (
        body["subscription"]["status"] == "cancelled" and body["subscription"]["refunded_amount"] == "120.00"
    )
    assert body["subscription"]["ended_at"] == "2026-03-07T23:00:00Z"
    assert body["event"]["kind"] == "cancelled" and body["event"]["reason"] == "changed mind"
    # Replays return the first result; the reference with another body is refused; nothing is refunded twice.
    again = _post(client, h, m["id"], "cancel", {"refund_reference": "RF-1", "reason": "changed mind"})
    assert again.status_code == 200 and again.json()["event"]["id"] == body["event"]["id"]
    r = _post(client, h, m["id"], "cancel", {"refund_reference": "RF-1"})
    assert r.status_code == 422 and r.json()["code"] == "idempotency-key-reused"
    r = _post(client, h, m["id"], "cancel", {"refund_reference": "RF-2"})
    assert r.status_code == 409 and r.json()["code"] == "no-active-paid-plan"
    got = client.get(f"/api/v1/members/{m['id']}/paid", headers=h).json()
    assert got["current"] is None
    assert [(e["kind"], e["amount"]) for e in got["events"][:2]] == [
        ("refunded", "120.00"),
        ("cancelled", None),
    ]
    assert _outbox(world, subscription_id=sub["id"]) == ["paid.bought", "paid.cancelled"]
    with world.db.unit_of_work(write=False) as s:
        actions = s.scalars(
            select(AuditEntry.action)
            .where(AuditEntry.entity_type == "paid_subscription", AuditEntry.entity_id == str(sub["id"]))
            .order_by(AuditEntry.id)
        )
        assert list(actions) == ["paid.bought", "paid.cancelled"]
        rows = s.scalars(select(SubscriptionEvent.kind).order_by(SubscriptionEvent.id))
        assert list(rows) == ["bought", "benefit_granted", "cancelled", "refunded"]


def test_cancel_after_cooling_off_refunds_unused_whole_days(
    client: Any, world: World, clock: FrozenClock
) -> None:
    h = world.brands[0].headers
    plans = make_plans(client, h)
    m = enroll(client, h)
    buy(client, h, m["id"], plans.gold, "P-1")  # no periodic benefits, 7 cooling-off days
    clock.advance(days=7)  # the cooling-off ends at 7 × 24 h
    r = _post(client, h, m["id"], "cancel", {"refund_reference": "RF-1"})
    # floor(240.00 × 358 / 365) = floor(235.3972…) = 235.39
    assert r.json()["event"]["detail"] == {
        "refund": "235.39",
        "rule": "pro_rata",
        "unused_days": 358,
        "term_days": 365,
    }
    assert r.json()["subscription"]["refunded_amount"] == "235.39"

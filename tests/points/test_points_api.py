"""Points API round trips: configuration with its validation errors, grants and member queries,
checkout with replays, operator actions with audit rows, brand totals, and brand isolation."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from huiyuan.audit.models import AuditEntry
from tests.conftest import World
from tests.factories import enroll, make_key

TYPES = "/api/v1/points/types"
RULES = "/api/v1/points/rules"
CHECKOUT = "/api/v1/points/checkout"


def add_type(client: Any, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    body = {
        "code": "points",
        "name": "积分",
        "kind": "spendable",
        "expiry_policy": {"kind": "relative", "days": 10},
        "points_per_yuan": 100,
        "max_pay_ratio": "0.5",
        **fields,
    }
    r = client.post(TYPES, json=body, headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


def grant(client: Any, headers: dict[str, str], member_id: int, amount: int, key: str, **fields: Any) -> Any:
    body = {"idempotency_key": key, "point_type": "points", "amount": amount, "reason": "补发", **fields}
    return client.post(f"/api/v1/members/{member_id}/points/grant", json=body, headers=headers)


def balance(client: Any, headers: dict[str, str], member_id: int, code: str = "points") -> dict[str, Any]:
    r = client.get(f"/api/v1/members/{member_id}/points", headers=headers)
    assert r.status_code == 200, r.text
    return next(b for b in r.json()["balances"] if b["point_type"] == code)


def fields_of(r: Any) -> set[str]:
    return {e["field"] for e in r.json().get("errors", [])}


def audit_actions(world: World, entity_type: str) -> list[str]:
    with world.db.unit_of_work() as s:
        rows = s.scalars(
            select(AuditEntry).where(AuditEntry.entity_type == entity_type).order_by(AuditEntry.id)
        )
        return [e.action for e in rows]


def test_point_types_are_configured_and_validated(client, world: World) -> None:
    h = world.brands[0].headers
    created = add_type(
        client, h, expiry_policy={"kind": "relative", "months": 12, "round_to": "end_of_month"}
    )
    assert created["spendable"] is True and created["status"] == "active"
    assert created["expiry_policy"] == {
        "kind": "relative",
        "months": 12,
        "round_to": "end_of_month",
        "grace_days": 0,
        "decay_ratio": 0.0,
    }
    growth = add_type(client, h, code="growth", name="成长值", kind="growth", expiry_policy={"kind": "never"})
    assert growth["spendable"] is False

    dup = client.post(TYPES, json={"code": "points", "name": "x", "kind": "spendable"}, headers=h)
    assert dup.status_code == 409 and fields_of(dup) == {"code"}
    bad_cases = [
        ({"expiry_policy": {"kind": "relative", "months": 0}}, {"expiry_policy.months"}),
        ({"expiry_policy": {"kind": "relative"}}, {"expiry_policy"}),
        ({"expiry_policy": {"kind": "sometimes"}}, {"expiry_policy.kind"}),
        ({"expiry_policy": {"kind": "yearly_clearing", "month": 2, "day": 30}}, {"expiry_policy"}),
        ({"max_pay_ratio": "1.5"}, {"max_pay_ratio"}),
        ({"points_per_yuan": 0}, {"points_per_yuan"}),
        ({"fair_value": "-0.01"}, {"fair_value"}),
        ({"kind": "cash"}, {"kind"}),
    ]
    for change, expected in bad_cases:
        r = client.post(TYPES, json={"code": "bad", "name": "坏", "kind": "spendable", **change}, headers=h)
        assert r.status_code == 422, (change, r.text)
        assert r.json()["code"] == "validation-failed" and fields_of(r) == expected, (change, r.json())

    listed = client.get(TYPES, headers=h).json()
    assert [t["code"] for t in listed] == ["points", "growth"]
    assert client.get(f"{TYPES}/points", headers=h).json()["id"] == created["id"]
    assert client.get(f"{TYPES}/nope", headers=h).status_code == 404

    patched = client.patch(f"{TYPES}/points", json={"max_pay_ratio": "0.3", "name": "会员积分"}, headers=h)
    assert patched.status_code == 200 and patched.json()["max_pay_ratio"] == "0.3000"
    bad_patch = client.patch(
        f"{TYPES}/points", json={"expiry_policy": {"kind": "relative", "days": -1}}, headers=h
    )
    assert bad_patch.status_code == 422 and fields_of(bad_patch) == {"expiry_policy.days"}
    assert audit_actions(world, "point_type") == [
        "point_type.created",
        "point_type.created",
        "point_type.updated",
    ]
    # the other brand has its own (empty) configuration
    assert client.get(TYPES, headers=world.brands[1].headers).json() == []


def test_earn_rules_are_configured_paused_and_retired(client, world: World) -> None:
    h = world.brands[0].headers
    add_type(client, h)
    definition = {
        "trigger": {"kind": "order"},
        "point_type": "points",
        "formula": {"kind": "per_amount", "per": "10.00", "points": 1},
        "priority": 5,
    }
    r = client.post(RULES, json={"code": "base", "name": "消费积分", "definition": definition}, headers=h)
    assert r.status_code == 201, r.text
    rule = r.json()
    assert rule["trigger"] == "order" and rule["point_type"] == "points" and rule["priority"] == 5
    assert rule["definition"]["formula"] == {
        "kind": "per_amount",
        "per": "10.00",
        "points": 1,
        "rounding": "floor",
    }
    action = {
        "trigger": {"kind": "action", "action": "check_in"},
        "point_type": "points",
        "formula": {"kind": "fixed", "points": 5},
    }
    r = client.post(RULES, json={"code": "check-in", "name": "签到", "definition": action}, headers=h)
    assert r.status_code == 201 and r.json()["trigger"] == "check_in"

    bad_cases = [
        (
            {**definition, "formula": {"kind": "per_amount", "per": "0", "points": 1}},
            {"definition.formula.per"},
        ),
        ({**definition, "conditions": [{"kind": "amount", "min": "x"}]}, {"definition.conditions.0.min"}),
        ({**action, "formula": {"kind": "percent", "percent": "5"}}, {"definition.formula"}),
        ({**definition, "point_type": "coins"}, {"definition.point_type"}),
        ({**definition, "formula": {"kind": "magic"}}, {"definition.formula.kind"}),
    ]
    for bad, expected in bad_cases:
        r = client.post(RULES, json={"code": "bad", "name": "坏", "definition": bad}, headers=h)
        assert r.status_code == 422, (bad, r.text)
        assert fields_of(r) == expected, (bad, r.json())
    window = {"valid_from": "2026-06-01T00:00:00+08:00", "valid_to": "2026-05-01T00:00:00+08:00"}
    r = client.post(RULES, json={"code": "w", "name": "w", "definition": definition, **window}, headers=h)
    assert r.status_code == 422 and fields_of(r) == {"valid_to"}
    assert (
        client.post(
            RULES, json={"code": "base", "name": "x", "definition": definition}, headers=h
        ).status_code
        == 409
    )

    rid = rule["id"]
    patched = client.patch(
        f"{RULES}/{rid}", json={"name": "消费积分（新）", "valid_to": "2027-01-01T00:00:00Z"}, headers=h
    )
    assert patched.status_code == 200 and patched.json()["valid_to"].startswith("2027-01-01")
    status = f"{RULES}/{rid}/status"
    assert (
        client.post(status, json={"status": "paused", "reason": "预算"}, headers=h).json()["status"]
        == "paused"
    )
    assert [r["code"] for r in client.get(RULES, params={"status": "active"}, headers=h).json()] == [
        "check-in"
    ]
    assert client.post(status, json={"status": "active"}, headers=h).json()["status"] == "active"
    assert client.post(status, json={"status": "retired"}, headers=h).json()["status"] == "retired"
    assert client.post(status, json={"status": "active"}, headers=h).status_code == 409
    assert client.patch(f"{RULES}/{rid}", json={"name": "复活"}, headers=h).status_code == 409
    assert client.get(RULES, params={"trigger": "check_in"}, headers=h).json()[0]["code"] == "check-in"
    assert audit_actions(world, "earn_rule") == [
        "earn_rule.created",
        "earn_rule.created",
        "earn_rule.updated",
        "earn_rule.paused",
        "earn_rule.resumed",
        "earn_rule.retired",
    ]


def test_grant_replays_and_member_queries(client, world: World) -> None:
    h = world.brands[0].headers
    add_type(client, h)
    m = enroll(client, h, name="甲")["id"]
    first = grant(client, h, m, 500, "grant-0001", funded_by="store", store="alpha-s1")
    assert first.status_code == 201, first.text
    assert first.json()["balance"]["available"] == 500 and first.json()["kind"] == "earn"
    again = grant(client, h, m, 500, "grant-0001", funded_by="store", store="alpha-s1")
    assert again.status_code == 200 and again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    reused = grant(client, h, m, 600, "grant-0001", funded_by="store", store="alpha-s1")
    assert reused.status_code == 422 and reused.json()["code"] == "idempotency-key-reused"

    body = {"point_type": "points", "amount": 100, "reason": "活动"}
    url = f"/api/v1/members/{m}/points/grant"
    by_header = client.post(url, json=body, headers={**h, "Idempotency-Key": "grant-header-1"})
    assert by_header.status_code == 201
    replay = client.post(url, json=body, headers={**h, "Idempotency-Key": "grant-header-1"})
    assert replay.status_code == 200 and replay.json() == by_header.json()
    no_key = client.post(url, json=body, headers=h)
    assert no_key.status_code == 422 and fields_of(no_key) == {"idempotency_key"}
    both = client.post(
        url, json={**body, "idempotency_key": "k-body-1"}, headers={**h, "Idempotency-Key": "k-head-1"}
    )
    assert both.status_code == 422 and fields_of(both) == {"idempotency_key"}
    slash = client.post(url, json=body, headers={**h, "Idempotency-Key": "has/a/slash"})
    assert slash.status_code == 422
    assert grant(client, h, m, 5, "g-unknown-store", store="nowhere").status_code == 422
    assert grant(client, h, m, 5, "g-unknown-type", point_type="coins").status_code == 422
    assert grant(client, h, m, 0, "g-zero").status_code == 422

    b = balance(client, h, m)
    assert (b["available"], b["pending"], b["reserved"], b["earned_total"]) == (600, 0, 0, 600)
    assert b["expiring_30d"] == 600 and b["expiring_90d"] == 600  # the type's lots last 10 days

    entries = client.get(f"/api/v1/members/{m}/points/entries", params={"limit": 1}, headers=h).json()
    assert len(entries["items"]) == 1 and entries["items"][0]["amount"] == 100 and entries["next_cursor"]
    older = client.get(
        f"/api/v1/members/{m}/points/entries",
        params={"limit": 1, "cursor": entries["next_cursor"]},
        headers=h,
    ).json()
    assert older["items"][0]["amount"] == 500 and older["next_cursor"] is None
    assert older["items"][0]["source_type"] == "manual" and older["items"][0]["actor"].startswith("api_key:")
    by_kind = client.get(f"/api/v1/members/{m}/points/entries", params={"kind": "spend"}, headers=h).json()
    assert by_kind["items"] == []
    by_source = client.get(f"/api/v1/members/{m}/points/entries", params={"source_type": "manual"}, headers=h)
    assert len(by_source.json()["items"]) == 2
    future = client.get(
        f"/api/v1/members/{m}/points/entries", params={"from": "2099-01-01T00:00:00Z"}, headers=h
    )
    assert future.json()["items"] == []

    lots = client.get(f"/api/v1/members/{m}/points/lots", params={"state": "active"}, headers=h).json()[
        "items"
    ]
    assert [lot["remaining"] for lot in lots] == [100, 500]
    assert lots[1]["funded_by"] == "store" and lots[1]["store_id"] is not None and lots[1]["expires_at"]
    assert (
        client.get(f"/api/v1/members/{m}/points/lots", params={"state": "frozen"}, headers=h).json()["items"]
        == []
    )
    assert audit_actions(world, "member").count("points.granted") == 2


def test_checkout_quote_reserve_confirm_release(client, world: World) -> None:
    h = world.brands[0].headers
    add_type(client, h)
    m = enroll(client, h, name="甲")["id"]
    assert grant(client, h, m, 10_000, "seed-0001").status_code == 201

    quote = client.post(
        f"{CHECKOUT}/quote",
        json={"member_id": m, "point_type": "points", "cart_amount": "259.00", "max_points": 5000},
        headers=h,
    )
    assert quote.status_code == 200, quote.text
    q = quote.json()
    assert (q["available"], q["ratio_limit"], q["usable_points"], q["cash_value"]) == (
        10000,
        12950,
        5000,
        "50.00",
    )
    q = client.post(
        f"{CHECKOUT}/quote", json={"member_id": m, "point_type": "points", "cart_amount": "99.99"}, headers=h
    ).json()
    assert (q["ratio_limit"], q["usable_points"], q["cash_value"]) == (4999, 4999, "49.99")

    body = {"member_id": m, "point_type": "points", "points": 3000, "order_ref": "POS-1", "store": "alpha-s1"}
    held = client.post(f"{CHECKOUT}/reserve", json={**body, "idempotency_key": "POS-1"}, headers=h)
    assert held.status_code == 201, held.text
    out = held.json()
    assert out["reservation_key"] == "POS-1" and out["status"] == "held" and out["expires_at"]
    assert out["balance"]["available"] == 7000 and out["balance"]["reserved"] == 3000
    again = client.post(f"{CHECKOUT}/reserve", json={**body, "idempotency_key": "POS-1"}, headers=h)
    assert again.status_code == 200 and again.json() == out
    other = client.post(
        f"{CHECKOUT}/reserve", json={**body, "points": 10, "idempotency_key": "POS-1"}, headers=h
    )
    assert other.status_code == 422 and other.json()["code"] == "idempotency-key-reused"
    b = balance(client, h, m)
    assert (b["available"], b["reserved"]) == (7000, 3000)
    q = client.post(
        f"{CHECKOUT}/quote", json={"member_id": m, "point_type": "points", "cart_amount": "1000"}, headers=h
    ).json()
    assert q["usable_points"] == 7000

    confirmed = client.post(f"{CHECKOUT}/POS-1/confirm", headers=h)
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["status"] == "confirmed" and confirmed.json()["balance"]["reserved"] == 0
    replay = client.post(f"{CHECKOUT}/POS-1/confirm", headers=h)
    assert replay.status_code == 200 and replay.json() == confirmed.json()
    assert replay.headers["idempotent-replayed"] == "true"
    late = client.post(f"{CHECKOUT}/POS-1/release", headers=h)
    assert late.status_code == 409 and late.json()["code"] == "reservation-closed"
    assert client.post(f"{CHECKOUT}/NO-SUCH/confirm", headers=h).status_code == 404

    held = client.post(
        f"{CHECKOUT}/reserve",
        json={**body, "order_ref": "POS-2"},
        headers={**h, "Idempotency-Key": "POS-0002"},
    )
    assert held.status_code == 201
    released = client.post(f"{CHECKOUT}/POS-0002/release", headers=h)
    assert released.status_code == 200 and released.json()["status"] == "released"
    assert client.post(f"{CHECKOUT}/POS-0002/release", headers=h).json() == released.json()
    assert client.post(f"{CHECKOUT}/POS-0002/confirm", headers=h).status_code == 409

    too_many = client.post(
        f"{CHECKOUT}/reserve", json={**body, "points": 99_999, "idempotency_key": "POS-3"}, headers=h
    )
    assert too_many.status_code == 409 and too_many.json()["code"] == "insufficient-points"
    b = balance(client, h, m)
    assert (b["available"], b["reserved"], b["spent_total"]) == (7000, 0, 3000)


def test_growth_points_cannot_pay(client, world: World) -> None:
    h = world.brands[0].headers
    add_type(client, h, code="growth", name="成长值", kind="growth", expiry_policy={"kind": "never"})
    m = enroll(client, h)["id"]
    r = client.post(
        f"{CHECKOUT}/quote", json={"member_id": m, "point_type": "growth", "cart_amount": "10"}, headers=h
    )
    assert r.status_code == 422 and r.json()["code"] == "points-not-allowed"


def test_adjust_freeze_and_transfer_are_audited(client, world: World) -> None:
    h = world.brands[0].headers
    add_type(client, h)
    m = enroll(client, h, name="甲")["id"]
    other = enroll(client, h, name="乙")["id"]
    grant(client, h, m, 1000, "seed-0001")
    url = f"/api/v1/members/{m}/points"

    no_reason = client.post(
        f"{url}/adjust", json={"idempotency_key": "adj-1", "point_type": "points", "amount": -10}, headers=h
    )
    assert no_reason.status_code == 422 and fields_of(no_reason) == {"reason"}
    blank = client.post(
        f"{url}/adjust",
        json={"idempotency_key": "adj-1", "point_type": "points", "amount": -10, "reason": "  "},
        headers=h,
    )
    assert blank.status_code == 422 and fields_of(blank) == {"reason"}
    down = client.post(
        f"{url}/adjust",
        json={"idempotency_key": "adj-1", "point_type": "points", "amount": -200, "reason": "重复发放"},
        headers=h,
    )
    assert down.status_code == 201 and down.json()["balance"]["available"] == 800
    zero = client.post(
        f"{url}/adjust",
        json={"idempotency_key": "adj-2", "point_type": "points", "amount": 0, "reason": "x"},
        headers=h,
    )
    assert zero.status_code == 422
    overdraw = client.post(
        f"{url}/adjust",
        json={"idempotency_key": "adj-3", "point_type": "points", "amount": -5000, "reason": "x"},
        headers=h,
    )
    assert overdraw.status_code == 409

    frozen = client.post(
        f"{url}/freeze",
        json={"idempotency_key": "frz-1", "point_type": "points", "reason": "风控"},
        headers=h,
    )
    assert frozen.status_code == 201 and frozen.json()["balance"]["frozen"] == 800
    b = balance(client, h, m)
    assert (b["available"], b["frozen"]) == (0, 800)
    thawed = client.post(
        f"{url}/unfreeze",
        json={"idempotency_key": "unf-1", "point_type": "points", "reason": "复核通过"},
        headers=h,
    )
    assert thawed.status_code == 201 and thawed.json()["balance"]["available"] == 800

    send = {"idempotency_key": "tr-1", "to_member_id": other, "point_type": "points", "amount": 100}
    refused = client.post(f"{url}/transfer", json=send, headers=h)
    assert refused.status_code == 422 and refused.json()["code"] == "points-not-allowed"
    client.patch(f"{TYPES}/points", json={"transferable": True}, headers=h)
    moved = client.post(f"{url}/transfer", json={**send, "reason": "家庭共享"}, headers=h)
    assert moved.status_code == 201 and moved.json()["balance"]["available"] == 700
    assert balance(client, h, other)["available"] == 100
    assert client.post(f"{url}/transfer", json={**send, "reason": "家庭共享"}, headers=h).status_code == 200

    with world.db.unit_of_work() as s:
        rows = s.scalars(
            select(AuditEntry).where(AuditEntry.action.like("points.%")).order_by(AuditEntry.id)
        ).all()
        seen = [(e.action, e.changes.get("_note")) for e in rows]
        adjusted = next(e for e in rows if e.action == "points.adjusted")
        assert adjusted.changes["amount"] == [None, -200]
    assert seen == [
        ("points.granted", "补发"),
        ("points.adjusted", "重复发放"),
        ("points.frozen", "风控"),
        ("points.unfrozen", "复核通过"),
        ("points.transferred", "家庭共享"),
    ]


def test_liability_and_expiring(client, world: World) -> None:
    h = world.brands[0].headers
    add_type(client, h, fair_value="0.02")
    add_type(
        client,
        h,
        code="growth",
        name="成长值",
        kind="growth",
        fair_value="0",
        expiry_policy={"kind": "never"},
    )
    m1 = enroll(client, h)["id"]
    m2 = enroll(client, h)["id"]
    grant(client, h, m1, 1000, "l-0001")
    grant(client, h, m2, 500, "l-0002", funded_by="store")
    grant(client, h, m2, 300, "l-0003", point_type="growth")
    client.post(
        f"{CHECKOUT}/reserve",
        json={"member_id": m1, "point_type": "points", "points": 100, "idempotency_key": "r-0001"},
        headers=h,
    )
    enroll(client, world.brands[1].headers)
    liability = client.get("/api/v1/points/liability", headers=h).json()
    assert liability["points"] == 1800 and liability["members"] == 2
    assert liability["value"] == "30.00"  # (1000 + 500) × 0.02; growth value is worth nothing
    points = next(t for t in liability["point_types"] if t["point_type"] == "points")
    assert points["points"] == 1500 and points["reserved_points"] == 100 and points["members"] == 2
    assert {f["funded_by"]: (f["points"], f["value"]) for f in points["by_funder"]} == {
        "brand": (1000, "20.00"),
        "store": (500, "10.00"),
    }
    empty = client.get("/api/v1/points/liability", headers=world.brands[1].headers).json()
    assert empty["points"] == 0 and empty["point_types"] == []

    soon = client.get("/api/v1/points/expiring", params={"days": 30}, headers=h).json()
    assert soon["points"] == 1400 and soon["by_type"] == {"points": 1400}  # reserved points are not in lots
    assert len(soon["per_day"]) == 1 and soon["timezone"] == "Asia/Shanghai"
    assert client.get("/api/v1/points/expiring", params={"days": 5}, headers=h).json()["points"] == 0
    assert client.get("/api/v1/points/expiring", params={"days": 0}, headers=h).status_code == 422
    mine = client.get(f"/api/v1/members/{m2}/points/expiring", params={"days": 30}, headers=h).json()
    assert mine["points"] == 500


def test_another_brand_gets_404(client, world: World) -> None:
    a, b = world.brands
    add_type(client, a.headers)
    add_type(client, b.headers)
    m = enroll(client, a.headers)["id"]
    grant(client, a.headers, m, 100, "iso-0001")
    client.post(
        f"{CHECKOUT}/reserve",
        json={"member_id": m, "point_type": "points", "points": 10, "idempotency_key": "iso-r1"},
        headers=a.headers,
    )
    bh = b.headers
    assert client.get(f"/api/v1/members/{m}/points", headers=bh).status_code == 404
    assert client.get(f"/api/v1/members/{m}/points/lots", headers=bh).status_code == 404
    assert grant(client, bh, m, 100, "iso-0002").status_code == 404
    quote = {"member_id": m, "point_type": "points", "cart_amount": "10"}
    assert client.post(f"{CHECKOUT}/quote", json=quote, headers=bh).status_code == 404
    reserve = {"member_id": m, "point_type": "points", "points": 10, "idempotency_key": "iso-r2"}
    assert client.post(f"{CHECKOUT}/reserve", json=reserve, headers=bh).status_code == 404
    assert client.post(f"{CHECKOUT}/iso-r1/confirm", headers=bh).status_code == 404
    assert balance(client, a.headers, m)["reserved"] == 10


def test_permissions(client, world: World) -> None:
    a = world.brands[0]
    add_type(client, a.headers)
    m = enroll(client, a.headers)["id"]
    reader = {"Authorization": f"Bearer {make_key(world.db, a.id, ['points:read'])}"}
    writer = {"Authorization": f"Bearer {make_key(world.db, a.id, ['points:read', 'points:write'])}"}
    assert client.get(TYPES, headers=reader).status_code == 200
    assert (
        client.post(TYPES, json={"code": "x", "name": "x", "kind": "spendable"}, headers=reader).status_code
        == 403
    )
    assert grant(client, reader, m, 10, "perm-0001").status_code == 403
    assert grant(client, writer, m, 10, "perm-0001").status_code == 201
    adjust = {"idempotency_key": "perm-0002", "point_type": "points", "amount": 5, "reason": "x"}
    assert client.post(f"/api/v1/members/{m}/points/adjust", json=adjust, headers=writer).status_code == 403

"""Wallet API round trips: configuration with problem details, money in and out with idempotency
keys and replays, account lifecycle, statements, settlement files, the member's own API, the
points product not showing wallet money, and brand isolation on every id- or key-bearing route."""

from __future__ import annotations

import io
from datetime import timedelta
from decimal import Decimal
from typing import Any

from fastapi import FastAPI
from openpyxl import load_workbook
from sqlalchemy import func, select

from huiyuan.audit.models import AuditEntry
from huiyuan.kit.clock import utcnow
from huiyuan.outbox.models import OutboxEvent
from huiyuan.points.models import PointEntry, PointType
from huiyuan.wallet import api as wallet_api
from huiyuan.wallet import me_api, pay_api
from huiyuan.wallet.accounts import PIN_ATTEMPTS
from tests.conftest import World
from tests.factories import enroll

W = "/api/v1/wallet"


def _around_now() -> dict[str, str]:
    now = utcnow()
    return {"from": (now - timedelta(days=1)).isoformat(), "to": (now + timedelta(days=1)).isoformat()}


def fields_of(r: Any) -> set[str]:
    return {e["field"] for e in r.json().get("errors", [])}


def problem(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body = dict(r.json())
    assert body["code"] == code, body
    return body


def add_type(client: Any, h: dict[str, str], **fields: Any) -> dict[str, Any]:
    body = {"code": "gift", "name": "品牌礼品卡", **fields}
    r = client.post(f"{W}/types", json=body, headers=h)
    assert r.status_code == 201, r.text
    return dict(r.json())


def top_up(client: Any, h: dict[str, str], member: int, amount: str, key: str, **fields: Any) -> Any:
    body = {
        "idempotency_key": key,
        "member_id": member,
        "wallet_type": "gift",
        "amount": amount,
        "channel": "store",
        "payment_ref": f"WX-{key}",
        **fields,
    }
    return client.post(f"{W}/top-ups", json=body, headers=h)


def pay(
    client: Any, h: dict[str, str], member: int, amount: str, key: str, path: str = "", **fields: Any
) -> Any:
    body = {"idempotency_key": key, "member_id": member, "wallet_type": "gift", "amount": amount, **fields}
    return client.post(f"{W}/payments{path}", json=body, headers=h)


def test_wallet_types_and_rules_are_configured_and_validated(client, world: World) -> None:
    h = world.brands[0].headers
    created = add_type(client, h, bonus_expiry_days=365, require_pin=True, max_balance="5000.00")
    assert created["principal_point_type"] == "w.gift.p" and created["max_balance"] == "5000.00"
    problem(client.post(f"{W}/types", json={"code": "gift", "name": "x"}, headers=h), 409, "conflict")
    for change, expected in (
        ({"code": "Gift!"}, {"code"}),
        ({"code": "x" * 29}, {"code"}),
        ({"bonus_expiry_days": 0}, {"bonus_expiry_days"}),
        ({"spend_order": "random"}, {"spend_order"}),
        ({"max_balance": "-1"}, {"max_balance"}),
        ({"surprise": 1}, {"surprise"}),
    ):
        r = client.post(f"{W}/types", json={"code": "bad", "name": "坏", **change}, headers=h)
        assert fields_of(problem(r, 422, "validation-failed") and r) == expected, (change, r.json())
    assert [t["code"] for t in client.get(f"{W}/types", headers=h).json()] == ["gift"]
    problem(client.get(f"{W}/types/nope", headers=h), 404, "not-found")
    patched = client.patch(f"{W}/types/gift", json={"spend_order": "bonus_first"}, headers=h)
    assert patched.status_code == 200 and patched.json()["spend_order"] == "bonus_first"

    rule = {
        "code": "r10",
        "name": "充值赠10%",
        "wallet_type": "gift",
        "bonus_kind": "percent",
        "bonus_percent": "10",
        "bonus_cap": "50.00",
        "weekdays": [1, 2, 3, 4, 5, 6, 7],
    }
    r = client.post(f"{W}/top-up-rules", json=rule, headers=h)
    assert r.status_code == 201, r.text
    rule_id = r.json()["id"]
    for change, expected in (
        ({"bonus_kind": "fixed", "bonus_percent": None}, {"bonus_fixed"}),
        ({"valid_from": "2026-03-01T00:00:00+08:00", "valid_to": "2026-02-01T00:00:00+08:00"}, {"valid_to"}),
        ({"wallet_type": "nope"}, {"wallet_type"}),
        ({"weekdays": [8]}, {"weekdays.0"}),
        ({"bonus_percent": "101"}, {"bonus_percent"}),
        ({"valid_from": "2026-03-01T00:00:00"}, {"valid_from"}),  # no timezone
    ):
        r = client.post(f"{W}/top-up-rules", json={**rule, "code": "bad", **change}, headers=h)
        assert r.status_code == 422 and fields_of(r) == expected, (change, r.json())
    problem(client.post(f"{W}/top-up-rules", json=rule, headers=h), 409, "conflict")
    paused = client.patch(f"{W}/top-up-rules/{rule_id}", json={"status": "retired"}, headers=h)
    assert paused.json()["status"] == "retired"
    problem(client.patch(f"{W}/top-up-rules/{rule_id}", json={"name": "x"}, headers=h), 409, "conflict")
    assert client.get(f"{W}/top-up-rules", params={"status": "active"}, headers=h).json() == []
    with world.db.unit_of_work() as s:
        actions = s.scalars(
            select(AuditEntry.action).where(AuditEntry.action.like("wallet%")).order_by(AuditEntry.id)
        ).all()
    assert actions == [
        "wallet_type.created",
        "wallet_type.updated",
        "wallet_rule.created",
        "wallet_rule.updated",
    ]


def test_money_in_and_out_with_keys_replays_and_problems(client, world: World) -> None:
    h = world.brands[0].headers
    add_type(client, h)
    client.post(
        f"{W}/top-up-rules",
        json={"code": "r", "name": "r", "wallet_type": "gift", "bonus_kind": "fixed", "bonus_fixed": "10.00"},
        headers=h,
    )
    m = enroll(client, h, name="王小明")["id"]
    store = "alpha-s1"

    first = top_up(client, h, m, "100.00", "tu-0001", store=store)
    assert first.status_code == 201, first.text
    assert first.json()["bonus"] == "10.00" and first.json()["balance"]["total"] == "110.00"
    again = top_up(client, h, m, "100.00", "tu-0001", store=store)
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    problem(top_up(client, h, m, "100.01", "tu-0001", store=store), 422, "idempotency-key-reused")
    header_key = client.post(
        f"{W}/top-ups",
        json={
            "member_id": m,
            "wallet_type": "gift",
            "amount": "1.00",
            "channel": "store",
            "payment_ref": "x",
        },
        headers={**h, "Idempotency-Key": "tu-header-1"},
    )
    assert header_key.status_code == 201, header_key.text
    no_key = client.post(
        f"{W}/top-ups",
        json={
            "member_id": m,
            "wallet_type": "gift",
            "amount": "1.00",
            "channel": "store",
            "payment_ref": "x",
        },
        headers=h,
    )
    assert fields_of(problem(no_key, 422, "validation-failed") and no_key) == {"idempotency_key"}
    for change, expected in (
        ({"amount": "0"}, {"amount"}),
        ({"amount": "1.001"}, {"amount"}),
        ({"channel": "Store!"}, {"channel"}),
        ({"store": "nope"}, {"store"}),
        ({"wallet_type": "nope"}, {"wallet_type"}),
    ):
        body = {
            "member_id": m,
            "wallet_type": "gift",
            "amount": "1.00",
            "channel": "store",
            "payment_ref": "x",
        }
        r = client.post(f"{W}/top-ups", json={**body, "idempotency_key": "tu-bad-0001", **change}, headers=h)
        assert r.status_code == 422 and fields_of(r) == expected, (change, r.text)
    problem(top_up(client, h, 999999, "1.00", "tu-nobody"), 404, "not-found")

    paid = pay(client, h, m, "30.00", "pay-0001", order_ref="SO-1", store=store)
    assert paid.status_code == 201 and paid.json()["state"] == "confirmed", paid.text
    assert pay(client, h, m, "30.00", "pay-0001", order_ref="SO-1", store=store).status_code == 200
    body = problem(pay(client, h, m, "1000.00", "pay-0002"), 409, "insufficient-balance")
    assert body["available"] == "82.00"  # 100 + 10 bonus + 1 + 1 bonus (capped at the top-up) − 30

    held = pay(client, h, m, "20.00", "hold-0001", path="/reserve", ttl_minutes=10)
    assert held.status_code == 201 and held.json()["state"] == "held"
    confirmed = client.post(f"{W}/payments/hold-0001/confirm", headers=h)
    assert confirmed.status_code == 200 and confirmed.json()["state"] == "confirmed"
    replay = client.post(f"{W}/payments/hold-0001/confirm", headers=h)
    assert replay.headers["Idempotent-Replayed"] == "true"
    problem(client.post(f"{W}/payments/hold-0001/release", headers=h), 409, "reservation-closed")
    problem(client.post(f"{W}/payments/nope/confirm", headers=h), 404, "not-found")

    refund = client.post(
        f"{W}/payments/pay-0001/refunds",
        json={"idempotency_key": "rf-0001", "amount": "10.00", "reason": "退货"},
        headers=h,
    )
    assert refund.status_code == 201 and refund.json()["kind"] == "payment", refund.text
    too_much = client.post(
        f"{W}/payments/pay-0001/refunds",
        json={"idempotency_key": "rf-0002", "amount": "25.00", "reason": "退货"},
        headers=h,
    )
    assert fields_of(problem(too_much, 422, "validation-failed") and too_much) == {"amount"}
    assert client.get(f"{W}/payments/pay-0001", headers=h).json()["state"] == "partially_refunded"

    cash = client.post(
        f"{W}/top-ups/tu-0001/refunds", json={"idempotency_key": "rf-0003", "reason": "退卡"}, headers=h
    )
    assert cash.status_code == 201, cash.text
    assert cash.json()["principal"] == cash.json()["cash_refund"]
    assert client.get(f"{W}/top-ups/tu-0001", headers=h).json()["state"] in ("refunded", "partially_refunded")

    with world.db.unit_of_work() as s:
        types = s.scalars(select(OutboxEvent.type).where(OutboxEvent.type.like("wallet.%"))).all()
    assert set(types) == {"wallet.topped_up", "wallet.paid", "wallet.refunded"}
    assert types.count("wallet.paid") == 2


def test_account_lifecycle_statement_and_rebind(client, world: World) -> None:
    h = world.brands[0].headers
    add_type(client, h)
    a = enroll(client, h, name="甲")["id"]
    b = enroll(client, h, name="乙")["id"]
    opened = client.post(f"{W}/accounts", json={"member_id": a, "wallet_type": "gift"}, headers=h)
    assert opened.status_code == 201, opened.text
    account = opened.json()["id"]
    dup = problem(
        client.post(f"{W}/accounts", json={"member_id": a, "wallet_type": "gift"}, headers=h), 409, "conflict"
    )
    assert dup["existing_wallet_account_id"] == account
    for i in range(3):
        assert top_up(client, h, a, "10.00", f"tu-{i:04d}").status_code == 201

    assert (
        client.post(f"{W}/accounts/{account}/lock", json={"reason": "挂失"}, headers=h).json()["status"]
        == "locked"
    )
    problem(pay(client, h, a, "1.00", "pay-locked"), 409, "wallet-locked")
    problem(client.post(f"{W}/accounts/{account}/lock", json={}, headers=h), 422, "validation-failed")
    assert client.post(f"{W}/accounts/{account}/unlock", json={}, headers=h).json()["status"] == "open"
    problem(
        client.post(f"{W}/accounts/{account}/close", json={"reason": "销户"}, headers=h),
        409,
        "wallet-not-empty",
    )

    page = client.get(f"{W}/accounts/{account}/statement", params={"limit": 2}, headers=h).json()
    assert page["balance"]["principal"] == "30.00" and len(page["items"]) == 2 and page["next_cursor"]
    assert page["items"][0]["activity"] == "top_up" and page["items"][0]["sub_ledger"] == "principal"
    rest = client.get(
        f"{W}/accounts/{account}/statement", params={"cursor": page["next_cursor"]}, headers=h
    ).json()
    assert len(rest["items"]) == 1 and rest["next_cursor"] is None
    listed = client.get(f"{W}/accounts", params={"member_id": a}, headers=h).json()
    assert [x["id"] for x in listed["items"]] == [account]

    bad = client.post(
        f"{W}/accounts/{account}/rebind",
        json={"to_member_id": b, "verification": {"method": "guess", "reference": "x"}, "reason": "r"},
        headers=h,
    )
    assert fields_of(problem(bad, 422, "validation-failed") and bad) == {"verification.method"}
    moved = client.post(
        f"{W}/accounts/{account}/rebind",
        json={
            "to_member_id": b,
            "verification": {"method": "id_document", "reference": "工单-1"},
            "reason": "换号",
        },
        headers=h,
    )
    assert moved.status_code == 200 and moved.json()["member_id"] == b, moved.text
    assert moved.json()["balance"]["principal"] == "30.00"
    bindings = client.get(f"{W}/accounts/{account}/bindings", headers=h).json()
    assert [(x["member_id"], x["verification_method"]) for x in bindings] == [(a, None), (b, "id_document")]


def test_settlement_per_store_matches_the_ledger(client, world: World) -> None:
    h = world.brands[0].headers
    r = client.post("/api/v1/stores", json={"code": "alpha-s2", "name": "二店"}, headers=h)
    assert r.status_code == 201, r.text
    add_type(client, h)
    client.post(
        f"{W}/top-up-rules",
        json={
            "code": "r",
            "name": "r",
            "wallet_type": "gift",
            "bonus_kind": "percent",
            "bonus_percent": "10",
        },
        headers=h,
    )
    m = enroll(client, h)["id"]
    assert top_up(client, h, m, "200.00", "tu-0001", store="alpha-s1").status_code == 201  # + 20 bonus
    assert pay(client, h, m, "150.00", "pay-0001", store="alpha-s2").status_code == 201
    assert pay(client, h, m, "60.00", "hold-0001", path="/reserve", store="alpha-s2").status_code == 201
    assert client.post(f"{W}/payments/hold-0001/confirm", headers=h).status_code == 200  # 50 p + 10 b
    refund = {"idempotency_key": "rf-0001", "amount": "15.00", "reason": "退货"}
    assert client.post(f"{W}/payments/pay-0001/refunds", json=refund, headers=h).status_code == 201
    cash = client.post(
        f"{W}/top-ups/tu-0001/refunds", json={"idempotency_key": "rf-0002", "reason": "退卡"}, headers=h
    )
    assert cash.status_code == 201, cash.text
    period = _around_now()
    s = client.get(f"{W}/settlement", params=period, headers=h).json()
    lines = {x["store"]: x for x in s["lines"]}
    s1, s2 = lines["alpha-s1"], lines["alpha-s2"]
    # The refund of the top-up: the 15 of principal left, and 20 × 15 / 200 = 1.50 of bonus.
    assert (s1["topped_up"], s1["bonus_granted"], s1["topup_refunded"]) == ("200.00", "20.00", "15.00")
    assert (s1["cash_refunded"], s1["bonus_clawed"]) == ("15.00", "1.50")
    assert (s2["spent_principal"], s2["spent_bonus"], s2["refunded_principal"]) == (
        "200.00",
        "10.00",
        "15.00",
    )
    assert (s1["net"], s2["net"], s2["bonus_redeemed"]) == ("185.00", "-185.00", "10.00")
    assert s["total"]["net"] == "0.00"

    # Every figure is a sum of ledger entries.
    with world.db.unit_of_work() as session:
        kinds = dict(
            session.execute(
                select(PointEntry.kind, func.sum(PointEntry.amount))
                .join(PointType, PointType.id == PointEntry.point_type_id)
                .where(PointType.code == "w.gift.p", PointEntry.brand_id == world.brands[0].id)
                .group_by(PointEntry.kind)
            ).all()
        )
    assert Decimal(kinds["earn"]) / 100 == Decimal(s["total"]["topped_up"])
    assert -Decimal(kinds["spend"] + kinds["reserve"]) / 100 == Decimal(s["total"]["spent_principal"])
    assert Decimal(kinds["restore"]) / 100 == Decimal(s["total"]["refunded_principal"])
    assert -Decimal(kinds["reverse"]) / 100 == Decimal(s["total"]["topup_refunded"])

    csv = client.get(f"{W}/settlement", params={**period, "format": "csv"}, headers=h)
    assert csv.headers["content-type"].startswith("text/csv") and csv.text.startswith("\ufeff")
    assert "alpha-s2" in csv.text and "-185.00" in csv.text
    xlsx = client.get(f"{W}/settlement", params={**period, "format": "xlsx"}, headers=h)
    sheet = load_workbook(io.BytesIO(xlsx.content)).worksheets[0]
    rows = [[c.value for c in row] for row in sheet.iter_rows()]
    assert rows[0][0] == "store" and any(r[0] == "alpha-s2" and -185 in r for r in rows)
    bad = client.get(
        f"{W}/settlement", params={"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, headers=h
    )
    problem(bad, 422, "validation-failed")
    problem(
        client.get(f"{W}/settlement", params={**period, "wallet_type": "nope"}, headers=h),
        422,
        "validation-failed",
    )


def test_members_see_their_own_wallets_and_manage_their_pin(client, world: World) -> None:
    h = world.brands[0].headers
    add_type(client, h, require_pin=True)
    me = enroll(client, h, name="王小明")["id"]
    other = enroll(client, h, name="李四")["id"]
    top_up(client, h, me, "50.00", "tu-0001")
    top_up(client, h, other, "70.00", "tu-0002")
    token = client.post("/api/v1/member-tokens", json={"member_id": me}, headers=h).json()["token"]
    mine = {"Authorization": f"Bearer {token}"}

    wallets = client.get("/api/v1/me/wallets", headers=mine).json()
    assert [(x["member_id"], x["balance"]["principal"], x["has_pin"]) for x in wallets] == [
        (me, "50.00", False)
    ]
    account = wallets[0]["id"]
    other_account = client.get(f"{W}/accounts", params={"member_id": other}, headers=h).json()["items"][0][
        "id"
    ]
    statement = client.get(f"/api/v1/me/wallets/{account}/statement", headers=mine).json()
    assert [x["activity"] for x in statement["items"]] == ["top_up"]
    problem(client.get(f"/api/v1/me/wallets/{other_account}/statement", headers=mine), 404, "not-found")
    problem(
        client.put(f"/api/v1/me/wallets/{other_account}/pin", json={"pin": "123456"}, headers=mine),
        404,
        "not-found",
    )
    assert client.get("/api/v1/me/wallets", headers=h).status_code == 403

    problem(pay(client, h, me, "1.00", "pay-0000"), 409, "pin-not-set")
    assert (
        client.put(f"/api/v1/me/wallets/{account}/pin", json={"pin": "135790"}, headers=mine).status_code
        == 200
    )
    bad_pin = client.put(f"/api/v1/me/wallets/{account}/pin", json={"pin": "12345"}, headers=mine)
    assert fields_of(problem(bad_pin, 422, "validation-failed") and bad_pin) == {"pin"}
    problem(pay(client, h, me, "1.00", "pay-0001"), 403, "pin-required")
    assert pay(client, h, me, "1.00", "pay-0002", pin="135790").status_code == 201
    for attempt in range(PIN_ATTEMPTS):
        body = problem(pay(client, h, me, "1.00", f"pay-bad-{attempt}", pin="000000"), 403, "pin-incorrect")
        assert body["attempts_left"] == PIN_ATTEMPTS - attempt - 1  # each wrong PIN was kept
    locked = pay(client, h, me, "1.00", "pay-0003", pin="135790")
    problem(locked, 423, "pin-locked")
    assert int(locked.headers["Retry-After"]) > 0
    change = {"pin": "246800", "current_pin": "135790"}
    problem(client.put(f"/api/v1/me/wallets/{account}/pin", json=change, headers=mine), 423, "pin-locked")
    assert (
        client.post(f"{W}/accounts/{account}/unlock", json={"reason": "核验本人"}, headers=h).status_code
        == 200
    )
    assert client.put(f"/api/v1/me/wallets/{account}/pin", json=change, headers=mine).status_code == 200
    assert pay(client, h, me, "1.00", "pay-0004", pin="246800").status_code == 201


def test_wallet_money_stays_out_of_the_points_api(client, world: World) -> None:
    h = world.brands[0].headers
    add_type(client, h)
    m = enroll(client, h)["id"]
    top_up(client, h, m, "10.00", "tu-0001")
    assert client.get("/api/v1/points/types", headers=h).json() == []
    problem(client.get("/api/v1/points/types/w.gift.p", headers=h), 404, "not-found")
    assert client.get(f"/api/v1/members/{m}/points", headers=h).json()["balances"] == []
    assert client.get(f"/api/v1/members/{m}/points/entries", headers=h).json()["items"] == []
    assert client.get("/api/v1/points/liability", headers=h).json()["points"] == 0
    grant = client.post(
        f"/api/v1/members/{m}/points/grant",
        json={"idempotency_key": "g-0001", "point_type": "w.gift.p", "amount": 100, "reason": "x"},
        headers=h,
    )
    assert fields_of(problem(grant, 422, "validation-failed") and grant) == {"point_type"}
    kind = client.post("/api/v1/points/types", json={"code": "w2", "name": "x", "kind": "wallet"}, headers=h)
    assert fields_of(problem(kind, 422, "validation-failed") and kind) == {"kind"}


def test_another_brand_cannot_see_or_touch_a_wallet(client, world: World) -> None:
    h, other = world.brands[0].headers, world.brands[1].headers
    add_type(client, h)
    add_type(client, other)
    m = enroll(client, h)["id"]
    assert top_up(client, h, m, "100.00", "tu-0001").status_code == 201
    assert pay(client, h, m, "10.00", "pay-0001").status_code == 201
    assert pay(client, h, m, "10.00", "hold-0001", path="/reserve").status_code == 201
    account = client.get(f"{W}/accounts", headers=h).json()["items"][0]["id"]

    assert client.get(f"{W}/accounts", headers=other).json()["items"] == []
    for method, path, body in (
        ("get", f"{W}/accounts/{account}", None),
        ("get", f"{W}/accounts/{account}/statement", None),
        ("get", f"{W}/accounts/{account}/bindings", None),
        ("post", f"{W}/accounts/{account}/lock", {"reason": "x"}),
        ("post", f"{W}/accounts/{account}/unlock", {}),
        ("post", f"{W}/accounts/{account}/close", {"reason": "x"}),
        (
            "post",
            f"{W}/accounts/{account}/rebind",
            {"to_member_id": m, "verification": {"method": "other", "reference": "x"}, "reason": "x"},
        ),
        ("get", f"{W}/top-ups/tu-0001", None),
        ("get", f"{W}/payments/pay-0001", None),
        ("post", f"{W}/payments/hold-0001/confirm", None),
        ("post", f"{W}/payments/hold-0001/release", None),
        ("post", f"{W}/payments/pay-0001/refunds", {"idempotency_key": "rf-x001", "reason": "x"}),
        ("post", f"{W}/top-ups/tu-0001/refunds", {"idempotency_key": "rf-x002", "reason": "x"}),
    ):
        r = client.request(method, path, json=body, headers=other)
        problem(r, 404, "not-found")
    problem(top_up(client, other, m, "1.00", "tu-x001"), 404, "not-found")
    problem(pay(client, other, m, "1.00", "pay-x001"), 404, "not-found")
    period = _around_now()
    assert client.get(f"{W}/settlement", params=period, headers=other).json()["lines"] == []
    # and the wallet is untouched
    assert client.get(f"{W}/accounts/{account}", headers=h).json()["balance"] == {
        "principal": "80.00",
        "bonus": "0.00",
        "held": "10.00",
        "total": "90.00",
    }


def test_openapi_documents_the_wallet() -> None:
    app = FastAPI()
    for module in (wallet_api, pay_api, me_api):
        app.include_router(module.router)
    spec = app.openapi()
    paths = spec["paths"]
    for path in (
        "/api/v1/wallet/types",
        "/api/v1/wallet/top-ups",
        "/api/v1/wallet/payments/reserve",
        "/api/v1/wallet/payments/{key}/refunds",
        "/api/v1/wallet/settlement",
        "/api/v1/me/wallets/{account_id}/pin",
    ):
        assert path in paths, path
    assert spec["components"]["schemas"]["TopUpIn"]["examples"][0]["amount"] == "500.00"
    assert "423" in paths["/api/v1/wallet/payments"]["post"]["responses"]

"""Every id-bearing API route, called by brand beta with brand alpha's ids, answers 404 and changes
nothing. The route list is checked against the OpenAPI document, so a new id-bearing route fails
this test until it is added here."""

from __future__ import annotations

import base64
import io
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from huiyuan.audit.models import AuditEntry
from huiyuan.outbox.dispatcher import dispatch_pending
from tests.conftest import World
from tests.factories import enroll

# A multipart upload (a one-line CSV) instead of a JSON body.
UPLOAD: dict[str, Any] = {"file": ("f.csv", b"member_id\n1\n", "text/csv")}
# A slot two days ahead, 10:00 Shanghai time: valid for the sweep's appointment benefit.
_SLOT = (datetime.now(ZoneInfo("Asia/Shanghai")) + timedelta(days=2)).replace(
    hour=10, minute=0, second=0, microsecond=0
)
BOOKING: dict[str, Any] = {"starts_at": _SLOT.isoformat()}

# (method, path template, body) — ids are filled from the objects brand alpha owns.
CALLS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "/api/v1/api-keys/{key_id}/revoke", None),
    ("GET", "/api/v1/stores/{store_id}", None),
    ("GET", "/api/v1/members/{member_id}", None),
    ("PATCH", "/api/v1/members/{member_id}", {"name": "偷改"}),
    ("POST", "/api/v1/members/{member_id}/close", {"reason": "x"}),
    ("GET", "/api/v1/custom-fields/{key}", None),
    ("PATCH", "/api/v1/custom-fields/{key}", {"position": 9}),
    ("POST", "/api/v1/custom-fields/{key}/retire", None),
    ("POST", "/api/v1/custom-fields/{key}/reactivate", None),
    ("POST", "/api/v1/members/{member_id}/identifiers", {"type": "device_id", "value": "dev-x"}),
    ("DELETE", "/api/v1/members/{member_id}/identifiers/{identifier_id}", None),
    ("GET", "/api/v1/members/{member_id}/cards", None),
    ("POST", "/api/v1/members/{member_id}/cards", {"card_number": "C-BETA-1"}),
    ("POST", "/api/v1/members/{member_id}/cards/{card_id}/lost", {"reason": "x"}),
    ("POST", "/api/v1/members/{member_id}/cards/{card_id}/replace", {"new_card_number": "C-BETA-2"}),
    ("GET", "/api/v1/members/{member_id}/qr", None),
    ("GET", "/api/v1/members/{member_id}/consents", None),
    (
        "POST",
        "/api/v1/members/{member_id}/consents",
        {"purpose": "marketing", "channel": "sms", "granted": True, "source": "x"},
    ),
    ("GET", "/api/v1/members/{member_id}/verifications", None),
    (
        "POST",
        "/api/v1/members/{member_id}/verifications",
        {"kind": "student", "status": "pending", "evidence": {"document_type": "student_card"}},
    ),
    ("GET", "/api/v1/members/{member_id}/export", None),
    ("POST", "/api/v1/members/{member_id}/erase", {"reason": "x"}),
    ("GET", "/api/v1/imports/{run_id}", None),
    ("GET", "/api/v1/imports/{run_id}/errors.csv", None),
    ("GET", "/api/v1/products/{product_id}", None),
    ("PATCH", "/api/v1/products/{product_id}", {"list_price": "1.00"}),
    ("GET", "/api/v1/orders/{order_id}", None),
    ("GET", "/api/v1/orders/{order_id}/refunds", None),
    (
        "POST",
        "/api/v1/orders/{order_id}/refunds",
        {"refund_number": "RF-B", "items": [{"line_no": 1, "quantity": 1}], "reason": "x"},
    ),
    ("GET", "/api/v1/webhooks/{webhook_id}", None),
    ("PATCH", "/api/v1/webhooks/{webhook_id}", {"active": False}),
    ("DELETE", "/api/v1/webhooks/{webhook_id}", None),
    ("GET", "/api/v1/webhooks/{webhook_id}/deliveries", None),
    ("POST", "/api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver", None),
    ("POST", "/api/v1/webhooks/{webhook_id}/ping", None),
    ("GET", "/api/v1/jobs/{run_id}", None),
    ("GET", "/api/v1/points/types/{code}", None),
    ("PATCH", "/api/v1/points/types/{code}", {"name": "偷改"}),
    ("GET", "/api/v1/points/merchants/{code}", None),
    ("PATCH", "/api/v1/points/merchants/{code}", {"name": "偷改"}),
    ("GET", "/api/v1/points/rules/{rule_id}", None),
    ("PATCH", "/api/v1/points/rules/{rule_id}", {"name": "偷改"}),
    ("POST", "/api/v1/points/rules/{rule_id}/status", {"status": "paused"}),
    ("GET", "/api/v1/members/{member_id}/points", None),
    ("GET", "/api/v1/members/{member_id}/points/entries", None),
    ("GET", "/api/v1/members/{member_id}/points/lots", None),
    ("GET", "/api/v1/members/{member_id}/points/expiring", None),
    (
        "POST",
        "/api/v1/members/{member_id}/points/grant",
        {"idempotency_key": "sweep-g", "point_type": "points", "amount": 1, "reason": "x"},
    ),
    (
        "POST",
        "/api/v1/members/{member_id}/points/adjust",
        {"idempotency_key": "sweep-a", "point_type": "points", "amount": -1, "reason": "x"},
    ),
    (
        "POST",
        "/api/v1/members/{member_id}/points/freeze",
        {"idempotency_key": "sweep-f", "point_type": "points", "reason": "x"},
    ),
    (
        "POST",
        "/api/v1/members/{member_id}/points/unfreeze",
        {"idempotency_key": "sweep-u", "point_type": "points", "reason": "x"},
    ),
    (
        "POST",
        "/api/v1/members/{member_id}/points/transfer",
        {"idempotency_key": "sweep-t", "to_member_id": 1, "point_type": "points", "amount": 1},
    ),
    (
        "POST",
        "/api/v1/members/{member_id}/points/actions",
        {"idempotency_key": "sweep-act", "action": "check_in"},
    ),
    ("POST", "/api/v1/points/checkout/{reservation_key}/confirm", None),
    ("POST", "/api/v1/points/checkout/{reservation_key}/release", None),
    ("GET", "/api/v1/tiers/levels/{level_id}", None),
    ("PATCH", "/api/v1/tiers/levels/{level_id}", {"points_multiplier": "9"}),
    ("GET", "/api/v1/members/{member_id}/tier", None),
    ("GET", "/api/v1/members/{member_id}/tier/history", None),
    ("POST", "/api/v1/members/{member_id}/tier/override", {"level_code": "base", "reason": "x"}),
    ("DELETE", "/api/v1/members/{member_id}/tier/override", None),
    ("PUT", "/api/v1/members/{member_id}/tier/rfm-score", {"rfm_score": "1"}),
    ("GET", "/api/v1/members/{member_id}/profile", None),
    ("GET", "/api/v1/members/{member_id}/profile/timeline", None),
    ("GET", "/api/v1/profiles/{oneid}", None),
    ("GET", "/api/v1/profiles/{oneid}/timeline", None),
    ("GET", "/api/v1/paid/categories/{plan_category_id}", None),
    ("PATCH", "/api/v1/paid/categories/{plan_category_id}", {"status": "retired"}),
    ("GET", "/api/v1/paid/levels/{plan_level_id}", None),
    ("PATCH", "/api/v1/paid/levels/{plan_level_id}", {"price": "1.00"}),
    ("GET", "/api/v1/members/{member_id}/paid", None),
    ("GET", "/api/v1/members/{member_id}/paid/upgrade-quote/{plan_level_id}", None),
    ("POST", "/api/v1/members/{member_id}/paid/buy", {"level_id": 1, "payment_reference": "PAY-B"}),
    ("POST", "/api/v1/members/{member_id}/paid/renew", {"payment_reference": "PAY-B"}),
    ("POST", "/api/v1/members/{member_id}/paid/upgrade", {"level_id": 1, "payment_reference": "PAY-B"}),
    ("POST", "/api/v1/members/{member_id}/paid/cancel", {"refund_reference": "RF-B"}),
    ("GET", "/api/v1/points/mall/gifts/{gift_id}", None),
    ("PATCH", "/api/v1/points/mall/gifts/{gift_id}", {"name": "偷改"}),
    ("POST", "/api/v1/points/mall/gifts/{gift_id}/restock", {"quantity": 5}),
    ("POST", "/api/v1/points/mall/gifts/{gift_id}/codes", None),
    ("POST", "/api/v1/members/{member_id}/points/mall/redeem", {"gift_id": 1, "idempotency_key": "sweep-m"}),
    ("GET", "/api/v1/points/mall/redemptions/{redemption_id}", None),
    ("POST", "/api/v1/points/mall/redemptions/{redemption_id}/pay", {"payment_reference": "PAY-B"}),
    ("POST", "/api/v1/points/mall/redemptions/{redemption_id}/cancel", {"reason": "x"}),
    # Coupons
    ("GET", "/api/v1/coupons/templates/{template_id}", None),
    ("PATCH", "/api/v1/coupons/templates/{template_id}", {"name": "偷改"}),
    ("POST", "/api/v1/coupons/templates/{template_id}/stock", {"quantity": 5, "reason": "x"}),
    ("POST", "/api/v1/coupons/templates/{template_id}/codes", UPLOAD),
    ("POST", "/api/v1/coupons/templates/{template_id}/push", {"member_ids": [1]}),
    ("POST", "/api/v1/coupons/templates/{template_id}/push/file", UPLOAD),
    ("GET", "/api/v1/coupons/push/{run_id}", None),
    ("GET", "/api/v1/coupons/locks/{lock_id}", None),
    ("POST", "/api/v1/coupons/locks/{lock_id}/redeem", {"payment_reference": "PAY-B"}),
    ("POST", "/api/v1/coupons/locks/{lock_id}/release", {"reason": "x"}),
    ("POST", "/api/v1/coupons/locks/{lock_id}/return", {"reason": "x"}),
    ("GET", "/api/v1/coupons/{coupon_id}", None),
    ("GET", "/api/v1/coupons/{coupon_id}/events", None),
    ("POST", "/api/v1/coupons/{coupon_id}/void", {"reason": "x"}),
    ("POST", "/api/v1/coupons/{coupon_id}/refund", {"reason": "x"}),
    # Benefits and benefit cards
    ("GET", "/api/v1/benefits/definitions/{definition_id}", None),
    ("PATCH", "/api/v1/benefits/definitions/{definition_id}", {"unit_cost": "1.00"}),
    ("GET", "/api/v1/benefits/definitions/{definition_id}/events", None),
    ("GET", "/api/v1/members/{member_id}/benefits", None),
    ("POST", "/api/v1/members/{member_id}/benefits", {"benefit": "SPA", "idempotency_key": "sweep-b"}),
    ("GET", "/api/v1/benefits/entitlements/{member_benefit_id}", None),
    ("GET", "/api/v1/benefits/entitlements/{member_benefit_id}/events", None),
    ("POST", "/api/v1/benefits/entitlements/{member_benefit_id}/void", {"reason": "x"}),
    ("POST", "/api/v1/benefits/entitlements/{member_benefit_id}/verify", {"note": "x"}),
    (
        "POST",
        "/api/v1/benefits/entitlements/{member_benefit_id}/appointments",
        {**BOOKING, "idempotency_key": "sweep-bk-b"},
    ),
    ("GET", "/api/v1/benefits/appointments/{appointment_id}", None),
    ("PATCH", "/api/v1/benefits/appointments/{appointment_id}", BOOKING),
    ("POST", "/api/v1/benefits/appointments/{appointment_id}/cancel", {"reason": "x"}),
    ("POST", "/api/v1/benefits/appointments/{appointment_id}/verify", {"note": "x"}),
    ("GET", "/api/v1/benefits/cards/products/{product_id}", None),
    ("PATCH", "/api/v1/benefits/cards/products/{product_id}", {"price": "1.00"}),
    ("GET", "/api/v1/members/{member_id}/benefit-cards", None),
    ("GET", "/api/v1/members/{member_id}/benefit-cards/perks", None),
    ("POST", "/api/v1/members/{member_id}/benefit-cards", {"product_id": 1, "payment_reference": "WX-B"}),
    ("GET", "/api/v1/benefits/cards/{card_id}", None),
    ("POST", "/api/v1/benefits/cards/{card_id}/activate", None),
    ("GET", "/api/v1/benefits/cards/{card_id}/refund-quote", None),
    ("POST", "/api/v1/benefits/cards/{card_id}/refund", {"refund_reference": "RF-B"}),
    # Wallet
    ("GET", "/api/v1/wallet/types/{code}", None),
    ("PATCH", "/api/v1/wallet/types/{code}", {"spend_order": "bonus_first"}),
    ("GET", "/api/v1/wallet/top-up-rules/{rule_id}", None),
    ("PATCH", "/api/v1/wallet/top-up-rules/{rule_id}", {"status": "paused"}),
    ("GET", "/api/v1/wallet/accounts/{account_id}", None),
    ("POST", "/api/v1/wallet/accounts/{account_id}/lock", {"reason": "x"}),
    ("POST", "/api/v1/wallet/accounts/{account_id}/unlock", {"reason": "x"}),
    ("POST", "/api/v1/wallet/accounts/{account_id}/close", {"reason": "x"}),
    (
        "POST",
        "/api/v1/wallet/accounts/{account_id}/rebind",
        {"to_member_id": 1, "verification": {"method": "id_document", "reference": "x"}, "reason": "x"},
    ),
    ("GET", "/api/v1/wallet/accounts/{account_id}/bindings", None),
    ("GET", "/api/v1/wallet/accounts/{account_id}/statement", None),
    ("GET", "/api/v1/wallet/top-ups/{key}", None),
    (
        "POST",
        "/api/v1/wallet/top-ups/{key}/refunds",
        {"reason": "x", "amount": "1.00", "idempotency_key": "sweep-tr"},
    ),
    ("GET", "/api/v1/wallet/payments/{key}", None),
    ("POST", "/api/v1/wallet/payments/{key}/confirm", None),
    ("POST", "/api/v1/wallet/payments/{key}/release", None),
    (
        "POST",
        "/api/v1/wallet/payments/{key}/refunds",
        {"reason": "x", "amount": "1.00", "idempotency_key": "sweep-pr"},
    ),
    # Shared point programmes (alpha hosts one that beta is not in)
    ("GET", "/api/v1/points/programs/{code}", None),
    ("PATCH", "/api/v1/points/programs/{code}", {"name": "偷改"}),
    ("POST", "/api/v1/points/programs/{code}/brands", {"brand": "beta"}),
    ("PATCH", "/api/v1/points/programs/{code}/brands/{brand_code}", {"earn_rate": "9"}),
    ("POST", "/api/v1/points/programs/{code}/links", {"member_id": 1}),
    ("GET", "/api/v1/points/programs/{code}/links/{member_id}", None),
    ("GET", "/api/v1/points/programs/{code}/members/{member_id}/points", None),
    (
        "POST",
        "/api/v1/points/programs/{code}/members/{member_id}/earn",
        {"idempotency_key": "sweep-pe", "points": 1},
    ),
    (
        "POST",
        "/api/v1/points/programs/{code}/members/{member_id}/spend",
        {"idempotency_key": "sweep-ps", "points": 1},
    ),
    (
        "POST",
        "/api/v1/points/programs/{code}/members/{member_id}/refund",
        {"idempotency_key": "sweep-pr2", "spend_key": "alpha-ps", "points": 1},
    ),
    ("GET", "/api/v1/points/programs/{code}/clearing", None),
    ("POST", "/api/v1/points/programs/{code}/checkout/quote", {"member_id": 1, "cart_amount": "1.00"}),
    (
        "POST",
        "/api/v1/points/programs/{code}/checkout/reserve",
        {"idempotency_key": "sweep-pres", "member_id": 1, "points": 1},
    ),
    ("POST", "/api/v1/points/programs/{code}/checkout/{reservation_key}/confirm", None),
    ("POST", "/api/v1/points/programs/{code}/checkout/{reservation_key}/release", None),
    # Events: sources and the tracking plan
    ("GET", "/api/v1/event-sources/{source_id}", None),
    ("PATCH", "/api/v1/event-sources/{source_id}", {"name": "偷改"}),
    ("POST", "/api/v1/event-sources/{source_id}/revoke", None),
    ("GET", "/api/v1/tracking-plan/events/{definition_id}/versions", None),
    ("POST", "/api/v1/tracking-plan/events/{definition_id}/versions", {"properties": []}),
    ("POST", "/api/v1/tracking-plan/events/{definition_id}/status", {"status": "deprecated"}),
    ("POST", "/api/v1/tracking-plan/unplanned/{unplanned_id}/approve", None),
    ("POST", "/api/v1/tracking-plan/unplanned/{unplanned_id}/ignore", None),
]


def _alpha_objects(client: Any, world: World) -> dict[str, Any]:
    h = world.brands[0].headers
    ids: dict[str, Any] = {}
    ids["key_id"] = client.post(
        "/api/v1/api-keys", json={"name": "k", "scopes": ["members:read"]}, headers=h
    ).json()["id"]
    ids["store_id"] = client.get("/api/v1/stores", headers=h).json()[0]["id"]
    field = {"key": "shoe_size", "labels": {"zh": "鞋码", "en": "Shoe size"}, "type": "integer"}
    assert client.post("/api/v1/custom-fields", json=field, headers=h).status_code == 201
    ids["key"] = "shoe_size"
    member = enroll(
        client, h, name="甲", phone="13800138000", identifiers=[{"type": "wechat_openid", "value": "oAlpha"}]
    )
    ids["member_id"] = member["id"]
    dispatch_pending(world.db)
    ids["oneid"] = client.get(
        "/api/v1/oneid/resolve", params={"type": "member_number", "value": member["member_number"]}, headers=h
    ).json()["oneid"]
    ids["identifier_id"] = next(i["id"] for i in member["identifiers"] if i["type"] == "wechat_openid")
    card = client.post(f"/api/v1/members/{member['id']}/cards", json={"card_number": "C-ALPHA-1"}, headers=h)
    ids["card_id"] = card.json()["id"]
    product = client.post(
        "/api/v1/products", json={"sku": "SKU-1", "name": "T恤", "list_price": "99.00"}, headers=h
    )
    ids["product_id"] = product.json()["id"]
    order = client.post(
        "/api/v1/orders",
        headers=h,
        json={
            "order_number": "A-1",
            "store_code": "alpha-s1",
            "channel": "store",
            "member_id": member["id"],
            "items": [{"sku": "SKU-1", "quantity": 2, "list_price": "99.00", "deal_price": "90.00"}],
            "payments": [{"method": "wechat_pay", "amount": "180.00"}],
        },
    )
    assert order.status_code == 201, order.text
    ids["order_id"] = order.json()["id"]
    hook = client.post(
        "/api/v1/webhooks",
        headers=h,
        json={"url": "https://93.184.216.34/hook", "event_types": ["order.paid"]},
    )
    assert hook.status_code == 201, hook.text
    ids["webhook_id"] = hook.json()["id"]
    ids["delivery_id"] = 1  # a delivery id of alpha's webhook; none exists, beta must still get 404
    upload = client.post(
        "/api/v1/imports/members",
        headers=h,
        data={"dry_run": "true"},
        files={"file": ("m.csv", io.BytesIO("name,phone\n乙,13900001111\n".encode()), "text/csv")},
    )
    assert upload.status_code in (200, 201, 202), upload.text
    run = upload.json()
    ids["run_id"] = run["id"]
    points = {"code": "points", "name": "积分", "kind": "spendable", "transferable": True}
    assert client.post("/api/v1/points/types", json=points, headers=h).status_code == 201
    ids["code"] = "points"
    merchant = {"code": "points", "name": "联营商户"}
    assert client.post("/api/v1/points/merchants", json=merchant, headers=h).status_code == 201
    rule = {"trigger": {"kind": "order"}, "point_type": "points", "formula": {"kind": "fixed", "points": 1}}
    earn_rule = client.post(
        "/api/v1/points/rules", json={"code": "r", "name": "r", "definition": rule}, headers=h
    )
    ids["rule_id"] = earn_rule.json()["id"]
    grant = {"idempotency_key": "alpha-g", "point_type": "points", "amount": 100, "reason": "x"}
    granted = client.post(f"/api/v1/members/{member['id']}/points/grant", json=grant, headers=h)
    assert granted.status_code == 201, granted.text
    hold = {"idempotency_key": "alpha-r", "member_id": member["id"], "point_type": "points", "points": 10}
    assert client.post("/api/v1/points/checkout/reserve", json=hold, headers=h).status_code == 201
    ids["reservation_key"] = "alpha-r"
    program = {"window": {"kind": "calendar_year"}, "settlement": {"mode": "realtime"}}
    assert client.put("/api/v1/tiers/program", json=program, headers=h).status_code == 200
    base = {"code": "base", "name_zh": "普卡", "name_en": "Classic", "rank": 0}
    ids["level_id"] = client.post("/api/v1/tiers/levels", json=base, headers=h).json()["id"]
    paid = client.post(
        "/api/v1/paid/categories",
        json={"code": "family", "name": "家庭", "customer_group": "family"},
        headers=h,
    )
    ids["plan_category_id"] = paid.json()["id"]
    level = client.post(
        "/api/v1/paid/levels",
        headers=h,
        json={
            "category_id": ids["plan_category_id"],
            "code": "silver",
            "name": "Silver",
            "rank": 1,
            "price": "99.00",
            "validity": {"unit": "month", "count": 12},
        },
    )
    assert level.status_code == 201, level.text
    ids["plan_level_id"] = level.json()["id"]
    gift = {"code": "MUG", "name": "杯子", "kind": "physical", "point_type": "points", "points_price": 10}
    made = client.post(
        "/api/v1/points/mall/gifts", json={**gift, "stock": 5, "cash_price": "1.00"}, headers=h
    )
    assert made.status_code == 201, made.text
    ids["gift_id"] = made.json()["id"]
    redeem = {"gift_id": ids["gift_id"], "idempotency_key": "alpha-m"}
    redeemed = client.post(f"/api/v1/members/{member['id']}/points/mall/redeem", json=redeem, headers=h)
    assert redeemed.status_code == 201, redeemed.text
    ids["redemption_id"] = redeemed.json()["id"]
    _alpha_program(client, world, ids)
    _alpha_coupons(client, h, ids)
    _alpha_benefits(client, h, ids)
    _alpha_wallet(client, h, ids)
    _alpha_events(client, h, ids)
    return ids


def _alpha_program(client: Any, world: World, ids: dict[str, Any]) -> None:
    """A shared programme hosted by alpha on its points, alpha's member linked, earning and spending."""
    h = world.brands[0].headers
    body = {"code": "alpha-club", "name": "甲联盟", "host_brand": "alpha", "point_type": "points"}
    _created(client.post("/api/v1/points/programs", json=body, headers=world.platform_headers))
    ids["program_code"], ids["brand_code"] = "alpha-club", "alpha"
    base = f"/api/v1/points/programs/alpha-club/members/{ids['member_id']}"
    _created(
        client.post(
            "/api/v1/points/programs/alpha-club/links", json={"member_id": ids["member_id"]}, headers=h
        )
    )
    _created(client.post(base + "/earn", json={"idempotency_key": "alpha-pe", "points": 5}, headers=h))
    _created(client.post(base + "/spend", json={"idempotency_key": "alpha-ps", "points": 2}, headers=h))
    hold = {"idempotency_key": ids["reservation_key"], "member_id": ids["member_id"], "points": 1}
    _created(client.post("/api/v1/points/programs/alpha-club/checkout/reserve", json=hold, headers=h))


def _created(r: Any) -> dict[str, Any]:
    assert r.status_code in (200, 201, 202), r.text
    return dict(r.json())


def _alpha_coupons(client: Any, h: dict[str, str], ids: dict[str, Any]) -> None:
    template = {
        "code": "SWEEP-10",
        "name": "减10",
        "stock_total": 100,
        "status": "active",
        "rules": {
            "discount": {"kind": "amount_off", "amount": "10.00"},
            "validity": {"kind": "relative", "days": 30},
        },
    }
    ids["template_id"] = _created(client.post("/api/v1/coupons/templates", json=template, headers=h))["id"]
    issue = {"template_id": ids["template_id"], "member_id": ids["member_id"], "idempotency_key": "sweep-i"}
    ids["coupon_id"] = _created(client.post("/api/v1/coupons/issue", json=issue, headers=h))["id"]
    cart = {"lines": [{"line_id": "1", "sku": "SKU-1", "unit_price": "99.00", "quantity": 1}]}
    lock = {"member_id": ids["member_id"], "order_ref": "SO-A", "cart": cart, "idempotency_key": "sweep-l"}
    ids["lock_id"] = _created(client.post("/api/v1/coupons/locks", json=lock, headers=h))["id"]
    push = {"member_ids": [ids["member_id"]]}
    run = client.post(f"/api/v1/coupons/templates/{ids['template_id']}/push", json=push, headers=h)
    ids["push_run_id"] = _created(run)["id"]


def _alpha_benefits(client: Any, h: dict[str, str], ids: dict[str, Any]) -> None:
    spa = {
        "code": "SPA",
        "name": "护理",
        "kind": "custom",
        "verification": "appointment",
        "appointment": {"slot_minutes": 30, "capacity": 5, "min_notice_minutes": 0},
        "limits": {"uses_per_entitlement": 3},
        "unit_cost": "80.00",
    }
    ids["definition_id"] = _created(client.post("/api/v1/benefits/definitions", json=spa, headers=h))["id"]
    grant = {"benefit": "SPA", "idempotency_key": "sweep-ga"}
    granted = _created(client.post(f"/api/v1/members/{ids['member_id']}/benefits", json=grant, headers=h))
    ids["member_benefit_id"] = granted.get("entitlement", granted)["id"]
    booking = client.post(
        f"/api/v1/benefits/entitlements/{ids['member_benefit_id']}/appointments",
        json={**BOOKING, "idempotency_key": "sweep-bk"},
        headers=h,
    )
    ids["appointment_id"] = _created(booking).get("appointment", booking.json())["id"]
    product = {
        "code": "SPA-CARD",
        "name": "护理卡",
        "price": "99.00",
        "validity_months": 1,
        "lines": [
            {"benefit": {"kind": "benefit", "benefit": "SPA", "quantity": 1}, "every": "once", "value": "80"}
        ],
    }
    made = client.post("/api/v1/benefits/cards/products", json=product, headers=h)
    ids["card_product_id"] = _created(made)["id"]
    buy = {"product_id": ids["card_product_id"], "payment_reference": "WX-A"}
    bought = client.post(f"/api/v1/members/{ids['member_id']}/benefit-cards", json=buy, headers=h)
    ids["benefit_card_id"] = _created(bought)["id"]


def _alpha_wallet(client: Any, h: dict[str, str], ids: dict[str, Any]) -> None:
    wallet = {"code": "gift", "name": "礼品卡"}
    ids["wallet_type"] = _created(client.post("/api/v1/wallet/types", json=wallet, headers=h))["code"]
    rule = {
        "code": "r10",
        "name": "赠10",
        "wallet_type": "gift",
        "bonus_kind": "fixed",
        "bonus_fixed": "10.00",
    }
    ids["rule_id"] = _created(client.post("/api/v1/wallet/top-up-rules", json=rule, headers=h))["id"]
    top_up = {
        "member_id": ids["member_id"],
        "wallet_type": "gift",
        "amount": "100.00",
        "channel": "store",
        "payment_ref": "WX-T",
        "idempotency_key": "sweep-tu",
    }
    done = _created(client.post("/api/v1/wallet/top-ups", json=top_up, headers=h))
    ids["top_up_key"] = "sweep-tu"
    ids["account_id"] = done["wallet_account_id"]
    hold = {
        "member_id": ids["member_id"],
        "wallet_type": "gift",
        "amount": "5.00",
        "idempotency_key": "sweep-p",
    }
    _created(client.post("/api/v1/wallet/payments/reserve", json=hold, headers=h))
    ids["payment_key"] = "sweep-p"


def _alpha_events(client: Any, h: dict[str, str], ids: dict[str, Any]) -> None:
    source = _created(client.post("/api/v1/event-sources", json={"name": "web", "kind": "web"}, headers=h))
    ids["source_id"] = source["id"]
    definition = {
        "name": "Product Viewed",
        "properties": [{"name": "sku", "type": "string", "required": True}],
    }
    made = client.post("/api/v1/tracking-plan/events", json=definition, headers=h)
    tracking_definition = _created(made)["id"]
    auth = {"Authorization": "Basic " + base64.b64encode(f"{source['write_key']}:".encode()).decode()}
    sent = client.post("/v1/track", json={"userId": "u1", "event": "Wishlist Added"}, headers=auth)
    assert sent.status_code == 200, sent.text
    unplanned = client.get("/api/v1/tracking-plan/unplanned", headers=h).json()["items"]
    ids["unplanned_id"] = unplanned[0]["id"]
    ids["tracking_definition_id"] = tracking_definition


RENAMED: dict[str, dict[str, str]] = {
    "/api/v1/tracking-plan/events/": {"definition_id": "tracking_definition_id"},
    "/api/v1/coupons/push/": {"run_id": "push_run_id"},
    "/api/v1/benefits/cards/products/": {"product_id": "card_product_id"},
    "/api/v1/benefits/cards/": {"card_id": "benefit_card_id"},
    "/api/v1/wallet/types/": {"code": "wallet_type"},
    "/api/v1/points/programs/": {"code": "program_code"},
    "/api/v1/wallet/top-ups/": {"key": "top_up_key"},
    "/api/v1/wallet/payments/": {"key": "payment_key"},
}


def _renamed(template: str, ids: dict[str, Any]) -> dict[str, Any]:
    for prefix, names in RENAMED.items():
        if template.startswith(prefix):
            return {name: ids[own] for name, own in names.items()}
    return {}


def test_every_id_route_is_404_for_another_brand(client: Any, world: World, db: Any) -> None:
    documented = {
        (method.upper(), path)
        for path, ops in client.app.openapi()["paths"].items()
        if "{" in path and path.startswith("/api/v1/") and not path.startswith(("/api/v1/me/", "/api/v1/me{"))
        for method in ops
    }
    listed = {(m, p) for m, p, _ in CALLS}
    assert documented == listed, (sorted(documented - listed), sorted(listed - documented))

    ids = _alpha_objects(client, world)
    with db.unit_of_work(write=False) as s:
        audit_before = s.scalar(select(func.count()).select_from(AuditEntry))
    beta = world.brands[1].headers
    for method, template, body in CALLS:
        # Path parameters named alike in two domains get the right object of each.
        named = {**ids, **_renamed(template, ids)}
        path = template.format(**named)
        if body is UPLOAD:
            r = client.request(method, path, headers=beta, files=UPLOAD)
        else:
            r = client.request(method, path, headers=beta, json=body)
        assert r.status_code == 404, f"{method} {template}: {r.status_code} {r.text[:200]}"
        assert r.headers["content-type"].startswith("application/problem+json")
    with db.unit_of_work(write=False) as s:
        assert s.scalar(select(func.count()).select_from(AuditEntry)) == audit_before
    # alpha's objects are untouched
    a = world.brands[0].headers
    member = client.get(f"/api/v1/members/{ids['member_id']}", headers=a).json()
    assert member["name"] == "甲" and member["status"] == "active"
    assert client.get(f"/api/v1/webhooks/{ids['webhook_id']}", headers=a).json()["active"] is True

"""Coupons through the HTTP API: templates with validation, issue, the member's claim centre and
claims, checkout lock → redeem → return, settlement exports, tenancy."""

from __future__ import annotations

import io
from typing import Any

from openpyxl import load_workbook

from tests.conftest import World
from tests.factories import enroll, make_key

TEMPLATES = "/api/v1/coupons/templates"
PERIOD = {"from": "2000-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"}


def template(client: Any, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    body = {
        "code": "SPRING-50",
        "name": "满300减50",
        "status": "active",
        "rules": {
            "discount": {"kind": "threshold", "threshold": "300.00", "amount": "50.00"},
            "stacking": "stackable",
            "cost_sharing": [{"party": "brand", "percent": "70"}, {"party": "store", "percent": "30"}],
            "validity": {"kind": "relative", "days": 30, "round_to": "end_of_day"},
        },
        "stock_total": 100,
        **fields,
    }
    r = client.post(TEMPLATES, json=body, headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


def member_headers(client: Any, world: World, member_id: int) -> dict[str, str]:
    key = make_key(world.db, world.brands[0].id, ["members:token"], name="app")
    r = client.post(
        "/api/v1/member-tokens", json={"member_id": member_id}, headers={"Authorization": f"Bearer {key}"}
    )
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def test_templates_are_validated_with_field_errors(client, world: World) -> None:
    h = world.brands[0].headers
    created = template(client, h)
    assert created["face_value"] == "50.00" and created["stock_available"] == 100
    dup = client.post(TEMPLATES, json={**created, "id": None}, headers=h)
    assert dup.status_code == 422  # read-only fields are refused before the code clash
    bad_share = {
        "code": "BAD",
        "name": "x",
        "rules": {
            "discount": {"kind": "amount_off", "amount": "10.00"},
            "cost_sharing": [{"party": "brand", "percent": "60"}, {"party": "store", "percent": "30"}],
            "validity": {"kind": "relative", "days": 7},
        },
    }
    r = client.post(TEMPLATES, json=bad_share, headers=h)
    assert r.status_code == 422 and r.json()["type"].endswith("validation-failed")
    assert any("cost_sharing" in e["field"] for e in r.json()["errors"]), r.json()
    no_cap = {**bad_share, "code": "PCT", "budget_total": "100.00"}
    no_cap["rules"] = {
        "discount": {"kind": "percent_off", "percent": "10"},
        "validity": {"kind": "relative", "days": 7},
    }
    r = client.post(TEMPLATES, json=no_cap, headers=h)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "budget_total"
    # The other brand sees none of it.
    other = client.get(TEMPLATES, headers=world.brands[1].headers).json()
    assert other["items"] == []
    assert client.get(f"{TEMPLATES}/{created['id']}", headers=world.brands[1].headers).status_code == 404


def test_issue_claim_checkout_and_settlement(client, world: World) -> None:
    h = world.brands[0].headers
    t = template(client, h, claimable=True, limit_per_member=1)
    m = enroll(client, h, name="王小明")
    mh = member_headers(client, world, m["id"])
    centre = client.get("/api/v1/me/coupons/claimable", headers=mh).json()
    assert [(c["template"]["id"], c["can_claim"]) for c in centre] == [(t["id"], True)]
    claim = client.post(
        f"/api/v1/me/coupons/templates/{t['id']}/claim",
        json={},
        headers={**mh, "Idempotency-Key": "claim-0001"},
    )
    assert claim.status_code == 201, claim.text
    again = client.post(
        f"/api/v1/me/coupons/templates/{t['id']}/claim",
        json={},
        headers={**mh, "Idempotency-Key": "claim-0001"},
    )
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    over = client.post(
        f"/api/v1/me/coupons/templates/{t['id']}/claim",
        json={},
        headers={**mh, "Idempotency-Key": "claim-0002"},
    )
    assert over.status_code == 409 and over.json()["code"] == "coupon-limit-reached"
    coupon = claim.json()
    mine = client.get("/api/v1/me/coupons", headers=mh).json()["items"]
    assert [c["id"] for c in mine] == [coupon["id"]]

    cart = {
        "lines": [{"line_id": "1", "sku": "COAT", "unit_price": "350.00", "quantity": 1}],
        "scene": "in_store",
    }
    ev = client.post("/api/v1/coupons/evaluate", json={"member_id": m["id"], "cart": cart}, headers=h)
    assert ev.status_code == 200, ev.text
    assert ev.json()["best"]["totals"]["payable"] == "300.00"
    lock = client.post(
        "/api/v1/coupons/locks",
        json={"member_id": m["id"], "order_ref": "SO-1", "cart": cart, "idempotency_key": "lock-0001"},
        headers=h,
    )
    assert lock.status_code == 201, lock.text
    assert lock.json()["coupon_ids"] == [coupon["id"]] and lock.json()["discount"] == "50.00"
    lock_id = lock.json()["id"]
    paid = client.post(
        f"/api/v1/coupons/locks/{lock_id}/redeem", json={"payment_reference": "PAY-1"}, headers=h
    )
    assert paid.status_code == 200 and paid.json()["state"] == "redeemed"
    looked_up = client.get("/api/v1/coupons", params={"code": coupon["code"]}, headers=h).json()["items"]
    assert looked_up[0]["status"] == "redeemed" and looked_up[0]["discount"] == "50.00"
    events = client.get(f"/api/v1/coupons/{coupon['id']}/events", headers=h).json()
    assert [e["kind"] for e in events] == ["issued", "locked", "redeemed"]

    s = client.get("/api/v1/coupons/settlement", params=PERIOD, headers=h).json()
    assert s["net"] == "50.00" and s["by_party"] == {"brand": "35.00", "store": "15.00"}
    csv_r = client.get("/api/v1/coupons/settlement", params={**PERIOD, "format": "csv"}, headers=h)
    assert csv_r.status_code == 200 and csv_r.text.startswith("\ufeff") and "净额 / Net" in csv_r.text
    xlsx = client.get("/api/v1/coupons/settlement", params={**PERIOD, "format": "xlsx"}, headers=h)
    book = load_workbook(io.BytesIO(xlsx.content))
    assert len(book.sheetnames) == 2
    stats = client.get("/api/v1/coupons/stats", params=PERIOD, headers=h).json()
    assert stats[0]["issued"] == 1 and stats[0]["used"] == 1 and stats[0]["coupon_sales"] == "300.00"

    back = client.post(f"/api/v1/coupons/locks/{lock_id}/return", json={"reason": "refund"}, headers=h)
    assert back.status_code == 200 and back.json()["state"] == "returned"
    assert client.get("/api/v1/coupons/settlement", params=PERIOD, headers=h).json()["net"] == "0.00"
    # The other brand can neither see nor move the lock.
    assert client.get(f"/api/v1/coupons/locks/{lock_id}", headers=world.brands[1].headers).status_code == 404
    assert (
        client.post(
            f"/api/v1/coupons/locks/{lock_id}/release", json={}, headers=world.brands[1].headers
        ).status_code
        == 404
    )


def test_bad_checkout_requests_get_problem_details(client, world: World) -> None:
    h = world.brands[0].headers
    m = enroll(client, h)
    r = client.post(
        "/api/v1/coupons/locks",
        json={"member_id": m["id"], "order_ref": "X", "cart": {"lines": []}},
        headers=h,
    )
    assert r.status_code == 422 and r.json()["errors"]
    r = client.post(
        "/api/v1/coupons/locks",
        json={
            "member_id": m["id"],
            "order_ref": "X",
            "cart": {"lines": [{"line_id": "1", "sku": "A", "unit_price": "1", "quantity": 1}]},
        },
        headers=h,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "idempotency_key"
    r = client.post(
        "/api/v1/coupons/issue",
        json={"template_id": 999999, "member_id": m["id"], "idempotency_key": "iss-0001"},
        headers=h,
    )
    assert r.status_code == 404


def test_push_issue_runs_as_a_job_with_a_report(client, world: World) -> None:
    h = world.brands[0].headers
    t = template(client, h, limit_per_member=1, stock_total=2)
    ids = [enroll(client, h)["id"] for _ in range(3)]
    r = client.post(f"{TEMPLATES}/{t['id']}/push", json={"member_ids": ids, "reference": "双11"}, headers=h)
    assert r.status_code == 202, r.text
    run = r.json()
    assert run["requested"] == 3 and run["status"] == "queued"
    done = client.get(f"/api/v1/coupons/push/{run['id']}", headers=h).json()
    assert (done["status"], done["issued"], done["skipped"]) == ("completed", 2, 1)
    assert done["report"][0]["reason"] == "coupon-out-of-stock"
    job = client.get(f"/api/v1/jobs/{run['job_id']}", headers=h).json()
    assert job["status"] == "succeeded" and job["progress_done"] == 3


def test_paid_order_redeems_its_lock_and_a_full_refund_returns_it(client, world: World) -> None:
    from huiyuan.outbox.dispatcher import dispatch_pending
    from tests.orders.helpers import order_body

    h = world.brands[0].headers
    t = template(
        client,
        h,
        rules={
            "discount": {"kind": "amount_off", "amount": "20.00"},
            "validity": {"kind": "relative", "days": 3650},
        },
    )
    m = enroll(client, h)
    issued = client.post(
        "/api/v1/coupons/issue",
        json={"template_id": t["id"], "member_id": m["id"], "idempotency_key": "iss-0001"},
        headers=h,
    )
    assert issued.status_code == 201, issued.text
    cart = {
        "lines": [{"line_id": "1", "sku": "TS-1", "unit_price": "80.00", "quantity": 2}],
        "scene": "in_store",
    }
    lock = client.post(
        "/api/v1/coupons/locks",
        json={"member_id": m["id"], "order_ref": "POS-77", "cart": cart, "idempotency_key": "lock-0077"},
        headers=h,
    ).json()
    order = client.post("/api/v1/orders", json=order_body("POS-77", member_id=m["id"]), headers=h)
    assert order.status_code == 201, order.text
    dispatch_pending(world.db)
    assert client.get(f"/api/v1/coupons/locks/{lock['id']}", headers=h).json()["state"] == "redeemed"
    refund = client.post(
        f"/api/v1/orders/{order.json()['id']}/refunds",
        json={"refund_number": "RF-77", "reason": "退货", "full": True},
        headers=h,
    )
    assert refund.status_code == 201 and refund.json()["full"] is True, refund.text
    dispatch_pending(world.db)
    assert client.get(f"/api/v1/coupons/locks/{lock['id']}", headers=h).json()["state"] == "returned"
    assert client.get(f"/api/v1/coupons/{issued.json()['id']}", headers=h).json()["status"] == "available"


def test_coupon_benefit_kind_issues_once_per_key(world: World) -> None:
    from huiyuan.benefits import registry
    from huiyuan.coupons.models import Coupon
    from huiyuan.kit.errors import ValidationFailed
    from huiyuan.kit.scope import system_for_brand
    from tests.coupons.helpers import make_coupon_brand

    cb = make_coupon_brand(world.db, members_count=1)
    t = cb.template(stock_total=10)
    benefit = {"kind": "coupon", "template": t.code, "quantity": 2}
    actor = system_for_brand(cb.brand_id)
    for _ in range(2):
        with world.db.unit_of_work(actor.scope) as s:
            out = registry.grant(
                s,
                actor=actor,
                member_id=cb.members[0],
                benefit=benefit,
                source_type="tier_upgrade",
                source_id="gold",
                key="up-1",
            )
    assert len(out["coupons"]) == 2
    with world.db.unit_of_work(actor.scope, write=False) as s:
        assert len(s.query(Coupon).all()) == 2
    import pytest

    with pytest.raises(ValidationFailed):
        registry.validate_benefit({"kind": "coupon", "template": "X", "quantity": 0})

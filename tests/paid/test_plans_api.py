"""Configuring plan categories and levels: validation of every field and benefit, uniqueness,
updates, retirement, permissions."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from huiyuan.audit.models import AuditEntry
from tests.conftest import World
from tests.factories import make_key
from tests.paid.helpers import benefit, level_body, make_plans


def test_categories_crud(client: Any, world: World) -> None:
    h = world.brands[0].headers
    body = {"code": "young", "name": "青年会员", "customer_group": "young", "description": "18–25"}
    r = client.post("/api/v1/paid/categories", json=body, headers=h)
    assert r.status_code == 201, r.text
    cat = r.json()
    assert (cat["code"], cat["customer_group"], cat["status"]) == ("young", "young", "active")
    r = client.post("/api/v1/paid/categories", json=body, headers=h)
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "code"
    r = client.post("/api/v1/paid/categories", json={**body, "code": "bad code"}, headers=h)
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    r = client.patch(f"/api/v1/paid/categories/{cat['id']}", json={"status": "retired"}, headers=h)
    assert r.status_code == 200 and r.json()["status"] == "retired"
    assert client.get(f"/api/v1/paid/categories/{cat['id']}", headers=h).json()["status"] == "retired"
    assert [c["code"] for c in client.get("/api/v1/paid/categories", headers=h).json()] == ["young"]
    assert client.get("/api/v1/paid/categories/999999", headers=h).status_code == 404
    with world.db.unit_of_work(write=False) as s:
        actions = s.scalars(select(AuditEntry.action).where(AuditEntry.entity_type == "paid_plan_category"))
        assert sorted(actions) == ["paid.category.created", "paid.category.updated"]


def test_level_values_and_listing(client: Any, world: World) -> None:
    h = world.brands[0].headers
    plans = make_plans(client, h)
    silver = client.get(f"/api/v1/paid/levels/{plans.silver}", headers=h).json()
    assert silver["price"] == "120.00" and silver["validity"] == {"unit": "month", "count": 12}
    assert silver["benefits"] == {
        "one_time": [benefit(100)],
        "periodic": {"period": "month", "benefits": [benefit(10)]},
        "points_multiplier": "1.5000",
    }
    listed = client.get(f"/api/v1/paid/levels?category_id={plans.family}", headers=h).json()
    assert [lv["code"] for lv in listed] == ["silver", "gold"]
    assert len(client.get("/api/v1/paid/levels", headers=h).json()) == 3

    r = client.patch(
        f"/api/v1/paid/levels/{plans.silver}",
        json={"price": "129", "benefits": {"one_time": [], "points_multiplier": "1.25"}},
        headers=h,
    )
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["price"] == "129.00" and got["benefits"]["periodic"] is None
    assert got["benefits"]["points_multiplier"] == "1.2500"
    r = client.patch(f"/api/v1/paid/levels/{plans.silver}", json={"rank": 2}, headers=h)
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "rank"
    r = client.patch(f"/api/v1/paid/levels/{plans.silver}", json={"status": "retired"}, headers=h)
    assert r.json()["status"] == "retired"


def test_level_validation(client: Any, world: World) -> None:
    h = world.brands[0].headers
    plans = make_plans(client, h)

    def post(**overrides: Any) -> Any:
        body = {**level_body(plans.family, "x", rank=9), **overrides}
        return client.post("/api/v1/paid/levels", json=body, headers=h)

    r = post(
        benefits={
            "one_time": [{"kind": "nope", "amount": 1}, benefit(5)],
            "periodic": {"period": "week", "benefits": [{"kind": "test_benefit", "amount": -1}]},
        }
    )
    assert r.status_code == 422, r.text
    assert {(e["field"], e["code"]) for e in r.json()["errors"]} == {
        ("benefits.one_time.0.kind", "unknown-benefit-kind"),
        ("benefits.periodic.benefits.0", "invalid-benefit"),
    }
    cases: list[tuple[dict[str, Any], str]] = [
        ({"validity": {"unit": "month", "count": 0}}, "validity.count"),
        ({"validity": {"unit": "year", "count": 1}}, "validity.unit"),
        ({"price": "-1"}, "price"),
        ({"price": "1.234"}, "price"),
        ({"benefits": {"points_multiplier": "0.5"}}, "benefits.points_multiplier"),
        ({"benefits": {"periodic": {"period": "day", "benefits": [benefit(1)]}}}, "benefits.periodic.period"),
        ({"benefits": {"periodic": {"period": "month", "benefits": []}}}, "benefits.periodic.benefits"),
        ({"cooling_off_days": -1}, "cooling_off_days"),
        ({"category_id": 999999}, "category_id"),
    ]
    for overrides, field in cases:
        r = post(**overrides)
        assert r.status_code == 422, (overrides, r.text)
        assert field in {e["field"] for e in r.json()["errors"]}, (overrides, r.json())
    r = client.post("/api/v1/paid/levels", json=level_body(plans.family, "silver", rank=7), headers=h)
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "code"
    r = client.post("/api/v1/paid/levels", json=level_body(plans.family, "other", rank=1), headers=h)
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "rank"
    # The same code is free in another category.
    r = client.post("/api/v1/paid/levels", json=level_body(plans.drivers, "silver", rank=5), headers=h)
    assert r.status_code == 201


def test_permissions(client: Any, world: World) -> None:
    a = world.brands[0]
    plans = make_plans(client, a.headers)
    reader = {"Authorization": f"Bearer {make_key(world.db, a.id, ['paid:read'])}"}
    seller = {"Authorization": f"Bearer {make_key(world.db, a.id, ['paid:write', 'paid:read'])}"}
    assert client.get("/api/v1/paid/levels", headers=reader).status_code == 200
    body = {"code": "c2", "name": "C", "customer_group": "working"}
    assert client.post("/api/v1/paid/categories", json=body, headers=reader).status_code == 403
    assert client.post("/api/v1/paid/categories", json=body, headers=seller).status_code == 403
    r = client.patch(f"/api/v1/paid/levels/{plans.gold}", json={"price": "1"}, headers=seller)
    assert r.status_code == 403 and r.json()["code"] == "permission-denied"

"""The brand's merchant registry through the API, and the merchant names in the clearing export."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from huiyuan.audit.models import AuditEntry
from huiyuan.demo.loyalty_config import LOYALTY, configure_points
from huiyuan.demo.loyalty_config import MERCHANTS as DEMO_MERCHANTS
from huiyuan.kit.db import Database
from huiyuan.kit.scope import Scope, system_for_brand
from huiyuan.points import clearing
from huiyuan.points.merchant_models import Merchant
from huiyuan.tenancy.models import Brand, Store
from tests.conftest import World
from tests.factories import enroll, make_brand
from tests.points.test_points_api import CHECKOUT, add_type, fields_of, grant

MERCHANTS = "/api/v1/points/merchants"
PLAZA = {"code": "mall-plaza", "name": "中心广场购物中心", "contact": "王经理 021-5555 0101"}


def register(client: Any, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    r = client.post(MERCHANTS, json={**PLAZA, **fields}, headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


def spend_funded(client: Any, headers: dict[str, str], grants: dict[str, int]) -> None:
    """Grant a member points funded by each party (funder → points), then spend them all at checkout."""
    add_type(client, headers, points_per_yuan=100, max_pay_ratio="1")
    m = enroll(client, headers)
    for i, (funder, points) in enumerate(grants.items()):
        r = grant(client, headers, m["id"], points, f"g-{i:04d}", funded_by=funder)
        assert r.status_code == 201, r.text
    body = {"idempotency_key": "pos-0001", "member_id": m["id"], "point_type": "points"}
    r = client.post(f"{CHECKOUT}/reserve", json={**body, "points": sum(grants.values())}, headers=headers)
    assert r.status_code == 201, r.text
    assert client.post(f"{CHECKOUT}/pos-0001/confirm", headers=headers).status_code == 200


def audit_rows(world: World, merchant_id: int) -> list[AuditEntry]:
    with world.db.unit_of_work() as s:
        stmt = (
            select(AuditEntry)
            .where(AuditEntry.entity_type == "merchant", AuditEntry.entity_id == str(merchant_id))
            .order_by(AuditEntry.id)
        )
        rows = list(s.scalars(stmt))
        s.expunge_all()
        return rows


def test_merchants_are_registered_listed_read_and_updated(client, world: World) -> None:
    a = world.brands[0]
    created = register(client, a.headers)
    assert created["code"] == "mall-plaza" and created["name"] == "中心广场购物中心"
    assert created["status"] == "active" and created["funded_by"] == "merchant:mall-plaza"
    mixc = register(client, a.headers, code="mall-mixc", name="万象城购物中心", contact=None)
    assert mixc["contact"] is None

    got = client.get(f"{MERCHANTS}/mall-plaza", headers=a.headers)
    assert got.status_code == 200 and got.json() == created

    # Cursor pagination, oldest first.
    first = client.get(MERCHANTS, params={"limit": 1}, headers=a.headers)
    assert first.status_code == 200, first.text
    assert [m["code"] for m in first.json()["items"]] == ["mall-plaza"]
    assert first.json()["next_cursor"]
    second = client.get(
        MERCHANTS, params={"limit": 1, "cursor": first.json()["next_cursor"]}, headers=a.headers
    )
    assert [m["code"] for m in second.json()["items"]] == ["mall-mixc"]
    assert second.json()["next_cursor"] is None

    patched = client.patch(
        f"{MERCHANTS}/mall-plaza", json={"name": "中心广场（东区）", "status": "inactive"}, headers=a.headers
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["name"] == "中心广场（东区）" and patched.json()["status"] == "inactive"
    assert patched.json()["contact"] == PLAZA["contact"]  # not sent: unchanged
    cleared = client.patch(f"{MERCHANTS}/mall-plaza", json={"contact": None}, headers=a.headers)
    assert cleared.status_code == 200 and cleared.json()["contact"] is None

    active = client.get(MERCHANTS, params={"status": "active"}, headers=a.headers)
    assert [m["code"] for m in active.json()["items"]] == ["mall-mixc"]
    assert client.get(f"{MERCHANTS}/mall-plaza", headers=a.headers).json()["name"] == "中心广场（东区）"

    rows = audit_rows(world, created["id"])
    assert [r.action for r in rows] == ["merchant.created", "merchant.updated", "merchant.updated"]
    assert rows[1].changes == {
        "name": ["中心广场购物中心", "中心广场（东区）"],
        "status": ["active", "inactive"],
    }
    assert rows[2].changes == {"contact": [PLAZA["contact"], None]}
    # An update that changes nothing writes no audit row.
    same = client.patch(f"{MERCHANTS}/mall-plaza", json={"status": "inactive"}, headers=a.headers)
    assert same.status_code == 200
    assert len(audit_rows(world, created["id"])) == 3


def test_registering_again_is_idempotent_and_another_body_conflicts(client, world: World) -> None:
    a = world.brands[0]
    created = register(client, a.headers)
    again = client.post(MERCHANTS, json=PLAZA, headers=a.headers)
    assert again.status_code == 200, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == created
    assert [r.action for r in audit_rows(world, created["id"])] == ["merchant.created"]

    other = client.post(MERCHANTS, json={**PLAZA, "name": "别的商场"}, headers=a.headers)
    assert other.status_code == 409, other.text
    problem = other.json()
    assert problem["status"] == 409 and problem["type"] and problem["title"] and problem["detail"]
    assert fields_of(other) == {"code"}
    assert client.get(f"{MERCHANTS}/mall-plaza", headers=a.headers).json()["name"] == PLAZA["name"]


def test_invalid_bodies_are_problem_details(client, world: World) -> None:
    h = world.brands[0].headers
    for bad_code in ("Mall-Plaza", "-plaza", "mall plaza", "m" * 32, ""):
        r = client.post(MERCHANTS, json={**PLAZA, "code": bad_code}, headers=h)
        assert r.status_code == 422, (bad_code, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "validation-failed" and fields_of(r) == {"code"}
    missing = client.post(MERCHANTS, json={"code": "mall-plaza"}, headers=h)
    assert missing.status_code == 422 and fields_of(missing) == {"name"}
    too_long = client.post(MERCHANTS, json={**PLAZA, "name": "名" * 101}, headers=h)
    assert too_long.status_code == 422 and fields_of(too_long) == {"name"}
    bad_status = client.post(MERCHANTS, json={**PLAZA, "status": "closed"}, headers=h)
    assert bad_status.status_code == 422 and fields_of(bad_status) == {"status"}
    assert client.get(MERCHANTS, headers=h).json()["items"] == []

    register(client, h)
    empty_name = client.patch(f"{MERCHANTS}/mall-plaza", json={"name": ""}, headers=h)
    assert empty_name.status_code == 422 and fields_of(empty_name) == {"name"}
    unknown = client.patch(f"{MERCHANTS}/mall-plaza", json={"code": "x"}, headers=h)
    assert unknown.status_code == 422
    missing_one = client.get(f"{MERCHANTS}/nobody", headers=h)
    assert missing_one.status_code == 404 and missing_one.json()["code"] == "not-found"


def test_another_brand_neither_sees_nor_changes_a_merchant(client, world: World) -> None:
    a, b = world.brands
    created = register(client, a.headers)
    assert client.get(f"{MERCHANTS}/mall-plaza", headers=b.headers).status_code == 404
    assert client.get(MERCHANTS, headers=b.headers).json()["items"] == []
    r = client.patch(f"{MERCHANTS}/mall-plaza", json={"name": "别的商场"}, headers=b.headers)
    assert r.status_code == 404 and r.json()["code"] == "not-found"
    # The code is per brand: B registers its own merchant under the same code.
    own = register(client, b.headers, name="B 的商场")
    assert own["id"] != created["id"]
    assert client.get(f"{MERCHANTS}/mall-plaza", headers=a.headers).json()["name"] == PLAZA["name"]
    assert client.get(f"{MERCHANTS}/mall-plaza", headers=b.headers).json()["name"] == "B 的商场"


def test_clearing_export_names_registered_merchants(client, world: World) -> None:
    a, b = world.brands
    spend_funded(client, a.headers, {"merchant:mall-plaza": 300, "merchant:mall-ghost": 200})
    params = {"from": "2000-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z", "format": "csv"}

    before = client.get("/api/v1/points/clearing", params=params, headers=a.headers)
    assert before.status_code == 200, before.text
    assert "merchant:mall-plaza" in before.text and "中心广场购物中心" not in before.text

    register(client, a.headers)
    register(client, b.headers, name="B 的商场")  # another brand's registry names nothing here
    csv = client.get("/api/v1/points/clearing", params=params, headers=a.headers)
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    lines = csv.text.splitlines()
    plaza = [line for line in lines if line.startswith("merchant:mall-plaza,")]
    assert plaza and all(",中心广场购物中心 (mall-plaza)," in line for line in plaza)
    assert "B 的商场" not in csv.text
    # A code the registry does not know keeps showing its key as its name.
    ghost = [line for line in lines if line.startswith("merchant:mall-ghost,")]
    assert ghost and all(line.startswith("merchant:mall-ghost,merchant:mall-ghost,") for line in ghost)


def test_an_inactive_merchant_is_still_named_in_clearing(client, world: World) -> None:
    a = world.brands[0]
    spend_funded(client, a.headers, {"merchant:mall-plaza": 100})
    register(client, a.headers, status="inactive")
    params = {"from": "2000-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"}
    report = client.get("/api/v1/points/clearing", params=params, headers=a.headers)
    assert report.status_code == 200, report.text
    assert report.json()["party_names"]["merchant:mall-plaza"] == "中心广场购物中心 (mall-plaza)"


def test_the_demo_registers_the_malls_that_fund_its_bonus_points(db: Database) -> None:
    for code in ("lanxi", "yunjian"):
        brand_id = make_brand(db, code, stores=1)
        with db.unit_of_work() as s:
            store_ids = list(s.scalars(select(Store.id).where(Store.brand_id == brand_id)))
            configure_points(s, actor=system_for_brand(brand_id), code=code, store_ids=store_ids)
        funder = LOYALTY[code].bonus_funder
        merchant_code = funder.removeprefix("merchant:")
        with db.unit_of_work(Scope(brand_id=brand_id), write=False) as s:
            registered = {m.code: m.name for m in s.scalars(select(Merchant))}
            assert registered == {merchant_code: DEMO_MERCHANTS[merchant_code]}
            brand = s.get(Brand, brand_id)
            assert brand is not None
            names = clearing._party_names(s, brand, [funder])
        assert names[funder] == f"{DEMO_MERCHANTS[merchant_code]} ({merchant_code})"

"""The catalogue over HTTP: declarative validation with field errors, changes recorded as
``configured`` events, and tenancy (another brand gets 404 on every id-bearing route)."""

from __future__ import annotations

from typing import Any

from tests.benefits.helpers import PARKING, member_headers, problem
from tests.conftest import World
from tests.factories import enroll

DEFS = "/api/v1/benefits/definitions"


def fields(r: Any) -> set[str]:
    body = problem(r, 422, "validation-failed")
    return {e["field"] for e in body["errors"]}


def test_definitions_are_validated_with_field_errors(client: Any, world: World) -> None:
    h = world.brands[0].headers
    cases: list[tuple[dict[str, Any], str]] = [
        ({**PARKING, "verification": None}, "service.verification"),
        ({**PARKING, "service_type": "teleport"}, "service.service_type"),
        ({**PARKING, "kind": "magic"}, "body"),  # the message names the kinds
        ({**PARKING, "unit_cost": "-1"}, "service.unit_cost"),
        (
            {**PARKING, "limits": {"per_period": [{"period": "day", "count": 1}] * 2}},
            "service.limits.per_period",
        ),
        (
            {**PARKING, "limits": {"time_windows": [{"start": "18:00", "end": "09:00"}]}},
            "service.limits.time_windows.0",
        ),
        (
            {**PARKING, "limits": {"time_windows": [{"days": [8], "start": "09:00", "end": "18:00"}]}},
            "service.limits.time_windows.0.days.0",
        ),
        ({**PARKING, "appointment": {"slot_minutes": 30}}, "service"),
        (
            {**PARKING, "verification": "appointment", "appointment": {"slot_minutes": 7}},
            "service.appointment.slot_minutes",
        ),
        ({"code": "C", "name": "券", "kind": "coupon", "template": "T", "limits": {}}, "coupon.limits"),
        ({"code": "P", "name": "分", "kind": "points", "point_type": "pts", "amount": 0}, "points.amount"),
        (
            {"code": "X", "name": "合作", "kind": "third_party", "verification": "manual", "offer": "code"},
            "third_party.partner_id",
        ),
        ({**PARKING, "code": "bad code"}, "service.code"),
    ]
    for body, field in cases:
        assert field in fields(client.post(DEFS, json=body, headers=h)), (body, field)
    created = client.post(DEFS, json=PARKING, headers=h)
    assert created.status_code == 201, created.text
    problem(client.post(DEFS, json=PARKING, headers=h), 409, "benefit-code-taken")
    d = created.json()
    assert (
        d["limits"]["duration_minutes"] == 120 and d["verification"] == "scan" and d["unit_cost"] == "10.00"
    )
    bad_limits = client.patch(f"{DEFS}/{d['id']}", json={"limits": {"uses_per_entitlement": 0}}, headers=h)
    assert "limits.uses_per_entitlement" in fields(bad_limits)
    problem(
        client.patch(f"{DEFS}/{d['id']}", json={"appointment": {"slot_minutes": 30}}, headers=h),
        422,
        "validation-failed",
    )


def test_changes_are_recorded_and_brands_are_apart(client: Any, world: World) -> None:
    a, b = world.brands
    d = client.post(DEFS, json=PARKING, headers=a.headers).json()
    changed = client.patch(
        f"{DEFS}/{d['id']}", json={"unit_cost": "12.00", "status": "paused"}, headers=a.headers
    )
    assert changed.status_code == 200 and changed.json()["unit_cost"] == "12.00"
    events = client.get(f"{DEFS}/{d['id']}/events", headers=a.headers).json()
    assert [e["kind"] for e in events] == ["configured", "configured"]
    assert events[1]["detail"]["changed"] == {"unit_cost": "12.00", "status": "paused"}
    listed = client.get(DEFS, params={"kind": "service"}, headers=a.headers).json()["items"]
    assert [x["code"] for x in listed] == ["PARK-2H"]
    m = enroll(client, a.headers, name="赵六")["id"]
    grant = {"benefit": "PARK-2H", "idempotency_key": "grant-1"}
    problem(
        client.post(f"/api/v1/members/{m}/benefits", json=grant, headers=a.headers),
        409,
        "benefit-not-grantable",
    )
    client.patch(f"{DEFS}/{d['id']}", json={"status": "active"}, headers=a.headers)
    granted = client.post(f"/api/v1/members/{m}/benefits", json=grant, headers=a.headers)
    assert granted.status_code == 201
    replay = client.post(f"/api/v1/members/{m}/benefits", json=grant, headers=a.headers)
    assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"
    mb = granted.json()["entitlement"]["id"]

    # The other brand: the same 404 as for a missing row, on every id-bearing route.
    hb = b.headers
    for r in (
        client.get(f"{DEFS}/{d['id']}", headers=hb),
        client.patch(f"{DEFS}/{d['id']}", json={"name": "x"}, headers=hb),
        client.get(f"{DEFS}/{d['id']}/events", headers=hb),
        client.get(f"/api/v1/members/{m}/benefits", headers=hb),
        client.post(
            f"/api/v1/members/{m}/benefits", json={**grant, "idempotency_key": "grant-b"}, headers=hb
        ),
        client.get(f"/api/v1/benefits/entitlements/{mb}", headers=hb),
        client.get(f"/api/v1/benefits/entitlements/{mb}/events", headers=hb),
        client.post(f"/api/v1/benefits/entitlements/{mb}/void", json={"reason": "x"}, headers=hb),
        client.post(f"/api/v1/benefits/entitlements/{mb}/verify", json={"note": "x"}, headers=hb),
        client.post(
            f"/api/v1/benefits/entitlements/{mb}/appointments",
            json={"starts_at": "2026-03-03T10:00:00+08:00", "idempotency_key": "book-b"},
            headers=hb,
        ),
        client.get(f"/api/v1/members/{m}/benefit-cards", headers=hb),
    ):
        problem(r, 404, "not-found")
    assert client.get(DEFS, headers=hb).json()["items"] == []
    # A member of brand B cannot reach brand A's entitlement either.
    other = enroll(client, hb, name="钱七")["id"]
    me_b = member_headers(client, world, other, brand=1)
    problem(client.get(f"/api/v1/me/benefits/{mb}", headers=me_b), 404, "not-found")
    problem(client.post(f"/api/v1/me/benefits/{mb}/scan-code", headers=me_b), 404, "not-found")
    voided = client.post(
        f"/api/v1/benefits/entitlements/{mb}/void", json={"reason": "test"}, headers=a.headers
    )
    assert voided.status_code == 200 and voided.json()["status"] == "voided"

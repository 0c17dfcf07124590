"""Verification: scan codes end to end over HTTP, the desk's manual and identity checks, and usage
limits and time windows on the frozen clock."""

from __future__ import annotations

from typing import Any

import pytest

from huiyuan.benefits import verification
from huiyuan.benefits.verification import OutsideTimeWindow, PeriodLimitReached, WrongMethod
from huiyuan.kit.clock import FrozenClock
from huiyuan.kit.errors import ValidationFailed
from tests.benefits.helpers import PARKING, BenefitBrand, member_headers, problem
from tests.conftest import World
from tests.factories import enroll, make_key

DEFS = "/api/v1/benefits/definitions"


def _use(bb: BenefitBrand, mb_id: int, member: int) -> Any:
    code = bb.run(verification.issue_scan_code, member_id=member, member_benefit_id=mb_id)
    return bb.run(verification.verify_scan, token=code.token, store_id=bb.store_id)


def test_scan_code_flow_over_http(client: Any, world: World, clock: FrozenClock) -> None:
    a, b = world.brands
    assert client.post(DEFS, json=PARKING, headers=a.headers).status_code == 201
    m = enroll(client, a.headers, name="张三")["id"]
    r = client.post(
        f"/api/v1/members/{m}/benefits",
        json={"benefit": "PARK-2H", "quantity": 2, "idempotency_key": "grant-1"},
        headers=a.headers,
    )
    assert r.status_code == 201, r.text
    mb = r.json()["entitlement"]
    assert (mb["remaining"], mb["available"], mb["verification"]) == (2, 2, "scan")
    me = member_headers(client, world, m)
    code = client.post(f"/api/v1/me/benefits/{mb['id']}/scan-code", headers=me)
    assert code.status_code == 200, code.text
    token = code.json()["token"]
    png = client.post(f"/api/v1/me/benefits/{mb['id']}/scan-code?format=png", headers=me)
    assert png.headers["content-type"] == "image/png"
    # Another brand's desk cannot use (or learn anything about) the code.
    problem(
        client.post("/api/v1/benefits/verify/scan", json={"code": token}, headers=b.headers),
        422,
        "benefit-code-invalid",
    )
    ok = client.post("/api/v1/benefits/verify/scan", json={"code": token, "minutes": 90}, headers=a.headers)
    assert ok.status_code == 200, ok.text
    assert ok.json()["entitlement"]["remaining"] == 1 and ok.json()["usage"]["minutes"] == 90
    assert ok.json()["usage"]["unit_cost"] == "10.00"
    problem(
        client.post("/api/v1/benefits/verify/scan", json={"code": token}, headers=a.headers),
        409,
        "benefit-code-used",
    )
    stale = client.post(f"/api/v1/me/benefits/{mb['id']}/scan-code", headers=me).json()["token"]
    clock.advance(seconds=181)
    problem(
        client.post("/api/v1/benefits/verify/scan", json={"code": stale}, headers=a.headers),
        422,
        "benefit-code-expired",
    )
    problem(
        client.post("/api/v1/benefits/verify/scan", json={"code": "x" * 20}, headers=a.headers),
        422,
        "benefit-code-invalid",
    )
    fresh = client.post(f"/api/v1/me/benefits/{mb['id']}/scan-code", headers=me).json()["token"]
    too_long = client.post(
        "/api/v1/benefits/verify/scan", json={"code": fresh, "minutes": 121}, headers=a.headers
    )
    problem(too_long, 422, "validation-failed")
    assert (
        client.post("/api/v1/benefits/verify/scan", json={"code": fresh}, headers=a.headers).status_code
        == 200
    )
    got = client.get(f"/api/v1/benefits/entitlements/{mb['id']}", headers=a.headers).json()
    assert (got["remaining"], got["used"], got["status"]) == (0, 2, "used_up")
    problem(client.post(f"/api/v1/me/benefits/{mb['id']}/scan-code", headers=me), 409, "benefit-unavailable")
    events = client.get(f"/api/v1/benefits/entitlements/{mb['id']}/events", headers=a.headers).json()
    assert [e["kind"] for e in events] == ["issued", "verified", "verified"]
    usages = client.get("/api/v1/benefits/usages", params={"member_id": m}, headers=a.headers).json()
    assert len(usages["items"]) == 2
    # Staff without benefits:verify cannot verify.
    reader = {"Authorization": f"Bearer {make_key(world.db, a.id, ['benefits:read'])}"}
    problem(
        client.post("/api/v1/benefits/verify/scan", json={"code": fresh}, headers=reader),
        403,
        "permission-denied",
    )


def test_period_limits_and_time_windows(bb: BenefitBrand, clock: FrozenClock) -> None:
    d = bb.define(
        limits={
            "uses_per_entitlement": 10,
            "per_period": [{"period": "day", "count": 1}, {"period": "week", "count": 2}],
            "time_windows": [{"days": [1, 2, 3, 4, 5], "start": "09:00", "end": "18:00"}],
        }
    )
    m = bb.members[0]
    mb = bb.grant(d.code, m, "w1").entitlement
    assert mb is not None
    _use(bb, mb.id, m)  # Monday 10:00 local
    with pytest.raises(PeriodLimitReached):
        _use(bb, mb.id, m)
    clock.advance(hours=14)  # Tuesday 00:00 local: a new day, but outside the window
    with pytest.raises(OutsideTimeWindow):
        _use(bb, mb.id, m)
    clock.advance(hours=9)  # Tuesday 09:00: the window opens (start included)
    _use(bb, mb.id, m)
    clock.advance(days=1)  # Wednesday: a new day, but two uses this week already
    with pytest.raises(PeriodLimitReached) as exc:
        _use(bb, mb.id, m)
    assert exc.value.extra["period"] == "week"
    clock.advance(days=3)  # Saturday: a new week is not here yet, and weekends are closed anyway
    with pytest.raises(OutsideTimeWindow):
        _use(bb, mb.id, m)
    clock.advance(days=2, hours=8, minutes=59)  # Monday 17:59 local, next week
    _use(bb, mb.id, m)
    # A failed use spent nothing: three uses, three codes used, the rest untouched.
    after = bb.entitlement(mb.id)
    assert (after.remaining, after.used) == (7, 3)
    assert bb.event_kinds(mb.id).count("verified") == 3


def test_manual_and_identity_checks(bb: BenefitBrand) -> None:
    manual = bb.define(code="LOUNGE", verification="manual", service_type="lounge")
    identity = bb.define(
        {"code": "STUDENT", "name": "学生专享", "kind": "custom", "verification": "identity_check"}
    )
    scan = bb.define()
    m = bb.members[0]
    lounge = bb.grant(manual.code, m, "l").entitlement
    student = bb.grant(identity.code, m, "s").entitlement
    parking = bb.grant(scan.code, m, "p").entitlement
    assert lounge and student and parking
    with pytest.raises(ValidationFailed):
        bb.run(verification.verify_at_desk, member_benefit_id=lounge.id)
    used = bb.run(
        verification.verify_at_desk, member_benefit_id=lounge.id, note="2 guests", store_id=bb.store_id
    )
    assert (
        used.usage.method == "manual" and used.usage.note == "2 guests" and used.usage.store_id == bb.store_id
    )
    with pytest.raises(ValidationFailed):
        bb.run(verification.verify_at_desk, member_benefit_id=student.id, note="looked")
    checked = bb.run(
        verification.verify_at_desk, member_benefit_id=student.id, id_reference="310101200001011234"
    )
    assert checked.usage.reference == "*" * 14 + "1234"
    with pytest.raises(WrongMethod):
        bb.run(verification.verify_at_desk, member_benefit_id=parking.id, note="no")
    with pytest.raises(WrongMethod):
        bb.run(verification.issue_scan_code, member_id=m, member_benefit_id=lounge.id)

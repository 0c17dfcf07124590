"""Configuring the program and levels: what is refused and why."""

from __future__ import annotations

from sqlalchemy import func, select

from huiyuan.audit.models import AuditEntry
from huiyuan.kit.clock import FrozenClock
from tests.conftest import World
from tests.factories import make_key
from tests.tiers.helpers import LEVELS, PROGRAM, set_up_ladder


def _codes(r) -> list[str]:  # type: ignore[no-untyped-def]
    return [e["code"] for e in r.json().get("errors", [])]


def test_program_and_levels_round_trip(clock: FrozenClock, client, world: World) -> None:
    h = world.brands[0].headers
    assert client.get("/api/v1/tiers/program", headers=h).status_code == 404
    ids = set_up_ladder(client, h)
    got = client.get("/api/v1/tiers/program", headers=h).json()
    assert got["window"] == PROGRAM["window"] and [lv["code"] for lv in got["levels"]] == list(ids)
    gold = client.get(f"/api/v1/tiers/levels/{ids['gold']}", headers=h).json()
    assert gold["upgrade"] == {
        "any": [{"basis": "growth", "min": "5000"}, {"basis": "single_order", "min": "3000.00"}]
    }
    assert gold["points_multiplier"] == "1.500"
    r = client.patch(
        f"/api/v1/tiers/levels/{ids['gold']}", json={"points_multiplier": "1.8", "retention": None}, headers=h
    )
    assert r.status_code == 200 and r.json()["retention"] is None and r.json()["points_multiplier"] == "1.800"
    r = client.put("/api/v1/tiers/program", json={**PROGRAM, "grace_days": 15}, headers=h)
    assert r.status_code == 200 and r.json()["grace_days"] == 15
    with world.db.unit_of_work(write=False) as s:
        actions = list(s.scalars(select(AuditEntry.action).where(AuditEntry.entity_type.like("tier_%"))))
    assert actions.count("tier_level.created") == 4 and "tier_level.updated" in actions
    assert actions.count("tier_program.configured") == 2


def test_level_rules_are_enforced(clock: FrozenClock, client, world: World) -> None:
    h = world.brands[0].headers
    silver = LEVELS[1]
    r = client.post("/api/v1/tiers/levels", json=LEVELS[0], headers=h)
    assert r.status_code == 422 and r.json()["code"] == "no-tier-program"
    assert client.put("/api/v1/tiers/program", json=PROGRAM, headers=h).status_code == 200
    r = client.post("/api/v1/tiers/levels", json=silver, headers=h)
    assert r.status_code == 422 and _codes(r) == ["no-base-level"]
    r = client.post(
        "/api/v1/tiers/levels", json={**LEVELS[0], "upgrade": {"basis": "growth", "min": 1}}, headers=h
    )
    assert r.status_code == 422 and _codes(r) == ["base-level"]
    assert client.post("/api/v1/tiers/levels", json=LEVELS[0], headers=h).status_code == 201
    r = client.post("/api/v1/tiers/levels", json={**LEVELS[0], "code": "base2"}, headers=h)
    assert r.status_code == 422 and _codes(r) == ["rank-taken"]
    r = client.post("/api/v1/tiers/levels", json={**silver, "code": "base"}, headers=h)
    assert r.status_code == 409 and r.json()["existing_level_id"]
    r = client.post("/api/v1/tiers/levels", json={**silver, "downgrade_to": "gold"}, headers=h)
    assert r.status_code == 422 and _codes(r) == ["invalid-downgrade-target"]
    # Malformed conditions, windows and benefits are field errors.
    for bad in (
        {"upgrade": {"basis": "likes", "min": 1}},
        {"upgrade": {"basis": "growth", "min": "1.5"}},
        {"upgrade": {"all": []}},
        {"upgrade": {"basis": "growth", "min": -1}},
        {"validity": {"kind": "fixed_date", "month": 2, "day": 30}},
        {"points_multiplier": "0.5"},
    ):
        r = client.post("/api/v1/tiers/levels", json={**silver, **bad}, headers=h)
        assert r.status_code == 422, bad
    r = client.post("/api/v1/tiers/levels", json={**silver, "upgrade_gifts": [{"kind": "yacht"}]}, headers=h)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "upgrade_gifts.0.kind"
    r = client.post(
        "/api/v1/tiers/levels", json={**silver, "upgrade_gifts": [{"kind": "test_gift"}]}, headers=h
    )
    assert r.status_code == 422 and r.json()["errors"][0]["code"] == "invalid-benefit"
    r = client.put("/api/v1/tiers/program", json={**PROGRAM, "window": {"kind": "rolling_months"}}, headers=h)
    assert r.status_code == 422
    created = client.post("/api/v1/tiers/levels", json=silver, headers=h).json()
    base_id = client.get("/api/v1/tiers/levels", headers=h).json()[0]["id"]
    r = client.patch(f"/api/v1/tiers/levels/{base_id}", json={"rank": 3}, headers=h)
    assert r.status_code == 422 and _codes(r) == ["base-level"]
    r = client.patch(f"/api/v1/tiers/levels/{created['id']}", json={"rank": 0}, headers=h)
    assert r.status_code == 422
    assert client.patch("/api/v1/tiers/levels/999999", json={"rank": 4}, headers=h).status_code == 404


def test_permissions(clock: FrozenClock, client, world: World) -> None:
    a = world.brands[0]
    set_up_ladder(client, a.headers)
    reader = {"Authorization": f"Bearer {make_key(world.db, a.id, ['tiers:read'], name='reader')}"}
    assert client.get("/api/v1/tiers/levels", headers=reader).status_code == 200
    assert client.post("/api/v1/tiers/levels", json=LEVELS[1], headers=reader).status_code == 403
    assert client.put("/api/v1/tiers/program", json=PROGRAM, headers=reader).status_code == 403
    with world.db.unit_of_work(write=False) as s:
        assert (
            s.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.actor_name == "reader"))
            == 0
        )

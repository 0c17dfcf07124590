"""Upgrades, ends of validity, grace periods, settlement dates, overrides and reactivation, with
time moved by a frozen clock."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from huiyuan.audit.models import AuditEntry
from huiyuan.kit.clock import FrozenClock
from huiyuan.outbox.models import OutboxEvent
from huiyuan.tiers import reads
from tests.conftest import World
from tests.tiers.helpers import (
    GRANTS,
    buy,
    dispatch,
    earn_growth,
    enroll,
    evaluate,
    level_of,
    reasons,
    set_up_ladder,
    utc,
)


def test_upgrade_on_growth_through_the_points_event(clock: FrozenClock, client, world: World) -> None:
    a = world.brands[0]
    set_up_ladder(client, a.headers)
    m = enroll(client, a.headers)
    earn_growth(world.db, a.id, m, 600, "g-1")
    dispatch(world.db)
    assert level_of(client, a.headers, m)["level"]["code"] == "base"
    earn_growth(world.db, a.id, m, 400, "g-2")
    dispatch(world.db)
    got = level_of(client, a.headers, m)
    assert got["level"]["code"] == "silver" and got["basis"]["growth"] == 1000
    assert got["valid_until"] == "2027-03-01T02:00:00Z" and got["review_at"] == got["valid_until"]
    assert got["next_level"]["level"]["code"] == "gold" and got["next_level"]["met"] is False
    assert got["next_level"]["condition"]["any"][0] == {
        "basis": "growth",
        "min": "5000",
        "value": 1000,
        "met": False,
    }
    assert reasons(client, a.headers, m) == [("initial", None, "base"), ("upgrade", "base", "silver")]
    with world.db.unit_of_work(write=False) as s:
        changed = [
            e.payload
            for e in s.scalars(
                select(OutboxEvent).where(OutboxEvent.type == "tier.changed").order_by(OutboxEvent.id)
            )
        ]
        audited = list(s.scalars(select(AuditEntry.action).where(AuditEntry.entity_id == str(m))))
        current = reads.current_tier(s, m)
    assert [(p["reason"], p["to_level"]) for p in changed] == [("initial", "base"), ("upgrade", "silver")]
    assert "tier.upgrade" in audited
    assert current is not None and current.code == "silver" and str(current.points_multiplier) == "1.200"


def test_upgrade_on_spend_skips_levels_and_grants_gifts_once(
    clock: FrozenClock, client, world: World
) -> None:
    a = world.brands[0]
    ids = set_up_ladder(client, a.headers)
    m = enroll(client, a.headers)
    buy(client, a.headers, m, "3500.00", "O-1")
    dispatch(world.db)
    assert level_of(client, a.headers, m)["level"]["code"] == "gold"  # silver skipped
    assert [(g[0], g[2]["name"]) for g in GRANTS] == [(m, "gold welcome")]
    # Evaluating again (the job, a retried event) changes and grants nothing more.
    evaluate(world.db, a.id, m)
    evaluate(world.db, a.id, m)
    assert len(GRANTS) == 1
    change_id = client.get(f"/api/v1/members/{m}/tier/history", headers=a.headers).json()["items"][0]["id"]
    assert GRANTS[0][1] == f"tier:{m}:{change_id}:0"

    buy(client, a.headers, m, "17000.00", "O-2")
    dispatch(world.db)
    assert level_of(client, a.headers, m)["level"]["code"] == "platinum"
    assert [g[2]["name"] for g in GRANTS] == ["gold welcome", "platinum box", "lounge"]
    assert {g[1].rsplit(":", 1)[1] for g in GRANTS[1:]} == {"0", "1"}
    assert ids["platinum"] == level_of(client, a.headers, m)["level"]["id"]


def test_refunds_count_against_spend(clock: FrozenClock, client, world: World) -> None:
    a = world.brands[0]
    set_up_ladder(client, a.headers)
    m = enroll(client, a.headers)
    order = buy(client, a.headers, m, "3500.00", "O-1")
    r = client.post(
        f"/api/v1/orders/{order['id']}/refunds",
        json={"refund_number": "R-1", "full": True},
        headers=a.headers,
    )
    assert r.status_code == 201
    dispatch(world.db)
    got = level_of(client, a.headers, m)
    assert got["level"]["code"] == "base" and got["basis"]["spend"] == "0.00"


def test_end_of_validity_with_retention_met_keeps_the_level(clock: FrozenClock, client, world: World) -> None:
    a = world.brands[0]
    set_up_ladder(client, a.headers)
    m = enroll(client, a.headers)
    earn_growth(world.db, a.id, m, 1000, "g-1")
    dispatch(world.db)
    clock.advance(days=200)
    earn_growth(world.db, a.id, m, 500, "g-2")  # retention: 500 in the 12 months before the end
    dispatch(world.db)
    clock.advance(days=166)  # past 2027-03-01 02:00Z
    evaluate(world.db, a.id, m)
    got = level_of(client, a.headers, m)
    assert got["level"]["code"] == "silver" and got["valid_until"] == "2028-03-01T02:00:00Z"
    assert reasons(client, a.headers, m)[-1] == ("retain", "silver", "silver")
    evaluate(world.db, a.id, m)
    assert reasons(client, a.headers, m)[-1] == ("retain", "silver", "silver")
    assert len(reasons(client, a.headers, m)) == 3


def test_retention_not_met_drops_one_level_or_to_the_set_level(
    clock: FrozenClock, client, world: World
) -> None:
    a = world.brands[0]
    set_up_ladder(client, a.headers)
    gold, plat = enroll(client, a.headers), enroll(client, a.headers)
    # Bought just before "now": they count for the upgrade, not for the next year's retention.
    buy(client, a.headers, gold, "3500.00", "O-1", paid_at=clock.now() - timedelta(hours=1))
    buy(client, a.headers, plat, "21000.00", "O-2", paid_at=clock.now() - timedelta(hours=1))
    dispatch(world.db)
    assert level_of(client, a.headers, plat)["level"]["code"] == "platinum"
    clock.advance(days=365, seconds=1)
    for m in (gold, plat):
        evaluate(world.db, a.id, m)
    assert reasons(client, a.headers, gold)[-1] == ("downgrade", "gold", "silver")  # one level down
    assert reasons(client, a.headers, plat)[-1] == ("downgrade", "platinum", "base")  # its set level
    got = level_of(client, a.headers, gold)
    assert got["lapsed"] is True and got["valid_until"] == "2028-03-01T02:00:00Z"
    history = client.get(f"/api/v1/members/{gold}/tier/history", headers=a.headers).json()["items"]
    assert (
        history[0]["basis"]["spend"] == "0.00"
        and history[0]["basis"]["window"]["from"] == "2026-03-01T02:00:00+00:00"
    )


def test_grace_period_delays_the_downgrade_and_lets_the_member_catch_up(
    clock: FrozenClock, client, world: World
) -> None:
    a = world.brands[0]
    set_up_ladder(client, a.headers, program={"grace_days": 30})
    late, lost = enroll(client, a.headers), enroll(client, a.headers)
    for n, m in enumerate((late, lost)):
        buy(client, a.headers, m, "3500.00", f"O-{n}", paid_at=clock.now() - timedelta(hours=1))
    dispatch(world.db)
    assert level_of(client, a.headers, lost)["review_at"] == "2027-03-31T02:00:00Z"
    clock.advance(days=366)  # validity over, grace running
    for m in (late, lost):
        evaluate(world.db, a.id, m)
    assert level_of(client, a.headers, lost)["level"]["code"] == "gold"
    buy(client, a.headers, late, "2000.00", "O-late")  # meets retention within the grace period
    dispatch(world.db)
    clock.advance(days=30)
    for m in (late, lost):
        evaluate(world.db, a.id, m)
    assert reasons(client, a.headers, late)[-1] == ("retain", "gold", "gold")
    assert level_of(client, a.headers, late)["valid_until"] == "2028-03-01T02:00:00Z"
    assert reasons(client, a.headers, lost)[-1] == ("downgrade", "gold", "silver")


def test_fixed_date_settlement_waits_for_the_settlement_day(clock: FrozenClock, client, world: World) -> None:
    a = world.brands[0]
    set_up_ladder(
        client,
        a.headers,
        program={"settlement": {"mode": "fixed_date", "month": 1, "day": 1}},
        gold={"validity": {"kind": "months", "months": 6}},
    )
    m = enroll(client, a.headers)
    # Counts for the upgrade; outside the year before the settlement day.
    buy(client, a.headers, m, "3500.00", "O-1", paid_at=utc(2025, 12, 15))
    dispatch(world.db)
    got = level_of(client, a.headers, m)
    # Valid to 2026-09-01; settled on 2027-01-01 00:00 in Shanghai.
    assert got["valid_until"] == "2026-09-01T02:00:00Z" and got["review_at"] == "2026-12-31T16:00:00Z"
    clock.advance(days=214)
    evaluate(world.db, a.id, m)
    assert level_of(client, a.headers, m)["level"]["code"] == "gold"
    clock._at = utc(2026, 12, 31, 16, 0)
    evaluate(world.db, a.id, m)
    assert reasons(client, a.headers, m)[-1] == ("downgrade", "gold", "silver")


def test_fixed_date_and_anniversary_validity(clock: FrozenClock, client, world: World) -> None:
    a = world.brands[0]
    clock._at = utc(2025, 6, 15, 1, 0)  # 09:00 in Shanghai
    m = enroll(client, a.headers)
    clock._at = utc(2026, 3, 1, 2, 0)
    set_up_ladder(
        client,
        a.headers,
        silver={"validity": {"kind": "anniversary"}},
        gold={"validity": {"kind": "fixed_date", "month": 12, "day": 31}},
    )
    earn_growth(world.db, a.id, m, 1000, "g-1")
    dispatch(world.db)
    assert level_of(client, a.headers, m)["valid_until"] == "2026-06-14T16:00:00Z"  # 06-15 local midnight
    buy(client, a.headers, m, "3000.00", "O-1")
    dispatch(world.db)
    got = level_of(client, a.headers, m)
    assert got["level"]["code"] == "gold" and got["valid_until"] == "2026-12-31T16:00:00Z"  # through 12-31


def test_override_is_a_floor_until_it_ends(clock: FrozenClock, client, world: World) -> None:
    a = world.brands[0]
    set_up_ladder(client, a.headers)
    m = enroll(client, a.headers)
    until = (clock.now() + timedelta(days=400)).isoformat()
    r = client.post(
        f"/api/v1/members/{m}/tier/override",
        json={"level_code": "gold", "reason": "flagship store opening", "until": until},
        headers=a.headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["level"]["code"] == "gold" and r.json()["override"]["reason"] == "flagship store opening"
    assert GRANTS == []  # an override is not an upgrade
    # Automatic evaluation may go above the floor …
    buy(client, a.headers, m, "21000.00", "O-1", paid_at=clock.now() - timedelta(hours=1))
    dispatch(world.db)
    assert level_of(client, a.headers, m)["level"]["code"] == "platinum"
    # … but platinum's end (drop to base) stops at the floor while the override lasts.
    clock.advance(days=365, seconds=1)
    evaluate(world.db, a.id, m)
    got = level_of(client, a.headers, m)
    assert got["level"]["code"] == "gold" and reasons(client, a.headers, m)[-1] == (
        "downgrade",
        "platinum",
        "gold",
    )
    # After the override ends, gold's own rules apply: no spend, so one level down.
    clock.advance(days=36)
    evaluate(world.db, a.id, m)
    got = level_of(client, a.headers, m)
    assert got["level"]["code"] == "silver" and got["override"] is None

    r = client.post(
        f"/api/v1/members/{m}/tier/override",
        json={"level_code": "gold", "reason": "x", "until": "2020-01-01T00:00:00Z"},
        headers=a.headers,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "until"
    r = client.post(
        f"/api/v1/members/{m}/tier/override", json={"level_code": "nope", "reason": "x"}, headers=a.headers
    )
    assert r.status_code == 422 and r.json()["errors"][0]["code"] == "unknown-level"


def test_override_without_end_until_lifted(clock: FrozenClock, client, world: World) -> None:
    a = world.brands[0]
    set_up_ladder(client, a.headers)
    m = enroll(client, a.headers)
    r = client.post(
        f"/api/v1/members/{m}/tier/override",
        json={"level_code": "silver", "reason": "staff"},
        headers=a.headers,
    )
    assert r.json()["valid_until"] is None
    clock.advance(days=800)
    evaluate(world.db, a.id, m)
    assert level_of(client, a.headers, m)["level"]["code"] == "silver"
    assert client.delete(f"/api/v1/members/{m}/tier/override", headers=a.headers).status_code == 204
    assert client.delete(f"/api/v1/members/{m}/tier/override", headers=a.headers).status_code == 404
    evaluate(world.db, a.id, m)
    assert reasons(client, a.headers, m)[-1] == ("downgrade", "silver", "base")


def test_a_dropped_member_who_buys_again_is_reactivated_at_once(
    clock: FrozenClock, client, world: World
) -> None:
    a = world.brands[0]
    set_up_ladder(client, a.headers)
    m = enroll(client, a.headers)
    buy(client, a.headers, m, "3500.00", "O-1", paid_at=clock.now() - timedelta(hours=1))
    dispatch(world.db)
    clock.advance(days=400)
    evaluate(world.db, a.id, m)
    assert level_of(client, a.headers, m)["lapsed"] is True
    buy(client, a.headers, m, "3200.00", "O-2")
    dispatch(world.db)
    got = level_of(client, a.headers, m)
    assert got["level"]["code"] == "gold" and got["lapsed"] is False
    assert reasons(client, a.headers, m)[-1] == ("reactivation", "silver", "gold")
    assert len(GRANTS) == 2  # the welcome gift of each time gold was reached


def test_rfm_score_basis(clock: FrozenClock, client, world: World) -> None:
    a = world.brands[0]
    set_up_ladder(client, a.headers, silver={"upgrade": {"basis": "rfm_score", "min": "4.5"}})
    m = enroll(client, a.headers)
    r = client.put(f"/api/v1/members/{m}/tier/rfm-score", json={"rfm_score": "4.2"}, headers=a.headers)
    assert r.status_code == 200 and r.json()["level"]["code"] == "base"
    r = client.put(f"/api/v1/members/{m}/tier/rfm-score", json={"rfm_score": "4.5"}, headers=a.headers)
    assert r.json()["level"]["code"] == "silver" and r.json()["rfm_score"] == "4.500"


def test_calendar_year_window(clock: FrozenClock, client, world: World) -> None:
    a = world.brands[0]
    set_up_ladder(client, a.headers, program={"window": {"kind": "calendar_year"}})
    m = enroll(client, a.headers)
    # 2025-12-31 23:00 in Shanghai belongs to last year; 2026-01-01 00:30 to this one.
    buy(client, a.headers, m, "1500.00", "O-1", paid_at=utc(2025, 12, 31, 15, 0))
    buy(client, a.headers, m, "1500.00", "O-2", paid_at=utc(2025, 12, 31, 16, 30))
    dispatch(world.db)
    got = level_of(client, a.headers, m)
    assert (
        got["basis"]["spend"] == "1500.00" and got["basis"]["window"]["from"] == "2025-12-31T16:00:00+00:00"
    )

"""A level's ongoing ``benefits`` are granted when a member enters the level, once per change."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from huiyuan.benefits.models import MemberBenefit
from huiyuan.kit.clock import FrozenClock
from huiyuan.kit.scope import system_for_brand
from huiyuan.outbox.models import OutboxEvent
from huiyuan.tiers.handlers import grant_level_benefits
from tests.benefits.helpers import PARKING
from tests.conftest import World
from tests.tiers.helpers import dispatch, earn_growth, enroll, evaluate, register_test_gift, set_up_ladder


def _held(world: World, member_id: int) -> list[tuple[str, str, int | None]]:
    with world.db.unit_of_work(system_for_brand(world.brands[0].id).scope, write=False) as s:
        rows = s.scalars(
            select(MemberBenefit).where(MemberBenefit.member_id == member_id).order_by(MemberBenefit.id)
        )
        return [(mb.source_type, mb.source_id, mb.remaining) for mb in rows]


def test_entering_a_level_grants_its_benefits_once(client: Any, world: World, clock: FrozenClock) -> None:
    register_test_gift()
    h = world.brands[0].headers
    lounge = {
        **PARKING,
        "code": "LOUNGE",
        "name": "贵宾厅",
        "service_type": "lounge",
        "verification": "manual",
    }
    assert client.post("/api/v1/benefits/definitions", json=lounge, headers=h).status_code == 201
    ids = set_up_ladder(
        client,
        h,
        silver={"benefits": [{"kind": "benefit", "benefit": "LOUNGE", "quantity": 2, "valid_days": 365}]},
    )
    bad = client.patch(
        f"/api/v1/tiers/levels/{ids['gold']}",
        json={"benefits": [{"kind": "benefit", "quantity": 1}]},
        headers=h,
    )
    assert bad.status_code == 422, bad.text
    m = enroll(client, h, name="李四")
    earn_growth(world.db, world.brands[0].id, m, 1200, "g-1")
    dispatch(world.db)  # points.earned → upgrade to silver → tier.changed → the lounge entitlement
    dispatch(world.db)
    assert _held(world, m) == [("tier", str(ids["silver"]), 2)]
    evaluate(world.db, world.brands[0].id, m)  # nothing changes: nothing more is granted
    dispatch(world.db)
    # The same event handled again (a retry after a crash) grants nothing twice.
    with world.db.unit_of_work(system_for_brand(world.brands[0].id).scope) as s:
        event = s.scalars(
            select(OutboxEvent).where(OutboxEvent.type == "tier.changed").order_by(OutboxEvent.id.desc())
        ).first()
        assert event is not None and event.payload["to_level"] == "silver"
        grant_level_benefits(s, event)
    assert _held(world, m) == [("tier", str(ids["silver"]), 2)]

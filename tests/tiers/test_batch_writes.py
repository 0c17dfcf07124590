"""A batch evaluation (``service.evaluate_members``) writes its new states and changes together and
only then the part of each change that needs its id (the state's last change, the audit row, the
``tier.changed`` event, the upgrade gifts' keys). What it leaves behind is what evaluating each
member alone leaves behind: the same scenario as ``test_batch_evaluation`` is played in two brands,
one evaluated member by member, the other as one batch, and every row the evaluation writes is
compared, with change ids replaced by their place in the member's history."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, select

from huiyuan.audit.models import AuditEntry
from huiyuan.kit.clock import FrozenClock
from huiyuan.kit.scope import system_for_brand
from huiyuan.outbox.models import OutboxEvent
from huiyuan.tiers import service
from huiyuan.tiers.models import MemberTier, TierChange
from tests.conftest import World
from tests.tiers.helpers import GRANTS, enroll, set_up_ladder
from tests.tiers.test_batch_evaluation import _scenario


def _written(world: World, n: int, members: list[int], since: dict[str, int]) -> list[dict[str, Any]]:
    """Per member (in the given order): the state, the changes, and the audit rows and events
    written after ``since``, with change ids as indexes into the member's changes."""
    brand = world.brands[n]
    with world.db.unit_of_work(system_for_brand(brand.id).scope, write=False) as s:
        out = []
        for m in members:
            changes = list(
                s.scalars(select(TierChange).where(TierChange.member_id == m).order_by(TierChange.id))
            )
            index = {c.id: i for i, c in enumerate(changes)}
            state = s.scalars(select(MemberTier).where(MemberTier.member_id == m)).one_or_none()
            events = s.scalars(
                select(OutboxEvent)
                .where(
                    OutboxEvent.type == "tier.changed",
                    OutboxEvent.aggregate_id == str(m),
                    OutboxEvent.id > since["event"],
                )
                .order_by(OutboxEvent.id)
            )
            audits = s.scalars(
                select(AuditEntry)
                .where(
                    AuditEntry.entity_type == "member",
                    AuditEntry.entity_id == str(m),
                    AuditEntry.action.like("tier.%"),
                    AuditEntry.id > since["audit"],
                )
                .order_by(AuditEntry.id)
            )
            out.append(
                {
                    "state": None
                    if state is None
                    else (
                        state.level_id is not None,
                        state.since,
                        state.valid_until,
                        state.review_at,
                        state.lapsed,
                        index.get(state.last_change_id) if state.last_change_id is not None else None,
                    ),
                    "changes": [(c.reason, c.to_rank, c.from_rank, c.valid_until, c.note) for c in changes],
                    "events": [
                        {**e.payload, "member_id": None, "change_id": index.get(e.payload["change_id"], "?")}
                        for e in events
                    ],
                    "audits": [(a.action, a.changes) for a in audits],
                }
            )
        return out


def _marks(world: World) -> dict[str, int]:
    with world.db.unit_of_work(write=False) as s:
        return {
            "event": int(s.scalar(select(OutboxEvent.id).order_by(OutboxEvent.id.desc()).limit(1)) or 0),
            "audit": int(s.scalar(select(AuditEntry.id).order_by(AuditEntry.id.desc()).limit(1)) or 0),
        }


def test_batch_writes_what_one_by_one_writes(clock: FrozenClock, client, world: World) -> None:
    singles, batch = _scenario(client, world, clock)
    a, b = world.brands
    since = _marks(world)
    before = len(GRANTS)
    with world.db.unit_of_work(system_for_brand(a.id).scope) as s:
        for m in singles:
            service.evaluate_member(s, actor=system_for_brand(a.id), member_id=m, reason="order.paid")
    gifts_a = GRANTS[before:]

    mark = len(GRANTS)
    with world.db.unit_of_work(system_for_brand(b.id).scope) as s:
        changes_before = len(list(s.scalars(select(TierChange.id))))
        service.evaluate_members(s, actor=system_for_brand(b.id), member_ids=batch, reason="order.paid")
        written = len(list(s.scalars(select(TierChange.id)))) - changes_before
    gifts_b = GRANTS[mark:]

    expected = _written(world, 0, singles, since)
    got = _written(world, 1, batch, since)
    assert got == expected
    # Something was written for most members (new states, upgrades, a drop, a kept level) ...
    assert sum(1 for w in expected if w["events"]) >= 4
    assert all(w["state"] is None or w["state"][5] == len(w["changes"]) - 1 for w in got)
    assert written >= 5
    # The gift is keyed by the change that reached the level, as one by one.
    assert len(gifts_a) == len(gifts_b) == 1
    for n, gifts in ((0, gifts_a), (1, gifts_b)):
        member_id, key, _ = gifts[0]
        with world.db.unit_of_work(system_for_brand(world.brands[n].id).scope, write=False) as s:
            upgrade = s.scalars(
                select(TierChange.id).where(TierChange.member_id == member_id, TierChange.reason == "upgrade")
            ).one()
        assert f"tier:{member_id}:{upgrade}:0" in key


def test_batch_writes_its_changes_together(clock: FrozenClock, client, world: World) -> None:
    """New members of a batch (no settlement between them) are written in a fixed number of
    flushes, not in flushes per member and change."""
    brand = world.brands[1]
    set_up_ladder(client, brand.headers)
    members = [enroll(client, brand.headers) for _ in range(5)]
    flushes: list[int] = []

    actor = system_for_brand(brand.id)
    with world.db.unit_of_work(actor.scope) as s:
        event.listen(s, "after_flush", lambda session, context: flushes.append(len(session.new)))
        service.evaluate_members(s, actor=actor, member_ids=members, reason="order.paid")
    assert 1 <= len(flushes) <= 3, flushes
    written = _written(world, 1, members, {"event": 0, "audit": 0})
    assert [w["changes"][0][0] for w in written] == ["initial"] * 5
    assert all(w["state"] is not None and w["state"][5] == 0 for w in written)
    assert all(len(w["events"]) == 1 and w["events"][0]["change_id"] == 0 for w in written)

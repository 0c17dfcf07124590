"""``bulk_grants.earn_many`` writes what ``ledger.earn`` one grant at a time writes (operations and
their stored results, lots, entries, lot moves, account caches, ``points.earned`` events), on both
databases: the same history is played in two brands, then the same grants are made one by one in
one brand and as one batch in the other. Grants the set-based path leaves to ``ledger.earn`` (a
refund debt, lots past due, a key used before or twice) are in the batch too."""

from __future__ import annotations

from typing import Any

import pytest

from huiyuan.kit.clock import FrozenClock
from huiyuan.kit.db import Database
from huiyuan.kit.errors import IdempotencyMismatch
from huiyuan.members.models import Member
from huiyuan.points import ledger
from huiyuan.points.bulk_grants import PointsGrant, earn_many
from huiyuan.points.ledger import PointsNotAllowed
from tests.points.helpers import PointsBrand, check_ledger, frozen_clock, make_points_brand
from tests.points.ledger_compare import last_operation_id, written_since


def _history(pb: PointsBrand, clock: FrozenClock) -> None:
    a, b, c, d, _e = pb.members
    pb.earn(c, 25, "h5")
    pb.earn(d, 10, "h6", point_type="dec")
    pb.earn(a, 5, "used", point_type="dec", source_type="tier")
    clock.advance(days=40)  # these lots are past due now, and nothing has expired them yet
    pb.earn(a, 40, "h1")
    pb.earn(b, 30, "h2")
    pb.spend(b, 20, "h3")
    # b refunds more than is left of the lot: a debt that new points repay first.
    pb.run(ledger.reverse_lot, lot_id=pb.lots(b)[0].id, amount=30, key="h4", reason="refund")


def _grants(pb: PointsBrand) -> list[PointsGrant]:
    a, b, c, d, e = pb.members

    def g(member: int, amount: int, key: str, point_type: str = "pts", **kw: Any) -> PointsGrant:
        return PointsGrant(
            member_id=member, point_type=point_type, amount=amount, key=key, source_type="tier", **kw
        )

    return [
        g(a, 100, "g1", reason="gold gift", source_id="7"),
        g(a, 50, "g2", point_type="dec", funded_by="vendor"),
        g(e, 30, "g3"),  # no account yet
        g(a, 20, "g4"),  # a second grant to one account: each result has its own balance
        g(b, 15, "g5"),  # the debt: one by one
        g(c, 60, "g6", pending_days=3),  # lots past due: one by one
        g(d, 9, "g7", pending_days=2, point_type="dec"),
        g(e, 12, "g8", point_type="dec", pending_days=3),
        g(e, 30, "g3"),  # the same key again: replays the first
        g(a, 5, "used", point_type="dec"),  # a key used before, same request: replays
    ]


def _play(db: Database, batch: bool) -> tuple[PointsBrand, list[ledger.LedgerResult], int]:
    with frozen_clock() as clock:
        pb = make_points_brand(db, members_count=5)
        _history(pb, clock)
        before = last_operation_id(db)
        grants = _grants(pb)
        with db.unit_of_work(pb.actor.scope) as s:
            if batch:
                results = earn_many(s, actor=pb.actor, grants=grants)
            else:
                results = [
                    ledger.earn(
                        s,
                        actor=pb.actor,
                        member_id=g.member_id,
                        point_type=g.point_type,
                        amount=g.amount,
                        key=g.key,
                        source_type=g.source_type,
                        source_id=g.source_id,
                        reason=g.reason,
                        funded_by=g.funded_by,
                        pending_days=g.pending_days,
                    )
                    for g in grants
                ]
    return pb, results, before


def test_a_batch_writes_what_one_by_one_writes(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    single, single_results, single_before = _play(db, batch=False)
    one_by_one: list[str] = []
    earn = ledger.earn

    def counted(*args: Any, **kw: Any) -> ledger.LedgerResult:
        one_by_one.append(kw["key"])
        return earn(*args, **kw)

    monkeypatch.setattr(ledger, "earn", counted)
    bulk, bulk_results, bulk_before = _play(db, batch=True)
    monkeypatch.undo()
    # Only the grants the set-based path leaves to ``ledger.earn`` went there, after the others.
    history = ["h5", "h6", "used", "h1", "h2"]
    assert one_by_one == [*history, "g2", "g5", "g6", "g7", "g3", "used"]
    got = written_since(db, bulk.brand_id, bulk.members, after_operation_id=bulk_before)
    expected = written_since(db, single.brand_id, single.members, after_operation_id=single_before)
    for part in ("operations", "entries", "moves", "lots", "events", "accounts"):
        assert got[part] == expected[part], part
    assert len(got["operations"]) == 8 and len(got["events"]) == 8  # two of the ten replayed

    def named(pb: PointsBrand, r: ledger.LedgerResult) -> tuple[object, ...]:
        state = r.extra["state"]
        return (pb.members.index(r.member_id), r.point_type, r.amount, r.balance, r.replayed, state)

    assert [named(bulk, r) for r in bulk_results] == [named(single, r) for r in single_results]
    assert [r.balance["available"] for r in bulk_results[:4:3]] == [140, 160]
    assert bulk_results[7].extra["state"] == "pending"
    check_ledger(db, bulk.brand_id)
    check_ledger(db, single.brand_id)

    # Run again, the whole batch replays through ``ledger.earn`` (which would refuse a request hash
    # other than its own): nothing new is written.
    again_before = last_operation_id(db)
    with frozen_clock() as clock, db.unit_of_work(bulk.actor.scope) as s:
        clock.advance(days=40)
        again = earn_many(s, actor=bulk.actor, grants=_grants(bulk))
    assert all(r.replayed for r in again)
    assert [r.to_json() for r in again] == [r.to_json() for r in bulk_results]
    assert last_operation_id(db) == again_before


def test_refusals_are_those_of_ledger_earn(db: Database) -> None:
    with frozen_clock():
        pb = make_points_brand(db, members_count=2)
        a, b = pb.members
        pb.earn(a, 5, "k")
        fine = PointsGrant(member_id=b, point_type="pts", amount=3, key="fine", source_type="tier")
        with pytest.raises(IdempotencyMismatch), db.unit_of_work(pb.actor.scope) as s:
            other = PointsGrant(member_id=a, point_type="pts", amount=6, key="k", source_type="order")
            earn_many(s, actor=pb.actor, grants=[fine, other])
        with pytest.raises(PointsNotAllowed), db.unit_of_work(pb.actor.scope) as s:
            member = s.get(Member, b)
            assert member is not None
            member.status = "closed"
            earn_many(s, actor=pb.actor, grants=[fine])
        # Nothing of the refused batches stayed.
        assert pb.balance(a) == {"available": 5, "pending": 0, "frozen": 0, "reserved": 0, "debt": 0}
        assert pb.entries(member_id=b) == []
        check_ledger(db, pb.brand_id)

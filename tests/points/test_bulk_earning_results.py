"""The set-based earning path stores the same operation results as the per-order path: the rows it
writes at the driver (results set after the lots and entries exist) read back as the ledger's own."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from huiyuan.kit.scope import system_for_brand
from huiyuan.points import earning
from huiyuan.points.bulk import earn_for_orders
from huiyuan.points.models import PointEntry, PointEntryLot, PointOperation
from tests.conftest import World
from tests.factories import enroll
from tests.points.test_earning import GROWTH, PER_YUAN, _order, _setup, clock  # noqa: F401


def _results(world: World, order_id: int) -> dict[str, Any]:
    """The stored results of the order's grants by rule, with the ids replaced by what they name."""
    a = world.brands[0]
    with world.db.unit_of_work(system_for_brand(a.id).scope) as s:
        ops = s.scalars(
            select(PointOperation)
            .where(PointOperation.brand_id == a.id, PointOperation.key.like(f"order:{order_id}:rule:%"))
            .order_by(PointOperation.key)
        ).all()
        out: dict[str, Any] = {}
        for op in ops:
            result = dict(op.result)
            entry = s.scalars(select(PointEntry).where(PointEntry.operation_id == op.id)).one()
            move = s.scalars(select(PointEntryLot).where(PointEntryLot.entry_id == entry.id)).one()
            assert result["operation_id"] == op.id
            assert result["entries"] == [entry.id]
            assert result["lots"] == [move.lot_id] == [result["extra"]["lot_id"]]
            assert result["member_id"] == op.member_id == entry.member_id
            # The set-based path stores no balance (grants of one account share a statement).
            for name in ("operation_id", "entries", "lots", "member_id", "balance"):
                result.pop(name)
            result["extra"] = {k: v for k, v in result["extra"].items() if k != "lot_id"}
            out[op.key.rsplit(":", 1)[1]] = result
        return out


def test_bulk_results_match_the_per_order_path(client, world: World, clock) -> None:  # noqa: F811
    _setup(world, pending_days=3, rules=[PER_YUAN, GROWTH])
    a = world.brands[0]
    actor = system_for_brand(a.id)
    m1, m2 = enroll(client, a.headers), enroll(client, a.headers)
    o1 = _order(client, world, m1["id"], "R-1", paid_at="2026-03-15T06:30:00Z")
    o2 = _order(client, world, m2["id"], "R-2", paid_at="2026-03-15T06:30:00Z")
    with world.db.unit_of_work(actor.scope) as s:
        assert earn_for_orders(s, actor=actor, order_ids=[o1["id"]]).grants == 2
    with world.db.unit_of_work(actor.scope) as s:
        assert len(earning.earn_for_order(s, actor=actor, order_id=o2["id"])) == 2
    bulk, single = _results(world, o1["id"]), _results(world, o2["id"])
    assert len(bulk) == 2
    assert bulk == single
    assert {r["extra"]["state"] for r in bulk.values()} == {"pending", "active"}


def test_order_markers_written_twice_are_kept_once(client, world: World, clock) -> None:  # noqa: F811
    """``write_markers`` skips a marker that exists (``ON CONFLICT DO NOTHING`` at the driver on
    SQLite): a second writer of the same orders adds nothing and fails nothing."""
    from huiyuan.points.bulk import marker_key, write_markers

    _setup(world, pending_days=0, rules=[PER_YUAN])
    a = world.brands[0]
    actor = system_for_brand(a.id)
    with world.db.unit_of_work(actor.scope) as s:
        write_markers(s, brand_id=a.id, order_ids=[101, 102], actor=actor)
    with world.db.unit_of_work(actor.scope) as s:
        write_markers(s, brand_id=a.id, order_ids=[102, 103], actor=actor)
    with world.db.unit_of_work(actor.scope, write=False) as s:
        markers = s.scalars(
            select(PointOperation)
            .where(PointOperation.brand_id == a.id, PointOperation.kind == "earn_order")
            .order_by(PointOperation.key)
        ).all()
        assert [m.key for m in markers] == [marker_key(i) for i in (101, 102, 103)]
        assert [m.result for m in markers] == [{"order_id": i} for i in (101, 102, 103)]

"""What a batch of ledger operations wrote, without the ids the database chose: for comparing two
paths (one by one and set-based) played on the same data in two brands.

Operations are named by their key (through ``key_of``, which may drop ids that differ between the
brands), members by their place in the brand's member list, lots and entries by the operation that
wrote them and their place in it, events by what they announce.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from huiyuan.kit.db import Database
from huiyuan.kit.scope import system_for_brand
from huiyuan.outbox.models import OutboxEvent
from huiyuan.points.models import PointAccount, PointEntry, PointEntryLot, PointLot, PointOperation, PointType

LOT_FIELDS = (
    "amount",
    "remaining",
    "state",
    "earned_at",
    "activates_at",
    "expires_at",
    "nominal_expires_at",
    "source_type",
    "source_id",
    "store_id",
    "funded_by",
    "rule_id",
    "unit_value",
    "frozen_reason",
)
ENTRY_FIELDS = (
    "kind",
    "amount",
    "d_available",
    "d_pending",
    "d_frozen",
    "d_reserved",
    "d_debt",
    "reason",
    "source_type",
    "source_id",
    "store_id",
    "actor",
    "occurred_at",
)
ACCOUNT_FIELDS = (
    "available",
    "pending",
    "frozen",
    "reserved",
    "debt",
    "earned_total",
    "spent_total",
    "expired_total",
)


def written_since(
    db: Database,
    brand_id: int,
    members: list[int],
    *,
    after_operation_id: int,
    key_of: Callable[[str], Any] = lambda key: key,
    sources: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Operations (id > ``after_operation_id``), their entries, lot moves, lots and
    ``points.earned`` events, and every account, of one brand, with the ids named as above;
    ``sources`` renames source ids (such as a tier level's id) of entries, lots and events."""
    sources = sources or {}
    member = {m: n for n, m in enumerate(members)}
    with db.unit_of_work(system_for_brand(brand_id).scope, write=False) as s:
        codes = {pt.id: pt.code for pt in s.scalars(select(PointType).where(PointType.brand_id == brand_id))}
        ops = {
            op.id: op
            for op in s.scalars(
                select(PointOperation)
                .where(PointOperation.brand_id == brand_id, PointOperation.id > after_operation_id)
                .order_by(PointOperation.id)
            )
        }
        op_name = {op_id: key_of(op.key) for op_id, op in ops.items()}
        entries = list(
            s.scalars(select(PointEntry).where(PointEntry.operation_id.in_(ops)).order_by(PointEntry.id))
        )
        entry_name: dict[int, Any] = {}
        places: dict[int, int] = {}
        for e in entries:
            places[e.operation_id] = places.get(e.operation_id, -1) + 1
            entry_name[e.id] = (op_name[e.operation_id], places[e.operation_id])
        moves = list(
            s.scalars(
                select(PointEntryLot).where(PointEntryLot.entry_id.in_(entry_name)).order_by(PointEntryLot.id)
            )
        )
        lot_name: dict[int, Any] = {}
        for mv in moves:
            lot_name.setdefault(mv.lot_id, ("lot of", entry_name[mv.entry_id]))

        def of_lot(source_type: str | None, source_id: str | None) -> Any:
            # Entries of expiries and carry-over lots name a lot by its id.
            if source_type in ("lot", "carry") and source_id is not None and source_id.isdigit():
                return lot_name.get(int(source_id), "an earlier lot")
            return sources.get(source_id or "", source_id)

        def fields(row: Any, names: tuple[str, ...]) -> tuple[Any, ...]:
            values = {f: getattr(row, f) for f in names}
            values["source_id"] = of_lot(row.source_type, row.source_id)
            return tuple(values[f] for f in names)

        lots = {
            lot_name[lot.id]: (member[lot.member_id], codes[lot.point_type_id], *fields(lot, LOT_FIELDS))
            for lot in s.scalars(select(PointLot).where(PointLot.id.in_(lot_name)))
        }

        def name_result(result: dict[str, Any]) -> dict[str, Any]:
            if not result or "operation_id" not in result:
                return result
            out = dict(result)
            out["operation_id"] = op_name.get(result["operation_id"], "earlier")
            out["member_id"] = member[result["member_id"]]
            out["entries"] = [entry_name.get(i, "earlier") for i in result["entries"]]
            out["lots"] = [lot_name.get(i, "earlier") for i in result["lots"]]
            if "lot_id" in result.get("extra", {}):
                out["extra"] = {
                    **result["extra"],
                    "lot_id": lot_name.get(result["extra"]["lot_id"], "earlier"),
                }
            return out

        events = []
        for ev in s.scalars(
            select(OutboxEvent).where(OutboxEvent.brand_id == brand_id, OutboxEvent.type == "points.earned")
        ):
            p = dict(ev.payload)
            if p.get("operation_id") not in ops:
                continue
            p["operation_id"] = op_name[p["operation_id"]]
            p["lot_id"] = lot_name[p["lot_id"]]
            p["member_id"] = member[p["member_id"]]
            p["source_id"] = of_lot(p.get("source_type"), p.get("source_id"))
            events.append(
                (
                    ev.aggregate_type,
                    member[int(ev.aggregate_id)],
                    ev.occurred_at,
                    ev.attempts,
                    ev.next_attempt_at,
                    p,
                )
            )
        accounts = {
            (member[a.member_id], codes[a.point_type_id]): tuple(getattr(a, f) for f in ACCOUNT_FIELDS)
            for a in s.scalars(select(PointAccount).where(PointAccount.brand_id == brand_id))
        }
        return {
            "operations": {
                # Not the request hash: it holds the member's id. A replay through ``ledger.earn``
                # compares it with the request's.
                op_name[op.id]: (
                    op.kind,
                    member.get(op.member_id or 0),
                    op.actor,
                    op.created_at,
                    name_result(op.result),
                )
                for op in ops.values()
            },
            "entries": {
                entry_name[e.id]: (
                    member[e.member_id],
                    codes[e.point_type_id],
                    e.reservation_id,
                    *fields(e, ENTRY_FIELDS),
                )
                for e in entries
            },
            "moves": sorted((entry_name[mv.entry_id], lot_name[mv.lot_id], mv.amount) for mv in moves),
            "lots": lots,
            "events": sorted(events, key=repr),
            "accounts": accounts,
        }


def last_operation_id(db: Database) -> int:
    with db.unit_of_work(write=False) as s:
        return int(s.scalar(select(PointOperation.id).order_by(PointOperation.id.desc()).limit(1)) or 0)

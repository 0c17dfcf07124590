"""Set-based earning for many paid orders at once: the path bulk imports and the outbox take when
a batch of ``order.paid`` events arrives.

The rules are the same (``points.rules``) and so is every row written: one ``PointOperation`` per
grant under the key ``order:{order_id}:rule:{rule_id}`` with the request hash ``ledger.earn`` would
write (``ledger.earn_digest``), one lot, one ``earn`` entry and its lot move, the account caches
raised, ``points.earned`` events. What differs is how: the orders, lines, payments and members of
the batch are read with a handful of queries, rules are evaluated in memory, and the rows are
written with executemany statements.

Orders this path does not take, which then go through ``earning.earn_for_order`` one by one:
orders whose rules carry per-day, per-member or budget caps (their usage must be read grant by
grant), and members whose account carries a refund debt (new points repay it first).

Idempotency and concurrency: accounts are created if missing and locked in id order (as the ledger
does), then the operations are inserted with ``ON CONFLICT DO NOTHING``: a grant another writer
already made is skipped, so running a batch twice, or next to the per-order path, earns once.
An order-level marker (``order:{order_id}:earned``) records that an order was handled, so the
per-order handler that follows a bulk run answers with one indexed look-up.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from huiyuan.kit.bulkinsert import add_to_columns, executemany_rows, insert_returning_ids
from huiyuan.kit.clock import utcnow
from huiyuan.kit.scope import Principal
from huiyuan.members.models import Member
from huiyuan.orders.models import Category, Order, OrderItem, OrderPayment, Product
from huiyuan.outbox.models import OutboxEvent
from huiyuan.points import earning, expiry_policy, ledger, rules
from huiyuan.points.models import (
    EarnRule,
    PointAccount,
    PointEntry,
    PointEntryLot,
    PointLot,
    PointOperation,
    PointType,
)

ACCOUNTS: Table = PointAccount.__table__  # type: ignore[assignment]
OPERATIONS: Table = PointOperation.__table__  # type: ignore[assignment]
LOTS: Table = PointLot.__table__  # type: ignore[assignment]
ENTRIES: Table = PointEntry.__table__  # type: ignore[assignment]
MOVES: Table = PointEntryLot.__table__  # type: ignore[assignment]
EVENTS: Table = OutboxEvent.__table__  # type: ignore[assignment]
RULES: Table = EarnRule.__table__  # type: ignore[assignment]


@dataclass
class BulkEarnResult:
    orders: int = 0
    earned_orders: int = 0
    grants: int = 0
    points: int = 0
    skipped_done: int = 0
    per_order: list[int] = field(default_factory=list)


def marker_key(order_id: int) -> str:
    return f"order:{order_id}:earned"


def dialect_insert(session: Session) -> Any:
    """The ``insert`` of the session's dialect (for ``ON CONFLICT DO NOTHING``): the set-based
    writers of points (this module, ``bulk_grants``) share it."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


# Ids per IN list.
CHUNK = 500


def create_accounts(session: Session, brand_id: int, pairs: Sequence[tuple[int, int]], now: datetime) -> None:
    """Create the empty accounts of ``(member id, point type id)`` pairs that have none yet; an
    account that exists, or is created concurrently, is left as it is. The existing ones are looked
    up first (plain rows, not locked: the caller locks them afterwards), so a batch of returning
    members costs a query, not an insert of every pair."""
    if not pairs:
        return
    wanted = set(pairs)
    members = sorted({m for m, _ in wanted})
    for start in range(0, len(members), CHUNK):
        for row in session.execute(
            select(ACCOUNTS.c.member_id, ACCOUNTS.c.point_type_id).where(
                ACCOUNTS.c.brand_id == brand_id, ACCOUNTS.c.member_id.in_(members[start : start + CHUNK])
            )
        ):
            wanted.discard((row.member_id, row.point_type_id))
    if not wanted:
        return
    session.execute(
        dialect_insert(session)(ACCOUNTS).on_conflict_do_nothing(
            index_elements=["member_id", "point_type_id"]
        ),
        [
            {
                "brand_id": brand_id,
                "member_id": m,
                "point_type_id": t,
                "available": 0,
                "pending": 0,
                "frozen": 0,
                "reserved": 0,
                "debt": 0,
                "earned_total": 0,
                "spent_total": 0,
                "expired_total": 0,
                "created_at": now,
                "updated_at": now,
            }
            for m, t in sorted(wanted)
        ],
    )


def earn_for_orders(session: Session, *, actor: Principal, order_ids: Sequence[int]) -> BulkEarnResult:
    """Earn for every paid order in ``order_ids`` (one brand) that has not earned yet."""
    brand_id = actor.scope.require_brand()
    result = BulkEarnResult(orders=len(order_ids))
    if not order_ids:
        return result
    done = set(
        session.scalars(
            select(PointOperation.key).where(
                PointOperation.brand_id == brand_id,
                PointOperation.key.in_([marker_key(i) for i in order_ids]),
            )
        )
    )
    todo = [i for i in order_ids if marker_key(i) not in done]
    result.skipped_done = len(order_ids) - len(todo)
    found_rules = list(
        session.scalars(
            select(EarnRule)
            .where(EarnRule.brand_id == brand_id, EarnRule.trigger == "order", EarnRule.status == "active")
            .order_by(EarnRule.id)
        )
    )
    if not todo or not found_rules:
        return result
    parsed = {r.id: earning._parsed(r) for r in found_rules}
    if any(
        d.caps is not None and (d.caps.per_day or d.caps.per_member or d.caps.budget) for d in parsed.values()
    ):
        # Usage-capped rules must count grant by grant: the per-order path does that.
        result.per_order = todo
        return result
    inputs = [
        rules.RuleInput(
            rule_id=r.id, code=r.code, definition=parsed[r.id], valid_from=r.valid_from, valid_to=r.valid_to
        )
        for r in found_rules
    ]
    tz = earning._brand_tz(session, brand_id)
    # Plain rows, not ORM objects: only what rules and lots need, without identity-map upkeep.
    orders: list[Any] = list(
        session.execute(
            select(
                Order.id,
                Order.order_number,
                Order.member_id,
                Order.store_id,
                Order.channel,
                Order.paid_at,
                Order.paid_amount,
                Order.deal_amount,
            )
            .where(Order.id.in_(todo), Order.member_id.is_not(None))
            .order_by(Order.id)
        )
    )
    # Only what ``member_facts`` reads (id, birthday) and the status check: rows, not ORM objects.
    members: dict[int, Any] = {
        m.id: m
        for m in session.execute(
            select(Member.id, Member.status, Member.birthday).where(
                Member.id.in_({o.member_id for o in orders})
            )
        )
    }
    lines: dict[int, list[rules.ItemFacts]] = defaultdict(list)
    for item in session.execute(
        select(
            OrderItem.order_id,
            OrderItem.sku,
            OrderItem.category_id,
            OrderItem.quantity,
            OrderItem.amount,
            OrderItem.paid_amount,
            Category.path,
            Product.product_brand,
        )
        .outerjoin(Category, Category.id == OrderItem.category_id)
        .outerjoin(Product, Product.id == OrderItem.product_id)
        .where(OrderItem.order_id.in_([o.id for o in orders]))
        .order_by(OrderItem.order_id, OrderItem.line_no)
    ):
        lines[item.order_id].append(
            rules.ItemFacts(
                sku=item.sku,
                category_id=item.category_id,
                category_path=item.path,
                product_brand=item.product_brand,
                quantity=item.quantity,
                amount=item.amount,
                paid_amount=item.paid_amount,
            )
        )
    pays: dict[int, list[tuple[str, Any]]] = defaultdict(list)
    for order_id, method, amount in session.execute(
        select(OrderPayment.order_id, OrderPayment.method, OrderPayment.amount).where(
            OrderPayment.order_id.in_([o.id for o in orders])
        )
    ):
        pays[order_id].append((method, amount))
    types = {pt.code: pt for pt in session.scalars(select(PointType).where(PointType.brand_id == brand_id))}
    policies = {code: expiry_policy.parse_policy(pt.expiry_policy) for code, pt in types.items()}

    planned: list[tuple[Any, rules.Grant]] = []
    # Tier (current) and paid plan (as of each order's payment) for every member, read set-based.
    member_ids = sorted({o.member_id for o in orders if o.member_id is not None})
    current_tiers = earning._optional("huiyuan.tiers.reads", "current_tiers")
    tiers = current_tiers(session, brand_id, member_ids) if current_tiers is not None else {}
    plan_terms = earning._optional("huiyuan.paid.service", "plan_terms")
    terms: dict[int, Any] = {}
    paid_times = [o.paid_at for o in orders]
    if plan_terms is not None and orders:
        terms = plan_terms(session, member_ids, min(paid_times), max(paid_times))

    card_terms = earning._optional("huiyuan.benefits.cards", "points_multiplier_terms")
    best_card = earning._optional("huiyuan.benefits.cards", "best_multiplier")
    cards: dict[int, Any] = {}
    if card_terms is not None and orders:
        cards = card_terms(session, member_ids, min(paid_times), max(paid_times))

    def plan_at(member_id: int, at: Any) -> Any:
        for term in terms.get(member_id, ()):  # newest start first, as ``active_plan`` decides
            if term.starts_at <= at < term.plan.ends_at:
                return term.plan
        return None

    facts_cache: dict[tuple[int, Any], rules.MemberFacts] = {}
    for order in orders:
        member = members.get(order.member_id or 0)
        if member is None or member.status == "closed":
            continue
        facts_key = (member.id, order.paid_at)
        if facts_key not in facts_cache:
            facts_cache[facts_key] = earning.member_facts(
                session,
                member,
                order.paid_at,
                tier=tiers.get(member.id),
                plan=plan_at(member.id, order.paid_at),
                card=best_card(cards.get(member.id, []), order.paid_at) if best_card is not None else None,
            )
        facts = rules.OrderFacts(
            order_id=order.id,
            order_number=order.order_number,
            member_id=order.member_id,
            store_id=order.store_id,
            channel=order.channel,
            paid_at=order.paid_at,
            paid_amount=order.paid_amount,
            deal_amount=order.deal_amount,
            items=lines[order.id],
            payments=pays[order.id],
        )
        for grant in rules.evaluate(inputs, order=facts, action=None, member=facts_cache[facts_key], tz=tz):
            if grant.point_type in types:
                planned.append((order, grant))

    # Accounts: create the missing ones, lock all in id order, send members with a debt to the
    # per-order path (new points repay the debt first).
    pairs = sorted({(o.member_id, types[g.point_type].id) for o, g in planned})
    now = utcnow()
    create_accounts(session, brand_id, pairs, now)
    account_rows = session.execute(
        select(ACCOUNTS.c.id, ACCOUNTS.c.member_id, ACCOUNTS.c.point_type_id, ACCOUNTS.c.debt)
        .where(ACCOUNTS.c.brand_id == brand_id, ACCOUNTS.c.member_id.in_({m for m, _ in pairs}))
        .order_by(ACCOUNTS.c.id)
        .with_for_update()
    ).all()
    accounts = {(r.member_id, r.point_type_id): r for r in account_rows}
    indebted = {r.member_id for r in account_rows if r.debt > 0}
    if indebted:
        result.per_order = sorted({o.id for o, _ in planned if o.member_id in indebted})
        planned = [(o, g) for o, g in planned if o.member_id not in indebted]

    # Operations first: ON CONFLICT skips grants that some other writer already made.
    label = actor.label[:120]
    op_rows = []
    keys = [f"order:{order.id}:rule:{g.rule_id}" for order, g in planned]
    for (order, g), key in zip(planned, keys, strict=True):
        digest = ledger.earn_digest(
            kind="earn",
            member_id=order.member_id or 0,
            point_type=g.point_type,
            amount=g.points,
            source_type="order",
            source_id=order.order_number,
            store_id=order.store_id,
            funded_by=g.funded_by,
            rule_id=g.rule_id,
            reason=g.rule_code,
            earned_at=order.paid_at,
            pending_days=g.pending_days,
        )
        op_rows.append(
            {
                "brand_id": brand_id,
                "key": key,
                "kind": "earn",
                "request_hash": digest,
                "member_id": order.member_id,
                "result": {},
                "actor": label,
                "created_at": now,
            }
        )
    new_keys: dict[str, int] = {}
    for start in range(0, len(op_rows), 500):
        chunk = op_rows[start : start + 500]
        for op_id, key in session.execute(
            dialect_insert(session)(OPERATIONS)
            .on_conflict_do_nothing(index_elements=["brand_id", "key"])
            .returning(OPERATIONS.c.id, OPERATIONS.c.key),
            chunk,
        ):
            new_keys[key] = op_id
    op_ids = [new_keys.get(key) for key in keys]
    planned_ops = [(o, g, op_id) for (o, g), op_id in zip(planned, op_ids, strict=True) if op_id is not None]
    planned = [(o, g) for o, g, _ in planned_ops]

    lot_rows: list[dict[str, Any]] = []
    entry_rows: list[dict[str, Any]] = []
    deltas: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])  # available, pending, earned
    for order, g, op_id in planned_ops:
        pt = types[g.point_type]
        account = accounts[(order.member_id, pt.id)]
        days = pt.pending_days if g.pending_days is None else g.pending_days
        activates_at = order.paid_at + timedelta(days=days) if days > 0 else None
        pending = activates_at is not None and activates_at > now
        expiry = expiry_policy.expiry_for(policies[g.point_type], order.paid_at, tz)
        state = "pending" if pending else "active"
        lot_rows.append(
            {
                "brand_id": brand_id,
                "account_id": account.id,
                "member_id": order.member_id,
                "point_type_id": pt.id,
                "amount": g.points,
                "remaining": g.points,
                "state": state,
                "earned_at": order.paid_at,
                "activates_at": activates_at,
                "expires_at": expiry.effective,
                "nominal_expires_at": expiry.nominal,
                "source_type": "order",
                "source_id": order.order_number,
                "store_id": order.store_id,
                "funded_by": g.funded_by,
                "rule_id": g.rule_id,
                "unit_value": pt.fair_value,
                "frozen_reason": None,
                "reversed_amount": 0,
                "forgiven_amount": 0,
                "created_at": now,
            }
        )
        entry_rows.append(
            {
                "brand_id": brand_id,
                "operation_id": op_id,
                "account_id": account.id,
                "member_id": order.member_id,
                "point_type_id": pt.id,
                "kind": "earn",
                "amount": g.points,
                "d_available": 0 if pending else g.points,
                "d_pending": g.points if pending else 0,
                "d_frozen": 0,
                "d_reserved": 0,
                "d_debt": 0,
                "reason": g.rule_code,
                "source_type": "order",
                "source_id": order.order_number,
                "store_id": order.store_id,
                "reservation_id": None,
                "reverses_entry_id": None,
                "actor": label,
                "occurred_at": now,
                "created_at": now,
            }
        )
        d = deltas[account.id]
        d[0 if not pending else 1] += g.points
        d[2] += g.points
    if planned:
        lot_ids = insert_returning_ids(session, LOTS, lot_rows)
        entry_ids = insert_returning_ids(session, ENTRIES, entry_rows)
        executemany_rows(
            session,
            MOVES,
            [
                {"brand_id": brand_id, "entry_id": e, "lot_id": lot, "amount": row["amount"]}
                for e, lot, row in zip(entry_ids, lot_ids, lot_rows, strict=True)
            ],
        )
        add_to_columns(
            session,
            ACCOUNTS,
            [(a, {"available": d[0], "pending": d[1], "earned_total": d[2]}) for a, d in deltas.items()],
            also={"updated_at": now},
        )
        per_rule: dict[int, int] = defaultdict(int)
        for _, g in planned:
            per_rule[g.rule_id] += g.points
        add_to_columns(session, RULES, [(r, {"granted_total": n}) for r, n in per_rule.items()], also={})
        set_results(
            session,
            [
                (
                    entry["operation_id"],
                    ledger.LedgerResult(
                        operation_id=entry["operation_id"],
                        kind="earn",
                        member_id=entry["member_id"],
                        point_type=g.point_type,
                        amount=g.points,
                        entries=[entry_id],
                        lots=[lot_id],
                        balance={},
                        extra={
                            "lot_id": lot_id,
                            "state": lot["state"],
                            "expires_at": lot["expires_at"].isoformat() if lot["expires_at"] else None,
                        },
                    ).to_json(),
                )
                for (_, g), entry, entry_id, lot_id, lot in zip(
                    planned, entry_rows, entry_ids, lot_ids, lot_rows, strict=True
                )
            ],
        )
        executemany_rows(
            session,
            EVENTS,
            [
                {
                    "type": "points.earned",
                    "brand_id": brand_id,
                    "aggregate_type": "member",
                    "aggregate_id": str(order.member_id),
                    "attempts": 0,
                    "occurred_at": now,
                    "next_attempt_at": now,
                    "payload": {
                        "member_id": order.member_id,
                        "point_type": g.point_type,
                        "point_type_kind": types[g.point_type].kind,
                        "amount": g.points,
                        "lot_id": lot_id,
                        "state": lot["state"],
                        "source_type": "order",
                        "source_id": order.order_number,
                        "operation_id": entry["operation_id"],
                    },
                }
                for (order, g), entry, lot_id, lot in zip(planned, entry_rows, lot_ids, lot_rows, strict=True)
            ],
        )
    result.grants = len(planned)
    result.points = sum(g.points for _, g in planned)
    left = set(result.per_order)
    handled = [o.id for o in orders if o.id not in left]
    result.earned_orders = len({o.id for o, _ in planned})
    write_markers(session, brand_id=brand_id, order_ids=handled, actor=actor)
    return result


def set_results(session: Session, results: Sequence[tuple[int, dict[str, Any]]]) -> None:
    """Store each new operation's result (``(operation_id, result)``) as one executemany; on SQLite at
    the driver, with the column's own bind processor, so the stored JSON is what SQLAlchemy writes."""
    if not results:
        return
    dialect = session.get_bind().dialect
    if dialect.name != "sqlite":
        session.execute(
            update(OPERATIONS)
            .where(OPERATIONS.c.id == bindparam("b_id"))
            .values(result=bindparam("b_result")),
            [{"b_id": op_id, "b_result": result} for op_id, result in results],
        )
        return
    process = OPERATIONS.c.result.type.dialect_impl(dialect).bind_processor(dialect)
    session.connection().exec_driver_sql(
        f'UPDATE "{OPERATIONS.name}" SET "result" = ? WHERE id = ?',
        [(process(result) if process is not None else result, op_id) for op_id, result in results],
    )


def write_markers(session: Session, *, brand_id: int, order_ids: Sequence[int], actor: Principal) -> None:
    """Record that these orders were handled (their grants, if any, are written)."""
    if not order_ids:
        return
    now = utcnow()
    label = actor.label[:120]
    executemany_rows(
        session,
        OPERATIONS,
        [
            {
                "brand_id": brand_id,
                "key": marker_key(i),
                "kind": "earn_order",
                "request_hash": "-",
                "member_id": None,
                "result": {"order_id": i},
                "actor": label,
                "created_at": now,
            }
            for i in order_ids
        ],
        skip_conflicts_on=("brand_id", "key"),
    )

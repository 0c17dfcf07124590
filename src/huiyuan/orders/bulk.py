"""Bulk import of orders (POST /api/v1/orders/batch, the demo generator, the import benchmark).

Same rules as ``service.record_order`` (through ``planning``), built for throughput: the stores,
products, members and already-recorded order numbers of a batch are loaded with a few ``IN`` queries,
each order is checked in memory, and the valid ones are written with one executemany per table.
Each order stands alone: a bad one is reported and nothing of it is written, the others land. The
fast path writes all valid orders inside one SAVEPOINT; if that fails (another writer recorded one of
the numbers meanwhile) it falls back to one SAVEPOINT per order. Audit is one row per batch; every
created order still gets its own ``order.paid`` event. Must not commit.

With ``earn=True`` the batch preparers of those ``order.paid`` events (points earned set-based, the
buyers' tiers evaluated) run in the import's transaction, so the orders land with their points; the
events stay due, and when the dispatcher takes them their handlers find the work done. If a
preparer fails, its work is rolled back (the orders stay) and the dispatcher does it later.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from huiyuan.audit import service as audit
from huiyuan.kit.errors import AppError, IdempotencyMismatch, ValidationFailed, field_error
from huiyuan.kit.scope import Principal
from huiyuan.orders import planning
from huiyuan.orders.repository import OrderRepository
from huiyuan.orders.schemas import BatchResult, OrderIn
from huiyuan.outbox.dispatcher import run_preparers
from huiyuan.outbox.models import OutboxEvent

MAX_BATCH = 1000


def _problem(error: AppError) -> dict[str, Any]:
    return error.to_problem()


def _schema_problem(exc: ValidationError) -> dict[str, Any]:
    errors = [
        field_error(".".join(str(p) for p in e.get("loc", ())) or "body", e.get("msg", ""), e.get("type", ""))
        for e in exc.errors()
    ]
    return _problem(ValidationFailed("Some fields are not valid.", errors=errors))


def _mismatch(order_number: str, existing_id: int | None) -> dict[str, Any]:
    return _problem(
        IdempotencyMismatch(
            f"Order number {order_number} was already used with a different body.",
            errors=[field_error("order_number", "already used for another order", "idempotency-key-reused")],
            existing_order_id=existing_id,
        )
    )


def _paid_events(plans: Sequence[planning.OrderPlan], brand_id: int) -> list[dict[str, Any]]:
    return [
        {
            "type": "order.paid",
            "brand_id": brand_id,
            "aggregate_type": "order",
            "aggregate_id": str(p.order["id"]),
            "payload": planning.paid_event_payload(p),
        }
        for p in plans
    ]


def _write(session: Session, plans: Sequence[planning.OrderPlan], brand_id: int) -> None:
    if not plans:
        return
    planning.write_plans(session, plans)
    # The same row ``outbox.service.emit`` adds, written as one executemany for the whole batch.
    session.execute(insert(planning.table(OutboxEvent)), _paid_events(plans, brand_id))


def record_orders_bulk(
    session: Session,
    *,
    actor: Principal,
    orders: Sequence[OrderIn | Mapping[str, Any]],
    earn: bool = False,
) -> list[BatchResult]:
    """Record up to 1,000 orders, each on its own; one result per order, in the order given. With
    ``earn``, the created orders also earn their points (and their buyers' tiers are evaluated)
    in this transaction."""
    brand_id = actor.scope.require_brand()
    if len(orders) > MAX_BATCH:
        raise ValidationFailed(
            f"A batch holds at most {MAX_BATCH} orders.",
            errors=[field_error("orders", f"at most {MAX_BATCH} orders", "too-many")],
        )
    results: list[BatchResult | None] = [None] * len(orders)
    parsed: list[tuple[int, OrderIn]] = []
    for n, raw in enumerate(orders):
        if isinstance(raw, OrderIn):
            parsed.append((n, raw))
            continue
        try:
            parsed.append((n, OrderIn.model_validate(raw)))
        except ValidationError as exc:
            number = raw.get("order_number") if isinstance(raw, Mapping) else None
            results[n] = BatchResult(
                order_number=str(number) if number is not None else None,
                status="error",
                problem=_schema_problem(exc),
            )

    repo = OrderRepository(session)
    ctx = planning.load_context(session, brand_id, [o for _, o in parsed])
    recorded = repo.existing_orders(brand_id, {o.order_number for _, o in parsed})
    first_in_batch: dict[str, tuple[int, str]] = {}  # order_number → (position, hash)
    repeats: list[tuple[int, str]] = []  # positions replaying an earlier order of this batch
    plans: list[tuple[int, planning.OrderPlan]] = []
    for n, data in parsed:
        number = data.order_number
        digest = planning.request_hash(data)
        if number in recorded:
            oid, known = recorded[number]
            results[n] = (
                BatchResult(order_number=number, status="duplicate", id=oid)
                if known == digest
                else BatchResult(order_number=number, status="error", problem=_mismatch(number, oid))
            )
            continue
        if number in first_in_batch:
            if first_in_batch[number][1] == digest:
                repeats.append((n, number))
            else:
                results[n] = BatchResult(order_number=number, status="error", problem=_mismatch(number, None))
            continue
        first_in_batch[number] = (n, digest)
        try:
            plans.append((n, planning.build_plan(data, ctx, digest)))
        except AppError as exc:
            results[n] = BatchResult(order_number=number, status="error", problem=_problem(exc))

    try:
        with session.begin_nested():
            _write(session, [p for _, p in plans], brand_id)
        for n, plan in plans:
            results[n] = BatchResult(
                order_number=plan.data.order_number, status="created", id=plan.order["id"]
            )
    except IntegrityError:
        _write_one_by_one(session, plans, results, brand_id)

    by_number = {r.order_number: r for r in results if r is not None and r.status != "error"}
    for n, number in repeats:
        first = by_number.get(number)
        if first is None:  # the first copy failed; so does its repeat, with the same problem
            first_result = results[first_in_batch[number][0]]
            results[n] = first_result.model_copy() if first_result is not None else None
        else:
            results[n] = BatchResult(order_number=number, status="duplicate", id=first.id)

    if earn:
        done = {n for n, r in enumerate(results) if r is not None and r.status == "created"}
        created_plans = [plan for n, plan in plans if n in done]
        run_preparers(session, [OutboxEvent(**row) for row in _paid_events(created_plans, brand_id)])

    final = [r for r in results if r is not None]
    created = [r.id for r in final if r.status == "created" and r.id is not None]
    counts = {
        status: sum(1 for r in final if r.status == status) for status in ("created", "duplicate", "error")
    }
    audit.record(
        session,
        actor=actor,
        action="orders.imported",
        entity_type="order_batch",
        entity_id=f"{min(created)}-{max(created)}" if created else "none",
        brand_id=brand_id,
        after={"received": len(orders), **counts},
    )
    return final


def _write_one_by_one(
    session: Session,
    plans: Sequence[tuple[int, planning.OrderPlan]],
    results: list[BatchResult | None],
    brand_id: int,
) -> None:
    repo = OrderRepository(session)
    for n, plan in plans:
        number = plan.data.order_number
        try:
            with session.begin_nested():
                _write(session, [plan], brand_id)
            results[n] = BatchResult(order_number=number, status="created", id=plan.order["id"])
        except IntegrityError:
            existing = repo.by_number(brand_id, number)
            if existing is not None and existing.request_hash == plan.request_hash:
                results[n] = BatchResult(order_number=number, status="duplicate", id=existing.id)
            elif existing is not None:
                results[n] = BatchResult(
                    order_number=number, status="error", problem=_mismatch(number, existing.id)
                )
            else:
                problem = _problem(ValidationFailed(f"Order {number} could not be stored; retry it."))
                results[n] = BatchResult(order_number=number, status="error", problem=problem)

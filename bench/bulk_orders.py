"""(b) Bulk order import: orders/s through ``POST /api/v1/orders/batch`` (1,000 orders a request, one
client) and through the service function ``record_orders_bulk`` called directly; bulk import with
earning end to end (``run_import_earn``)."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import time

import httpx

from bench.common import BenchWorld, emit

BATCH = 1000


def _batches(world: BenchWorld, tag: str, count: int) -> list[list[dict[str, object]]]:
    rng = random.Random(tag)
    pid = os.getpid()
    return [[world.order(rng, f"BULK-{tag}-{pid}-{b}-{i}") for i in range(BATCH)] for b in range(count)]


def run_api(world: BenchWorld, base: str, *, batches: int) -> None:
    payloads = [json.dumps({"orders": b}).encode() for b in _batches(world, "api", batches)]
    headers = {"Authorization": f"Bearer {world.api_key}", "Content-Type": "application/json"}
    created = 0
    with httpx.Client(base_url=base, headers=headers, timeout=300) as http:
        started = time.perf_counter()
        for body in payloads:
            r = http.post("/api/v1/orders/batch", content=body)
            r.raise_for_status()
            created += int(r.json()["created"])
        elapsed = time.perf_counter() - started
    emit(
        "bulk_orders.api",
        created / elapsed,
        "orders/s",
        orders=created,
        batch=BATCH,
        requests=len(payloads),
        seconds=round(elapsed, 2),
        db="sqlite",
    )


def run_service(world: BenchWorld, *, batches: int) -> None:
    from huiyuan.kit.db import Database
    from huiyuan.kit.scope import system_for_brand
    from huiyuan.orders.bulk import record_orders_bulk

    data = _batches(world, "service", batches)
    actor = system_for_brand(world.brand_id)
    db = Database(world.url)
    created = 0
    started = time.perf_counter()
    for batch in data:
        with db.unit_of_work(actor.scope) as session:
            results = record_orders_bulk(session, actor=actor, orders=batch)
        created += sum(1 for r in results if r.status == "created")
    elapsed = time.perf_counter() - started
    db.dispose()
    emit(
        "bulk_orders.service",
        created / elapsed,
        "orders/s",
        orders=created,
        batch=BATCH,
        seconds=round(elapsed, 2),
        db="sqlite",
    )


def run_import_earn(world: BenchWorld, *, batches: int, earn: bool = True) -> None:
    """Bulk import with earning end to end: 1,000-order batches through ``record_orders_bulk``, then
    the outbox dispatcher until nothing is pending (points, tiers, identity, coupons handlers).

    ``bulk_orders.import_earn`` — the import earns (``earn=True``: the ``order.paid`` preparers run
    in the import's transaction), the dispatcher then finds the work done;
    ``bulk_orders.import_then_dispatch`` — the import only writes, the dispatcher earns.
    Orders/s over both phases, and each phase alone; each variant's orders go to its own half of the
    brand's members."""
    from datetime import UTC, datetime

    from sqlalchemy import func, select, update

    from bench.points import _earn_rules
    from huiyuan.kit.db import Database
    from huiyuan.kit.scope import system_for_brand
    from huiyuan.orders.bulk import record_orders_bulk
    from huiyuan.outbox.dispatcher import dispatch_pending
    from huiyuan.outbox.models import OutboxEvent
    from huiyuan.points.models import PointLot

    db = Database(world.url)
    actor = system_for_brand(world.brand_id)
    _earn_rules(db, world.brand_id)
    # Only this run's events count: everything queued before is marked handled.
    with db.unit_of_work() as s:
        s.execute(
            update(OutboxEvent)
            .where(OutboxEvent.dispatched_at.is_(None))
            .values(dispatched_at=datetime.now(UTC))
        )
        lots_before = s.scalar(select(func.count()).select_from(PointLot)) or 0
    # Each variant buys for its own half of the members, so neither starts from the other's upgrades.
    half = len(world.member_numbers) // 2
    buyers = world.member_numbers[half:] if earn else world.member_numbers[:half]
    data = _batches(dataclasses.replace(world, member_numbers=buyers), "earn" if earn else "then", batches)
    created = 0
    started = time.perf_counter()
    for batch in data:
        with db.unit_of_work(actor.scope) as session:
            results = record_orders_bulk(session, actor=actor, orders=batch, earn=earn)
        created += sum(1 for r in results if r.status == "created")
    imported = time.perf_counter() - started
    started = time.perf_counter()
    while dispatch_pending(db, batch=500).taken:
        pass
    dispatched = time.perf_counter() - started
    with db.unit_of_work(write=False) as s:
        lots = (s.scalar(select(func.count()).select_from(PointLot)) or 0) - lots_before
        left = s.scalar(
            select(func.count()).select_from(OutboxEvent).where(OutboxEvent.dispatched_at.is_(None))
        )
    db.dispose()
    emit(
        "bulk_orders.import_earn" if earn else "bulk_orders.import_then_dispatch",
        created / (imported + dispatched),
        "orders/s",
        orders=created,
        lots=lots,
        events_left=left,
        import_orders_per_s=round(created / imported, 1),
        dispatch_orders_per_s=round(created / dispatched, 1),
        seconds=round(imported + dispatched, 2),
        batch=BATCH,
        rules=2,
        path=f"record_orders_bulk(earn={earn}), then dispatch_pending",
        db="sqlite",
    )

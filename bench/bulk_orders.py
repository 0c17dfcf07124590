"""(b) Bulk order import: orders/s through ``POST /api/v1/orders/batch`` (1,000 orders a request, one
client) and through the service function ``record_orders_bulk`` called directly."""

from __future__ import annotations

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

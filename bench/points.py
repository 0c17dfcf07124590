"""(d) Points: the expiry job over many lots, checkout reserve + confirm, and earning from orders.

* ``points.expire`` — lots/s of the ``points.expire`` job (``sweeps.expire_due_bulk``, 20,000 lots a
  transaction, with checkpoints and progress) over ``--lots`` due lots spread over members five lots
  each, against the plain baseline in the same database: one ``UPDATE point_lots SET state =
  'expired', remaining = 0`` over the same number of due lots (what any expiry must at least do,
  without entries, lot moves or account caches).
* ``points.checkout`` — one client calling ``ledger.reserve`` then ``ledger.confirm`` (two
  transactions, as a POS does): pairs/s and p50/p99 of the pair.
* ``points.order_earn_api`` — orders posted one per request to the real server while its
  in-process worker (the outbox loop) earns their points, against ``GET /ping`` of the same server
  in the same run; plus the lag from the last order to its points. While orders arrive the loop
  takes small passes about half the time and leaves the rest to the requests, then drains the
  backlog in full batches (``huiyuan.jobs.runner``): the lag grows with the burst.
* ``points.earn_orders`` — orders/s earned by the outbox dispatcher (the ``order.paid`` handler
  evaluating a per-yuan rule and a growth rule, two lots per order) after a bulk import, against
  the bulk import itself in the same run.

* ``points.dispatch_pass`` — the time of one outbox dispatch pass over 1, 10 and 100 ``order.paid``
  events in process (the demo's rules), and its fixed part (``run_dispatch_pass``; not in
  ``bench.run``: call it with a world, as ``run_order_earn_api`` is).

Lots for the expiry figure are written directly (Core executemany) as active lots with their
account caches; their earn entries are left out, which the expiry does not read.
"""

from __future__ import annotations

import os
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.common import BenchWorld, emit

T0 = datetime(2026, 6, 1, 4, 0, tzinfo=UTC)


def _brand(db: Any, code: str) -> int:
    from huiyuan.kit.scope import SYSTEM
    from huiyuan.tenancy import service as tenancy

    with db.unit_of_work() as s:
        return int(tenancy.create_brand(s, actor=SYSTEM, code=code, name=code, member_number_prefix="PB").id)


def _point_types(db: Any, brand_id: int) -> None:
    from huiyuan.kit.scope import system_for_brand
    from huiyuan.points.models import PointType

    with db.unit_of_work(system_for_brand(brand_id).scope) as s:
        s.add(
            PointType(
                brand_id=brand_id,
                code="points",
                name="积分",
                kind="spendable",
                expiry_policy={"kind": "yearly_clearing", "month": 12, "day": 31, "years_after": 1},
            )
        )
        s.add(
            PointType(
                brand_id=brand_id,
                code="growth",
                name="成长值",
                kind="growth",
                expiry_policy={"kind": "never"},
            )
        )


def _seed_lots(db: Any, brand_id: int, lots: int, *, expired_before: datetime) -> None:
    """``lots`` active lots of 10 points, five per member, all due before ``expired_before``."""
    from sqlalchemy import insert, select

    from huiyuan.members.models import Member
    from huiyuan.points.models import PointAccount, PointLot, PointType

    members = max(1, lots // 5)
    with db.unit_of_work() as s:
        type_id = s.scalar(
            select(PointType.id).where(PointType.brand_id == brand_id, PointType.code == "points")
        )
        base = s.scalar(select(Member.id).order_by(Member.id.desc()).limit(1)) or 0
        step = 50_000
        for start in range(0, members, step):
            count = min(step, members - start)
            s.execute(
                insert(Member.__table__),  # type: ignore[arg-type]
                [
                    {
                        "brand_id": brand_id,
                        "member_number": f"PB{start + i:09d}",
                        "status": "active",
                        "gender": "unknown",
                        "interests": [],
                        "enroll_channel": "store",
                        "join_condition": "register",
                        "enrolled_at": T0,
                        "custom": {},
                        "version": 1,
                        "created_at": T0,
                        "updated_at": T0,
                    }
                    for i in range(count)
                ],
            )
        member_ids = list(s.scalars(select(Member.id).where(Member.brand_id == brand_id, Member.id > base)))
        s.execute(
            insert(PointAccount.__table__),  # type: ignore[arg-type]
            [
                {
                    "brand_id": brand_id,
                    "member_id": m,
                    "point_type_id": type_id,
                    "available": 50,
                    "pending": 0,
                    "frozen": 0,
                    "reserved": 0,
                    "debt": 0,
                    "earned_total": 50,
                    "spent_total": 0,
                    "expired_total": 0,
                    "created_at": T0,
                    "updated_at": T0,
                }
                for m in member_ids
            ],
        )
        accounts = {
            m: a
            for m, a in s.execute(
                select(PointAccount.member_id, PointAccount.id).where(PointAccount.brand_id == brand_id)
            )
        }
        rng = random.Random(5)
        rows = []
        for n in range(lots):
            m = member_ids[n % len(member_ids)]
            rows.append(
                {
                    "brand_id": brand_id,
                    "account_id": accounts[m],
                    "member_id": m,
                    "point_type_id": type_id,
                    "amount": 10,
                    "remaining": 10,
                    "state": "active",
                    "earned_at": expired_before - timedelta(days=400),
                    "activates_at": None,
                    "expires_at": expired_before - timedelta(minutes=rng.randint(1, 600)),
                    "nominal_expires_at": None,
                    "source_type": "order",
                    "source_id": None,
                    "store_id": None,
                    "funded_by": "brand",
                    "rule_id": None,
                    "unit_value": 0.01,
                    "frozen_reason": None,
                    "reversed_amount": 0,
                    "forgiven_amount": 0,
                    "created_at": T0,
                }
            )
            if len(rows) == 100_000:
                s.execute(insert(PointLot.__table__), rows)  # type: ignore[arg-type]
                rows = []
        if rows:
            s.execute(insert(PointLot.__table__), rows)  # type: ignore[arg-type]


def run_expiry(world: BenchWorld, *, lots: int) -> None:
    from sqlalchemy import func, select, text

    from huiyuan.jobs.context import JobContext
    from huiyuan.jobs.models import JobRun
    from huiyuan.jobs.registry import get_job
    from huiyuan.kit.db import Database
    from huiyuan.kit.scope import system_for_brand
    from huiyuan.points import jobs
    from huiyuan.points.models import PointLot

    db = Database(world.url)
    now = T0
    brand_id = _brand(db, f"bx{os.getpid()}")
    base_brand = _brand(db, f"by{os.getpid()}")
    for b in (brand_id, base_brand):
        _point_types(db, b)
    started = time.perf_counter()
    _seed_lots(db, brand_id, lots, expired_before=now)
    _seed_lots(db, base_brand, lots, expired_before=now)
    emit("points.expire.setup", time.perf_counter() - started, "s", lots=lots * 2)

    # Baseline: the bare UPDATE of the same number of due lots of the other brand.
    started = time.perf_counter()
    with db.unit_of_work() as s:
        s.execute(
            text(
                "UPDATE point_lots SET state = 'expired', remaining = 0 "
                "WHERE brand_id = :b AND state = 'active' AND expires_at <= :now"
            ),
            {"b": base_brand, "now": now.replace(tzinfo=None) if db.is_sqlite else now},
        )
    baseline = time.perf_counter() - started

    actor = system_for_brand(brand_id)
    with db.unit_of_work() as s:
        run = JobRun(
            brand_id=brand_id,
            kind="points.expire",
            status="running",
            params={},
            state={},
            created_by="bench",
            created_at=now,
        )
        s.add(run)
        s.flush()
        run_id = run.id
    fn = get_job("points.expire")
    assert fn is not None
    ctx = JobContext(
        db=db,
        run_id=run_id,
        kind="points.expire",
        brand_id=brand_id,
        params={"at": now.isoformat()},
        actor=actor,
    )
    started = time.perf_counter()
    result = fn(ctx)
    elapsed = time.perf_counter() - started
    with db.unit_of_work(write=False) as s:
        left = s.scalar(
            select(func.count())
            .select_from(PointLot)
            .where(PointLot.brand_id == brand_id, PointLot.state == "active")
        )
    dialect = db.engine.dialect.name
    db.dispose()
    assert result is not None
    emit(
        "points.expire",
        result["lots"] / elapsed,
        "lots/s",
        lots=result["lots"],
        points=result["points"],
        seconds=round(elapsed, 2),
        active_left=left,
        baseline_update_lots_per_s=round(lots / baseline, 1),
        ratio_to_bare_update=round((result["lots"] / elapsed) / (lots / baseline), 3),
        chunk=jobs.EXPIRE_CHUNK,
        db=dialect,
    )


def run_checkout(world: BenchWorld, *, pairs: int) -> None:
    from huiyuan.kit.db import Database
    from huiyuan.kit.scope import system_for_brand
    from huiyuan.members import service as members
    from huiyuan.members.schemas import MemberEnroll
    from huiyuan.points import ledger

    db = Database(world.url)
    brand_id = _brand(db, f"bc{os.getpid()}")
    _point_types(db, brand_id)
    actor = system_for_brand(brand_id)
    with db.unit_of_work(actor.scope) as s:
        member_id = members.enroll_member(s, actor=actor, data=MemberEnroll(enroll_channel="store")).id
        for n in range(20):
            ledger.earn(
                s,
                actor=actor,
                member_id=member_id,
                point_type="points",
                amount=100_000,
                key=f"seed-{n}",
                source_type="adjust",
            )
    latencies = []
    started = time.perf_counter()
    for n in range(pairs):
        t = time.perf_counter()
        with db.unit_of_work(actor.scope) as s:
            ledger.reserve(
                s,
                actor=actor,
                member_id=member_id,
                point_type="points",
                amount=10,
                key=f"chk-{n}",
                order_ref=f"POS-{n}",
            )
        with db.unit_of_work(actor.scope) as s:
            ledger.confirm(s, actor=actor, reservation_key=f"chk-{n}")
        latencies.append((time.perf_counter() - t) * 1000)
    elapsed = time.perf_counter() - started
    db.dispose()
    latencies.sort()
    emit(
        "points.checkout",
        pairs / elapsed,
        "pairs/s",
        p50_ms=round(latencies[len(latencies) // 2], 2),
        p99_ms=round(latencies[int(len(latencies) * 0.99) - 1], 2),
        pairs=pairs,
        lots_in_account=20,
        path="ledger.reserve + ledger.confirm, one transaction each, one client",
        db="sqlite",
    )


def run_earn_orders(world: BenchWorld, *, batches: int) -> None:
    from sqlalchemy import func, select

    from huiyuan.kit.db import Database
    from huiyuan.kit.scope import system_for_brand
    from huiyuan.orders.bulk import record_orders_bulk
    from huiyuan.outbox.dispatcher import dispatch_pending
    from huiyuan.outbox.models import OutboxEvent
    from huiyuan.points.models import PointLot

    db = Database(world.url)
    actor = system_for_brand(world.brand_id)
    _earn_rules(db, world.brand_id)
    # Everything queued so far (the demo world's history) is marked handled, so only new orders count.
    with db.unit_of_work() as s:
        s.query(OutboxEvent).filter(OutboxEvent.dispatched_at.is_(None)).update(
            {OutboxEvent.dispatched_at: datetime.now(UTC)}, synchronize_session=False
        )
    rng = random.Random("earn")
    data = [[world.order(rng, f"EARN-{os.getpid()}-{b}-{i}") for i in range(1000)] for b in range(batches)]
    started = time.perf_counter()
    created = 0
    for batch in data:
        with db.unit_of_work(actor.scope) as s:
            created += sum(
                1 for r in record_orders_bulk(s, actor=actor, orders=batch) if r.status == "created"
            )
    imported = time.perf_counter() - started
    started = time.perf_counter()
    while dispatch_pending(db, batch=500).taken:
        pass
    earned = time.perf_counter() - started
    with db.unit_of_work(write=False) as s:
        lots = s.scalar(select(func.count()).select_from(PointLot).where(PointLot.brand_id == world.brand_id))
    db.dispose()
    emit(
        "points.earn_orders",
        created / (imported + earned),
        "orders/s",
        orders=created,
        lots=lots,
        import_orders_per_s=round(created / imported, 1),
        dispatch_earn_orders_per_s=round(created / earned, 1),
        seconds=round(imported + earned, 2),
        rules=2,
        path="record_orders_bulk, then dispatch_pending (order.paid → rules → ledger.earn)",
        db="sqlite",
    )


def _ensure_types(db: Any, brand_id: int) -> None:
    from sqlalchemy import select

    from huiyuan.kit.scope import system_for_brand
    from huiyuan.points.models import PointType

    with db.unit_of_work(system_for_brand(brand_id).scope) as s:
        if s.scalar(select(PointType.id).where(PointType.brand_id == brand_id).limit(1)) is not None:
            return
    _point_types(db, brand_id)


BENCH_RULES = (
    (
        "bench-per-yuan",
        {
            "trigger": {"kind": "order"},
            "point_type": "points",
            "formula": {"kind": "per_amount", "per": "1.00", "points": 1},
        },
    ),
    (
        "bench-growth",
        {
            "trigger": {"kind": "order"},
            "point_type": "growth",
            "formula": {"kind": "per_amount", "per": "10.00", "points": 1},
        },
    ),
)


def _earn_rules(db: Any, brand_id: int) -> None:
    """Exactly two order rules active for the brand (1 point per yuan, 1 growth per 10 yuan): the
    demo's own rules are paused so the figures do not depend on how the demo programme is set up."""
    from sqlalchemy import select, update

    from huiyuan.kit.scope import system_for_brand
    from huiyuan.points.models import EarnRule
    from huiyuan.points.rule_schema import dump_definition, parse_definition

    _ensure_types(db, brand_id)
    codes = [code for code, _ in BENCH_RULES]
    with db.unit_of_work(system_for_brand(brand_id).scope) as s:
        s.execute(
            update(EarnRule)
            .where(EarnRule.brand_id == brand_id, EarnRule.code.not_in(codes), EarnRule.status == "active")
            .values(status="paused")
        )
        have = set(
            s.scalars(select(EarnRule.code).where(EarnRule.brand_id == brand_id, EarnRule.code.in_(codes)))
        )
        for code, definition in BENCH_RULES:
            if code not in have:
                s.add(
                    EarnRule(
                        brand_id=brand_id,
                        code=code,
                        name=code,
                        trigger="order",
                        definition=dump_definition(parse_definition(definition)),
                    )
                )


def run_order_earn_api(world: BenchWorld, *, clients: int, seconds: float, workers: int = 1) -> None:
    import json

    from sqlalchemy import func, select

    from bench.common import hammer, server, server_cpu_seconds
    from huiyuan.kit.db import Database
    from huiyuan.outbox.models import OutboxEvent

    db = Database(world.url)
    _earn_rules(db, world.brand_id)
    with db.unit_of_work() as s:
        s.query(OutboxEvent).filter(OutboxEvent.dispatched_at.is_(None)).update(
            {OutboxEvent.dispatched_at: datetime.now(UTC)}, synchronize_session=False
        )
    headers = {"Authorization": f"Bearer {world.api_key}", "Content-Type": "application/json"}
    rngs = [random.Random(100 + i) for i in range(clients)]
    pid = os.getpid()

    def order(client: int, n: int) -> tuple[str, str, bytes | None]:
        body = world.order(rngs[client], f"EARNAPI-{pid}-{client}-{n}")
        return "POST", "/api/v1/orders", json.dumps(body).encode()

    def ping(_client: int, _n: int) -> tuple[str, str, bytes | None]:
        return "GET", "/ping", None

    def waiting() -> int:
        with db.unit_of_work(write=False) as s:
            return int(
                s.scalar(
                    select(func.count()).select_from(OutboxEvent).where(OutboxEvent.dispatched_at.is_(None))
                )
                or 0
            )

    with server(world.url, worker=True, workers=workers) as base:
        pinged = hammer(base, headers, ping, clients=clients, seconds=seconds)
        cpu_start = server_cpu_seconds(base)
        orders = hammer(base, headers, order, clients=clients, seconds=seconds)
        posted_at = time.perf_counter()
        left = waiting()
        while left and time.perf_counter() - posted_at < 300:
            time.sleep(0.5)
            left = waiting()
        lag = time.perf_counter() - posted_at
        cpu_end = server_cpu_seconds(base)
    db.dispose()
    # Server CPU per order from its request to its points (the worker's earning included), and the
    # server-side ratio: CPU of a ping over CPU of an order, which the load generator cannot skew.
    per_order = (
        (cpu_end - cpu_start) / orders.requests * 1000
        if cpu_start is not None and cpu_end is not None and orders.requests
        else None
    )
    per_ping = pinged.server_ms_per_request()
    emit(
        "points.order_earn_api",
        orders.rate,
        "req/s",
        p50_ms=round(orders.percentile(50), 2),
        p99_ms=round(orders.percentile(99), 2),
        ratio_to_ping=round(orders.rate / pinged.rate, 3) if pinged.rate else 0.0,
        ping_rps=round(pinged.rate, 1),
        requests=orders.requests,
        errors=orders.errors,
        statuses={str(k): v for k, v in orders.statuses.items()},
        earn_lag_s_after_last_order=round(lag, 2),
        events_left=left,
        server_ms_per_ping=per_ping,
        server_ms_per_order_request=orders.server_ms_per_request(),
        server_ms_per_order_earned=round(per_order, 3) if per_order is not None else None,
        server_cpu_ratio=round(per_ping / per_order, 3) if per_ping and per_order else None,
        clients=clients,
        server=(
            f"huiyuan serve --workers {workers}, the worker in the supervising process earning the points"
            if workers > 1
            else "huiyuan serve (1 uvicorn worker) with its in-process worker earning the points"
        ),
        db="sqlite",
    )


def run_dispatch_pass(
    world: BenchWorld, *, sizes: tuple[int, ...] = (1, 10, 100), repeats: int = 5, profile: str | None = None
) -> None:
    """The cost of one outbox dispatch pass over ``n`` ``order.paid`` events (the demo's rules, as
    the demo world set them up), in process: orders are recorded with ``record_orders_bulk``, then
    one ``dispatch_pending`` takes exactly their events. The median of ``repeats`` passes per size;
    ``fixed_ms`` is the intercept of the line through the sizes' medians (per-pass cost at zero
    events). With ``profile`` (a path prefix) each size's passes are also written as cProfile stats."""
    import cProfile
    import statistics

    from huiyuan.kit.db import Database
    from huiyuan.kit.scope import system_for_brand
    from huiyuan.orders.bulk import record_orders_bulk
    from huiyuan.outbox.dispatcher import dispatch_pending, drain
    from huiyuan.outbox.models import OutboxEvent

    db = Database(world.url)
    actor = system_for_brand(world.brand_id)
    with db.unit_of_work() as s:
        s.query(OutboxEvent).filter(OutboxEvent.dispatched_at.is_(None)).update(
            {OutboxEvent.dispatched_at: datetime.now(UTC)}, synchronize_session=False
        )
    rng = random.Random("pass")
    run = f"{os.getpid()}-{time.monotonic_ns()}"
    medians: dict[int, float] = {}
    serial = 0
    for size in sizes:
        timings = []
        profiler = cProfile.Profile() if profile else None
        for attempt in range(repeats + 1):  # the first pass warms caches and is not counted
            serial += 1
            batch = [world.order(rng, f"PASS-{run}-{serial}-{i}") for i in range(size)]
            with db.unit_of_work(actor.scope) as s:
                record_orders_bulk(s, actor=actor, orders=batch)
            # Other events of the orders (and of earlier passes) first: the pass takes order.paid only.
            with db.unit_of_work() as s:
                s.query(OutboxEvent).filter(
                    OutboxEvent.dispatched_at.is_(None), OutboxEvent.type != "order.paid"
                ).update({OutboxEvent.dispatched_at: datetime.now(UTC)}, synchronize_session=False)
            started = time.perf_counter()
            if profiler is not None and attempt:
                profiler.enable()
            stats = dispatch_pending(db, batch=size)
            if profiler is not None and attempt:
                profiler.disable()
            elapsed = time.perf_counter() - started
            if attempt:
                timings.append(elapsed)
            assert stats.taken == size, stats
        drain(db)
        medians[size] = statistics.median(timings)
        if profiler is not None:
            profiler.dump_stats(f"{profile}-{size}.prof")
    db.dispose()
    xs = list(medians)
    slope = (medians[xs[-1]] - medians[xs[0]]) / (xs[-1] - xs[0]) if len(xs) > 1 else 0.0
    fixed = medians[xs[0]] - slope * xs[0]
    emit(
        "points.dispatch_pass",
        fixed * 1000,
        "ms",
        fixed_ms=round(fixed * 1000, 2),
        per_event_ms=round(slope * 1000, 3),
        pass_ms={str(n): round(m * 1000, 2) for n, m in medians.items()},
        repeats=repeats,
        path="record_orders_bulk, then one dispatch_pending over exactly the order.paid events",
        rules="the demo world's",
        db="sqlite",
    )

"""(b) Bulk order import: orders/s through ``POST /api/v1/orders/batch`` (1,000 orders a request, one
client) and through the service function ``record_orders_bulk`` called directly; bulk import with
earning end to end (``run_import_earn``)."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import sqlite3
import time
from contextlib import closing
from itertools import chain
from pathlib import Path

import httpx

from bench.common import BenchWorld, emit, postgresql_database

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


def run_import_earn(
    world: BenchWorld, *, batches: int, earn: bool = True, floor_postgresql: str | None = None
) -> None:
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
    floor = _FloorCopy.take(world) if earn else None
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
    if floor is not None:
        floor.run(created, batches=batches, postgresql=floor_postgresql)


@dataclasses.dataclass
class _FloorCopy:
    """``bulk_orders.write_floor``: the least an import with earning must do on SQLite.

    Taken just before ``run_import_earn(earn=True)``: a copy of the database file as it stands, and
    the last rowid of every table. After the import, every row the import and the dispatcher added
    (orders, lines, payments, events, lots, entries, lot moves, tier rows, audit …) is read back and
    inserted, already in the database's own types, into the copy with plain ``sqlite3``: the same
    rows, the same indexes, WAL and ``synchronous=NORMAL``, one transaction per batch, and no Python
    work between the statements but slicing the rows. Rows the import only updated (account balances,
    tiers) are not replayed and foreign keys are not checked, so the floor is lower than the least
    real cost. No import on SQLite on this machine can beat this figure; the gap between the two is
    what our code costs."""

    source: Path
    copy: Path
    last_rowids: dict[str, int]

    @classmethod
    def take(cls, world: BenchWorld) -> _FloorCopy:
        source = Path(world.url.removeprefix("sqlite:///"))
        copy = source.with_name("floor.db")
        with closing(sqlite3.connect(source)) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            last = {
                table: conn.execute(f'SELECT coalesce(max(rowid), 0) FROM "{table}"').fetchone()[0]
                for table in _tables(conn)
            }
        shutil.copyfile(source, copy)
        return cls(source, copy, last)

    def run(self, orders: int, *, batches: int, postgresql: str | None = None) -> None:
        new: dict[str, list[tuple[object, ...]]] = {}
        columns: dict[str, list[str]] = {}
        with closing(sqlite3.connect(self.source)) as conn:
            for table, after in self.last_rowids.items():
                cursor = conn.execute(f'SELECT * FROM "{table}" WHERE rowid > ? ORDER BY rowid', (after,))
                rows = cursor.fetchall()
                if rows:
                    new[table] = rows
                    columns[table] = [d[0] for d in cursor.description]
        total = sum(len(r) for r in new.values())

        def figure(elapsed: float, **context: object) -> None:
            emit(
                "bulk_orders.write_floor",
                orders / elapsed,
                "orders/s",
                orders=orders,
                rows=total,
                rows_per_order=round(total / orders, 1),
                rows_per_s=round(total / elapsed),
                seconds=round(elapsed, 2),
                tables={table: len(r) for table, r in sorted(new.items(), key=lambda kv: -len(kv[1]))},
                **context,
            )

        # Both ways of handing rows to SQLite: one statement per row (executemany), and multi-row
        # statements of up to 256 rows (what the event store does); each into a fresh copy.
        for per_statement in (1, 256):
            target = self.copy.with_name(f"floor-{per_statement}.db")
            shutil.copyfile(self.copy, target)
            elapsed = _replay(target, new, batches=batches, per_statement=per_statement)
            target.unlink()
            figure(
                elapsed,
                rows_per_statement=per_statement,
                path="plain sqlite3 inserts of the rows import_earn added, into a copy of the file before it",
                db="sqlite",
            )
        self.copy.unlink()
        if postgresql is not None:
            from huiyuan.kit.migrate import upgrade

            with postgresql_database(postgresql, "floor") as url:
                upgrade(url)
                elapsed = _replay_postgresql(url, new, columns, batches=batches)
            figure(
                elapsed,
                path="COPY of the same rows into an empty migrated PostgreSQL database (foreign keys off)",
                db="postgresql",
            )


def _replay(
    path: Path, new: dict[str, list[tuple[object, ...]]], *, batches: int, per_statement: int
) -> float:
    """Seconds to insert ``new`` into ``path``: each table's rows in ``batches`` equal slices, one
    transaction per slice, ``per_statement`` rows a statement."""
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL"):
        conn.execute(f"PRAGMA {pragma}")

    def sql(table: str, width: int, rows: int) -> str:
        return f'INSERT INTO "{table}" VALUES ' + ", ".join(["(" + ", ".join("?" * width) + ")"] * rows)

    started = time.perf_counter()
    for b in range(batches):
        conn.execute("BEGIN")
        for table, rows in new.items():
            part = rows[len(rows) * b // batches : len(rows) * (b + 1) // batches]
            width = len(rows[0])
            if per_statement == 1:
                conn.executemany(sql(table, width, 1), part)
                continue
            for at in range(0, len(part), per_statement):
                chunk = part[at : at + per_statement]
                conn.execute(sql(table, width, len(chunk)), tuple(chain.from_iterable(chunk)))
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


def _replay_postgresql(
    url: str, new: dict[str, list[tuple[object, ...]]], columns: dict[str, list[str]], *, batches: int
) -> float:
    """Seconds to ``COPY`` ``new`` into the migrated database at ``url``, in ``batches`` transactions.
    The rows are SQLite's (times as UTC text, money as fen, JSON as text), which PostgreSQL's text
    input reads as they are. ``session_replication_role = replica`` turns off the foreign-key
    triggers: the rows refer to members and products that exist only in the SQLite file."""
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute("SET TimeZone = 'UTC'")
        conn.commit()
        started = time.perf_counter()
        for b in range(batches):
            with conn.transaction(), conn.cursor() as cur:
                for table, rows in new.items():
                    names = ", ".join(f'"{c}"' for c in columns[table])
                    with cur.copy(f'COPY "{table}" ({names}) FROM STDIN') as copy:
                        for row in rows[len(rows) * b // batches : len(rows) * (b + 1) // batches]:
                            copy.write_row(row)
        return time.perf_counter() - started


def _tables(conn: sqlite3.Connection) -> list[str]:
    """The tables with a rowid, in the order the migration created them. The one without
    (``event_people``, the person index of events) is not written by an order import."""
    return [
        name
        for name, sql in conn.execute(
            "SELECT name, sql FROM sqlite_master"
            " WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid"
        )
        if "WITHOUT ROWID" not in sql.upper()
    ]

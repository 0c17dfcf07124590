"""Set-based expiry of due lots: the path the ``points.expire`` job takes over millions of lots.

``ledger.expire_due`` expires lots one by one through the ORM (and handles decay carry-over).
Here a chunk of due lots is expired by a dozen statements that work on rows inside the database,
whatever the chunk's size: the chunk's lots are copied into a per-connection temporary table
(``expiring_lots``), their accounts are locked in id order and the copy refreshed under the lock,
then one ``INSERT … SELECT`` writes an ``expire`` entry per account and bucket, one more the lot
moves of every lot each entry empties, one ``UPDATE … FROM`` lowers the account caches and one
``UPDATE`` closes the lots. No lot row travels through Python. Lots of point types whose policy
carries a share into the next cycle (``decay_ratio`` > 0) are handed to ``ledger.expire_due``'s
per-lot path, which writes the carry-over lot.

The effect is exactly the per-lot path's: same buckets, same lot moves, the same invariants
(``tests/points/test_sweeps.py`` runs both on the same data and compares).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    case,
    cast,
    delete,
    exists,
    func,
    insert,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from huiyuan.kit.scope import Principal
from huiyuan.points import expiry_policy, ledger
from huiyuan.points.models import PointAccount, PointEntry, PointEntryLot, PointLot, PointOperation, PointType

# Plain tables: the statements below are Core statements over rows of one brand, filtered by hand.
ACCOUNTS: Table = PointAccount.__table__  # type: ignore[assignment]
ENTRIES: Table = PointEntry.__table__  # type: ignore[assignment]
MOVES: Table = PointEntryLot.__table__  # type: ignore[assignment]
LOTS: Table = PointLot.__table__  # type: ignore[assignment]
OPERATIONS: Table = PointOperation.__table__  # type: ignore[assignment]

DUE_STATES = ("active", "frozen", "pending")

# The chunk being expired, as re-read under the account locks. A temporary table lives on one
# connection and is seen by no other; it is created once per connection and emptied per chunk
# (on PostgreSQL also at every commit).
EXPIRING = Table(
    "expiring_lots",
    MetaData(),
    Column("id", BigInteger, primary_key=True),
    Column("account_id", BigInteger, nullable=False),
    Column("member_id", BigInteger, nullable=False),
    Column("point_type_id", BigInteger, nullable=False),
    Column("state", String(16), nullable=False),
    Column("remaining", Integer, nullable=False),
)
_CREATE_EXPIRING = {
    # INTEGER PRIMARY KEY: the rowid itself on SQLite, no second index.
    "sqlite": "CREATE TEMP TABLE IF NOT EXISTS expiring_lots (id INTEGER PRIMARY KEY, "
    "account_id INTEGER NOT NULL, member_id INTEGER NOT NULL, point_type_id INTEGER NOT NULL, "
    "state VARCHAR(16) NOT NULL, remaining INTEGER NOT NULL)",
    "postgresql": "CREATE TEMP TABLE IF NOT EXISTS expiring_lots (id BIGINT PRIMARY KEY, "
    "account_id BIGINT NOT NULL, member_id BIGINT NOT NULL, point_type_id BIGINT NOT NULL, "
    "state VARCHAR(16) NOT NULL, remaining INTEGER NOT NULL) ON COMMIT DELETE ROWS",
}

# SQLite's page cache while a chunk is expired, in KiB. A chunk dirties pages all over the lots'
# state indexes; with chunks of 20,000 lots, a cache that holds them expired ~1.6 times as many lots
# a second as the default 2 MB (docs/performance.md). The connection gets its own size back before
# the commit: dirty pages stay cached whatever the size, clean ones beyond it are dropped.
CHUNK_PAGE_CACHE_KIB = 65536


@contextmanager
def _roomy_page_cache(session: Session) -> Iterator[None]:
    if session.get_bind().dialect.name != "sqlite":
        yield
        return
    connection = session.connection()
    before = connection.exec_driver_sql("PRAGMA cache_size").scalar_one()
    connection.exec_driver_sql(f"PRAGMA cache_size = -{CHUNK_PAGE_CACHE_KIB}")
    try:
        yield
    finally:
        connection.exec_driver_sql(f"PRAGMA cache_size = {int(before)}")


def _decaying_types(session: Session, brand_id: int) -> set[int]:
    decaying: set[int] = set()
    for type_id, policy in session.execute(
        select(PointType.id, PointType.expiry_policy).where(PointType.brand_id == brand_id)
    ):
        parsed = expiry_policy.parse_policy(policy)
        if float(getattr(parsed, "decay_ratio", 0) or 0) > 0:
            decaying.add(type_id)
    return decaying


def _due(brand_id: int, now: datetime) -> ColumnElement[bool]:
    return and_(
        LOTS.c.brand_id == brand_id,
        LOTS.c.state.in_(DUE_STATES),
        LOTS.c.expires_at.is_not(None),
        LOTS.c.expires_at <= now,
    )


def expire_due_bulk(
    session: Session, *, actor: Principal, now: datetime, after_lot_id: int = 0, limit: int = 5000
) -> tuple[int, int, int]:
    """Expire up to ``limit`` due lots with id > ``after_lot_id``; returns (lots, points, last id).

    Idempotent like ``ledger.expire_due``: only lots still active, pending or frozen are touched.
    """
    brand_id = actor.scope.require_brand()
    # The chunk is the due lots in (after_lot_id, last_id]: only its bounds come back to Python.
    chunk = (
        select(LOTS.c.id)
        .where(_due(brand_id, now), LOTS.c.id > after_lot_id)
        .order_by(LOTS.c.id)
        .limit(limit)
        .subquery()
    )
    found, last_id = session.execute(select(func.count(), func.max(chunk.c.id))).one()
    if not found:
        return 0, 0, after_lot_id
    in_chunk = and_(_due(brand_id, now), LOTS.c.id > after_lot_id, LOTS.c.id <= last_id)
    decaying = _decaying_types(session, brand_id)
    fast = and_(in_chunk, LOTS.c.point_type_id.not_in(decaying)) if decaying else in_chunk
    with _roomy_page_cache(session):
        points = _expire_fast(session, actor=actor, brand_id=brand_id, now=now, lots=fast)
    if decaying:
        slow = session.scalars(
            select(LOTS.c.id).where(in_chunk, LOTS.c.point_type_id.in_(decaying)).order_by(LOTS.c.id)
        ).all()
        for lot_id in slow:
            # Lots of decaying types go one by one through the ORM path, which writes the carry lot.
            _lots, got, _last = ledger.expire_due(
                session, actor=actor, now=now, after_lot_id=lot_id - 1, limit=1
            )
            points += got
    return int(found), points, int(last_id)


def _expire_fast(
    session: Session, *, actor: Principal, brand_id: int, now: datetime, lots: ColumnElement[bool]
) -> int:
    dialect = session.get_bind().dialect.name
    t = EXPIRING.c
    session.execute(text(_CREATE_EXPIRING[dialect]))
    session.execute(delete(EXPIRING))
    session.execute(
        insert(EXPIRING).from_select(
            ["id", "account_id", "member_id", "point_type_id", "state", "remaining"],
            select(
                LOTS.c.id,
                LOTS.c.account_id,
                LOTS.c.member_id,
                LOTS.c.point_type_id,
                LOTS.c.state,
                LOTS.c.remaining,
            ).where(lots),
        )
    )
    if dialect != "sqlite":
        # Lock the accounts (id order), then re-read the lots under the lock: a concurrent spend may
        # have drawn from them since they were copied. On SQLite the copy was made under the
        # database's single write lock (``BEGIN IMMEDIATE``), so there is nothing to re-read.
        session.execute(
            select(ACCOUNTS.c.id)
            .where(ACCOUNTS.c.id.in_(select(t.account_id)))
            .order_by(ACCOUNTS.c.id)
            .with_for_update()
        )
        session.execute(
            delete(EXPIRING).where(~exists().where(LOTS.c.id == t.id, LOTS.c.state.in_(DUE_STATES)))
        )
        session.execute(
            update(EXPIRING).where(LOTS.c.id == t.id).values(state=LOTS.c.state, remaining=LOTS.c.remaining)
        )
    found, first_id, last_id, points = session.execute(
        select(func.count(), func.min(t.id), func.max(t.id), func.coalesce(func.sum(t.remaining), 0))
    ).one()
    if not found:
        return 0
    points = int(points)
    label = actor.label[:120]
    op_key = f"expire:{now.isoformat()}:{first_id}-{last_id}"
    op_id = session.execute(
        insert(OPERATIONS)
        .values(
            brand_id=brand_id,
            key=op_key,
            kind="expire",
            request_hash=ledger._hash({"key": op_key}),
            member_id=None,
            result={"lots": int(found), "points": points},
            actor=label,
            created_at=now,
        )
        .returning(OPERATIONS.c.id)
    ).scalar_one()
    if points == 0:
        session.execute(update(LOTS).where(LOTS.c.id.in_(select(t.id))).values(state="expired", remaining=0))
        return 0

    held = t.remaining > 0

    def drop(state: str, amount: Any) -> Any:
        return case((t.state == state, -amount), else_=0)

    # One entry per (account, bucket), in the order of their first lots; its lot moves name every
    # lot it emptied. The entries are found again by account among the ids written after ``before``.
    before = session.execute(select(func.coalesce(func.max(ENTRIES.c.id), 0))).scalar_one()
    total = func.sum(t.remaining)
    first, last = cast(func.min(t.id), String), cast(func.max(t.id), String)
    session.execute(
        insert(ENTRIES).from_select(
            [
                "brand_id",
                "operation_id",
                "account_id",
                "member_id",
                "point_type_id",
                "kind",
                "amount",
                "d_available",
                "d_pending",
                "d_frozen",
                "d_reserved",
                "d_debt",
                "source_type",
                "source_id",
                "actor",
                "occurred_at",
                "created_at",
            ],
            select(
                literal(brand_id, BigInteger),
                literal(op_id, BigInteger),
                t.account_id,
                func.min(t.member_id),
                func.min(t.point_type_id),
                literal("expire", String),
                -total,
                drop("active", total),
                drop("pending", total),
                drop("frozen", total),
                literal(0, Integer),
                literal(0, Integer),
                literal("lots", String),
                case((func.count() == 1, first), else_=first + ".." + last),
                literal(label, String),
                literal(now, ENTRIES.c.occurred_at.type),
                literal(now, ENTRIES.c.created_at.type),
            )
            .where(held)
            .group_by(t.account_id, t.state)
            .order_by(func.min(t.id)),
        )
    )
    entry_bucket = case(
        (t.state == "active", ENTRIES.c.d_available),
        (t.state == "pending", ENTRIES.c.d_pending),
        else_=ENTRIES.c.d_frozen,
    )
    session.execute(
        insert(MOVES).from_select(
            ["brand_id", "entry_id", "lot_id", "amount"],
            select(literal(brand_id, BigInteger), ENTRIES.c.id, t.id, -t.remaining)
            .select_from(
                EXPIRING.join(
                    ENTRIES,
                    and_(
                        ENTRIES.c.account_id == t.account_id,
                        ENTRIES.c.id > before,
                        ENTRIES.c.operation_id == op_id,
                        entry_bucket < 0,
                    ),
                )
            )
            .where(held)
            .order_by(t.id),
        )
    )
    # Buckets go down by what expired; expired_total up by the same.
    per_account = (
        select(
            t.account_id,
            func.sum(case((t.state == "active", t.remaining), else_=0)).label("active"),
            func.sum(case((t.state == "pending", t.remaining), else_=0)).label("pending"),
            func.sum(case((t.state == "frozen", t.remaining), else_=0)).label("frozen"),
            func.sum(t.remaining).label("total"),
        )
        .where(held)
        .group_by(t.account_id)
        .subquery()
    )
    session.execute(
        update(ACCOUNTS)
        .where(ACCOUNTS.c.id == per_account.c.account_id)
        .values(
            available=ACCOUNTS.c.available - per_account.c.active,
            pending=ACCOUNTS.c.pending - per_account.c.pending,
            frozen=ACCOUNTS.c.frozen - per_account.c.frozen,
            expired_total=ACCOUNTS.c.expired_total + per_account.c.total,
            updated_at=now,
        )
    )
    session.execute(update(LOTS).where(LOTS.c.id.in_(select(t.id))).values(state="expired", remaining=0))
    return points

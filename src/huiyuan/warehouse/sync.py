"""Copy the OLTP tables into the DuckDB warehouse, incrementally.

* **Cursors.** Each table has a cursor in ``_sync_state``: the last id copied for append-only
  tables (points entries, events), or the last ``(updated_at, id)`` for rows that change (stores,
  products, members, identity map, orders, coupon redemptions). Changed rows replace their old
  copy (primary key). An order brings its lines along: they are replaced with it.
* **Idempotent and resumable.** A chunk's rows and its cursor are written in one DuckDB
  transaction: a sync that stops (crash, kill) resumes after the last whole chunk, and a second sync
  finds nothing to copy.
* **Late commits.** A row is copied only once its ``updated_at`` is ``settle_seconds`` old, so a
  transaction that committed after a later one (its ``updated_at`` is older than the cursor) is not
  skipped; the default is 5 seconds.
* **Identities.** ``dim_member.oneid`` and the events' ``person_key`` come from the identity map as
  of the sync: ``person_key`` is the OneID of the event's user id or anonymous id, else
  ``member:<id>`` when the user id is a member number, else ``anon:<anonymous id>``. A later merge
  shows in rows copied afterwards; ``rebuild`` recomputes every row.
* **No PII.** Phones, e-mails, names and identifier values never leave OLTP: only blind indexes.

Rows are read in chunks with SQLAlchemy Core and handed to DuckDB as Arrow tables.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import duckdb
import orjson
import pyarrow as pa
from sqlalchemy import Table, and_, func, or_, select
from sqlalchemy.orm import Session

from huiyuan.coupons.models import CouponLock
from huiyuan.events.models import Event
from huiyuan.identity import config as identity_config
from huiyuan.identity.models import IdentifierNode
from huiyuan.identity.rules import blind_index
from huiyuan.kit.clock import utcnow
from huiyuan.kit.db import Database
from huiyuan.members.models import Member
from huiyuan.orders.models import Category, Order, OrderItem, Product
from huiyuan.points.models import PointEntry, PointType
from huiyuan.tenancy.models import Brand, Store
from huiyuan.warehouse.schema import create_all

CHUNK = 5_000


class Reporter(Protocol):
    def start(self, phase: str, total: int) -> None: ...
    def advance(self, phase: str, rows: int) -> None: ...
    def finish(self, phase: str) -> None: ...


class _Quiet:
    def start(self, phase: str, total: int) -> None:
        return None

    def advance(self, phase: str, rows: int) -> None:
        return None

    def finish(self, phase: str) -> None:
        return None


@dataclass
class SyncReport:
    """Rows copied per table by one sync (0: the table was up to date)."""

    copied: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return sum(self.copied.values())


def _ts(value: datetime | None) -> datetime | None:
    """A naive UTC timestamp, as the warehouse keeps them."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


class _Context:
    """What building rows needs besides the rows: brand time zones, identity rules, caches."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.zones = {
            bid: ZoneInfo(tz or "Asia/Shanghai")
            for bid, tz in session.execute(select(Brand.id, Brand.timezone))
        }
        self._books: dict[int, Any] = {}
        self.point_types = dict(session.execute(select(PointType.id, PointType.code)).tuples().all())

    def date_key(self, brand_id: int, at: datetime | None) -> int | None:
        if at is None:
            return None
        aware = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
        day = aware.astimezone(self.zones.get(brand_id, ZoneInfo("Asia/Shanghai"))).date()
        return day.year * 10_000 + day.month * 100 + day.day

    def bidx(self, brand_id: int, code: str, value: str | None) -> str | None:
        """The blind index the identity graph keeps for ``value`` of type ``code``."""
        if value is None or not str(value).strip():
            return None
        book = self._books.get(brand_id)
        if book is None:
            book = self._books[brand_id] = identity_config.load(self.session, brand_id).book
        return blind_index(code, book.normalise(code, str(value)))


Builder = Callable[[_Context, Sequence[Any]], dict[str, list[Any]]]


@dataclass(frozen=True)
class _Source:
    name: str
    table: Table
    mutable: bool  # cursor on (updated_at, id), else on id
    build: Builder
    # DuckDB SELECT over the registered ``chunk`` that yields the warehouse rows (joins, exclusions).
    select_sql: str = "SELECT * FROM chunk"


def _stores(ctx: _Context, rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    return {
        "brand_id": [r["brand_id"] for r in rows],
        "store_id": [r["id"] for r in rows],
        "code": [r["code"] for r in rows],
        "name": [r["name"] for r in rows],
        "city": [r["city"] for r in rows],
        "province": [r["province"] for r in rows],
        "kind": [r["kind"] for r in rows],
        "status": [r["status"] for r in rows],
        "updated_at": [_ts(r["updated_at"]) for r in rows],
    }


def _products(ctx: _Context, rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    ids = {r["category_id"] for r in rows if r["category_id"] is not None}
    categories = (
        {
            cid: (name, path)
            for cid, name, path in ctx.session.execute(
                select(Category.id, Category.name, Category.path).where(Category.id.in_(ids))
            )
        }
        if ids
        else {}
    )
    return {
        "brand_id": [r["brand_id"] for r in rows],
        "product_id": [r["id"] for r in rows],
        "sku": [r["sku"] for r in rows],
        "name": [r["name"] for r in rows],
        "category": [categories.get(r["category_id"], (None, None))[0] for r in rows],
        "category_path": [categories.get(r["category_id"], (None, None))[1] for r in rows],
        "brand_name": [r["product_brand"] for r in rows],
        "list_price": [r["list_price"] for r in rows],
        "status": [r["status"] for r in rows],
        "updated_at": [_ts(r["updated_at"]) for r in rows],
    }


def _identity(ctx: _Context, rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    return {
        "brand_id": [r["brand_id"] for r in rows],
        "node_id": [r["id"] for r in rows],
        "identifier_type": [r["type"] for r in rows],
        "identifier_bidx": [r["value_bidx"] for r in rows],
        "oneid": [str(r["oneid"]) for r in rows],
        "updated_at": [_ts(r["updated_at"]) for r in rows],
    }


def _members(ctx: _Context, rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    return {
        "brand_id": [r["brand_id"] for r in rows],
        "member_id": [r["id"] for r in rows],
        "member_number": [r["member_number"] for r in rows],
        "_bidx": [ctx.bidx(r["brand_id"], "member_number", r["member_number"]) for r in rows],
        "status": [r["status"] for r in rows],
        "enroll_channel": [r["enroll_channel"] for r in rows],
        "enroll_store_id": [r["enroll_store_id"] for r in rows],
        "enrolled_at": [_ts(r["enrolled_at"]) for r in rows],
        "enrolled_date_key": [ctx.date_key(r["brand_id"], r["enrolled_at"]) for r in rows],
        "city": [r["city"] for r in rows],
        "province": [r["province"] for r in rows],
        "gender": [r["gender"] for r in rows],
        "birth_year": [r["birthday"].year if r["birthday"] else None for r in rows],
        "updated_at": [_ts(r["updated_at"]) for r in rows],
    }


_MEMBERS_SQL = """
    SELECT c.* EXCLUDE (_bidx), m.oneid AS oneid FROM chunk c
    LEFT JOIN identity_map m
      ON m.brand_id = c.brand_id AND m.identifier_type = 'member_number' AND m.identifier_bidx = c._bidx
"""


def _orders(ctx: _Context, rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    return {
        "brand_id": [r["brand_id"] for r in rows],
        "order_id": [r["id"] for r in rows],
        "order_number": [r["order_number"] for r in rows],
        "member_id": [r["member_id"] for r in rows],
        "store_id": [r["store_id"] for r in rows],
        "channel": [r["channel"] for r in rows],
        "status": [r["status"] for r in rows],
        "paid_at": [_ts(r["paid_at"]) for r in rows],
        "created_at": [_ts(r["created_at"]) for r in rows],
        "amount": [r["paid_amount"] for r in rows],
        "list_amount": [r["list_amount"] for r in rows],
        "discount": [r["discount_amount"] for r in rows],
        "refunded": [r["refunded_amount"] for r in rows],
        "units": [r["units"] for r in rows],
        "date_key": [ctx.date_key(r["brand_id"], r["paid_at"]) for r in rows],
        "updated_at": [_ts(r["updated_at"]) for r in rows],
    }


_ORDERS_SQL = """
    SELECT c.*, CASE WHEN c.member_id IS NULL THEN NULL
                     ELSE coalesce(m.oneid, 'member:' || c.member_id) END AS person_key
    FROM chunk c LEFT JOIN dim_member m ON m.member_id = c.member_id
"""


def _items(session: Session, order_ids: list[int]) -> dict[str, list[Any]]:
    rows = (
        session.execute(select(OrderItem.__table__).where(OrderItem.order_id.in_(order_ids))).mappings().all()
    )
    return {
        "brand_id": [r["brand_id"] for r in rows],
        "item_id": [r["id"] for r in rows],
        "order_id": [r["order_id"] for r in rows],
        "line_no": [r["line_no"] for r in rows],
        "product_id": [r["product_id"] for r in rows],
        "sku": [r["sku"] for r in rows],
        "category_id": [r["category_id"] for r in rows],
        "quantity": [r["quantity"] for r in rows],
        "amount": [r["amount"] for r in rows],
        "paid_amount": [r["paid_amount"] for r in rows],
        "discount": [r["list_price"] * r["quantity"] - r["paid_amount"] for r in rows],
        "refunded_quantity": [r["refunded_quantity"] for r in rows],
        "refunded": [r["refunded_amount"] for r in rows],
    }


def _points(ctx: _Context, rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    return {
        "brand_id": [r["brand_id"] for r in rows],
        "entry_id": [r["id"] for r in rows],
        "member_id": [r["member_id"] for r in rows],
        "point_type": [ctx.point_types.get(r["point_type_id"]) for r in rows],
        "kind": [r["kind"] for r in rows],
        "amount": [r["amount"] for r in rows],
        "source_type": [r["source_type"] for r in rows],
        "store_id": [r["store_id"] for r in rows],
        "ts": [_ts(r["occurred_at"]) for r in rows],
        "date_key": [ctx.date_key(r["brand_id"], r["occurred_at"]) for r in rows],
    }


def _redemptions(ctx: _Context, rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    return {
        "brand_id": [r["brand_id"] for r in rows],
        "lock_id": [r["id"] for r in rows],
        "member_id": [r["member_id"] for r in rows],
        "order_ref": [r["order_ref"] for r in rows],
        "store_id": [r["store_id"] for r in rows],
        "channel": [r["channel"] for r in rows],
        "state": [r["state"] for r in rows],
        "coupons": [len((r["allocation"] or {}).get("coupons", []) or []) for r in rows],
        "discount": [r["discount"] for r in rows],
        "order_amount": [r["order_amount"] for r in rows],
        "redeemed_at": [_ts(r["redeemed_at"]) for r in rows],
        "date_key": [ctx.date_key(r["brand_id"], r["redeemed_at"]) for r in rows],
        "updated_at": [_ts(r["updated_at"]) for r in rows],
    }


_EVENT_NAMES = {"page": "page_view", "screen": "screen_view"}


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _events(ctx: _Context, rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    return {
        "brand_id": [r["brand_id"] for r in rows],
        "event_id": [r["id"] for r in rows],
        "user_id": [r["user_id"] for r in rows],
        "anonymous_id": [r["anonymous_id"] for r in rows],
        "_user_bidx": [ctx.bidx(r["brand_id"], "user_id", r["user_id"]) for r in rows],
        "_anon_bidx": [ctx.bidx(r["brand_id"], "anonymous_id", r["anonymous_id"]) for r in rows],
        "type": [r["type"] for r in rows],
        "event": [r["event"] or _EVENT_NAMES.get(r["type"], r["type"]) for r in rows],
        "ts": [_ts(r["timestamp"]) for r in rows],
        "received_at": [_ts(r["received_at"]) for r in rows],
        "source_id": [r["source_id"] for r in rows],
        "date_key": [ctx.date_key(r["brand_id"], r["timestamp"]) for r in rows],
        "properties": [_json(r["properties"]) for r in rows],
        "context": [_json(r["context"]) for r in rows],
    }


_EVENTS_SQL = """
    SELECT c.* EXCLUDE (_user_bidx, _anon_bidx),
           coalesce(u.oneid, a.oneid) AS oneid,
           m.member_id AS member_id,
           coalesce(u.oneid, a.oneid, 'member:' || m.member_id, 'anon:' || c.anonymous_id,
                    'user:' || c.user_id) AS person_key
    FROM chunk c
    LEFT JOIN identity_map u
      ON u.brand_id = c.brand_id AND u.identifier_type = 'user_id' AND u.identifier_bidx = c._user_bidx
    LEFT JOIN identity_map a
      ON a.brand_id = c.brand_id AND a.identifier_type = 'anonymous_id' AND a.identifier_bidx = c._anon_bidx
    LEFT JOIN dim_member m ON m.brand_id = c.brand_id AND m.member_number = c.user_id
"""

# In dependency order: the identity map before members, members before orders and events.
SOURCES: tuple[_Source, ...] = (
    _Source("dim_store", Store.__table__, True, _stores),  # type: ignore[arg-type]
    _Source("dim_product", Product.__table__, True, _products),  # type: ignore[arg-type]
    _Source("identity_map", IdentifierNode.__table__, True, _identity),  # type: ignore[arg-type]
    _Source("dim_member", Member.__table__, True, _members, _MEMBERS_SQL),  # type: ignore[arg-type]
    _Source("fact_orders", Order.__table__, True, _orders, _ORDERS_SQL),  # type: ignore[arg-type]
    _Source("fact_points", PointEntry.__table__, False, _points),  # type: ignore[arg-type]
    _Source("fact_coupon_redemptions", CouponLock.__table__, True, _redemptions),  # type: ignore[arg-type]
    _Source("fact_events", Event.__table__, False, _events, _EVENTS_SQL),  # type: ignore[arg-type]
)
TABLE_NAMES = tuple(s.name for s in SOURCES)


def _state(con: duckdb.DuckDBPyConnection, name: str) -> tuple[datetime | None, int, int]:
    row = con.execute(
        "SELECT cursor_ts, cursor_id, rows FROM _sync_state WHERE table_name = ?", [name]
    ).fetchone()
    return (row[0], int(row[1] or 0), int(row[2] or 0)) if row else (None, 0, 0)


def _chunk_query(source: _Source, cursor_ts: datetime | None, cursor_id: int, until: datetime) -> Any:
    table = source.table
    query = select(table)
    if source.mutable:
        updated, ident = table.c.updated_at, table.c.id
        query = query.where(updated <= until)
        if cursor_ts is not None:
            at = cursor_ts.replace(tzinfo=UTC)
            query = query.where(or_(updated > at, and_(updated == at, ident > cursor_id)))
        return query.order_by(updated, ident).limit(CHUNK)
    return query.where(table.c.id > cursor_id).order_by(table.c.id).limit(CHUNK)


def _copy_table(
    db: Database,
    con: duckdb.DuckDBPyConnection,
    source: _Source,
    until: datetime,
    reporter: Reporter,
    after_chunk: Callable[[str, int], None] | None,
) -> int:
    copied = 0
    with db.unit_of_work(write=False) as session:
        ctx = _Context(session)
        cursor_ts, cursor_id, total = _state(con, source.name)
        pending = _chunk_query(source, cursor_ts, cursor_id, until).limit(None).order_by(None).subquery()
        reporter.start(source.name, int(session.scalar(select(func.count()).select_from(pending)) or 0))
        chunk_no = 0
        while True:
            rows = session.execute(_chunk_query(source, cursor_ts, cursor_id, until)).mappings().all()
            if not rows:
                break
            chunk = pa.table(source.build(ctx, rows))
            last = rows[-1]
            cursor_id = int(last["id"])
            cursor_ts = _ts(last["updated_at"]) if source.mutable else None
            total += len(rows)
            con.execute("BEGIN TRANSACTION")
            try:
                con.register("chunk", chunk)
                con.execute(f"INSERT OR REPLACE INTO {source.name} BY NAME {source.select_sql}")
                con.unregister("chunk")
                if source.name == "fact_orders":
                    _replace_items(session, con, [int(r["id"]) for r in rows])
                con.execute(
                    "INSERT OR REPLACE INTO _sync_state VALUES (?, ?, ?, ?, ?)",
                    [source.name, cursor_ts, cursor_id, total, _ts(utcnow())],
                )
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            copied += len(rows)
            chunk_no += 1
            reporter.advance(source.name, len(rows))
            if after_chunk is not None:
                after_chunk(source.name, chunk_no)
            if len(rows) < CHUNK:
                break
        reporter.finish(source.name)
    return copied


def _replace_items(session: Session, con: duckdb.DuckDBPyConnection, order_ids: list[int]) -> None:
    items = pa.table(_items(session, order_ids))
    ids = pa.table({"order_id": pa.array(order_ids, pa.int64())})
    con.register("changed_orders", ids)
    con.execute("DELETE FROM fact_order_items WHERE order_id IN (SELECT order_id FROM changed_orders)")
    con.unregister("changed_orders")
    if items.num_rows:
        con.register("items", items)
        con.execute("INSERT INTO fact_order_items BY NAME SELECT * FROM items")
        con.unregister("items")


def _fill_dates(con: duckdb.DuckDBPyConnection) -> None:
    span = con.execute(
        """SELECT min(k), max(k) FROM (
             SELECT date_key AS k FROM fact_orders UNION ALL SELECT date_key FROM fact_events
             UNION ALL SELECT enrolled_date_key FROM dim_member UNION ALL SELECT date_key FROM fact_points)
           WHERE k IS NOT NULL"""
    ).fetchone()
    if span is None or span[0] is None:
        return
    lo, hi = (datetime.strptime(str(k), "%Y%m%d").date() for k in span)
    con.execute(
        """INSERT OR IGNORE INTO dim_date
           SELECT CAST(strftime(d, '%Y%m%d') AS INTEGER), CAST(d AS DATE), year(d), quarter(d), month(d),
                  weekofyear(d), isodow(d), isodow(d) >= 6
           FROM generate_series(CAST(? AS TIMESTAMP), CAST(? AS TIMESTAMP), INTERVAL 1 DAY) AS t(d)""",
        [lo, hi],
    )


def connect_writable(path: str | Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(path))
    create_all(con)
    return con


def sync(
    db: Database,
    path: str | Path,
    *,
    tables: Iterable[str] | None = None,
    reporter: Reporter | None = None,
    full: bool = False,
    settle_seconds: float = 5.0,
    after_chunk: Callable[[str, int], None] | None = None,
) -> SyncReport:
    """Bring the warehouse at ``path`` up to date with ``db`` (``full``: rebuild it from nothing
    into a new file and swap it in). ``after_chunk(table, n)`` is called after each committed chunk."""
    started = utcnow()
    wanted = list(tables) if tables else list(TABLE_NAMES)
    unknown = sorted(set(wanted) - set(TABLE_NAMES))
    if unknown:
        raise ValueError(f"no warehouse table {', '.join(unknown)} (tables: {', '.join(TABLE_NAMES)})")
    if full:
        target = Path(f"{path}.rebuild")
        for leftover in (target, Path(f"{target}.wal")):
            leftover.unlink(missing_ok=True)
    else:
        target = Path(path)
    until = started - timedelta(seconds=settle_seconds)
    report = SyncReport()
    con = connect_writable(target)
    try:
        for source in SOURCES:
            if source.name in wanted or full:
                report.copied[source.name] = _copy_table(
                    db, con, source, until, reporter or _Quiet(), after_chunk
                )
        _fill_dates(con)
        con.execute("CHECKPOINT")
    finally:
        con.close()
    if full:
        os.replace(target, path)
        Path(f"{path}.wal").unlink(missing_ok=True)
    report.seconds = (utcnow() - started).total_seconds()
    return report


def freshness(path: str | Path, brand_id: int | None = None) -> list[dict[str, Any]]:
    """Per table: rows (the brand's, when given), the cursor and when it was last synced."""
    if not Path(path).exists():
        return []
    con = duckdb.connect(str(path), read_only=True)
    try:
        states = {
            r[0]: r[1:]
            for r in con.execute(
                "SELECT table_name, cursor_ts, cursor_id, rows, synced_at FROM _sync_state"
            ).fetchall()
        }
        out = []
        for name in TABLE_NAMES:
            where, params = ("WHERE brand_id = ?", [brand_id]) if brand_id is not None else ("", [])
            row = con.execute(f"SELECT count(*) FROM {name} {where}", params).fetchone()
            cursor_ts, cursor_id, _total, synced_at = states.get(name, (None, None, None, None))
            out.append(
                {
                    "table": name,
                    "rows": int(row[0]) if row else 0,
                    "cursor": cursor_ts.isoformat() if cursor_ts else cursor_id,
                    "synced_at": synced_at.replace(tzinfo=UTC) if synced_at else None,
                }
            )
        return out
    finally:
        con.close()

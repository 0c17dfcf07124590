"""The OLTP side of the warehouse sync: every query it makes, and how a chunk of OLTP rows becomes
Arrow tables for DuckDB, per warehouse table. Reads only, across all brands; never writes OLTP.

A ``Source`` names the OLTP table whose rows drive a warehouse table, the columns read (PII
columns are never selected: no names, phones, e-mails or identifier values), how its cursor moves
(``mutable``: on ``(updated_at, id)``, else on ``id``), ``build`` (rows → Arrow tables registered in
DuckDB by name, ``chunk`` first) and ``load`` (the DuckDB statements that apply them). Identities
are resolved here, per chunk, through the OLTP OneID lookup table (``oneid_lookup``) and its
unique index, so a chunk never scans the warehouse's whole identity map.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa
from sqlalchemy import (
    ColumnElement,
    DateTime,
    Select,
    Table,
    Text,
    and_,
    cast,
    func,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.orm import Session

from huiyuan.coupons.models import CouponLock
from huiyuan.events.models import Event
from huiyuan.identity import config as identity_config
from huiyuan.identity.models import IdentifierNode
from huiyuan.identity.rules import blind_index
from huiyuan.members.models import Member
from huiyuan.orders.models import Category, Order, OrderItem, Product
from huiyuan.points.models import PointEntry, PointEntryLot, PointLot, PointType
from huiyuan.tenancy.models import Brand, Store
from huiyuan.tiers.models import MemberTier, TierLevel

DEFAULT_ZONE = "Asia/Shanghai"
# Keys of event properties and context that may carry personal data; they are left in OLTP.
PII_PROPERTIES = ("phone", "mobile", "email", "phoneNumber", "phone_number", "idCard", "id_card")
PII_CONTEXT = ("traits", "externalIds", "ip")


def _t(model: Any) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


STORES, PRODUCTS, NODES, MEMBERS = _t(Store), _t(Product), _t(IdentifierNode), _t(Member)
TIERS, ORDERS, ITEMS, ENTRIES = _t(MemberTier), _t(Order), _t(OrderItem), _t(PointEntry)
ENTRY_LOTS, LOTS, LOCKS, EVENTS = _t(PointEntryLot), _t(PointLot), _t(CouponLock), _t(Event)

Rows = Sequence[Sequence[Any]]
Columns = dict[str, Sequence[Any]]

TS = pa.timestamp("us", tz="UTC")


def _ts(values: Sequence[datetime | None]) -> pa.Array:
    """UTC instants; DuckDB stores them as naive UTC ``TIMESTAMP`` (the writer's zone is UTC)."""
    return pa.array(values, TS)


def _int(values: Iterable[Any]) -> pa.Array:
    return pa.array(values, pa.int64())


def _str(values: Iterable[Any]) -> pa.Array:
    return pa.array(values, pa.string())


def _money(values: Iterable[Any]) -> pa.Array:
    return pa.array(values, pa.decimal128(18, 2))


class Lookups:
    """What building rows needs besides the rows: codes, names, time zones, identity rules — loaded
    once per sync, plus the per-chunk identity lookups."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.zones = {
            int(bid): tz or DEFAULT_ZONE for bid, tz in session.execute(select(Brand.id, Brand.timezone))
        }
        self.point_types = dict(session.execute(select(PointType.id, PointType.code)).tuples().all())
        self.categories = {
            cid: (name, path)
            for cid, name, path in session.execute(select(Category.id, Category.name, Category.path))
        }
        self.levels = {
            lid: (code, rank)
            for lid, code, rank in session.execute(select(TierLevel.id, TierLevel.code, TierLevel.rank))
        }
        self._books: dict[int, Any] = {}
        self._bidx: dict[tuple[int, str, str], str | None] = {}

    def brand_zones(self) -> pa.Table:
        """``brand_id → tz``, joined by the load statements to compute business days."""
        return pa.table({"brand_id": _int(self.zones), "tz": _str(self.zones.values())})

    def bidx(self, brand_id: int, code: str, value: str | None) -> str | None:
        """The blind index the identity graph keeps for ``value`` of type ``code`` (memoised)."""
        if value is None:
            return None
        key = (brand_id, code, value)
        if key in self._bidx:
            return self._bidx[key]
        text = str(value).strip()
        out = None
        if text:
            book = self._books.get(brand_id)
            if book is None:
                book = self._books[brand_id] = identity_config.load(self.session, brand_id).book
            out = blind_index(code, book.normalise(code, text))
        if len(self._bidx) > 500_000:
            self._bidx.clear()
        self._bidx[key] = out
        return out

    def oneids(self, wanted: Iterable[tuple[int, str, str]]) -> dict[tuple[int, str, str], str]:
        """OneIDs of ``(brand_id, identifier type, blind index)`` keys, from ``oneid_lookup``."""
        groups: dict[tuple[int, str], set[str]] = defaultdict(set)
        for brand_id, code, bidx in wanted:
            groups[(brand_id, code)].add(bidx)
        found: dict[tuple[int, str, str], str] = {}
        node = NODES.c
        for (brand_id, code), values in groups.items():
            for part in _parts(sorted(values)):
                query = select(node.value_bidx, node.oneid).where(
                    node.brand_id == brand_id, node.type == code, node.value_bidx.in_(part)
                )
                for bidx, oneid in self.session.execute(query):
                    found[(brand_id, code, bidx)] = str(oneid)
        return found

    def member_ids(self, wanted: Iterable[tuple[int, str]]) -> dict[tuple[int, str], int]:
        """Member ids of ``(brand_id, member number)`` keys."""
        groups: dict[int, set[str]] = defaultdict(set)
        for brand_id, number in wanted:
            groups[brand_id].add(number)
        found: dict[tuple[int, str], int] = {}
        m = MEMBERS.c
        for brand_id, numbers in groups.items():
            for part in _parts(sorted(numbers)):
                query = select(m.member_number, m.id).where(m.brand_id == brand_id, m.member_number.in_(part))
                for number, member_id in self.session.execute(query):
                    found[(brand_id, number)] = int(member_id)
        return found


def _parts(values: Sequence[Any], size: int = 900) -> Iterable[Sequence[Any]]:
    for i in range(0, len(values), size):
        yield values[i : i + size]


Builder = Callable[[Lookups, Columns], dict[str, pa.Table]]


@dataclass(frozen=True)
class Source:
    name: str  # the cursor's key in ``_sync_state``
    table: str  # the warehouse table it writes
    oltp: Table
    columns: tuple[ColumnElement[Any], ...]  # labelled; ``id`` (and ``updated_at``) first
    mutable: bool  # cursor on (updated_at, id), else on id
    build: Builder
    load: tuple[str, ...]  # DuckDB statements, run with the built tables registered
    # Append-only sources: rows younger than the sync's settle time wait for the next sync.
    settle_column: str | None = None
    chunk_scale: int = 1  # rows per chunk: the sync's chunk size times this

    def pending(self, cursor_ts: datetime | None, cursor_id: int, until: datetime) -> Select[Any]:
        """Rows after the cursor, in cursor order."""
        t = self.oltp.c
        query = select(*self.columns)
        if self.mutable:
            updated = t.updated_at
            query = query.where(updated <= until)
            if cursor_ts is not None:
                query = query.where(or_(updated > cursor_ts, and_(updated == cursor_ts, t.id > cursor_id)))
            return query.order_by(updated, t.id)
        query = query.where(t.id > cursor_id)
        if self.settle_column is not None:
            # Stop before the first row that is too young, so the id cursor never passes it.
            young = select(func.min(t.id)).where(t.id > cursor_id, t[self.settle_column] > until)
            query = query.where(or_(young.scalar_subquery().is_(None), t.id < young.scalar_subquery()))
        return query.order_by(t.id)

    def count(self, session: Session, cursor_ts: datetime | None, cursor_id: int, until: datetime) -> int:
        pending = self.pending(cursor_ts, cursor_id, until).order_by(None).subquery()
        return int(session.scalar(select(func.count()).select_from(pending)) or 0)


def _cols(table: Table, names: str, raw_time: tuple[str, ...] = ()) -> tuple[ColumnElement[Any], ...]:
    """Columns by name (separated by spaces); ``raw_time`` ones skip the UTC decorator (Arrow takes
    naive UTC or aware datetimes alike)."""
    out: list[ColumnElement[Any]] = []
    for name in names.split():
        column = table.c[name]
        out.append(type_coerce(column, DateTime()).label(name) if name in raw_time else column.label(name))
    return tuple(out)


def columns_of(rows: Rows, names: Sequence[str]) -> Columns:
    """Rows → one sequence per column."""
    if not rows:
        return {n: () for n in names}
    return dict(zip(names, zip(*rows, strict=True), strict=True))


def _labels(source_columns: Sequence[ColumnElement[Any]]) -> list[str]:
    return [str(c.key) for c in source_columns]


# -- dimensions -------------------------------------------------------------------------------------


def _stores(lk: Lookups, c: Columns) -> dict[str, pa.Table]:
    return {
        "chunk": pa.table(
            {
                "brand_id": _int(c["brand_id"]),
                "store_id": _int(c["id"]),
                "code": _str(c["code"]),
                "name": _str(c["name"]),
                "city": _str(c["city"]),
                "region": _str(c["province"]),
                "channel": _str(c["kind"]),
                "province": _str(c["province"]),
                "kind": _str(c["kind"]),
                "status": _str(c["status"]),
                "updated_at": _ts(c["updated_at"]),
            }
        )
    }


def _products(lk: Lookups, c: Columns) -> dict[str, pa.Table]:
    cats = [
        lk.categories.get(cid, (None, None)) if cid is not None else (None, None) for cid in c["category_id"]
    ]
    return {
        "chunk": pa.table(
            {
                "brand_id": _int(c["brand_id"]),
                "product_id": _int(c["id"]),
                "sku": _str(c["sku"]),
                "name": _str(c["name"]),
                "category": _str(x[0] for x in cats),
                "category_path": _str(x[1] for x in cats),
                "brand_name": _str(c["product_brand"]),
                "list_price": _money(c["list_price"]),
                "status": _str(c["status"]),
                "updated_at": _ts(c["updated_at"]),
            }
        )
    }


def _identity(lk: Lookups, c: Columns) -> dict[str, pa.Table]:
    return {
        "chunk": pa.table(
            {
                "brand_id": _int(c["brand_id"]),
                "node_id": _int(c["id"]),
                "identifier_type": _str(c["type"]),
                "identifier_value": _str(c["value_bidx"]),
                "identifier_bidx": _str(c["value_bidx"]),
                "oneid": _str(str(x) for x in c["oneid"]),
                "updated_at": _ts(c["updated_at"]),
            }
        )
    }


def _members(lk: Lookups, c: Columns) -> dict[str, pa.Table]:
    brands, numbers = c["brand_id"], c["member_number"]
    bidx = [lk.bidx(b, "member_number", n) for b, n in zip(brands, numbers, strict=True)]
    oneids = lk.oneids((b, "member_number", x) for b, x in zip(brands, bidx, strict=True) if x is not None)
    tiers = _tiers_of(lk, c["id"])
    return {
        "chunk": pa.table(
            {
                "brand_id": _int(brands),
                "member_id": _int(c["id"]),
                "member_number": _str(numbers),
                "oneid": _str(
                    oneids.get((b, "member_number", x)) if x is not None else None
                    for b, x in zip(brands, bidx, strict=True)
                ),
                "tier": _str(tiers.get(m, (None, None))[0] for m in c["id"]),
                "tier_rank": pa.array((tiers.get(m, (None, None))[1] for m in c["id"]), pa.int32()),
                "status": _str(c["status"]),
                "enroll_channel": _str(c["enroll_channel"]),
                "enroll_store_id": _int(c["enroll_store_id"]),
                "enrolled_at": _ts(c["enrolled_at"]),
                "city": _str(c["city"]),
                "province": _str(c["province"]),
                "gender": _str(c["gender"]),
                "birth_year": pa.array((d.year if d else None for d in c["birthday"]), pa.int32()),
                "member_number_bidx": _str(bidx),
                "updated_at": _ts(c["updated_at"]),
            }
        )
    }


def _tiers_of(lk: Lookups, member_ids: Sequence[int]) -> dict[int, tuple[str | None, int | None]]:
    t = TIERS.c
    out: dict[int, tuple[str | None, int | None]] = {}
    for part in _parts(list(member_ids)):
        for member_id, level_id in lk.session.execute(
            select(t.member_id, t.level_id).where(t.member_id.in_(part))
        ):
            out[int(member_id)] = lk.levels.get(level_id, (None, None))
    return out


def _member_tiers(lk: Lookups, c: Columns) -> dict[str, pa.Table]:
    levels = [lk.levels.get(x, (None, None)) for x in c["level_id"]]
    return {
        "chunk": pa.table(
            {
                "member_id": _int(c["member_id"]),
                "tier": _str(x[0] for x in levels),
                "tier_rank": pa.array((x[1] for x in levels), pa.int32()),
            }
        )
    }


# -- facts ------------------------------------------------------------------------------------------


def _orders(lk: Lookups, c: Columns) -> dict[str, pa.Table]:
    orders = pa.table(
        {
            "brand_id": _int(c["brand_id"]),
            "order_id": _int(c["id"]),
            "order_number": _str(c["order_number"]),
            "member_id": _int(c["member_id"]),
            "store_id": _int(c["store_id"]),
            "channel": _str(c["channel"]),
            "status": _str(c["status"]),
            "paid_at": _ts(c["paid_at"]),
            "created_at": _ts(c["created_at"]),
            "amount": _money(c["paid_amount"]),
            "list_amount": _money(c["list_amount"]),
            "discount": _money(c["discount_amount"]),
            "refunded": _money(c["refunded_amount"]),
            "units": pa.array(c["units"], pa.int32()),
            "updated_at": _ts(c["updated_at"]),
        }
    )
    return {"chunk": orders, "items": _items(lk, list(c["id"]))}


def _items(lk: Lookups, order_ids: list[int]) -> pa.Table:
    i, p = ITEMS.c, PRODUCTS.c
    columns = _cols(
        ITEMS,
        "id brand_id order_id line_no product_id sku category_id quantity list_price amount paid_amount"
        " refunded_quantity refunded_amount",
    )
    names = [*_labels(columns), "product_brand"]
    query = select(*columns, p.product_brand).outerjoin(PRODUCTS, p.id == i.product_id)
    rows: list[Any] = []
    for part in _parts(order_ids, 5_000):
        rows.extend(lk.session.execute(query.where(i.order_id.in_(part))).all())
    c = columns_of(rows, names)
    cats = [
        lk.categories.get(cid, (None, None)) if cid is not None else (None, None) for cid in c["category_id"]
    ]
    list_amount = [price * qty for price, qty in zip(c["list_price"], c["quantity"], strict=True)]
    return pa.table(
        {
            "brand_id": _int(c["brand_id"]),
            "item_id": _int(c["id"]),
            "order_id": _int(c["order_id"]),
            "line_no": pa.array(c["line_no"], pa.int32()),
            "product_id": _int(c["product_id"]),
            "sku": _str(c["sku"]),
            "brand_name": _str(c["product_brand"]),
            "category": _str(x[0] for x in cats),
            "category_id": _int(c["category_id"]),
            "quantity": pa.array(c["quantity"], pa.int32()),
            "amount": _money(c["paid_amount"]),
            "discount": _money(a - paid for a, paid in zip(list_amount, c["paid_amount"], strict=True)),
            "list_amount": _money(list_amount),
            "deal_amount": _money(c["amount"]),
            "paid_amount": _money(c["paid_amount"]),
            "refunded_quantity": pa.array(c["refunded_quantity"], pa.int32()),
            "refunded": _money(c["refunded_amount"]),
        }
    )


def _points(lk: Lookups, c: Columns) -> dict[str, pa.Table]:
    funders = _funders(lk, list(c["id"]))
    return {
        "chunk": pa.table(
            {
                "brand_id": _int(c["brand_id"]),
                "entry_id": _int(c["id"]),
                "member_id": _int(c["member_id"]),
                "point_type": _str(lk.point_types.get(x) for x in c["point_type_id"]),
                "kind": _str(c["kind"]),
                "amount": _int(c["amount"]),
                "ts": _ts(c["occurred_at"]),
                "funder": _str(funders.get(x) for x in c["id"]),
                "source_type": _str(c["source_type"]),
                "store_id": _int(c["store_id"]),
            }
        )
    }


def _funders(lk: Lookups, entry_ids: list[int]) -> dict[int, str]:
    """Who pays for the points each entry moved: the funder of the lots it touched ("mixed" when
    they differ; none for entries that touched no lot)."""
    el, lot = ENTRY_LOTS.c, LOTS.c
    query = select(el.entry_id, lot.funded_by).distinct().join(LOTS, lot.id == el.lot_id)
    seen: dict[int, str] = {}
    for part in _parts(entry_ids, 5_000):
        for entry_id, funder in lk.session.execute(query.where(el.entry_id.in_(part))):
            seen[entry_id] = funder if seen.get(entry_id, funder) == funder else "mixed"
    return seen


def _redemptions(lk: Lookups, c: Columns) -> dict[str, pa.Table]:
    """One row per coupon of each lock that was redeemed (``state``: redeemed, or returned later);
    held and released locks have none."""
    lines: dict[str, list[Any]] = defaultdict(list)
    for n, lock_id in enumerate(c["id"]):
        if c["redeemed_at"][n] is None:
            continue
        for coupon in (c["allocation"][n] or {}).get("coupons") or []:
            lines["brand_id"].append(c["brand_id"][n])
            lines["lock_id"].append(lock_id)
            lines["coupon_id"].append(int(coupon["coupon_id"]))
            lines["template_id"].append(coupon.get("template_id"))
            lines["member_id"].append(c["member_id"][n])
            lines["order_ref"].append(c["order_ref"][n])
            lines["store_id"].append(c["store_id"][n])
            lines["channel"].append(c["channel"][n])
            lines["state"].append(c["state"][n])
            lines["coupon_kind"].append(coupon.get("kind"))
            # What the coupon was worth on the order, as the lock's discount counts it.
            lines["discount"].append(
                sum(_dec(coupon.get(k)) for k in ("discount", "shipping_discount", "gift_value"))
            )
            lines["redeemed_at"].append(c["redeemed_at"][n])
            lines["updated_at"].append(c["updated_at"][n])
    redeemed = pa.table(
        {
            "brand_id": _int(lines["brand_id"]),
            "lock_id": _int(lines["lock_id"]),
            "coupon_id": _int(lines["coupon_id"]),
            "template_id": _int(lines["template_id"]),
            "member_id": _int(lines["member_id"]),
            "order_ref": _str(lines["order_ref"]),
            "store_id": _int(lines["store_id"]),
            "channel": _str(lines["channel"]),
            "state": _str(lines["state"]),
            "coupon_kind": _str(lines["coupon_kind"]),
            "discount": _money(lines["discount"]),
            "redeemed_at": _ts(lines["redeemed_at"]),
            "updated_at": _ts(lines["updated_at"]),
        }
    )
    return {"chunk": redeemed, "locks": pa.table({"lock_id": _int(c["id"])})}


def _dec(value: Any) -> Decimal:
    return Decimal(str(value)) if value not in (None, "") else Decimal(0)


def _events(lk: Lookups, c: Columns) -> dict[str, pa.Table]:
    brands, users, anons = c["brand_id"], c["user_id"], c["anonymous_id"]
    user_keys, anon_keys = list(zip(brands, users, strict=True)), list(zip(brands, anons, strict=True))
    # Blind indexes per distinct value (a chunk repeats its people many times).
    by_user = {k: lk.bidx(k[0], "user_id", k[1]) for k in set(user_keys) if k[1] is not None}
    by_number = {k: lk.bidx(k[0], "member_number", k[1]) for k in by_user}
    by_anon = {k: lk.bidx(k[0], "anonymous_id", k[1]) for k in set(anon_keys) if k[1] is not None}
    wanted = {(k[0], "user_id", v) for k, v in by_user.items() if v is not None}
    wanted |= {(k[0], "member_number", v) for k, v in by_number.items() if v is not None}
    wanted |= {(k[0], "anonymous_id", v) for k, v in by_anon.items() if v is not None}
    oneids = lk.oneids(wanted)
    members = lk.member_ids(by_user)
    of_user = {k: oneids.get((k[0], "user_id", v)) for k, v in by_user.items() if v is not None}
    of_anon = {k: oneids.get((k[0], "anonymous_id", v)) for k, v in by_anon.items() if v is not None}
    of_member = {k: oneids.get((k[0], "member_number", v)) for k, v in by_number.items() if v is not None}
    # The event's own identifiers first (user id, then anonymous id), then the member its user id
    # names (through the member's member-number node).
    resolved = [
        of_user.get(u) or of_anon.get(a) or of_member.get(u)
        for u, a in zip(user_keys, anon_keys, strict=True)
    ]
    return {
        "chunk": pa.table(
            {
                "brand_id": _int(brands),
                "event_id": _int(c["id"]),
                "oneid": _str(resolved),
                "member_id": _int(members.get(k) for k in user_keys),
                "user_key": _str(by_user.get(k) for k in user_keys),
                "anonymous_id": _str(anons),
                "type": _str(c["type"]),
                "name": _str(c["event"]),
                "ts": _ts(c["timestamp"]),
                "received_at": _ts(c["received_at"]),
                "source_id": _int(c["source_id"]),
                "properties": _str(c["properties"]),
                "context": _str(c["context"]),
            }
        )
    }


# -- the DuckDB side --------------------------------------------------------------------------------

# ``day_key(ts, tz)``: the business day YYYYMMDD of a UTC instant in a brand's zone (the writer's
# session zone is UTC, so a naive ``ts`` reads as UTC).
MACROS = (
    f"""CREATE OR REPLACE TEMP MACRO day_key(ts, tz) AS CAST(strftime(
          timezone(coalesce(tz, '{DEFAULT_ZONE}'), CAST(ts AS TIMESTAMPTZ)), '%Y%m%d') AS INTEGER)""",
)


def _drop_keys(column: str, keys: Sequence[str]) -> str:
    patch = "{" + ",".join(f'"{k}":null' for k in keys) + "}"
    return f"CASE WHEN {column} IS NULL THEN NULL ELSE json_merge_patch({column}, '{patch}') END"


def _upsert(table: str, select_sql: str) -> str:
    return f"INSERT OR REPLACE INTO {table} BY NAME {select_sql}"


def _append(table: str, select_sql: str) -> str:
    # Append-only facts: the cursor commits with the chunk, so a row never comes twice (and would
    # fail on the primary key if it did); a plain INSERT costs half an INSERT OR REPLACE.
    return f"INSERT INTO {table} BY NAME {select_sql}"


_ZONE = "LEFT JOIN brand_zones z ON z.brand_id = c.brand_id"

SOURCES: tuple[Source, ...] = (
    Source(
        "dim_store",
        "dim_store",
        STORES,
        _cols(STORES, "id updated_at brand_id code name city province kind status"),
        True,
        _stores,
        (_upsert("dim_store", "SELECT * FROM chunk"),),
    ),
    Source(
        "dim_product",
        "dim_product",
        PRODUCTS,
        _cols(PRODUCTS, "id updated_at brand_id sku name product_brand category_id list_price status"),
        True,
        _products,
        (_upsert("dim_product", "SELECT * FROM chunk"),),
    ),
    Source(
        "identity_map",
        "identity_map",
        NODES,
        _cols(NODES, "id updated_at brand_id type value_bidx oneid"),
        True,
        _identity,
        (
            _upsert("identity_map", "SELECT * FROM chunk"),
            # A member's OneID follows its member-number node (merges, splits, nodes made later).
            """UPDATE dim_member SET oneid = c.oneid FROM chunk c
               WHERE c.identifier_type = 'member_number' AND dim_member.brand_id = c.brand_id
                 AND dim_member.member_number_bidx = c.identifier_bidx
                 AND dim_member.oneid IS DISTINCT FROM c.oneid""",
        ),
    ),
    Source(
        "dim_member",
        "dim_member",
        MEMBERS,
        _cols(
            MEMBERS,
            "id updated_at brand_id member_number status enroll_channel enroll_store_id enrolled_at city"
            " province gender birthday",
        ),
        True,
        _members,
        (
            _upsert(
                "dim_member",
                f"SELECT c.*, day_key(c.enrolled_at, z.tz) AS enrolled_date_key FROM chunk c {_ZONE}",
            ),
        ),
    ),
    Source(
        "dim_member.tier",
        "dim_member",
        TIERS,
        _cols(TIERS, "id updated_at member_id level_id"),
        True,
        _member_tiers,
        (
            """UPDATE dim_member SET tier = c.tier, tier_rank = c.tier_rank FROM chunk c
               WHERE dim_member.member_id = c.member_id
                 AND (dim_member.tier IS DISTINCT FROM c.tier
                      OR dim_member.tier_rank IS DISTINCT FROM c.tier_rank)""",
        ),
    ),
    Source(
        "fact_orders",
        "fact_orders",
        ORDERS,
        _cols(
            ORDERS,
            "id updated_at brand_id order_number member_id store_id channel status paid_at created_at"
            " paid_amount list_amount discount_amount refunded_amount units",
        ),
        True,
        _orders,
        (
            _upsert(
                "fact_orders",
                f"""SELECT c.*, day_key(c.paid_at, z.tz) AS date_key,
                       CASE WHEN c.member_id IS NULL THEN NULL
                            ELSE coalesce(m.oneid, 'member:' || c.member_id) END AS person_key
                    FROM chunk c {_ZONE} LEFT JOIN dim_member m ON m.member_id = c.member_id""",
            ),
            # An order brings its lines along: they are replaced with it.
            "DELETE FROM fact_order_items WHERE order_id IN (SELECT order_id FROM chunk)",
            "INSERT INTO fact_order_items BY NAME SELECT * FROM items",
        ),
    ),
    Source(
        "fact_points",
        "fact_points",
        ENTRIES,
        _cols(ENTRIES, "id brand_id member_id point_type_id kind amount occurred_at source_type store_id"),
        False,
        _points,
        (_append("fact_points", f"SELECT c.*, day_key(c.ts, z.tz) AS date_key FROM chunk c {_ZONE}"),),
        settle_column="created_at",
        chunk_scale=2,
    ),
    Source(
        "fact_coupon_redemptions",
        "fact_coupon_redemptions",
        LOCKS,
        _cols(
            LOCKS, "id updated_at brand_id member_id order_ref store_id channel state allocation redeemed_at"
        ),
        True,
        _redemptions,
        (
            "DELETE FROM fact_coupon_redemptions WHERE lock_id IN (SELECT lock_id FROM locks)",
            f"""INSERT INTO fact_coupon_redemptions BY NAME
                SELECT c.*, day_key(c.redeemed_at, z.tz) AS date_key FROM chunk c {_ZONE}""",
        ),
    ),
    Source(
        "fact_events",
        "fact_events",
        EVENTS,
        (
            *_cols(
                EVENTS,
                "id brand_id type event user_id anonymous_id source_id timestamp received_at",
                raw_time=("timestamp", "received_at"),
            ),
            # JSON as text: DuckDB parses it once, Python never does.
            cast(EVENTS.c.properties, Text).label("properties"),
            cast(EVENTS.c.context, Text).label("context"),
        ),
        False,
        _events,
        (
            _append(
                "fact_events",
                f"""SELECT c.brand_id, c.event_id, c.oneid, c.member_id, c.anonymous_id, c.type,
                       CASE c.type WHEN 'track' THEN c.name WHEN 'page' THEN 'page_view'
                                   WHEN 'screen' THEN 'screen_view' ELSE c.type END AS event,
                       CASE WHEN c.type IN ('page', 'screen') THEN c.name END AS name,
                       c.ts, c.received_at, c.source_id, day_key(c.ts, z.tz) AS date_key,
                       {_drop_keys("CAST(c.properties AS JSON)", PII_PROPERTIES)} AS properties,
                       {_drop_keys("CAST(c.context AS JSON)", PII_CONTEXT)} AS context,
                       coalesce(c.oneid, 'member:' || c.member_id, 'anon:' || c.anonymous_id,
                                'user:' || c.user_key) AS person_key
                    FROM chunk c {_ZONE}""",
            ),
        ),
        chunk_scale=5,
    ),
)
SOURCE_NAMES: tuple[str, ...] = tuple(dict.fromkeys(s.table for s in SOURCES))


def label_names(source: Source) -> list[str]:
    return _labels(source.columns)

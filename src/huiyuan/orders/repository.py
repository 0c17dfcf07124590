"""Every query on categories, products, orders and refunds. Tenancy is applied by the session's
scope (``kit.db``); the explicit ``brand_id`` conditions here only say which brand a write path is
working for, never which rows a caller may see."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    CompoundSelect,
    Select,
    String,
    bindparam,
    cast,
    literal,
    null,
    select,
    union_all,
)
from sqlalchemy.orm import Session

from huiyuan.kit.db import TenancyViolation, scope_of
from huiyuan.kit.types import IdType
from huiyuan.members.models import Member
from huiyuan.orders.models import (
    Category,
    Order,
    OrderDiscount,
    OrderItem,
    OrderPayment,
    Product,
    Refund,
    RefundItem,
)
from huiyuan.tenancy.models import Store


@dataclass
class OrderFilter:
    member_id: int | None = None
    store_code: str | None = None
    channel: str | None = None
    status: str | None = None
    paid_from: datetime | None = None
    paid_to: datetime | None = None


@dataclass
class ProductFilter:
    sku: str | None = None
    category_path: str | None = None  # the category and everything below it
    q: str | None = None  # name prefix


class CatalogRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def category(self, category_id: int) -> Category | None:
        return self.session.scalars(select(Category).where(Category.id == category_id)).one_or_none()

    def category_by_code(self, brand_id: int | None, code: str) -> Category | None:
        stmt = select(Category).where(Category.code == code)
        if brand_id is not None:
            stmt = stmt.where(Category.brand_id == brand_id)
        return self.session.scalars(stmt).first()

    def categories(self) -> list[Category]:
        return list(self.session.scalars(select(Category).order_by(Category.path, Category.id)))

    def product(self, product_id: int, *, for_update: bool = False) -> Product | None:
        stmt = select(Product).where(Product.id == product_id)
        if for_update:
            stmt = stmt.with_for_update()
        return self.session.scalars(stmt).one_or_none()

    def product_by_sku(self, brand_id: int, sku: str) -> Product | None:
        stmt = select(Product).where(Product.brand_id == brand_id, Product.sku == sku)
        return self.session.scalars(stmt).one_or_none()

    def product_refs_by_sku(
        self, brand_id: int, skus: Collection[str]
    ) -> dict[str, tuple[int, str, int | None, Decimal]]:
        """``sku → (id, name, category_id, list_price)``: the columns an order line uses, without
        building ORM objects (a bulk import reads hundreds of products per batch)."""
        if not skus:
            return {}
        stmt = select(Product.sku, Product.id, Product.name, Product.category_id, Product.list_price).where(
            Product.brand_id == brand_id, Product.sku.in_(list(skus))
        )
        return {
            sku: (id_, name, category_id, price)
            for sku, id_, name, category_id, price in self.session.execute(stmt)
        }

    def products(self, f: ProductFilter, *, after_id: int | None, limit: int) -> list[Product]:
        stmt = select(Product)
        if f.sku:
            stmt = stmt.where(Product.sku == f.sku)
        if f.q:
            stmt = stmt.where(Product.name.startswith(f.q, autoescape=True))
        if f.category_path is not None:
            sub = select(Category.id).where(
                (Category.path == f.category_path)
                | Category.path.startswith(f.category_path + "/", autoescape=True)
            )
            stmt = stmt.where(Product.category_id.in_(sub))
        if after_id is not None:
            stmt = stmt.where(Product.id > after_id)
        return list(self.session.scalars(stmt.order_by(Product.id).limit(limit)))


class OrderRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    # -- look-ups used while recording -----------------------------------------------------------

    def stores_by_code(self, brand_id: int, codes: Collection[str]) -> dict[str, Store]:
        if not codes:
            return {}
        stmt = select(Store).where(Store.brand_id == brand_id, Store.code.in_(list(codes)))
        return {s.code: s for s in self.session.scalars(stmt)}

    def member_ids(self, brand_id: int, ids: Collection[int]) -> set[int]:
        if not ids:
            return set()
        stmt = select(Member.id).where(Member.brand_id == brand_id, Member.id.in_(list(ids)))
        return set(self.session.scalars(stmt))

    def members_by_number(self, brand_id: int, numbers: Collection[str]) -> dict[str, int]:
        if not numbers:
            return {}
        stmt = select(Member.member_number, Member.id).where(
            Member.brand_id == brand_id, Member.member_number.in_(list(numbers))
        )
        return {number: mid for number, mid in self.session.execute(stmt)}

    def existing_orders(self, brand_id: int, numbers: Collection[str]) -> dict[str, tuple[int, str]]:
        """``order_number → (id, request_hash)`` for numbers already recorded in the brand."""
        if not numbers:
            return {}
        stmt = select(Order.order_number, Order.id, Order.request_hash).where(
            Order.brand_id == brand_id, Order.order_number.in_(list(numbers))
        )
        return {number: (oid, h) for number, oid, h in self.session.execute(stmt)}

    def lookup_for_order(
        self,
        brand_id: int,
        *,
        order_number: str,
        skus: Collection[str],
        store_code: str | None,
        member_id: int | None,
        member_number: str | None,
    ) -> list[tuple[Any, ...]]:
        """Everything one order's checks need, in one statement (a single order pays per round trip):
        rows ``(kind, id, key, name, category_id, list_price)`` where kind is ``product`` (key = SKU),
        ``store`` (key = code), ``member`` (key = member number, or null when found by id) or
        ``order`` (an order already recorded under ``order_number``; ``name`` holds its hash)."""
        params = {
            "brand_id": brand_id,
            "order_number": order_number,
            "skus": list(skus),
            "store_code": store_code,
            "member_id": member_id,
            "member_number": member_number,
        }
        # Run on the connection, past the ORM: every part of the statement is bound to ``brand_id``
        # already, while the ORM's tenancy option would rebuild and re-key the whole UNION for every
        # order (~15 % of the CPU of a request). The scope still decides: a brand scope may look
        # up its own brand only.
        scope = scope_of(self.session)
        if scope is not None and scope.brand_id is not None and scope.brand_id != brand_id:
            raise TenancyViolation(detail="No such object in this brand.")
        return [tuple(row) for row in self.session.connection().execute(_order_lookup(), params)]

    # -- orders ----------------------------------------------------------------------------------

    def get(self, order_id: int, *, for_update: bool = False) -> Order | None:
        stmt = select(Order).where(Order.id == order_id)
        if for_update:
            stmt = stmt.with_for_update()
        return self.session.scalars(stmt).one_or_none()

    def by_number(self, brand_id: int, order_number: str) -> Order | None:
        stmt = select(Order).where(Order.brand_id == brand_id, Order.order_number == order_number)
        return self.session.scalars(stmt).one_or_none()

    def _conditions(self, f: OrderFilter) -> list[ColumnElement[bool]]:
        cond: list[ColumnElement[bool]] = []
        if f.member_id is not None:
            cond.append(Order.member_id == f.member_id)
        if f.store_code:
            cond.append(Order.store_id.in_(select(Store.id).where(Store.code == f.store_code)))
        if f.channel:
            cond.append(Order.channel == f.channel)
        if f.status:
            cond.append(Order.status == f.status)
        if f.paid_from:
            cond.append(Order.paid_at >= f.paid_from)
        if f.paid_to:
            cond.append(Order.paid_at < f.paid_to)
        return cond

    def find(self, f: OrderFilter, *, after_id: int | None, limit: int) -> list[Order]:
        stmt = select(Order).where(*self._conditions(f))
        if after_id is not None:
            stmt = stmt.where(Order.id > after_id)
        return list(self.session.scalars(stmt.order_by(Order.id).limit(limit)))

    def items(self, order_id: int, *, for_update: bool = False) -> list[OrderItem]:
        stmt = select(OrderItem).where(OrderItem.order_id == order_id).order_by(OrderItem.line_no)
        if for_update:
            stmt = stmt.with_for_update()
        return list(self.session.scalars(stmt))

    def discounts(self, order_id: int) -> list[OrderDiscount]:
        stmt = select(OrderDiscount).where(OrderDiscount.order_id == order_id).order_by(OrderDiscount.id)
        return list(self.session.scalars(stmt))

    def payments(self, order_id: int) -> list[OrderPayment]:
        stmt = select(OrderPayment).where(OrderPayment.order_id == order_id).order_by(OrderPayment.id)
        return list(self.session.scalars(stmt))

    # -- refunds ---------------------------------------------------------------------------------

    def refund_by_number(self, brand_id: int, refund_number: str) -> Refund | None:
        stmt = select(Refund).where(Refund.brand_id == brand_id, Refund.refund_number == refund_number)
        return self.session.scalars(stmt).one_or_none()

    def refunds(self, order_id: int) -> list[Refund]:
        stmt = select(Refund).where(Refund.order_id == order_id).order_by(Refund.id)
        return list(self.session.scalars(stmt))

    def refund_items(self, refund_ids: Sequence[int]) -> dict[int, list[RefundItem]]:
        out: dict[int, list[RefundItem]] = {rid: [] for rid in refund_ids}
        if not refund_ids:
            return out
        stmt = select(RefundItem).where(RefundItem.refund_id.in_(list(refund_ids))).order_by(RefundItem.id)
        for ri in self.session.scalars(stmt):
            out.setdefault(ri.refund_id, []).append(ri)
        return out

    def items_by_id(self, item_ids: Collection[int]) -> dict[int, OrderItem]:
        if not item_ids:
            return {}
        stmt = select(OrderItem).where(OrderItem.id.in_(list(item_ids)))
        return {i.id: i for i in self.session.scalars(stmt)}


def orders_for_member(session: Session, member_id: int, limit: int = 50) -> list[Order]:
    """The member's most recent orders (newest paid first), within the session's scope."""
    stmt = (
        select(Order)
        .where(Order.member_id == member_id)
        .order_by(Order.paid_at.desc(), Order.id.desc())
        .limit(limit)
    )
    return list(session.scalars(stmt))


@cache
def _order_lookup() -> CompoundSelect:
    # Built once: the statement's shape never changes (absent values are bound as NULL, which matches
    # nothing), so each order only binds parameters.
    brand = bindparam("brand_id", type_=IdType)

    def part(kind: str, id_: Any, *cols: Any) -> Select[Any]:
        # Typed NULLs for the columns a kind lacks, so PostgreSQL can match the UNION ALL's columns.
        padded = [*cols, *[None] * (4 - len(cols))]
        types = (String, String, BigInteger, BigInteger)
        return select(
            literal(kind, String).label("kind"),
            id_.label("id"),
            *[
                (cast(null(), t) if c is None else c).label(n)
                for c, t, n in zip(padded, types, ("key", "name", "category_id", "list_price"), strict=True)
            ],
        )

    # Products first: the first SELECT of a UNION types its columns (``Money`` for list_price).
    return union_all(
        part("product", Product.id, Product.sku, Product.name, Product.category_id, Product.list_price).where(
            Product.brand_id == brand, Product.sku.in_(bindparam("skus", expanding=True))
        ),
        part("order", Order.id, Order.order_number, Order.request_hash).where(
            Order.brand_id == brand, Order.order_number == bindparam("order_number")
        ),
        part("store", Store.id, Store.code).where(
            Store.brand_id == brand, Store.code == bindparam("store_code")
        ),
        part("member", Member.id).where(Member.brand_id == brand, Member.id == bindparam("member_id")),
        part("member", Member.id, Member.member_number).where(
            Member.brand_id == brand, Member.member_number == bindparam("member_number")
        ),
    )

"""Business verbs on the catalogue, orders and refunds. Each verb writes its audit row and outbox
event(s) in the caller's transaction and never commits. The bulk import lives in ``bulk``; the rules
that make an order valid live in ``planning`` (shared by both)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, make_transient_to_detached

from huiyuan.audit import service as audit
from huiyuan.kit.clock import utcnow
from huiyuan.kit.errors import (
    Conflict,
    IdempotencyMismatch,
    NotFound,
    ValidationFailed,
    field_error,
)
from huiyuan.kit.scope import Principal
from huiyuan.kit.types import to_money
from huiyuan.orders import planning
from huiyuan.orders.models import Category, Order, OrderItem, Product, Refund, RefundItem
from huiyuan.orders.repository import CatalogRepository, OrderFilter, OrderRepository, ProductFilter
from huiyuan.orders.schemas import CategoryIn, OrderIn, ProductIn, ProductUpdate, RefundIn
from huiyuan.outbox.service import emit, emit_now

ZERO = Decimal("0.00")

# -- catalogue -------------------------------------------------------------------------------------


def create_category(session: Session, *, actor: Principal, data: CategoryIn) -> Category:
    """Add a category under ``parent_code`` (or as a root) to the actor's brand."""
    brand_id = actor.scope.require_brand()
    repo = CatalogRepository(session)
    existing = repo.category_by_code(brand_id, data.code)
    if existing is not None:
        raise Conflict(
            f"Category '{data.code}' exists.",
            errors=[field_error("code", "already in use", "taken")],
            existing_category_id=existing.id,
        )
    path, level, parent_id = data.code, 1, None
    if data.parent_code:
        parent = repo.category_by_code(brand_id, data.parent_code)
        if parent is None:
            raise ValidationFailed(
                "Unknown parent category.",
                errors=[field_error("parent_code", "no such category", "unknown-category")],
            )
        path, level, parent_id = f"{parent.path}/{data.code}", parent.level + 1, parent.id
    category = Category(
        brand_id=brand_id, parent_id=parent_id, code=data.code, name=data.name, path=path, level=level
    )
    session.add(category)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="category.created",
        entity_type="category",
        entity_id=category.id,
        brand_id=brand_id,
        after={"code": data.code, "name": data.name, "path": path},
    )
    emit(
        session,
        type="category.created",
        brand_id=brand_id,
        aggregate_type="category",
        aggregate_id=category.id,
        payload={"category_id": category.id, "code": category.code, "name": category.name, "path": path},
    )
    return category


def _category_id(session: Session, brand_id: int, code: str | None) -> int | None:
    if code is None:
        return None
    category = CatalogRepository(session).category_by_code(brand_id, code)
    if category is None:
        raise ValidationFailed(
            "Unknown category.", errors=[field_error("category_code", "no such category", "unknown-category")]
        )
    return category.id


def _product_snapshot(p: Product) -> dict[str, Any]:
    return {
        "sku": p.sku,
        "name": p.name,
        "product_brand": p.product_brand,
        "category_id": p.category_id,
        "list_price": planning.money(p.list_price),
        "status": p.status,
    }


def create_product(session: Session, *, actor: Principal, data: ProductIn) -> Product:
    """Add a product; the SKU is unique within the brand."""
    brand_id = actor.scope.require_brand()
    existing = CatalogRepository(session).product_by_sku(brand_id, data.sku)
    if existing is not None:
        raise Conflict(
            f"Product '{data.sku}' exists.",
            errors=[field_error("sku", "already in use", "taken")],
            existing_product_id=existing.id,
        )
    product = Product(
        brand_id=brand_id,
        sku=data.sku,
        name=data.name,
        product_brand=data.product_brand,
        category_id=_category_id(session, brand_id, data.category_code),
        list_price=to_money(data.list_price),
        status="active",
    )
    session.add(product)
    session.flush()
    after = _product_snapshot(product)
    audit.record(
        session,
        actor=actor,
        action="product.created",
        entity_type="product",
        entity_id=product.id,
        brand_id=brand_id,
        after=after,
    )
    emit(
        session,
        type="product.created",
        brand_id=brand_id,
        aggregate_type="product",
        aggregate_id=product.id,
        payload={"product_id": product.id, **after},
    )
    return product


def get_product(session: Session, product_id: int) -> Product:
    """The product with this id in the caller's scope, or 404."""
    product = CatalogRepository(session).product(product_id)
    if product is None:
        raise NotFound(f"Product {product_id} was not found.")
    return product


def list_products(
    session: Session,
    *,
    sku: str | None,
    category_code: str | None,
    q: str | None,
    after_id: int | None,
    limit: int,
) -> list[Product]:
    """Products in the caller's scope; ``category_code`` includes its sub-categories."""
    repo = CatalogRepository(session)
    path = None
    if category_code:
        category = repo.category_by_code(None, category_code)
        if category is None:
            return []
        path = category.path
    return repo.products(ProductFilter(sku=sku, category_path=path, q=q), after_id=after_id, limit=limit)


def update_product(session: Session, *, actor: Principal, product_id: int, data: ProductUpdate) -> Product:
    """Change a product's attributes; only the fields sent change."""
    product = CatalogRepository(session).product(product_id, for_update=True)
    if product is None:
        raise NotFound(f"Product {product_id} was not found.")
    before = _product_snapshot(product)
    sent = data.model_dump(exclude_unset=True)
    for name in ("name", "product_brand", "status"):
        if name in sent and (sent[name] is not None or name == "product_brand"):
            setattr(product, name, sent[name])
    if "category_code" in sent:
        product.category_id = _category_id(session, product.brand_id, sent["category_code"])
    if sent.get("list_price") is not None:
        product.list_price = to_money(sent["list_price"])
    after = _product_snapshot(product)
    if after == before:
        return product
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="product.updated",
        entity_type="product",
        entity_id=product.id,
        brand_id=product.brand_id,
        before=before,
        after=after,
    )
    emit(
        session,
        type="product.updated",
        brand_id=product.brand_id,
        aggregate_type="product",
        aggregate_id=product.id,
        payload={"product_id": product.id, "changed": sorted(audit.diff(before, after)), **after},
    )
    return product


def update_product_price(
    session: Session, *, actor: Principal, product_id: int, list_price: Decimal
) -> Product:
    """Set a product's list price (orders already recorded keep the price they were sold at)."""
    return update_product(
        session, actor=actor, product_id=product_id, data=ProductUpdate(list_price=list_price)
    )


# -- orders ----------------------------------------------------------------------------------------


def _replay(repo: OrderRepository, number: str, existing: tuple[int, str], digest: str) -> RecordedOrder:
    order_id, request_hash = existing
    if request_hash != digest:
        raise IdempotencyMismatch(
            f"Order number {number} was already recorded with a different body.",
            errors=[field_error("order_number", "already used for another order", "idempotency-key-reused")],
            existing_order_id=order_id,
        )
    order = repo.get(order_id)
    assert order is not None  # orders are never deleted
    return RecordedOrder(repo.session, False, order=order)


class RecordedOrder:
    """The outcome of ``record``: the order, whether this call created it, and for a new order the
    rows just written (``plan``), from which a response can be built without reading them back."""

    def __init__(
        self,
        session: Session,
        created: bool,
        *,
        order: Order | None = None,
        plan: planning.OrderPlan | None = None,
    ) -> None:
        self._session = session
        self._order = order
        self.created = created
        self.plan = plan

    @property
    def order(self) -> Order:
        """The order as a persistent instance; for a new order it is built on first use from the
        plan (every column is known) and attached to the session, with no SELECT."""
        if self._order is None:
            assert self.plan is not None
            order = Order(**self.plan.order)
            make_transient_to_detached(order)
            self._session.add(order)
            self._order = order
        return self._order


class PreparedOrder:
    """What ``prepare`` read and checked for one order: the request's fingerprint, and either the
    order's rows to write (``plan``) or the answer to a replay (``replay``)."""

    def __init__(
        self, digest: str, *, plan: planning.OrderPlan | None = None, replay: RecordedOrder | None = None
    ) -> None:
        self.digest = digest
        self.plan = plan
        self.replay = replay


def prepare(session: Session, *, actor: Principal, data: OrderIn) -> PreparedOrder:
    """The reading half of ``record``: look up what the order refers to, check it (``ValidationFailed``
    lists every problem) and compute its rows; a replay of an order already recorded is answered here
    (another body under its number is refused). Writes nothing, so it may run in a transaction of its
    own before the one that writes (``kit.db.reads_before_write``): ``write`` copes with what may
    change in between."""
    brand_id = actor.scope.require_brand()
    digest = planning.request_hash(data)
    # Nothing is pending in the session yet: an autoflush before each statement would be wasted work.
    with session.no_autoflush:
        ctx, existing = planning.load_single(session, brand_id, data)
        if existing is not None:
            return PreparedOrder(
                digest, replay=_replay(OrderRepository(session), data.order_number, existing, digest)
            )
        return PreparedOrder(digest, plan=planning.build_plan(data, ctx, digest))


def write(session: Session, *, actor: Principal, data: OrderIn, prepared: PreparedOrder) -> RecordedOrder:
    """The writing half of ``record``: the order's rows, its audit row and its ``order.paid`` event, in
    the session's transaction. When the number was taken since ``prepare`` read (a concurrent
    request), the first order is answered as a replay; when a row the order refers to went away,
    ``Conflict``."""
    if prepared.replay is not None:
        return prepared.replay
    brand_id = actor.scope.require_brand()
    plan = prepared.plan
    assert plan is not None
    with session.no_autoflush:
        try:
            written = planning.write_plans(session, [plan], item_ids=True, skip_taken=True)
        except IntegrityError:
            # A row it refers to went away meanwhile (a foreign key: PostgreSQL, or SQLite when the
            # look-up ran in a transaction before this one). No savepoint is needed to leave nothing
            # half-written: the caller's transaction can only roll back now.
            raise Conflict("The order could not be recorded because of a concurrent change; retry.")
        if not written:
            # Another request recorded the same number between our look-up and our insert.
            repo = OrderRepository(session)
            again = repo.existing_orders(brand_id, [data.order_number]).get(data.order_number)
            if again is None:
                raise Conflict("The order could not be recorded because of a concurrent change; retry.")
            return _replay(repo, data.order_number, again, prepared.digest)
        (order_id,) = written
    # Written with Core like the order's own rows: nothing is left for the commit to flush.
    audit.record_now(
        session,
        actor=actor,
        action="order.recorded",
        entity_type="order",
        entity_id=order_id,
        brand_id=brand_id,
        after={
            "order_number": data.order_number,
            "member_id": plan.order["member_id"],
            "paid_amount": planning.money(plan.order["paid_amount"]),
            "lines": len(plan.items),
        },
    )
    emit_now(
        session,
        type="order.paid",
        brand_id=brand_id,
        aggregate_type="order",
        aggregate_id=order_id,
        payload=planning.paid_event_payload(plan),
    )
    return RecordedOrder(session, True, plan=plan)


def record(session: Session, *, actor: Principal, data: OrderIn) -> RecordedOrder:
    """Record a paid order (``prepare`` then ``write``, in the caller's transaction). A replay of the
    same request under the same order number returns the first order with ``created=False``; another
    body is refused."""
    return write(session, actor=actor, data=data, prepared=prepare(session, actor=actor, data=data))


def record_order(session: Session, *, actor: Principal, data: OrderIn) -> tuple[Order, bool]:
    """Record a paid order; returns ``(order, created)`` (see ``record``)."""
    result = record(session, actor=actor, data=data)
    return result.order, result.created


def get_order(session: Session, order_id: int) -> Order:
    """The order with this id in the caller's scope, or 404."""
    order = OrderRepository(session).get(order_id)
    if order is None:
        raise NotFound(f"Order {order_id} was not found.")
    return order


def list_orders(session: Session, *, filters: OrderFilter, after_id: int | None, limit: int) -> list[Order]:
    """Orders in the caller's scope matching ``filters``, ordered by id."""
    return OrderRepository(session).find(filters, after_id=after_id, limit=limit)


# -- refunds ---------------------------------------------------------------------------------------


def _refund_hash(order_id: int, data: RefundIn) -> str:
    return planning.fingerprint(f"{order_id}|{data.model_dump_json()}")


def _refund_line_amount(item: OrderItem, quantity: int) -> Decimal:
    remaining = item.quantity - item.refunded_quantity
    if quantity == remaining:
        return item.paid_amount - item.refunded_amount
    return to_money(item.paid_amount * quantity / item.quantity)


def record_refund(
    session: Session, *, actor: Principal, order_id: int, data: RefundIn
) -> tuple[Refund, bool]:
    """Refund some units of an order's lines, or all that remain; returns ``(refund, created)``.

    Amount of a refunded line = round(paid_line × q / quantity_line, 2), where paid_line is the
    line's deal_price × quantity less its share of the order-level discounts (share = discounts ×
    line amount / deal amount, the rounding residue on the largest line). Refunding the last units
    of a line returns exactly what is left of paid_line, so refunding everything returns exactly
    the order's paid_amount. ``refund_number`` is the idempotency key, like ``order_number``.
    """
    brand_id = actor.scope.require_brand()
    repo = OrderRepository(session)
    # Lock the order first so concurrent refunds of it queue up (no over-refund between checks).
    order = repo.get(order_id, for_update=True)
    if order is None:
        raise NotFound(f"Order {order_id} was not found.")
    digest = _refund_hash(order.id, data)
    existing = repo.refund_by_number(brand_id, data.refund_number)
    if existing is not None:
        if existing.request_hash != digest:
            raise IdempotencyMismatch(
                f"Refund number {data.refund_number} was already used with a different body.",
                errors=[
                    field_error("refund_number", "already used for another refund", "idempotency-key-reused")
                ],
                existing_refund_id=existing.id,
            )
        return existing, False

    items = repo.items(order.id, for_update=True)
    by_line = {i.line_no: i for i in items}
    requested: dict[int, int] = {}
    errors: list[dict[str, Any]] = []
    if data.full and data.items:
        errors.append(field_error("items", "send items or full, not both", "ambiguous"))
    elif not data.full and not data.items:
        errors.append(field_error("items", "name the lines to refund, or send full: true", "required"))
    elif data.full:
        requested = {
            i.line_no: i.quantity - i.refunded_quantity for i in items if i.quantity > i.refunded_quantity
        }
        if not requested:
            raise Conflict(
                f"Order {order.order_number} is already fully refunded.",
                errors=[field_error("full", "nothing left to refund", "nothing-left")],
            )
    for n, line in enumerate(data.items):
        item = by_line.get(line.line_no)
        if item is None:
            errors.append(field_error(f"items.{n}.line_no", "no such line in this order", "unknown-line"))
            continue
        wanted = requested.get(line.line_no, 0) + line.quantity
        remaining = item.quantity - item.refunded_quantity
        if wanted > remaining:
            errors.append(
                field_error(
                    f"items.{n}.quantity", f"only {remaining} left to refund on this line", "over-refund"
                )
            )
        requested[line.line_no] = wanted
    if errors:
        raise ValidationFailed("The refund is not valid.", errors=errors)

    refund = Refund(
        brand_id=brand_id,
        refund_number=data.refund_number,
        order_id=order.id,
        amount=ZERO,
        reason=data.reason,
        full=False,
        refunded_at=data.refunded_at or utcnow(),
        request_hash=digest,
    )
    lines: list[tuple[OrderItem, int, Decimal]] = []
    for line_no, quantity in sorted(requested.items()):
        item = by_line[line_no]
        amount = _refund_line_amount(item, quantity)
        lines.append((item, quantity, amount))
        item.refunded_quantity += quantity
        item.refunded_amount += amount
    refund.amount = sum((a for _, _, a in lines), ZERO)
    everything = all(i.refunded_quantity == i.quantity for i in items)
    refund.full = everything
    order.refunded_amount += refund.amount
    order.status = "refunded" if everything else "partially_refunded"
    try:
        with session.begin_nested():
            session.add(refund)
            session.flush()
    except IntegrityError:
        raise Conflict("The refund number was used concurrently; retry to get the first result.")
    session.add_all(
        [
            RefundItem(brand_id=brand_id, refund_id=refund.id, order_item_id=i.id, quantity=q, amount=a)
            for i, q, a in lines
        ]
    )
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="order.refunded",
        entity_type="order",
        entity_id=order.id,
        brand_id=brand_id,
        after={
            "refund_number": refund.refund_number,
            "amount": planning.money(refund.amount),
            "status": order.status,
        },
        note=data.reason,
    )
    emit(
        session,
        type="order.refunded",
        brand_id=brand_id,
        aggregate_type="order",
        aggregate_id=order.id,
        payload={
            "refund_id": refund.id,
            "refund_number": refund.refund_number,
            "order_id": order.id,
            "member_id": order.member_id,
            "amount": planning.money(refund.amount),
            "items": [
                {"sku": i.sku, "category_id": i.category_id, "quantity": q, "amount": planning.money(a)}
                for i, q, a in lines
            ],
            "full": refund.full,
            "refunded_at": refund.refunded_at.isoformat(),
        },
    )
    return refund, True


def list_refunds(session: Session, order_id: int) -> list[Refund]:
    """The refunds of an order in the caller's scope (404 if the order is not)."""
    get_order(session, order_id)
    return OrderRepository(session).refunds(order_id)

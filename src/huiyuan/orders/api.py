"""HTTP routes for categories, products, orders, refunds and the bulk import: thin — authenticate,
call one service verb, shape the response. Replays of an order or refund answer 200 instead of 201.
``POST /orders``, the hottest write, commits its own transaction before answering (see there)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response

from huiyuan.auth.deps import require
from huiyuan.kit.db import reads_before_write
from huiyuan.kit.pagination import Page, check_limit, cursor_page, decode_cursor
from huiyuan.kit.scope import Principal
from huiyuan.kit.web import SessionDep
from huiyuan.orders import bulk, service, views
from huiyuan.orders.repository import CatalogRepository, OrderFilter
from huiyuan.orders.schemas import (
    CategoryIn,
    CategoryOut,
    Channel,
    OrderBatchIn,
    OrderBatchOut,
    OrderIn,
    OrderOut,
    OrderStatus,
    OrderSummary,
    ProductIn,
    ProductOut,
    ProductUpdate,
    RefundIn,
    RefundOut,
)
from huiyuan.settings import get_settings

router = APIRouter(prefix="/api/v1", tags=["orders"])

Reader = Annotated[Principal, require("orders:read")]
Writer = Annotated[Principal, require("orders:write")]


# -- catalogue -------------------------------------------------------------------------------------


@router.get("/categories", response_model=list[CategoryOut], summary="List the category tree")
def list_categories(session: SessionDep, actor: Reader) -> list[CategoryOut]:
    return [views.category_out(c) for c in CatalogRepository(session).categories()]


@router.post("/categories", response_model=CategoryOut, status_code=201, summary="Add a category")
def create_category(data: CategoryIn, session: SessionDep, actor: Writer) -> CategoryOut:
    return views.category_out(service.create_category(session, actor=actor, data=data))


@router.get("/products", response_model=Page[ProductOut], summary="List products")
def list_products(
    session: SessionDep,
    actor: Reader,
    sku: Annotated[str | None, Query(max_length=64)] = None,
    category: Annotated[
        str | None, Query(max_length=40, description="Category code (with sub-categories)")
    ] = None,
    q: Annotated[str | None, Query(max_length=100, description="Name prefix")] = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[ProductOut]:
    limit = check_limit(limit, get_settings().max_page_size)
    rows = service.list_products(
        session, sku=sku, category_code=category, q=q, after_id=decode_cursor(cursor), limit=limit + 1
    )
    return cursor_page(rows, limit, lambda shown: [views.product_out(p) for p in shown])


@router.post("/products", response_model=ProductOut, status_code=201, summary="Add a product")
def create_product(data: ProductIn, session: SessionDep, actor: Writer) -> ProductOut:
    return views.product_out(service.create_product(session, actor=actor, data=data))


@router.get("/products/{product_id}", response_model=ProductOut, summary="Get a product")
def get_product(product_id: int, session: SessionDep, actor: Reader) -> ProductOut:
    return views.product_out(service.get_product(session, product_id))


@router.patch("/products/{product_id}", response_model=ProductOut, summary="Update a product")
def update_product(product_id: int, data: ProductUpdate, session: SessionDep, actor: Writer) -> ProductOut:
    return views.product_out(service.update_product(session, actor=actor, product_id=product_id, data=data))


# -- orders ----------------------------------------------------------------------------------------


@router.get("/orders", response_model=Page[OrderSummary], summary="List orders")
def list_orders(
    session: SessionDep,
    actor: Reader,
    member_id: int | None = None,
    store_code: Annotated[str | None, Query(max_length=40)] = None,
    channel: Channel | None = None,
    status: OrderStatus | None = None,
    paid_from: datetime | None = None,
    paid_to: datetime | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[OrderSummary]:
    limit = check_limit(limit, get_settings().max_page_size)
    filters = OrderFilter(
        member_id=member_id,
        store_code=store_code,
        channel=channel,
        status=status,
        paid_from=paid_from,
        paid_to=paid_to,
    )
    rows = service.list_orders(session, filters=filters, after_id=decode_cursor(cursor), limit=limit + 1)
    return cursor_page(rows, limit, lambda shown: [views.order_summary(o) for o in shown])


@router.post(
    "/orders",
    response_model=OrderOut,
    status_code=201,
    summary="Record a paid order",
    responses={200: {"description": "A replay of an order already recorded: the first result"}},
)
def record_order(data: OrderIn, session: SessionDep, actor: Writer) -> Response:
    # The look-ups and checks run first, in a reading transaction of their own: on SQLite the writer
    # lock is then held only while the order's rows are written, not while the order is checked and
    # computed (``reads_before_write``). A replay is answered from that reading transaction.
    with reads_before_write(session):
        prepared = service.prepare(session, actor=actor, data=data)
        if prepared.replay is not None:
            return _order_response(views.recorded_order_out(session, prepared.replay), created=False)
    result = service.write(session, actor=actor, data=data, prepared=prepared)
    # A number taken since the look-up is a replay: its first order is read before the commit.
    out = views.recorded_order_out(session, result) if result.plan is None else None
    # Committed here, not by the session dependency two thread-pool trips later: under load those
    # trips wait behind other requests, and SQLite's writer lock would be held all the while
    # (measured: most of the lock time of an order with 16 clients). A failed commit still fails
    # the request, and the dependency's own commit then has nothing to do.
    session.commit()
    # A new order is rendered from the rows just written, after the lock is released.
    return _order_response(out or views.recorded_order_out(session, result), created=result.created)


def _order_response(out: OrderOut, *, created: bool) -> Response:
    # Serialized here: returning the model would cost one more trip to the thread pool to check it
    # against ``response_model`` again (it is an ``OrderOut`` already).
    return Response(out.model_dump_json(), status_code=201 if created else 200, media_type="application/json")


@router.post("/orders/batch", response_model=OrderBatchOut, summary="Record up to 1,000 orders")
def record_orders_batch(data: OrderBatchIn, session: SessionDep, actor: Writer) -> OrderBatchOut:
    results = bulk.record_orders_bulk(session, actor=actor, orders=data.orders, earn=data.earn)
    return OrderBatchOut(
        created=sum(1 for r in results if r.status == "created"),
        duplicates=sum(1 for r in results if r.status == "duplicate"),
        errors=sum(1 for r in results if r.status == "error"),
        results=results,
    )


@router.get("/orders/{order_id}", response_model=OrderOut, summary="Get an order with its lines and refunds")
def get_order(order_id: int, session: SessionDep, actor: Reader) -> OrderOut:
    return views.order_out(session, service.get_order(session, order_id))


@router.post(
    "/orders/{order_id}/refunds",
    response_model=RefundOut,
    status_code=201,
    summary="Refund an order, fully or per line",
    responses={200: {"description": "A replay of a refund already recorded: the first result"}},
)
def record_refund(
    order_id: int, data: RefundIn, response: Response, session: SessionDep, actor: Writer
) -> RefundOut:
    refund, created = service.record_refund(session, actor=actor, order_id=order_id, data=data)
    if not created:
        response.status_code = 200
    return views.refunds_out(session, [refund])[0]


@router.get("/orders/{order_id}/refunds", response_model=list[RefundOut], summary="List an order's refunds")
def list_refunds(order_id: int, session: SessionDep, actor: Reader) -> list[RefundOut]:
    return views.refunds_out(session, service.list_refunds(session, order_id))

"""HTTP routes for webhook subscriptions and their deliveries (permission ``webhooks:manage``).

Thin: permission, one service call, response model. Subscriptions belong to one brand; tenancy
makes another brand's subscription (and its deliveries) a 404.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter

from huiyuan.auth.deps import require
from huiyuan.kit.pagination import Page, check_limit, cursor_page, decode_cursor
from huiyuan.kit.scope import Principal
from huiyuan.kit.web import SessionDep
from huiyuan.outbox import webhooks as service
from huiyuan.outbox.schemas import DeliveryOut, WebhookCreate, WebhookCreated, WebhookOut, WebhookUpdate
from huiyuan.settings import get_settings

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])

Manager = Annotated[Principal, require("webhooks:manage")]
DeliveryStatus = Literal["pending", "delivered", "dead"]


@router.post("", response_model=WebhookCreated, status_code=201, summary="Subscribe a URL to events")
def create_webhook(data: WebhookCreate, session: SessionDep, actor: Manager) -> WebhookCreated:
    """Subscribe a URL; the response carries the signing ``secret``, shown this once.

    Each event is POSTed as JSON ``{id, type, occurred_at, brand_id, data}`` with the headers
    ``X-Huiyuan-Event``, ``X-Huiyuan-Delivery``, ``X-Huiyuan-Timestamp`` (unix seconds) and
    ``X-Huiyuan-Signature: v1=<hex>``, where ``<hex>`` is HMAC-SHA256 with the secret over
    ``f"{timestamp}.{raw body}"``. Verify it in constant time, refuse timestamps more than five
    minutes away, answer 2xx quickly, and de-duplicate on ``id`` (delivery is at-least-once).
    Failures are retried with exponential backoff; redirects are not followed. The URL must be
    http(s) on a public address (private, loopback and link-local targets are refused).
    """
    sub, secret = service.create_subscription(session, actor=actor, data=data)
    return WebhookCreated(**WebhookOut.model_validate(sub).model_dump(), secret=secret)


@router.get("", response_model=Page[WebhookOut], summary="List webhook subscriptions")
def list_webhooks(
    session: SessionDep, actor: Manager, cursor: str | None = None, limit: int = 50
) -> Page[WebhookOut]:
    limit = check_limit(limit, get_settings().max_page_size)
    rows = service.list_subscriptions(session, after_id=decode_cursor(cursor), limit=limit + 1)
    return cursor_page(rows, limit, lambda shown: [WebhookOut.model_validate(r) for r in shown])


@router.get("/{webhook_id}", response_model=WebhookOut, summary="Get a webhook subscription")
def get_webhook(webhook_id: int, session: SessionDep, actor: Manager) -> WebhookOut:
    return WebhookOut.model_validate(service.get_subscription(session, webhook_id))


@router.patch("/{webhook_id}", response_model=WebhookOut, summary="Change event types or switch on/off")
def update_webhook(webhook_id: int, data: WebhookUpdate, session: SessionDep, actor: Manager) -> WebhookOut:
    sub = service.update_subscription(session, actor=actor, subscription_id=webhook_id, data=data)
    return WebhookOut.model_validate(sub)


@router.delete("/{webhook_id}", response_model=WebhookOut, summary="Deactivate a webhook subscription")
def delete_webhook(webhook_id: int, session: SessionDep, actor: Manager) -> WebhookOut:
    sub = service.deactivate_subscription(session, actor=actor, subscription_id=webhook_id)
    return WebhookOut.model_validate(sub)


@router.get("/{webhook_id}/deliveries", response_model=Page[DeliveryOut], summary="Deliveries, newest first")
def list_deliveries(
    webhook_id: int,
    session: SessionDep,
    actor: Manager,
    status: DeliveryStatus | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[DeliveryOut]:
    limit = check_limit(limit, get_settings().max_page_size)
    rows = service.list_deliveries(
        session, subscription_id=webhook_id, status=status, before_id=decode_cursor(cursor), limit=limit + 1
    )
    return cursor_page(rows, limit, lambda shown: [DeliveryOut.model_validate(r) for r in shown])


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/redeliver",
    response_model=DeliveryOut,
    status_code=202,
    summary="Send a delivery again",
)
def redeliver(webhook_id: int, delivery_id: int, session: SessionDep, actor: Manager) -> DeliveryOut:
    delivery = service.redeliver(session, actor=actor, subscription_id=webhook_id, delivery_id=delivery_id)
    return DeliveryOut.model_validate(delivery)


@router.post("/{webhook_id}/ping", response_model=DeliveryOut, status_code=202, summary="Send a test event")
def ping_webhook(webhook_id: int, session: SessionDep, actor: Manager) -> DeliveryOut:
    return DeliveryOut.model_validate(service.ping(session, actor=actor, subscription_id=webhook_id))

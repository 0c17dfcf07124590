"""Webhooks: subscription verbs (create, change, deactivate, redeliver, ping) and the sender.

Each delivery is an HTTP POST of ``{id, type, occurred_at, brand_id, data}`` (``id`` is the event
id: receivers de-duplicate on it, since delivery is at-least-once) with the headers
``X-Huiyuan-Event``, ``X-Huiyuan-Delivery``, ``X-Huiyuan-Timestamp`` and ``X-Huiyuan-Signature``
(scheme and ``verify_signature`` in ``outbox.security``). A 2xx answer delivers it; anything else,
a timeout or a refused target schedules a retry with exponential backoff and jitter (capped) until
``webhook_max_attempts``, then the delivery is ``dead`` (it can be redelivered by hand).

The sender claims due deliveries in a short transaction (pushing their next attempt past the
timeout as a lease, so a second worker skips them), sends with no transaction open, then records
the outcomes. Verbs write audit rows and never commit.
"""

from __future__ import annotations

import json
import random
import re
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.orm import Session

from huiyuan import __version__
from huiyuan.audit import service as audit
from huiyuan.kit import pii
from huiyuan.kit.clock import utcnow
from huiyuan.kit.db import Database
from huiyuan.kit.errors import Conflict, NotFound, ValidationFailed, field_error
from huiyuan.kit.scope import Principal
from huiyuan.outbox.models import OutboxEvent, WebhookDelivery, WebhookSubscription
from huiyuan.outbox.repository import OutboxRepository
from huiyuan.outbox.schemas import WebhookCreate, WebhookUpdate
from huiyuan.outbox.security import UnsafeTarget, check_target, sign
from huiyuan.settings import get_settings

EVENT_PATTERN = re.compile(r"^(\*|[a-z][a-z0-9_]*(\.[a-z0-9_]+)*(\.\*)?)$")
PING_TYPE = "webhook.ping"
LEASE_SECONDS = 60
SEND_CONCURRENCY = 8
RESPONSE_EXCERPT_BYTES = 500


# -- subscription verbs ----------------------------------------------------------------------------


def _check_event_types(types: list[str]) -> list[str]:
    bad = [t for t in types if not EVENT_PATTERN.match(t)]
    if bad:
        raise ValidationFailed(
            "Event types must look like 'order.paid', 'member.*' or '*'.",
            errors=[field_error("event_types", f"'{t}' is not a valid event type pattern") for t in bad],
        )
    return sorted(set(types))


def _check_url(url: str) -> None:
    try:
        check_target(url, allow_private=get_settings().webhook_allow_private_targets)
    except UnsafeTarget as exc:
        raise ValidationFailed(
            "This URL may not receive webhooks.", errors=[field_error("url", str(exc), "unsafe-target")]
        )


def _view(sub: WebhookSubscription) -> dict[str, Any]:
    return {
        "url": sub.url,
        "event_types": list(sub.event_types),
        "active": sub.active,
        "description": sub.description,
    }


def _require_active(sub: WebhookSubscription) -> None:
    if not sub.active:
        raise Conflict("This webhook is deactivated; switch it on (PATCH active=true) first.")


def get_subscription(session: Session, subscription_id: int) -> WebhookSubscription:
    """The subscription in the caller's scope, or 404."""
    sub = OutboxRepository(session).subscription(subscription_id)
    if sub is None:
        raise NotFound(f"Webhook {subscription_id} was not found.")
    return sub


def list_subscriptions(session: Session, *, after_id: int | None, limit: int) -> list[WebhookSubscription]:
    """Subscriptions in the caller's scope, by id."""
    return OutboxRepository(session).subscriptions(after_id=after_id, limit=limit)


def create_subscription(
    session: Session, *, actor: Principal, data: WebhookCreate
) -> tuple[WebhookSubscription, str]:
    """Subscribe a URL to event types; returns the subscription and its secret (shown once)."""
    brand_id = actor.scope.require_brand()
    types = _check_event_types(data.event_types)
    _check_url(data.url)
    secret = "whsec_" + secrets.token_urlsafe(32)
    sub = WebhookSubscription(
        brand_id=brand_id,
        url=data.url,
        secret_enc=pii.encrypt(secret),
        event_types=types,
        active=True,
        description=data.description,
    )
    session.add(sub)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="webhook.created",
        entity_type="webhook_subscription",
        entity_id=sub.id,
        brand_id=brand_id,
        after=_view(sub),
    )
    return sub, secret


def update_subscription(
    session: Session, *, actor: Principal, subscription_id: int, data: WebhookUpdate
) -> WebhookSubscription:
    """Change event types, description or the active flag; only the fields sent change."""
    sub = get_subscription(session, subscription_id)
    before = _view(sub)
    sent = data.model_dump(exclude_unset=True)
    if sent.get("event_types") is not None:
        sub.event_types = _check_event_types(sent["event_types"])
    if "description" in sent:
        sub.description = sent["description"]
    if sent.get("active") is not None:
        if sent["active"] and not sub.active:
            _check_url(sub.url)  # the host may have moved inside since it was switched off
        sub.active = sent["active"]
    after = _view(sub)
    if after != before:
        session.flush()
        audit.record(
            session,
            actor=actor,
            action="webhook.updated",
            entity_type="webhook_subscription",
            entity_id=sub.id,
            brand_id=sub.brand_id,
            before=before,
            after=after,
        )
    return sub


def deactivate_subscription(
    session: Session, *, actor: Principal, subscription_id: int
) -> WebhookSubscription:
    """Switch a subscription off (idempotent); its history stays readable."""
    sub = get_subscription(session, subscription_id)
    if sub.active:
        before = _view(sub)
        sub.active = False
        session.flush()
        audit.record(
            session,
            actor=actor,
            action="webhook.deactivated",
            entity_type="webhook_subscription",
            entity_id=sub.id,
            brand_id=sub.brand_id,
            before=before,
            after=_view(sub),
        )
    return sub


def list_deliveries(
    session: Session, *, subscription_id: int, status: str | None, before_id: int | None, limit: int
) -> list[WebhookDelivery]:
    """Deliveries of one subscription in the caller's scope, newest first."""
    sub = get_subscription(session, subscription_id)
    return OutboxRepository(session).deliveries(sub.id, status=status, before_id=before_id, limit=limit)


def redeliver(
    session: Session, *, actor: Principal, subscription_id: int, delivery_id: int
) -> WebhookDelivery:
    """Send a delivery again soon, with a fresh set of attempts."""
    sub = get_subscription(session, subscription_id)
    delivery = OutboxRepository(session).delivery(delivery_id)
    if delivery is None or delivery.subscription_id != sub.id:
        raise NotFound(f"Delivery {delivery_id} was not found.")
    _require_active(sub)
    before = {"status": delivery.status, "attempts": delivery.attempts}
    delivery.status = "pending"
    delivery.attempts = 0
    delivery.next_attempt_at = utcnow()
    delivery.last_error = None
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="webhook.redelivery_requested",
        entity_type="webhook_delivery",
        entity_id=delivery.id,
        brand_id=delivery.brand_id,
        before=before,
        after={"status": "pending", "attempts": 0},
    )
    return delivery


def ping(session: Session, *, actor: Principal, subscription_id: int) -> WebhookDelivery:
    """Queue a ``webhook.ping`` test event for this subscription only (sent by the worker)."""
    sub = get_subscription(session, subscription_id)
    _require_active(sub)
    now = utcnow()
    # Born dispatched: the dispatcher must not fan a test event out to other subscriptions.
    event = OutboxEvent(
        type=PING_TYPE,
        brand_id=sub.brand_id,
        aggregate_type="webhook_subscription",
        aggregate_id=str(sub.id),
        payload={"subscription_id": sub.id, "message": "ping from huiyuan"},
        occurred_at=now,
        dispatched_at=now,
    )
    session.add(event)
    session.flush()
    delivery = WebhookDelivery(
        brand_id=sub.brand_id,
        subscription_id=sub.id,
        event_id=event.id,
        status="pending",
        next_attempt_at=now,
    )
    session.add(delivery)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="webhook.pinged",
        entity_type="webhook_subscription",
        entity_id=sub.id,
        brand_id=sub.brand_id,
        after={"delivery_id": delivery.id},
    )
    return delivery


# -- sending ---------------------------------------------------------------------------------------


@dataclass
class DeliveryStats:
    attempted: int = 0
    delivered: int = 0
    retrying: int = 0
    dead: int = 0


@dataclass
class _Outgoing:
    delivery_id: int
    url: str
    secret: str
    event_type: str
    body: bytes


@dataclass
class _Outcome:
    ok: bool
    status_code: int | None
    error: str | None


def event_body(event: OutboxEvent) -> bytes:
    """The exact JSON bytes sent (and signed) for an event."""
    doc = {
        "id": event.id,
        "type": event.type,
        "occurred_at": event.occurred_at.isoformat(),
        "brand_id": event.brand_id,
        "data": event.payload,
    }
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), default=str).encode()


def retry_delay(attempts: int) -> timedelta:
    """Exponential backoff with jitter: a random point in the upper half of base·2^(n-1), capped."""
    settings = get_settings()
    ceiling = min(
        settings.webhook_retry_cap_seconds, settings.webhook_retry_base_seconds * 2 ** max(0, attempts - 1)
    )
    return timedelta(seconds=random.uniform(ceiling / 2, ceiling))


def deliver_due(
    db: Database, *, client: httpx.Client | None = None, now: datetime | None = None, limit: int = 100
) -> DeliveryStats:
    """Send up to ``limit`` due deliveries and record each outcome."""
    now = now or utcnow()
    outgoing = _claim(db, now, limit)
    stats = DeliveryStats()
    if not outgoing:
        return stats
    settings = get_settings()
    own = client is None
    http = client or httpx.Client(
        timeout=settings.webhook_timeout_seconds,
        follow_redirects=False,
        headers={"User-Agent": f"huiyuan-webhooks/{__version__}"},
    )
    try:
        # Sends run side by side so one slow receiver does not hold up every other one.
        with ThreadPoolExecutor(max_workers=min(SEND_CONCURRENCY, len(outgoing))) as pool:
            results = list(pool.map(lambda item: _send(http, item, now), outgoing))
        outcomes = list(zip(outgoing, results, strict=True))
    finally:
        if own:
            http.close()
    _record(db, outcomes, now, stats)
    return stats


def _claim(db: Database, now: datetime, limit: int) -> list[_Outgoing]:
    lease = now + timedelta(seconds=get_settings().webhook_timeout_seconds + LEASE_SECONDS)
    out: list[_Outgoing] = []
    with db.unit_of_work(None, write=True) as session:
        repo = OutboxRepository(session)
        due = repo.due_deliveries(now, limit)
        subs = repo.subscriptions_by_id(sorted({d.subscription_id for d in due}))
        events = repo.events(sorted({d.event_id for d in due}))
        for delivery in due:
            sub = subs[delivery.subscription_id]
            if not sub.active:
                delivery.status = "dead"
                delivery.last_error = "the subscription is inactive"
                delivery.next_attempt_at = None
                continue
            delivery.attempts += 1
            delivery.next_attempt_at = lease
            event = events[delivery.event_id]
            out.append(
                _Outgoing(
                    delivery_id=delivery.id,
                    url=sub.url,
                    secret=pii.decrypt(sub.secret_enc),
                    event_type=event.type,
                    body=event_body(event),
                )
            )
    return out


def _send(client: httpx.Client, item: _Outgoing, now: datetime) -> _Outcome:
    settings = get_settings()
    try:
        check_target(item.url, allow_private=settings.webhook_allow_private_targets)
    except UnsafeTarget as exc:
        return _Outcome(False, None, f"refused target: {exc}")
    timestamp = int(now.timestamp())
    headers = {
        "Content-Type": "application/json",
        "X-Huiyuan-Event": item.event_type,
        "X-Huiyuan-Delivery": str(item.delivery_id),
        "X-Huiyuan-Timestamp": str(timestamp),
        "X-Huiyuan-Signature": sign(item.secret, timestamp, item.body),
    }
    try:
        # Streamed: only the first bytes of the answer are read, whatever the receiver sends.
        with client.stream(
            "POST",
            item.url,
            content=item.body,
            headers=headers,
            timeout=settings.webhook_timeout_seconds,
            follow_redirects=False,
        ) as response:
            status = response.status_code
            excerpt = b""
            if not 200 <= status < 300:
                for chunk in response.iter_raw():
                    excerpt += chunk
                    if len(excerpt) >= RESPONSE_EXCERPT_BYTES:
                        break
    except httpx.HTTPError as exc:
        return _Outcome(False, None, f"{type(exc).__name__}: {exc}"[:1000])
    if 200 <= status < 300:
        return _Outcome(True, status, None)
    text = excerpt[:RESPONSE_EXCERPT_BYTES].decode("utf-8", errors="replace")
    return _Outcome(False, status, f"HTTP {status}: {text}")


def _record(
    db: Database, outcomes: list[tuple[_Outgoing, _Outcome]], now: datetime, stats: DeliveryStats
) -> None:
    max_attempts = get_settings().webhook_max_attempts
    with db.unit_of_work(None, write=True) as session:
        repo = OutboxRepository(session)
        for item, outcome in outcomes:
            delivery = repo.delivery(item.delivery_id)
            if delivery is None:
                continue
            stats.attempted += 1
            delivery.last_status_code = outcome.status_code
            if outcome.ok:
                delivery.status = "delivered"
                delivery.delivered_at = now
                delivery.next_attempt_at = None
                delivery.last_error = None
                stats.delivered += 1
            elif delivery.attempts >= max_attempts:
                delivery.status = "dead"
                delivery.next_attempt_at = None
                delivery.last_error = outcome.error
                stats.dead += 1
            else:
                delivery.next_attempt_at = now + retry_delay(delivery.attempts)
                delivery.last_error = outcome.error
                stats.retrying += 1

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from huiyuan.audit.models import AuditEntry
from huiyuan.kit.clock import utcnow
from huiyuan.kit.db import Database
from huiyuan.outbox.dispatcher import dispatch_pending
from huiyuan.outbox.models import WebhookDelivery, WebhookSubscription
from huiyuan.outbox.security import verify_signature
from huiyuan.outbox.webhooks import deliver_due
from huiyuan.settings import Settings
from tests.conftest import World
from tests.factories import enroll
from tests.outbox.conftest import Receiver


def _subscribe(
    client: Any, headers: dict[str, str], url: str, types: list[str] | None = None
) -> dict[str, Any]:
    r = client.post(
        "/api/v1/webhooks",
        json={"url": url, "event_types": types or ["member.*"], "description": "t"},
        headers=headers,
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def _delivery(db: Database, delivery_id: int | None = None) -> WebhookDelivery:
    with db.unit_of_work(write=False) as s:
        stmt = select(WebhookDelivery).order_by(WebhookDelivery.id.desc())
        if delivery_id is not None:
            stmt = stmt.where(WebhookDelivery.id == delivery_id)
        d = s.scalars(stmt).first()
        assert d is not None
        return d


def test_signed_delivery_to_a_real_local_server(
    client: Any, world: World, receiver: Receiver, settings_env: Callable[..., Settings]
) -> None:
    settings_env(webhook_allow_private_targets=True)
    alpha = world.brands[0]
    sub = _subscribe(client, alpha.headers, receiver.url)
    secret = sub["secret"]
    assert secret.startswith("whsec_")
    got = client.get(f"/api/v1/webhooks/{sub['id']}", headers=alpha.headers).json()
    assert "secret" not in got  # shown once
    with world.db.unit_of_work(write=False) as s:
        row = s.get(WebhookSubscription, sub["id"])
        assert row is not None and secret not in row.secret_enc  # stored encrypted

    member = enroll(client, alpha.headers, name="乙")
    assert dispatch_pending(world.db).deliveries == 1
    stats = deliver_due(world.db)
    assert stats.delivered == 1
    (req,) = receiver.requests
    assert req.path == "/hooks"
    body = json.loads(req.body)
    assert body["type"] == "member.enrolled" and body["brand_id"] == alpha.id
    assert body["data"]["member_id"] == member["id"] and set(body) == {
        "id",
        "type",
        "occurred_at",
        "brand_id",
        "data",
    }
    assert req.headers["x-huiyuan-event"] == "member.enrolled"
    d = _delivery(world.db)
    assert req.headers["x-huiyuan-delivery"] == str(d.id)
    assert verify_signature(
        secret, req.headers["x-huiyuan-timestamp"], req.body, req.headers["x-huiyuan-signature"]
    )
    assert not verify_signature(
        "whsec_wrong", req.headers["x-huiyuan-timestamp"], req.body, req.headers["x-huiyuan-signature"]
    )
    assert d.status == "delivered" and d.attempts == 1 and d.last_status_code == 200
    assert deliver_due(world.db).attempted == 0  # delivered once

    listed = client.get(f"/api/v1/webhooks/{sub['id']}/deliveries", headers=alpha.headers).json()
    assert [x["status"] for x in listed["items"]] == ["delivered"]


def test_failures_retry_with_backoff_then_die(
    world: World, client: Any, receiver: Receiver, settings_env: Callable[..., Settings]
) -> None:
    settings_env(webhook_allow_private_targets=True, webhook_max_attempts=3, webhook_retry_base_seconds=10)
    alpha = world.brands[0]
    sub = _subscribe(client, alpha.headers, receiver.url)
    enroll(client, alpha.headers)
    dispatch_pending(world.db)
    receiver.statuses = [500, 503, 500]
    t0 = utcnow()

    stats = deliver_due(world.db, now=t0)
    assert stats.retrying == 1
    d = _delivery(world.db)
    assert d.status == "pending" and d.attempts == 1 and d.last_status_code == 500
    assert "HTTP 500" in (d.last_error or "")
    assert d.next_attempt_at is not None
    assert (
        t0 + timedelta(seconds=5) <= d.next_attempt_at <= t0 + timedelta(seconds=10)
    )  # jitter in [base/2, base]
    assert deliver_due(world.db, now=t0 + timedelta(seconds=4)).attempted == 0  # not due yet

    t1 = t0 + timedelta(seconds=10)
    assert deliver_due(world.db, now=t1).retrying == 1
    d = _delivery(world.db)
    assert d.attempts == 2 and d.last_status_code == 503
    assert d.next_attempt_at is not None
    assert t1 + timedelta(seconds=10) <= d.next_attempt_at <= t1 + timedelta(seconds=20)

    assert deliver_due(world.db, now=t1 + timedelta(seconds=20)).dead == 1
    d = _delivery(world.db)
    assert d.status == "dead" and d.attempts == 3 and d.next_attempt_at is None
    assert len(receiver.requests) == 3
    assert deliver_due(world.db, now=t1 + timedelta(days=1)).attempted == 0

    # Redelivering by hand starts a fresh series of attempts.
    r = client.post(f"/api/v1/webhooks/{sub['id']}/deliveries/{d.id}/redeliver", headers=alpha.headers)
    assert r.status_code == 202 and r.json()["status"] == "pending" and r.json()["attempts"] == 0
    assert deliver_due(world.db).delivered == 1
    assert _delivery(world.db).status == "delivered"


def test_connection_error_counts_as_a_failed_attempt(
    world: World, client: Any, settings_env: Callable[..., Settings]
) -> None:
    settings_env(webhook_allow_private_targets=True, webhook_timeout_seconds=1)
    alpha = world.brands[0]
    _subscribe(client, alpha.headers, "http://127.0.0.1:9/nothing-listens-here")
    enroll(client, alpha.headers)
    dispatch_pending(world.db)
    assert deliver_due(world.db).retrying == 1
    d = _delivery(world.db)
    assert d.last_status_code is None and "ConnectError" in (d.last_error or "")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/x",
        "http://10.0.0.1/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/x",
        "http://localhost/x",
        "ftp://example.com/x",
    ],
)
def test_unsafe_targets_are_refused_at_creation(client: Any, world: World, url: str) -> None:
    r = client.post(
        "/api/v1/webhooks", json={"url": url, "event_types": ["*"]}, headers=world.brands[0].headers
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "url" and r.json()["errors"][0]["code"] == "unsafe-target"
    with world.db.unit_of_work(write=False) as s:
        assert s.scalars(select(WebhookSubscription)).all() == []


def test_unsafe_target_is_refused_again_at_send_time(
    world: World, client: Any, receiver: Receiver, settings_env: Callable[..., Settings]
) -> None:
    settings_env(webhook_allow_private_targets=True)
    alpha = world.brands[0]
    _subscribe(client, alpha.headers, receiver.url)
    enroll(client, alpha.headers)
    dispatch_pending(world.db)
    settings_env(webhook_allow_private_targets=False)
    assert deliver_due(world.db).retrying == 1
    assert receiver.requests == []
    assert "refused target" in (_delivery(world.db).last_error or "")


def test_invalid_event_patterns_are_refused(client: Any, world: World) -> None:
    r = client.post(
        "/api/v1/webhooks",
        json={"url": "https://93.184.215.14/x", "event_types": ["member.*", "Order Paid", "*.paid"]},
        headers=world.brands[0].headers,
    )
    assert r.status_code == 422
    assert len(r.json()["errors"]) == 2


def test_brand_isolation_of_subscriptions_and_deliveries(
    client: Any, world: World, receiver: Receiver, settings_env: Callable[..., Settings]
) -> None:
    settings_env(webhook_allow_private_targets=True)
    alpha, beta = world.brands
    sub = _subscribe(client, alpha.headers, receiver.url, ["*"])
    beta_sub = _subscribe(client, beta.headers, receiver.url, ["*"])
    enroll(client, alpha.headers)
    dispatch_pending(world.db)
    d = _delivery(world.db)
    assert d.subscription_id == sub["id"]

    base = f"/api/v1/webhooks/{sub['id']}"
    h = beta.headers
    assert client.get(base, headers=h).status_code == 404
    assert client.patch(base, json={"active": False}, headers=h).status_code == 404
    assert client.delete(base, headers=h).status_code == 404
    assert client.get(f"{base}/deliveries", headers=h).status_code == 404
    assert client.post(f"{base}/deliveries/{d.id}/redeliver", headers=h).status_code == 404
    assert client.post(f"{base}/ping", headers=h).status_code == 404
    # beta's own subscription cannot reach alpha's delivery either
    assert (
        client.post(f"/api/v1/webhooks/{beta_sub['id']}/deliveries/{d.id}/redeliver", headers=h).status_code
        == 404
    )
    assert [x["id"] for x in client.get("/api/v1/webhooks", headers=h).json()["items"]] == [beta_sub["id"]]
    assert client.get(f"/api/v1/webhooks/{beta_sub['id']}/deliveries", headers=h).json()["items"] == []
    # the platform narrowed to beta does not see it either; narrowed to alpha it does
    ph = {**world.platform_headers, "X-Huiyuan-Brand": "beta"}
    assert client.get(base, headers=ph).status_code == 404
    ph = {**world.platform_headers, "X-Huiyuan-Brand": "alpha"}
    assert client.get(base, headers=ph).status_code == 200
    assert client.get(base, headers=alpha.headers).json()["active"] is True


def test_update_deactivate_ping_and_audit(
    client: Any, world: World, receiver: Receiver, settings_env: Callable[..., Settings]
) -> None:
    settings_env(webhook_allow_private_targets=True)
    alpha = world.brands[0]
    sub = _subscribe(client, alpha.headers, receiver.url, ["order.paid"])
    base = f"/api/v1/webhooks/{sub['id']}"
    r = client.patch(base, json={"event_types": ["member.*", "order.*"]}, headers=alpha.headers)
    assert r.status_code == 200 and r.json()["event_types"] == ["member.*", "order.*"]

    r = client.post(f"{base}/ping", headers=alpha.headers)
    assert r.status_code == 202
    assert dispatch_pending(world.db).taken == 0  # a ping is not fanned out to other subscriptions
    assert deliver_due(world.db).delivered == 1
    assert receiver.requests[-1].headers["x-huiyuan-event"] == "webhook.ping"

    r = client.delete(base, headers=alpha.headers)
    assert r.status_code == 200 and r.json()["active"] is False
    assert client.delete(base, headers=alpha.headers).status_code == 200  # idempotent
    assert client.post(f"{base}/ping", headers=alpha.headers).status_code == 409
    delivery_id = _delivery(world.db).id
    r = client.post(f"{base}/deliveries/{delivery_id}/redeliver", headers=alpha.headers)
    assert r.status_code == 409
    enroll(client, alpha.headers)
    assert dispatch_pending(world.db).deliveries == 0  # inactive subscriptions get nothing

    with world.db.unit_of_work(write=False) as s:
        actions = [
            a.action
            for a in s.scalars(
                select(AuditEntry)
                .where(AuditEntry.entity_type == "webhook_subscription")
                .order_by(AuditEntry.id)
            )
        ]
    assert actions == ["webhook.created", "webhook.updated", "webhook.pinged", "webhook.deactivated"]


def test_requires_webhooks_permission(client: Any, world: World) -> None:
    from tests.factories import make_key

    key = make_key(world.db, world.brands[0].id, ["members:read"], name="reader")
    r = client.get("/api/v1/webhooks", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 403


def test_redirects_are_not_followed(
    world: World, client: Any, receiver: Receiver, settings_env: Callable[..., Settings]
) -> None:
    settings_env(webhook_allow_private_targets=True)
    alpha = world.brands[0]
    _subscribe(client, alpha.headers, receiver.url)
    enroll(client, alpha.headers)
    dispatch_pending(world.db)
    receiver.statuses = [302]
    assert deliver_due(world.db).retrying == 1
    assert len(receiver.requests) == 1
    d = _delivery(world.db)
    assert d.last_status_code == 302 and (d.last_error or "").startswith("HTTP 302: receiver says no")

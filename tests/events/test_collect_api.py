"""The tracking API over HTTP on both databases: every call type, both ways of sending the write key,
gzip, the limits (400 with a code), bad keys (401), disabled sources (403), the rate limit (429 with
Retry-After), messageId de-duplication, timestamp correction, externalIds, CORS and the snippet.
Checks that stop before the store (limits, keys, rate, CORS) run on SQLite only."""

from __future__ import annotations

import asyncio
import gzip
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from huiyuan.app import create_app
from huiyuan.events import collect_api
from huiyuan.events.models import Event, EventSource, QuarantinedEvent
from huiyuan.events.spec import MAX_BATCH_BYTES, MAX_MESSAGE_BYTES
from huiyuan.kit.db import Database
from huiyuan.kit.web import RequestContextMiddleware
from huiyuan.settings import get_settings
from tests.conftest import World
from tests.events.conftest import basic, make_source


def count(db: Database, model: Any = Event, **where: Any) -> int:
    with db.unit_of_work(write=False) as s:
        stmt = select(func.count()).select_from(model)
        for k, v in where.items():
            stmt = stmt.where(getattr(model, k) == v)
        return int(s.scalar(stmt) or 0)


def rows(db: Database) -> list[Event]:
    with db.unit_of_work(write=False) as s:
        return list(s.scalars(select(Event).order_by(Event.id)))


def test_every_call_type_and_both_ways_to_send_the_key(client: Any, db: Database, world: World) -> None:
    _sid, key = make_source(db, world.brands[0].id)
    calls = {
        "identify": {"userId": "LX00000001", "traits": {"name": "王芳"}},
        "track": {"userId": "LX00000001", "event": "Product Viewed", "properties": {"sku": "A"}},
        "page": {"anonymousId": "a-1", "name": "首页", "properties": {"path": "/"}},
        "screen": {"anonymousId": "a-1", "name": "商品详情"},
        "group": {"userId": "LX00000001", "groupId": "company-1", "traits": {"name": "蓝溪"}},
        "alias": {"userId": "LX00000001", "previousId": "a-1"},
    }
    for n, (kind, body) in enumerate(calls.items()):
        if n % 2:
            r = client.post(f"/v1/{kind}", json=body, headers=basic(key))
        else:
            r = client.post(f"/v1/{kind}", json={**body, "writeKey": key})
        assert r.status_code == 200, r.text
        assert r.json() == {
            "success": True,
            "received": 1,
            "stored": 1,
            "duplicates": 0,
            "flagged": 0,
            "quarantined": 0,
        }
        assert r.headers["access-control-allow-origin"] == "*"
    stored = rows(db)
    assert [e.type for e in stored] == list(calls)
    assert stored[0].traits == {"name": "王芳"} and stored[4].group_id == "company-1"
    assert stored[5].previous_id == "a-1" and stored[2].event == "首页"
    assert all(e.brand_id == world.brands[0].id for e in stored)
    with db.unit_of_work(write=False) as s:
        assert s.scalars(select(EventSource.last_event_at)).one() is not None


def test_batch_gzip_and_deduplication(client: Any, db: Database, world: World) -> None:
    _sid, key = make_source(db, world.brands[0].id)
    batch = [
        {"type": "track", "anonymousId": f"a-{i}", "event": "Product Viewed", "messageId": f"m-{i}"}
        for i in range(50)
    ]
    body = gzip.compress(orjson.dumps({"batch": batch, "sentAt": datetime.now(UTC).isoformat()}))
    headers = {**basic(key), "Content-Encoding": "gzip", "Content-Type": "application/json"}
    r = client.post("/v1/batch", content=body, headers=headers)
    assert r.status_code == 200 and r.json()["stored"] == 50
    # A client that never saw the answer sends again; plus one new message and a repeat inside the batch.
    again = [*batch, {"type": "track", "anonymousId": "b", "event": "x", "messageId": "m-new"}, batch[0]]
    r = client.post("/v1/batch", json={"batch": again}, headers=basic(key))
    assert r.json()["stored"] == 1 and r.json()["duplicates"] == 51
    assert count(db) == 51
    # Another source may use the same message ids: de-duplication is per source.
    _other, key2 = make_source(db, world.brands[0].id)
    assert client.post("/v1/batch", json={"batch": batch[:3]}, headers=basic(key2)).json()["stored"] == 3


@pytest.mark.parametrize("dedup", ["message_id", "message_id_and_timestamp"])
def test_a_resend_is_known_by_the_sources_key(client: Any, db: Database, world: World, dedup: str) -> None:
    """A library's resend carries a later sentAt (so another corrected time) but the same timestamp:
    a duplicate under both keys (RudderStack's originalTimestamp counts as the timestamp). The same id
    with another timestamp is a duplicate by id alone, another message by id and timestamp."""
    sid, key = make_source(db, world.brands[0].id, dedup=dedup)
    made = datetime(2026, 5, 1, 11, 59, 58, 123_000, tzinfo=UTC)
    batch: list[dict[str, Any]] = [
        {
            "type": "track",
            "anonymousId": "a",
            "event": "x",
            "messageId": f"t-{i}",
            "timestamp": made.isoformat(),
        }
        for i in range(3)
    ]
    batch.append(
        {
            "type": "track",
            "anonymousId": "a",
            "event": "x",
            "messageId": "r-1",
            "originalTimestamp": "2026-05-01T11:59:59.5Z",
        }
    )
    batch.append({"type": "track", "anonymousId": "a", "event": "x", "messageId": "n-1"})  # no timestamp
    first = client.post(
        "/v1/batch", json={"batch": batch, "sentAt": "2026-05-01T12:00:00Z"}, headers=basic(key)
    )
    assert first.json()["stored"] == 5
    later = client.post(
        "/v1/batch", json={"batch": batch, "sentAt": "2026-05-01T12:00:30Z"}, headers=basic(key)
    )
    assert later.json()["stored"] == 0 and later.json()["duplicates"] == 5
    with db.unit_of_work(write=False) as s:
        keys = dict(s.execute(select(Event.message_id, Event.dedup_ms).where(Event.source_id == sid)).all())
    by_time = dedup == "message_id_and_timestamp"
    assert keys["t-0"] == (1_777_636_798_123 if by_time else 0)
    assert keys["r-1"] == (1_777_636_799_500 if by_time else 0)
    assert keys["n-1"] == 0
    moved = {**batch[0], "timestamp": (made + timedelta(seconds=1)).isoformat()}
    assert client.post("/v1/batch", json={"batch": [moved]}, headers=basic(key)).json()["stored"] == int(
        by_time
    )
    assert count(db, message_id="t-0") == 1 + int(by_time)


def test_the_key_is_a_setting_of_the_source(client: Any, db: Database, world: World) -> None:
    headers = world.brands[0].headers
    r = client.post("/api/v1/event-sources", json={"name": "app", "kind": "app"}, headers=headers)
    assert r.status_code == 201 and r.json()["dedup"] == "message_id"
    sid = r.json()["id"]
    r = client.patch(
        f"/api/v1/event-sources/{sid}", json={"dedup": "message_id_and_timestamp"}, headers=headers
    )
    assert r.status_code == 200 and r.json()["dedup"] == "message_id_and_timestamp"
    r = client.patch(f"/api/v1/event-sources/{sid}", json={"dedup": "timestamp"}, headers=headers)
    assert r.status_code == 422
    assert (
        client.get(f"/api/v1/event-sources/{sid}", headers=headers).json()["dedup"]
        == "message_id_and_timestamp"
    )


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_limits_answer_400_with_a_code(client: Any, db: Database, world: World) -> None:
    _sid, key = make_source(db, world.brands[0].id)
    h = basic(key)
    big_message = {
        "type": "track",
        "userId": "u",
        "event": "x",
        "properties": {"blob": "a" * MAX_MESSAGE_BYTES},
    }
    r = client.post("/v1/track", json=big_message, headers=h)
    assert r.status_code == 400 and r.json()["code"] == "message-too-large"
    assert set(r.json()) == {"code", "message"}
    r = client.post("/v1/batch", json={"batch": [big_message]}, headers=h)
    assert r.status_code == 400 and r.json()["code"] == "message-too-large"
    fine = {"type": "track", "userId": "u", "event": "x", "properties": {"blob": "a" * 30_000}}
    r = client.post("/v1/batch", json={"batch": [fine] * 18}, headers=h)  # ~540 KB
    assert r.status_code == 400 and r.json()["code"] == "batch-too-large"
    r = client.post(
        "/v1/batch",
        content=gzip.compress(orjson.dumps({"batch": [fine] * 18})),
        headers={**h, "Content-Encoding": "gzip"},
    )
    assert r.status_code == 400 and r.json()["code"] == "batch-too-large"
    assert client.post("/v1/batch", json={"batch": [fine] * 16}, headers=h).json()["stored"] == 16
    assert MAX_BATCH_BYTES > 16 * 30_000
    r = client.post("/v1/track", content=b"{not json", headers=h)
    assert r.status_code == 400 and r.json()["code"] == "invalid-json"
    r = client.post("/v1/track", content=b"plain", headers={**h, "Content-Encoding": "gzip"})
    assert r.status_code == 400 and r.json()["code"] == "invalid-encoding"
    r = client.post("/v1/batch", json={"batch": "nope"}, headers=h)
    assert r.status_code == 400 and r.json()["code"] == "invalid-request"
    assert count(db) == 16


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_bad_keys_401_and_disabled_sources_403(client: Any, db: Database, world: World) -> None:
    sid, key = make_source(db, world.brands[0].id)
    body = {"userId": "u", "event": "x"}
    for headers, extra in [
        ({}, {}),
        (basic("hyw_unknown"), {}),
        ({}, {"writeKey": "hyw_unknown"}),
        ({"Authorization": "Basic !!!"}, {}),
        ({"Authorization": f"Bearer {key}"}, {}),
    ]:
        r = client.post("/v1/track", json={**body, **extra}, headers=headers)
        assert r.status_code == 401, (headers, r.text)
        assert r.json()["code"] == "unauthenticated" and "Basic" in r.headers["www-authenticate"]
    admin = world.brands[0].headers
    assert (
        client.patch(f"/api/v1/event-sources/{sid}", json={"status": "disabled"}, headers=admin).status_code
        == 200
    )
    r = client.post("/v1/track", json=body, headers=basic(key))
    assert r.status_code == 403 and r.json()["code"] == "source-disabled"
    client.patch(f"/api/v1/event-sources/{sid}", json={"status": "active"}, headers=admin)
    assert client.post("/v1/track", json=body, headers=basic(key)).status_code == 200
    revoked = client.post(f"/api/v1/event-sources/{sid}/revoke", headers=admin).json()
    assert revoked["status"] == "revoked" and revoked["revoked_at"]
    assert client.post("/v1/track", json=body, headers=basic(key)).status_code == 401
    r = client.patch(f"/api/v1/event-sources/{sid}", json={"status": "active"}, headers=admin)
    assert r.status_code == 422
    assert count(db) == 1


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_rate_limit_429_with_retry_after(client: Any, db: Database, world: World) -> None:
    _sid, key = make_source(db, world.brands[0].id, rate_limit="10/minute")
    h = basic(key)
    batch = [{"type": "track", "userId": "u", "event": "x", "messageId": f"m{i}"} for i in range(6)]
    assert client.post("/v1/batch", json={"batch": batch}, headers=h).status_code == 200
    r = client.post("/v1/batch", json={"batch": batch}, headers=h)  # 12 > 10: refused whole
    assert r.status_code == 429 and r.json()["code"] == "rate-limited"
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert client.post("/v1/batch", json={"batch": batch[:4]}, headers=h).status_code == 200
    r = client.post("/v1/batch", json={"batch": batch * 2}, headers=h)  # can never fit
    assert r.status_code == 429 and int(r.headers["retry-after"]) == 60
    # Another source of the same brand has its own budget.
    _other, key2 = make_source(db, world.brands[0].id, rate_limit="10/minute")
    assert client.post("/v1/batch", json={"batch": batch}, headers=basic(key2)).status_code == 200
    assert count(db) == 12  # 6, then 4 repeats of them, then 6 of the other source
    assert count(db, source_id=_other) == 6


def test_timestamps_are_corrected_by_the_clock_skew(client: Any, db: Database, world: World) -> None:
    _sid, key = make_source(db, world.brands[0].id)
    skew = timedelta(hours=3)  # the phone's clock is three hours fast
    now = datetime.now(UTC)
    stamped = now + skew - timedelta(minutes=10)  # happened ten minutes ago, by the phone's clock
    message = {
        "userId": "u",
        "event": "x",
        "timestamp": stamped.isoformat(),
        "sentAt": (now + skew).isoformat(),
    }
    before = datetime.now(UTC)
    assert client.post("/v1/track", json=message, headers=basic(key)).status_code == 200
    after = datetime.now(UTC)
    (event,) = rows(db)
    assert before <= event.received_at <= after
    assert event.original_timestamp == stamped and event.sent_at == now + skew
    assert event.timestamp == event.received_at - timedelta(minutes=10)
    # Batch-level sentAt applies to every message; without sentAt the client's timestamp stands.
    r = client.post(
        "/v1/batch",
        json={
            "sentAt": (now + skew).isoformat(),
            "batch": [{"type": "track", "userId": "u", "event": "y", "timestamp": stamped.isoformat()}],
        },
        headers=basic(key),
    )
    assert r.status_code == 200
    client.post(
        "/v1/track", json={"userId": "u", "event": "z", "timestamp": stamped.isoformat()}, headers=basic(key)
    )
    batched, plain = rows(db)[1:]
    assert abs(batched.timestamp - (batched.received_at - timedelta(minutes=10))) < timedelta(milliseconds=1)
    assert plain.timestamp == stamped and plain.sent_at is None


def test_spec_breaks_are_kept_apart_not_dropped(client: Any, db: Database, world: World) -> None:
    _sid, key = make_source(db, world.brands[0].id)
    r = client.post(
        "/v1/batch",
        json={
            "batch": [
                {"type": "track", "event": "no one"},
                {
                    "type": "track",
                    "userId": "u",
                    "event": "ok",
                    "context": {"externalIds": [{"id": "o", "type": "openid"}]},
                },
            ]
        },
        headers=basic(key),
    )
    assert r.json()["stored"] == 1 and r.json()["quarantined"] == 1
    assert count(db, QuarantinedEvent) == 1
    (event,) = rows(db)
    assert event.external_ids == [{"id": "o", "type": "openid"}]


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_cors_preflight_and_snippet(client: Any) -> None:
    r = client.options("/v1/batch", headers={"Origin": "https://shop.example.com"})
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == "*"
    assert "Content-Encoding" in r.headers["access-control-allow-headers"]
    r = client.get("/v1/snippet.js")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/javascript")
    assert "/v1/batch" in r.text and "Element Clicked" in r.text and "viewport_width" in r.text
    again = client.get("/v1/snippet.js", headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_the_tracking_path_keeps_the_request_context_and_the_error_handling(
    app: Any, client: Any, db: Database, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``TrackingRoutes`` answers ahead of FastAPI's routing: the request id still comes back, an
    unexpected error is still a 500 problem, and a GET or another path still reaches the routes."""
    _sid, key = make_source(db, world.brands[0].id)
    track = {"userId": "u1", "event": "Product Viewed", "messageId": "m-1"}
    r = client.post("/v1/track", json=track, headers={**basic(key), "X-Request-ID": "req-00000001"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "req-00000001"
    assert r.headers["content-type"] == "application/json" and r.json()["stored"] == 1
    r = client.post("/v1/track", json=track, headers=basic("wrong"))
    assert (
        r.status_code == 401
        and r.json()["code"] == "unauthenticated"
        and len(r.headers["x-request-id"]) == 32
    )
    assert client.get("/v1/track").status_code == 405  # not the tracking path: FastAPI's answer
    assert client.post("/v1/unknown", json={}).status_code == 405  # only the preflight route matches

    def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(collect_api, "collect", broken)
    with TestClient(app, raise_server_exceptions=False) as quiet:
        r = quiet.post("/v1/track", json=track, headers=basic(key))
    assert r.status_code == 500 and r.json()["code"] == "internal-error"


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_the_routes_answer_alike_without_the_fast_path(app: Any, db: Database, world: World) -> None:
    """The routes declared to FastAPI (OpenAPI, an app without ``TrackingRoutes``) give the same answers."""
    bare = FastAPI()
    bare.state.db, bare.state.settings = app.state.db, app.state.settings
    bare.include_router(collect_api.router)
    _sid, key = make_source(db, world.brands[0].id)
    body = {"batch": [{"type": "track", "userId": "u1", "event": "Product Viewed", "messageId": "m-1"}]}
    with TestClient(bare) as c:
        r = c.post("/v1/batch", json=body, headers=basic(key))
        assert (
            r.status_code == 200
            and r.json()["stored"] == 1
            and r.headers["access-control-allow-origin"] == "*"
        )
        r = c.post("/v1/batch", json=body, headers=basic(key))
        assert r.json()["duplicates"] == 1
        r = c.post("/v1/batch", content=b"{not json", headers=basic(key))
        assert r.status_code == 400 and r.json()["code"] == "invalid-json"
    assert count(db) == 1


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_a_client_gone_before_its_body_is_read_writes_nothing(app: Any, db: Database, world: World) -> None:
    _sid, key = make_source(db, world.brands[0].id)
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/track",
        "headers": [(b"authorization", basic(key)["Authorization"].encode())],
        "app": app,
    }
    chunks = iter([{"type": "http.request", "body": b'{"userId": "u1", ', "more_body": True}])

    async def receive() -> dict[str, Any]:
        return next(chunks, {"type": "http.disconnect"})

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(collect_api.TrackingRoutes(app.router)(scope, receive, send))
    assert sent == [] and count(db) == 0


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_a_body_over_the_servers_limit_is_refused_in_the_tracking_shape(db: Database, world: World) -> None:
    """Sent in chunks without a length, the body meets ``RequestContextMiddleware``'s limit while it is
    read: a 413 in Segment's shape on both ways to the endpoint, nothing stored."""
    settings = get_settings().model_copy(update={"max_body_bytes": 1_000})
    _sid, key = make_source(db, world.brands[0].id)
    fast = create_app(settings, db, start_worker=False)
    bare = FastAPI()
    bare.state.db, bare.state.settings = db, settings
    bare.add_middleware(RequestContextMiddleware, max_body_bytes=1_000)
    bare.include_router(collect_api.router)
    for app in (fast, bare):
        with TestClient(app) as c:
            r = c.post("/v1/batch", content=iter([b"x" * 600, b"x" * 600]), headers=basic(key))
        assert r.status_code == 413 and r.json()["code"] == "payload-too-large", r.text
        assert r.headers["access-control-allow-origin"] == "*"
    assert count(db) == 0

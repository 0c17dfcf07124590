from __future__ import annotations

from tests.conftest import World
from tests.factories import enroll, make_key


def test_key_lifecycle_shown_once_scoped_revocable(client, world: World) -> None:
    a = world.brands[0]
    r = client.post("/api/v1/api-keys", json={"name": "pos", "scopes": ["members:read"]}, headers=a.headers)
    assert r.status_code == 201
    issued = r.json()
    secret, key_id = issued["secret"], issued["id"]
    listed = client.get("/api/v1/api-keys", headers=a.headers).json()
    assert all("secret" not in k for k in listed)
    h = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/members", headers=h).status_code == 200
    # scoped: a read key cannot write
    r = client.post("/api/v1/members", json={"enroll_channel": "web"}, headers=h)
    assert r.status_code == 403 and r.json()["code"] == "permission-denied"
    used = next(k for k in client.get("/api/v1/api-keys", headers=a.headers).json() if k["id"] == key_id)
    assert used["last_used_at"] is not None
    assert client.post(f"/api/v1/api-keys/{key_id}/revoke", headers=a.headers).status_code == 200
    assert client.get("/api/v1/members", headers=h).status_code == 401


def test_brand_cannot_revoke_or_list_other_brand_keys(client, world: World) -> None:
    a, b = world.brands
    r = client.post("/api/v1/api-keys", json={"name": "x", "scopes": ["members:read"]}, headers=a.headers)
    key_id = r.json()["id"]
    assert client.post(f"/api/v1/api-keys/{key_id}/revoke", headers=b.headers).status_code == 404
    assert key_id not in [k["id"] for k in client.get("/api/v1/api-keys", headers=b.headers).json()]
    r = client.post(
        "/api/v1/api-keys", json={"name": "p", "scopes": ["*"], "platform": True}, headers=a.headers
    )
    assert r.status_code == 403


def test_unknown_scope_is_field_error(client, world: World) -> None:
    r = client.post(
        "/api/v1/api-keys",
        json={"name": "x", "scopes": ["members:everything"]},
        headers=world.brands[0].headers,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "scopes"


def test_users_and_audit(client, world: World) -> None:
    a, b = world.brands
    r = client.post(
        "/api/v1/users",
        json={"username": "op1", "password": "s3cret-pass", "role": "operator"},
        headers=a.headers,
    )
    assert r.status_code == 201 and r.json()["brand_id"] == a.id
    dup = client.post(
        "/api/v1/users",
        json={"username": "op1", "password": "s3cret-pass", "role": "operator"},
        headers=a.headers,
    )
    assert dup.status_code == 409
    assert "op1" not in [u["username"] for u in client.get("/api/v1/users", headers=b.headers).json()]
    m = enroll(client, a.headers, name="审计")
    log = client.get("/api/v1/audit", params={"entity_type": "member"}, headers=a.headers).json()
    assert [e["entity_id"] for e in log["items"]] == [str(m["id"])]
    assert (
        client.get("/api/v1/audit", params={"entity_type": "member"}, headers=b.headers).json()["items"] == []
    )


def test_idempotency_key_replays_first_result(client, world: World) -> None:
    a = world.brands[0]
    h = {**a.headers, "Idempotency-Key": "enroll-0001"}
    first = client.post("/api/v1/members", json={"enroll_channel": "app", "name": "重试"}, headers=h)
    again = client.post("/api/v1/members", json={"enroll_channel": "app", "name": "重试"}, headers=h)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    other = client.post("/api/v1/members", json={"enroll_channel": "app", "name": "别的"}, headers=h)
    assert other.status_code == 422 and other.json()["code"] == "idempotency-key-reused"
    assert len(client.get("/api/v1/members", headers=a.headers).json()["items"]) == 1


def test_rate_limit_429_with_retry_after(client, world: World, db) -> None:
    from huiyuan.auth.models import ApiKey

    secret = make_key(db, world.brands[0].id, ["members:read"], name="limited")
    with db.unit_of_work() as s:
        key = s.query(ApiKey).filter(ApiKey.name == "limited").one()
        key.rate_limit = "3/minute"
    h = {"Authorization": f"Bearer {secret}"}
    codes = [client.get("/api/v1/members", headers=h).status_code for _ in range(4)]
    assert codes[:3] == [200, 200, 200] and codes[3] == 429
    r = client.get("/api/v1/members", headers=h)
    assert int(r.headers["Retry-After"]) >= 1 and r.json()["code"] == "rate-limited"


def test_oversized_body_and_page_refused(client, world: World) -> None:
    a = world.brands[0]
    big = "x" * (11 * 1024 * 1024)
    r = client.post("/api/v1/members", content=big, headers={**a.headers, "Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["code"] == "payload-too-large"
    r = client.get("/api/v1/members", params={"limit": 100000}, headers=a.headers)
    assert r.status_code == 422


def test_idempotent_response_is_encrypted_and_forgotten_on_erasure(client, world: World, db) -> None:
    from sqlalchemy import select

    from huiyuan.kit.idempotency import IdempotencyRecord

    a = world.brands[0]
    h = {**a.headers, "Idempotency-Key": "enroll-pii-0001"}
    m = client.post(
        "/api/v1/members", json={"enroll_channel": "app", "phone": "13911112222"}, headers=h
    ).json()
    with db.unit_of_work(write=False) as s:
        record = s.scalars(select(IdempotencyRecord)).one()
        assert "13911112222" not in record.response_enc
    r = client.post(f"/api/v1/members/{m['id']}/erase", json={"reason": "request"}, headers=a.headers)
    assert r.status_code == 200, r.text
    with db.unit_of_work(write=False) as s:
        assert s.scalars(select(IdempotencyRecord)).all() == []

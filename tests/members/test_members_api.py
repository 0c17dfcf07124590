from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from huiyuan.audit.models import AuditEntry
from huiyuan.members.models import Member
from huiyuan.outbox.models import OutboxEvent
from tests.conftest import World
from tests.factories import enroll


def test_enroll_get_update_close(client, world: World) -> None:
    a = world.brands[0]
    m = enroll(
        client,
        a.headers,
        name="王小明",
        phone="138 0013 8000",
        email="Wang@Example.com",
        identifiers=[{"type": "wechat_openid", "value": "oAbc"}],
    )
    assert m["member_number"].startswith("AL")
    assert m["phone"] == "13800138000"  # full-permission key sees PII
    r = client.patch(f"/api/v1/members/{m['id']}", json={"city": "杭州市"}, headers=a.headers)
    assert r.status_code == 200 and r.json()["city"] == "杭州市" and r.json()["version"] == 2
    r = client.post(f"/api/v1/members/{m['id']}/close", json={"reason": "requested"}, headers=a.headers)
    assert r.json()["status"] == "closed"
    with world.db.unit_of_work() as s:
        actions = [
            e.action
            for e in s.scalars(
                select(AuditEntry)
                .where(AuditEntry.entity_type == "member", AuditEntry.entity_id == str(m["id"]))
                .order_by(AuditEntry.id)
            )
        ]
        events = [e.type for e in s.scalars(select(OutboxEvent).order_by(OutboxEvent.id))]
    assert actions == ["member.enrolled", "member.updated", "member.closed"]
    assert events == ["member.enrolled", "member.updated", "member.closed"]


def test_brand_cannot_see_or_change_other_brand(client, world: World) -> None:
    a, b = world.brands
    m = enroll(client, a.headers, name="甲")
    assert client.get(f"/api/v1/members/{m['id']}", headers=b.headers).status_code == 404
    r = client.patch(f"/api/v1/members/{m['id']}", json={"name": "x"}, headers=b.headers)
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    assert (
        client.post(f"/api/v1/members/{m['id']}/close", json={"reason": "x"}, headers=b.headers).status_code
        == 404
    )
    assert client.get("/api/v1/members", headers=b.headers).json()["items"] == []
    # the platform sees it, and may narrow to one brand
    assert client.get(f"/api/v1/members/{m['id']}", headers=world.platform_headers).status_code == 200
    h = {**world.platform_headers, "X-Huiyuan-Brand": "beta"}
    assert client.get(f"/api/v1/members/{m['id']}", headers=h).status_code == 404


def test_validation_problem_details(client, world: World) -> None:
    a = world.brands[0]
    r = client.post("/api/v1/members", json={"enroll_channel": "fax", "phone": "123"}, headers=a.headers)
    assert r.status_code == 422
    body = r.json()
    assert body["code"] == "validation-failed"
    fields = {e["field"] for e in body["errors"]}
    assert {"enroll_channel", "phone"} <= fields


def test_duplicate_phone_conflicts_and_writes_nothing(client, world: World) -> None:
    a = world.brands[0]
    first = enroll(client, a.headers, phone="13900001111")
    r = client.post(
        "/api/v1/members", json={"enroll_channel": "web", "phone": "+86 139 0000 1111"}, headers=a.headers
    )
    assert r.status_code == 409 and r.json()["existing_member_id"] == first["id"]
    with world.db.unit_of_work() as s:
        assert len(s.scalars(select(Member)).all()) == 1


def test_wrong_key_is_401(client, world: World) -> None:
    r = client.get("/api/v1/members", headers={"Authorization": "Bearer hy_nope_nope"})
    assert r.status_code == 401 and r.json()["code"] == "unauthenticated"


def test_phone_not_in_sqlite_file_plaintext(client, world: World, db) -> None:
    a = world.brands[0]
    enroll(client, a.headers, phone="13712345678", email="pii@example.com")
    if db.is_sqlite:
        db.dispose()
        raw = Path(str(db.engine.url.database)).read_bytes()
        assert b"13712345678" not in raw and b"pii@example.com" not in raw

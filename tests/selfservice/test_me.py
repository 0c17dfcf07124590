from __future__ import annotations

import time
import xml.etree.ElementTree as ET

from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import select

from huiyuan.audit.models import AuditEntry
from huiyuan.settings import get_settings
from tests.conftest import World
from tests.factories import enroll, make_key

TOKENS = "/api/v1/member-tokens"


def _token(client, headers, **body) -> str:  # type: ignore[no-untyped-def]
    r = client.post(TOKENS, json=body, headers=headers)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["token_type"] == "Bearer" and out["expires_in"] == get_settings().member_token_ttl_seconds
    assert out["token"].startswith("hym_")
    return str(out["token"])


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_exchange_and_read_own_record(client, world: World) -> None:
    a = world.brands[0]
    me = enroll(
        client,
        a.headers,
        name="王小明",
        phone="13800138000",
        identifiers=[{"type": "wechat_openid", "value": "oMe"}],
    )
    other = enroll(client, a.headers, name="李四", phone="13900139000")
    key = make_key(world.db, a.id, ["members:token"], name="mini-program")
    h = {"Authorization": f"Bearer {key}"}

    by_id = _token(client, h, member_id=me["id"])
    by_number = _token(client, h, member_number=me["member_number"])
    by_ident = _token(client, h, identifier={"type": "wechat_openid", "value": "oMe"})
    for token in (by_id, by_number, by_ident):
        r = client.get("/api/v1/me", headers=_bearer(token))
        assert r.status_code == 200, r.text
        assert r.json()["member_number"] == me["member_number"]
        assert r.json()["phone"] == "13800138000"  # own PII unmasked
    assert _token(client, h, identifier={"type": "phone", "value": "+86 139 0013 9000"}) != by_id
    other_token = _token(client, h, member_id=other["id"])
    assert client.get("/api/v1/me", headers=_bearer(other_token)).json()["name"] == "李四"

    with world.db.unit_of_work() as s:
        issued = s.scalars(select(AuditEntry).where(AuditEntry.action == "member.token_issued")).all()
    assert len(issued) == 5 and {e.actor_name for e in issued} == {"mini-program"}


def test_member_token_cannot_reach_staff_routes(client, world: World) -> None:
    a = world.brands[0]
    me = enroll(client, a.headers, name="甲")
    token = _token(client, a.headers, member_id=me["id"])
    hb = _bearer(token)
    assert client.get("/api/v1/members", headers=hb).status_code == 403
    assert client.get(f"/api/v1/members/{me['id']}", headers=hb).status_code == 403
    assert client.get(f"/api/v1/members/{me['id']}/export", headers=hb).status_code == 403
    assert (
        client.patch(f"/api/v1/members/{me['id']}", json={"status": "frozen"}, headers=hb).status_code == 403
    )
    assert client.post(TOKENS, json={"member_id": me["id"]}, headers=hb).status_code == 403
    # and a staff key is not a member
    assert client.get("/api/v1/me", headers=a.headers).status_code == 403


def test_exchange_rules(client, world: World) -> None:
    a, b = world.brands
    alpha = enroll(client, a.headers, phone="13700000001")
    beta = enroll(
        client, b.headers, phone="13700000002", identifiers=[{"type": "alipay_id", "value": "2088"}]
    )
    # another brand's member cannot be tokenized by this brand's key, in any way
    assert client.post(TOKENS, json={"member_id": beta["id"]}, headers=a.headers).status_code == 404
    assert (
        client.post(TOKENS, json={"member_number": beta["member_number"]}, headers=a.headers).status_code
        == 404
    )
    body = {"identifier": {"type": "alipay_id", "value": "2088"}}
    assert client.post(TOKENS, json=body, headers=a.headers).status_code == 404
    body = {"identifier": {"type": "phone", "value": "13700000002"}}
    assert client.post(TOKENS, json=body, headers=a.headers).status_code == 404
    # exactly one way of naming the member
    assert client.post(TOKENS, json={}, headers=a.headers).status_code == 422
    both = {"member_id": alpha["id"], "member_number": alpha["member_number"]}
    assert client.post(TOKENS, json=both, headers=a.headers).status_code == 422
    # the key needs members:token
    reader = {"Authorization": "Bearer " + make_key(world.db, a.id, ["members:read"])}
    assert client.post(TOKENS, json={"member_id": alpha["id"]}, headers=reader).status_code == 403
    # a platform key must pick the brand
    r = client.post(TOKENS, json={"member_id": alpha["id"]}, headers=world.platform_headers)
    assert r.status_code == 422 and r.json()["code"] == "brand-required"
    ph = {**world.platform_headers, "X-Huiyuan-Brand": "alpha"}
    assert client.post(TOKENS, json={"member_id": alpha["id"]}, headers=ph).status_code == 200
    # prospects may sign in; frozen and closed members may not
    prospect = enroll(client, a.headers, status="prospect")
    assert client.post(TOKENS, json={"member_id": prospect["id"]}, headers=a.headers).status_code == 200
    client.patch(f"/api/v1/members/{alpha['id']}", json={"status": "frozen"}, headers=a.headers)
    r = client.post(TOKENS, json={"member_id": alpha["id"]}, headers=a.headers)
    assert r.status_code == 409 and r.json()["code"] == "member-not-active"


def test_expired_tampered_and_closed_tokens_are_401(client, world: World) -> None:
    a = world.brands[0]
    me = enroll(client, a.headers)
    token = _token(client, a.headers, member_id=me["id"])

    class OldSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - get_settings().member_token_ttl_seconds - 5

    stale = URLSafeTimedSerializer(get_settings().secret_key, salt="member-token", signer=OldSigner)
    expired = "hym_" + str(stale.dumps({"b": a.id, "m": me["id"]}))
    r = client.get("/api/v1/me", headers=_bearer(expired))
    assert r.status_code == 401 and r.json()["code"] == "unauthenticated"
    assert client.get("/api/v1/me", headers=_bearer(token[:-3] + "xyz")).status_code == 401
    forged = URLSafeTimedSerializer("not-our-secret", salt="member-token").dumps({"b": a.id, "m": me["id"]})
    assert client.get("/api/v1/me", headers=_bearer("hym_" + str(forged))).status_code == 401

    assert client.get("/api/v1/me", headers=_bearer(token)).status_code == 200
    client.post(f"/api/v1/members/{me['id']}/close", json={"reason": "left"}, headers=a.headers)
    assert client.get("/api/v1/me", headers=_bearer(token)).status_code == 401
    r = client.post(TOKENS, json={"member_id": me["id"]}, headers=a.headers)
    assert r.status_code == 409


def test_update_me(client, world: World) -> None:
    a = world.brands[0]
    me = enroll(client, a.headers, name="甲", phone="13800000001")
    hb = _bearer(_token(client, a.headers, member_id=me["id"]))
    r = client.patch(
        "/api/v1/me",
        json={"name": "甲乙", "city": "杭州市", "email": "Me@Example.com", "interests": ["tea"]},
        headers=hb,
    )
    assert r.status_code == 200, r.text
    assert (
        r.json()["name"] == "甲乙"
        and r.json()["email"] == "me@example.com"
        and r.json()["interests"] == ["tea"]
    )
    for forbidden in (
        {"status": "closed"},
        {"member_number": "X1"},
        {"phone": "13900000000"},
        {"custom": {}},
    ):
        r = client.patch("/api/v1/me", json=forbidden, headers=hb)
        assert r.status_code == 422, forbidden
    assert client.patch("/api/v1/me", json={"birthday": "1800-01-01"}, headers=hb).status_code == 422
    staff_view = client.get(f"/api/v1/members/{me['id']}", headers=a.headers).json()
    assert staff_view["status"] == "active" and staff_view["city"] == "杭州市" and staff_view["version"] == 2
    with world.db.unit_of_work() as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "member.updated")).one()
    assert entry.actor_kind == "member" and entry.actor_id == me["id"]


def test_my_qr_verifies_at_the_till(client, world: World) -> None:
    a, b = world.brands
    me = enroll(client, a.headers, name="王小明", phone="13800138000")
    hb = _bearer(_token(client, a.headers, member_id=me["id"]))
    png = client.get("/api/v1/me/qr", headers=hb)
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG\r\n\x1a\n")
    svg = client.get("/api/v1/me/qr?format=svg", headers=hb)
    assert svg.headers["content-type"].startswith("image/svg+xml") and ET.fromstring(
        svg.content
    ).tag.endswith("svg")
    token = client.get("/api/v1/me/qr?format=json", headers=hb).json()["token"]
    r = client.post("/api/v1/members/qr/verify", json={"token": token}, headers=a.headers)
    assert r.status_code == 200 and r.json()["id"] == me["id"] and r.json()["phone"] == "138****8000"
    r = client.post("/api/v1/members/qr/verify", json={"token": token}, headers=b.headers)
    assert r.status_code == 422 and r.json()["code"] == "qr-invalid"
    # a member cannot verify codes (a staff action)
    assert client.post("/api/v1/members/qr/verify", json={"token": token}, headers=hb).status_code == 403


def test_my_consents(client, world: World) -> None:
    a = world.brands[0]
    me = enroll(client, a.headers, name="甲")
    other = enroll(client, a.headers, name="乙")
    hb = _bearer(_token(client, a.headers, member_id=me["id"]))
    r = client.get("/api/v1/me/consents", headers=hb)
    assert r.status_code == 200 and r.json()["history"] == [] and r.json()["member_id"] == me["id"]
    give = {"purpose": "marketing", "channel": "sms", "granted": True}
    r = client.post("/api/v1/me/consents", json=give, headers=hb)
    assert r.status_code == 200, r.text
    assert r.json()["changed"] is True and r.json()["effective"]["marketing"]["sms"] is True
    assert r.json()["history"][0]["source"] == "self_service"
    assert client.post("/api/v1/me/consents", json=give, headers=hb).json()["changed"] is False
    withdraw = {"purpose": "marketing", "channel": "all", "granted": False, "source": "app:settings"}
    r = client.post("/api/v1/me/consents", json=withdraw, headers=hb)
    assert r.json()["effective"]["marketing"]["sms"] is False and len(r.json()["history"]) == 2
    assert client.post("/api/v1/me/consents", json={**give, "purpose": "x"}, headers=hb).status_code == 422
    # only the member's own consents changed, and the member is the recorded actor
    staff = client.get(f"/api/v1/members/{other['id']}/consents", headers=a.headers)
    if staff.status_code == 200:
        assert staff.json()["history"] == []
    with world.db.unit_of_work() as s:
        rows = s.scalars(select(AuditEntry).where(AuditEntry.action.like("consent.%"))).all()
    assert {(e.actor_kind, e.entity_id) for e in rows} == {("member", str(me["id"]))}

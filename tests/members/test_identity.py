from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from huiyuan.audit.models import AuditEntry
from huiyuan.kit.clock import FrozenClock, get_clock, set_clock
from huiyuan.kit.errors import NotFound
from huiyuan.kit.scope import system_for_brand
from huiyuan.members import identity
from huiyuan.members.models import MemberCard, MemberIdentifier
from huiyuan.members.repository import MemberRepository
from huiyuan.members.schemas import MemberEnroll
from huiyuan.members.service import enroll_member
from huiyuan.outbox.models import OutboxEvent
from tests.conftest import World
from tests.factories import enroll, make_key

M = "/api/v1/members"


@pytest.fixture
def frozen():  # type: ignore[no-untyped-def]
    previous = get_clock()
    clock = FrozenClock(datetime(2026, 5, 1, 8, 0, tzinfo=UTC))
    set_clock(clock)
    yield clock
    set_clock(previous)


def test_identifier_add_conflict_remove_lookup(client, world: World) -> None:
    a = world.brands[0]
    m1 = enroll(client, a.headers, name="甲", phone="13800000001")
    m2 = enroll(client, a.headers, name="乙")
    body = {"type": "wechat_openid", "value": "oOpen-1", "source": "mini_program"}

    r = client.post(f"{M}/{m1['id']}/identifiers", json=body, headers=a.headers)
    assert r.status_code == 201, r.text
    ident = r.json()
    assert ident["value"] == "oOpen-1" and ident["type"] == "wechat_openid"
    # a retry by the same member is a no-op
    r = client.post(f"{M}/{m1['id']}/identifiers", json=body, headers=a.headers)
    assert r.status_code == 200 and r.json()["id"] == ident["id"]
    # another member: 409 without naming the owner
    r = client.post(f"{M}/{m2['id']}/identifiers", json=body, headers=a.headers)
    assert r.status_code == 409 and r.json()["code"] == "identifier-taken"
    assert "existing_member_id" not in r.json() and m1["member_number"] not in r.text

    r = client.get(f"{M}/lookup", params={"type": "wechat_openid", "value": "oOpen-1"}, headers=a.headers)
    assert r.status_code == 200 and r.json()["id"] == m1["id"]
    r = client.get(f"{M}/lookup", params={"type": "phone", "value": "+86 138 0000 0001"}, headers=a.headers)
    assert r.status_code == 200 and r.json()["id"] == m1["id"]
    r = client.get(f"{M}/lookup", params={"type": "wechat_openid", "value": "nobody"}, headers=a.headers)
    assert r.status_code == 404

    # phone/email are changed through PATCH of the member, not here
    phone_ident = next(i for i in r_json_identifiers(client, a.headers, m1["id"]) if i["type"] == "phone")
    r = client.delete(f"{M}/{m1['id']}/identifiers/{phone_ident['id']}", headers=a.headers)
    assert r.status_code == 409 and r.json()["code"] == "identifier-managed-elsewhere"
    r = client.post(
        f"{M}/{m2['id']}/identifiers", json={"type": "phone", "value": "13800000002"}, headers=a.headers
    )
    assert r.status_code == 409 and r.json()["code"] == "identifier-managed-elsewhere"

    r = client.delete(f"{M}/{m1['id']}/identifiers/{ident['id']}", headers=a.headers)
    assert r.status_code == 204
    assert client.delete(f"{M}/{m1['id']}/identifiers/{ident['id']}", headers=a.headers).status_code == 404
    r = client.get(f"{M}/lookup", params={"type": "wechat_openid", "value": "oOpen-1"}, headers=a.headers)
    assert r.status_code == 404
    # now free for the other member
    r = client.post(f"{M}/{m2['id']}/identifiers", json=body, headers=a.headers)
    assert r.status_code == 201

    with world.db.unit_of_work() as s:
        events = [
            e.type
            for e in s.scalars(
                select(OutboxEvent)
                .where(OutboxEvent.type.like("member.identifier%"))
                .order_by(OutboxEvent.id)
            )
        ]
        actions = [
            e.action
            for e in s.scalars(
                select(AuditEntry).where(AuditEntry.action.like("%identifier%")).order_by(AuditEntry.id)
            )
        ]
        audit_text = str([e.changes for e in s.scalars(select(AuditEntry))])
    assert events == ["member.identifier_added", "member.identifier_removed", "member.identifier_added"]
    assert actions == events
    assert "oOpen-1" not in audit_text


def r_json_identifiers(client, headers, member_id):  # type: ignore[no-untyped-def]
    return client.get(f"{M}/{member_id}", headers=headers).json()["identifiers"]


def test_identifier_values_masked_without_pii_permission(client, world: World) -> None:
    a = world.brands[0]
    m = enroll(client, a.headers, name="甲")
    key = make_key(world.db, a.id, ["members:read", "members:write"], name="no-pii")
    h = {"Authorization": f"Bearer {key}"}
    r = client.post(
        f"{M}/{m['id']}/identifiers", json={"type": "alipay_id", "value": "2088123456"}, headers=h
    )
    assert r.status_code == 201 and r.json()["value"] != "2088123456" and "*" in r.json()["value"]
    r = client.post(f"{M}/{m['id']}/cards", json={"card_number": "88000001"}, headers=h)
    assert r.json()["card_number"] != "88000001"


def test_card_bind_lost_replace(client, world: World) -> None:
    a = world.brands[0]
    m = enroll(client, a.headers, name="甲")
    other = enroll(client, a.headers, name="乙")
    r = client.post(f"{M}/{m['id']}/cards", json={"card_number": "C0001"}, headers=a.headers)
    assert r.status_code == 201, r.text
    card = r.json()
    assert card["status"] == "active" and card["card_number"] == "C0001"
    again = client.post(f"{M}/{m['id']}/cards", json={"card_number": "C0001"}, headers=a.headers)
    assert again.status_code == 200 and again.json()["id"] == card["id"]
    # a second active card, or someone else's number, is refused
    r = client.post(f"{M}/{m['id']}/cards", json={"card_number": "C0002"}, headers=a.headers)
    assert r.status_code == 409 and r.json()["code"] == "card-state"
    r = client.post(f"{M}/{other['id']}/cards", json={"card_number": "C0001"}, headers=a.headers)
    assert r.status_code == 409 and r.json()["code"] == "card-number-taken"
    lookup = {"type": "card_number", "value": "C0001"}
    assert client.get(f"{M}/lookup", params=lookup, headers=a.headers).json()["id"] == m["id"]

    r = client.post(f"{M}/{m['id']}/cards/{card['id']}/lost", json={"reason": "stolen"}, headers=a.headers)
    assert r.status_code == 200 and r.json()["status"] == "lost" and r.json()["lost_at"]
    r2 = client.post(f"{M}/{m['id']}/cards/{card['id']}/lost", json={"reason": "stolen"}, headers=a.headers)
    assert r2.status_code == 200 and r2.json()["lost_at"] == r.json()["lost_at"]
    # a found card identifies nobody, and its number cannot be bound again
    assert client.get(f"{M}/lookup", params=lookup, headers=a.headers).status_code == 404
    r = client.post(f"{M}/{other['id']}/cards", json={"card_number": "C0001"}, headers=a.headers)
    assert r.status_code == 409

    replace = {"new_card_number": "C0003"}
    r = client.post(f"{M}/{m['id']}/cards/{card['id']}/replace", json=replace, headers=a.headers)
    assert r.status_code == 201, r.text
    new = r.json()
    assert new["replaces_card_id"] == card["id"] and new["status"] == "active"
    retry = client.post(f"{M}/{m['id']}/cards/{card['id']}/replace", json=replace, headers=a.headers)
    assert retry.status_code == 200 and retry.json()["id"] == new["id"]
    r = client.post(
        f"{M}/{m['id']}/cards/{card['id']}/replace", json={"new_card_number": "C0009"}, headers=a.headers
    )
    assert r.status_code == 409

    assert client.get(f"{M}/lookup", params=lookup, headers=a.headers).status_code == 404
    r = client.get(f"{M}/lookup", params={"type": "card_number", "value": "C0003"}, headers=a.headers)
    assert r.json()["id"] == m["id"]
    history = client.get(f"{M}/{m['id']}/cards", headers=a.headers).json()["items"]
    assert [(c["card_number"], c["status"]) for c in history] == [("C0001", "replaced"), ("C0003", "active")]

    # replacing the active card directly (no loss) swaps the identifiers too
    r = client.post(
        f"{M}/{m['id']}/cards/{new['id']}/replace", json={"new_card_number": "C0004"}, headers=a.headers
    )
    assert r.status_code == 201
    assert (
        client.get(
            f"{M}/lookup", params={"type": "card_number", "value": "C0003"}, headers=a.headers
        ).status_code
        == 404
    )
    with world.db.unit_of_work() as s:
        idents = s.scalars(select(MemberIdentifier).where(MemberIdentifier.type == "card_number")).all()
        assert len(idents) == 1
        assert s.scalars(select(MemberCard).order_by(MemberCard.id)).all()[-1].card_number == "C0004"
        cards = select(OutboxEvent).where(OutboxEvent.type.like("member.card%")).order_by(OutboxEvent.id)
        events = [e.type for e in s.scalars(cards)]
    assert events == ["member.card_bound", "member.card_lost", "member.card_replaced", "member.card_replaced"]


def test_card_number_validation(client, world: World) -> None:
    a = world.brands[0]
    m = enroll(client, a.headers)
    r = client.post(f"{M}/{m['id']}/cards", json={"card_number": "x y"}, headers=a.headers)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "card_number"


def test_qr_render_and_verify(client, world: World, frozen: FrozenClock) -> None:
    a, b = world.brands
    m = enroll(client, a.headers, name="王小明", phone="13800138000")
    r = client.get(f"{M}/{m['id']}/qr", params={"format": "png"}, headers=a.headers)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert r.headers["cache-control"] == "no-store"
    r = client.get(f"{M}/{m['id']}/qr", params={"format": "svg"}, headers=a.headers)
    assert r.headers["content-type"].startswith("image/svg+xml")
    assert ET.fromstring(r.content).tag.endswith("svg")
    assert client.get(f"{M}/{m['id']}/qr", params={"format": "gif"}, headers=a.headers).status_code == 422

    r = client.get(f"{M}/{m['id']}/qr", params={"format": "json"}, headers=a.headers)
    body = r.json()
    assert body["expires_at"].startswith("2026-05-01T08:05:00")
    token = body["token"]
    r = client.post(f"{M}/qr/verify", json={"token": token}, headers=a.headers)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "id": m["id"],
        "member_number": m["member_number"],
        "name": "王小明",
        "status": "active",
        "phone": "138****8000",
    }
    # another brand learns nothing
    r = client.post(f"{M}/qr/verify", json={"token": token}, headers=b.headers)
    assert r.status_code == 422 and r.json()["code"] == "qr-invalid"
    # tampered
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    r = client.post(f"{M}/qr/verify", json={"token": tampered}, headers=a.headers)
    assert r.json()["code"] == "qr-invalid"
    r = client.post(f"{M}/qr/verify", json={"token": "garbage"}, headers=a.headers)
    assert r.json()["code"] == "qr-invalid"

    frozen.advance(seconds=299)
    assert client.post(f"{M}/qr/verify", json={"token": token}, headers=a.headers).status_code == 200
    frozen.advance(seconds=2)
    r = client.post(f"{M}/qr/verify", json={"token": token}, headers=a.headers)
    assert r.status_code == 422 and r.json()["code"] == "qr-expired"
    r = client.post(f"{M}/qr/verify", json={"token": token}, headers=b.headers)
    assert r.json()["code"] == "qr-invalid"

    # a closed membership's code stops working
    fresh = client.get(f"{M}/{m['id']}/qr", params={"format": "json"}, headers=a.headers).json()["token"]
    client.post(f"{M}/{m['id']}/close", json={"reason": "x"}, headers=a.headers)
    assert (
        client.post(f"{M}/qr/verify", json={"token": fresh}, headers=a.headers).json()["code"] == "qr-invalid"
    )
    assert client.get(f"{M}/{m['id']}/qr", params={"format": "json"}, headers=a.headers).status_code == 409


def test_other_brand_gets_404_on_every_identity_route(client, world: World) -> None:
    a, b = world.brands
    m = enroll(client, a.headers, phone="13900000009")
    ident = client.post(
        f"{M}/{m['id']}/identifiers", json={"type": "device_id", "value": "dev-1"}, headers=a.headers
    ).json()
    card = client.post(f"{M}/{m['id']}/cards", json={"card_number": "K1234"}, headers=a.headers).json()
    mid = m["id"]
    calls = [
        ("post", f"{M}/{mid}/identifiers", {"type": "device_id", "value": "dev-2"}),
        ("delete", f"{M}/{mid}/identifiers/{ident['id']}", None),
        ("get", f"{M}/{mid}/cards", None),
        ("post", f"{M}/{mid}/cards", {"card_number": "K9999"}),
        ("post", f"{M}/{mid}/cards/{card['id']}/lost", {"reason": "x"}),
        ("post", f"{M}/{mid}/cards/{card['id']}/replace", {"new_card_number": "K8888"}),
        ("get", f"{M}/{mid}/qr?format=json", None),
    ]
    for method, url, body in calls:
        kwargs = {"json": body} if body is not None else {}
        r = client.request(method.upper(), url, headers=b.headers, **kwargs)
        assert r.status_code == 404, (method, url, r.text)
    for t, v in (("phone", "13900000009"), ("device_id", "dev-1"), ("card_number", "K1234")):
        assert client.get(f"{M}/lookup", params={"type": t, "value": v}, headers=b.headers).status_code == 404
    # nothing changed in alpha
    assert client.get(f"{M}/{mid}/cards", headers=a.headers).json()["items"][0]["status"] == "active"


ops = st.lists(
    st.tuples(st.sampled_from(["add", "remove"]), st.integers(0, 2), st.integers(0, 3)),
    min_size=1,
    max_size=12,
)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=ops)
def test_identifier_ownership_invariant(world: World, steps: list[tuple[str, int, int]]) -> None:
    """Whatever the order of adds and removes, a value has at most one owner and lookup finds it."""
    brand = world.brands[0]
    actor = system_for_brand(brand.id)
    prefix = uuid.uuid4().hex[:8]  # examples share the database: each works on its own values
    with world.db.unit_of_work(actor.scope) as s:
        member_ids = [
            enroll_member(s, actor=actor, data=MemberEnroll(enroll_channel="store")).id for _ in range(3)
        ]
    owner: dict[int, int] = {}
    with world.db.unit_of_work(actor.scope) as s:
        for op, who, which in steps:
            value = f"{prefix}-{which}"
            if op == "add":
                try:
                    _, created = identity.add_identifier(
                        s, actor=actor, member_id=member_ids[who], type_="device_id", value=value, source=None
                    )
                except identity.IdentifierTaken:
                    assert owner.get(which) not in (None, member_ids[who])
                    continue
                assert created == (which not in owner)
                owner[which] = member_ids[who]
            elif which in owner and owner[which] == member_ids[who]:
                ident = MemberRepository(s).identifier_owner(brand.id, "device_id", value)
                assert ident is not None
                identity.remove_identifier(s, actor=actor, member_id=member_ids[who], identifier_id=ident.id)
                del owner[which]
            for w in range(4):
                try:
                    found = identity.lookup_member(
                        s, actor=actor, type_="device_id", value=f"{prefix}-{w}"
                    ).id
                except NotFound:
                    found = None
                assert found == owner.get(w)

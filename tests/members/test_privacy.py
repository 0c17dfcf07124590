from __future__ import annotations

from collections.abc import Iterator

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import func, select, text
from typer.testing import CliRunner

from huiyuan.audit.models import AuditEntry
from huiyuan.kit import pii
from huiyuan.kit.db import Database
from huiyuan.members import privacy
from huiyuan.members.models import Member, MemberCard, MemberIdentifier, Verification
from huiyuan.members.privacy_repository import token_columns
from huiyuan.outbox.models import OutboxEvent, WebhookSubscription
from huiyuan.settings import reset_settings_cache
from tests.conftest import World
from tests.factories import enroll, make_key

M = "/api/v1/members"


def _order(client, headers, member_id: int, number: str) -> None:  # type: ignore[no-untyped-def]
    body = {
        "order_number": number,
        "channel": "store",
        "member_id": member_id,
        "items": [
            {"sku": "SKU-1", "name": "T恤", "quantity": 1, "list_price": "99.00", "deal_price": "99.00"}
        ],
        "payments": [{"method": "cash", "amount": "99.00"}],
    }
    r = client.post("/api/v1/orders", json=body, headers=headers)
    assert r.status_code == 201, r.text


def _rich_member(client, world: World) -> dict:  # type: ignore[no-untyped-def,type-arg]
    a = world.brands[0]
    m = enroll(
        client, a.headers, name="王小明", phone="13800138000", email="wang@example.com", birthday="1990-05-20"
    )
    r = client.post(
        f"{M}/{m['id']}/identifiers", json={"type": "wechat_openid", "value": "oX1"}, headers=a.headers
    )
    assert r.status_code == 201
    assert (
        client.post(f"{M}/{m['id']}/cards", json={"card_number": "C7777"}, headers=a.headers).status_code
        == 201
    )
    assert (
        client.patch(
            f"{M}/{m['id']}", json={"city": "杭州市", "name": "王大明"}, headers=a.headers
        ).status_code
        == 200
    )
    with world.db.unit_of_work() as s:
        s.add(
            Verification(
                brand_id=a.id,
                member_id=m["id"],
                kind="student",
                status="verified",
                evidence={"school": "浙江大学", "id_last4": "1234"},
            )
        )
    return m


def test_export_contains_everything(client, world: World) -> None:
    a = world.brands[0]
    m = _rich_member(client, world)
    _order(client, a.headers, m["id"], "O-EXPORT-1")
    r = client.get(f"{M}/{m['id']}/export", headers=a.headers)
    assert r.status_code == 200, r.text
    assert "attachment" in r.headers["content-disposition"]
    doc = r.json()
    assert doc["format"] == privacy.EXPORT_FORMAT
    assert doc["member"]["phone"] == "13800138000" and doc["member"]["email"] == "wang@example.com"
    assert doc["member"]["name"] == "王大明" and doc["member"]["birthday"] == "1990-05-20"
    assert "phone_enc" not in doc["member"] and "phone_bidx" not in doc["member"]
    assert {(i["type"], i["value"]) for i in doc["identifiers"]} >= {
        ("phone", "13800138000"),
        ("wechat_openid", "oX1"),
        ("card_number", "C7777"),
    }
    assert [c["card_number"] for c in doc["cards"]] == ["C7777"]
    assert doc["verifications"][0]["evidence"]["school"] == "浙江大学"
    assert [e["action"] for e in doc["audit"]] == [
        "member.enrolled",
        "member.identifier_added",
        "member.card_bound",
        "member.updated",
    ]
    assert [o["order_number"] for o in doc["orders"]] == ["O-EXPORT-1"]
    with world.db.unit_of_work() as s:
        exported = s.scalars(select(AuditEntry).where(AuditEntry.action == "member.exported")).all()
        assert len(exported) == 1 and exported[0].entity_id == str(m["id"])

    reader = {"Authorization": "Bearer " + make_key(world.db, a.id, ["members:read", "members:write"])}
    assert client.get(f"{M}/{m['id']}/export", headers=reader).status_code == 403
    assert client.post(f"{M}/{m['id']}/erase", json={"reason": "x"}, headers=reader).status_code == 403


def _raw(db: Database, sql: str, **params: object) -> list[tuple]:  # type: ignore[type-arg]
    with db.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql), params)]


def test_erase_removes_pii_and_keeps_statistics(client, world: World) -> None:
    a = world.brands[0]
    m = _rich_member(client, world)
    _order(client, a.headers, m["id"], "O-ERASE-1")
    db = world.db
    counts_before = {
        t: _raw(db, f"SELECT count(*) FROM {t}")[0][0]
        for t in ("members", "member_cards", "orders", "order_items")
    }

    r = client.post(f"{M}/{m['id']}/erase", json={"reason": "ticket 4711"}, headers=a.headers)
    assert r.status_code == 200, r.text
    first = r.json()
    assert first["status"] == "closed" and first["member_number"] == m["member_number"]
    again = client.post(f"{M}/{m['id']}/erase", json={"reason": "ticket 4711"}, headers=a.headers)
    assert again.status_code == 200 and again.json() == first

    row = _raw(
        db,
        "SELECT name, phone_enc, phone_bidx, email_enc, email_bidx, birthday, city, status, erased_at "
        "FROM members WHERE id = :id",
        id=m["id"],
    )[0]
    assert row[:7] == (None, None, None, None, None, None, None)
    assert row[7] == "closed" and row[8] is not None
    assert _raw(db, "SELECT count(*) FROM member_identifiers WHERE member_id = :id", id=m["id"])[0][0] == 0
    cards = _raw(db, "SELECT card_number FROM member_cards WHERE member_id = :id", id=m["id"])
    assert len(cards) == 1 and cards[0][0].startswith("ERASED-") and "7777" not in cards[0][0]
    with db.unit_of_work() as s:
        assert s.scalars(select(Verification)).one().evidence == {}
        audit_rows = s.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
        erased_event = s.scalars(select(OutboxEvent).where(OutboxEvent.type == "member.erased")).all()
    assert len(erased_event) == 1 and set(erased_event[0].payload) == {"member_id", "erased_at"}
    audit_text = str([(e.changes, e.action) for e in audit_rows])
    for secret in ("王", "8000", "wang@", "1990", "杭州", "7777", "oX1"):
        assert secret not in audit_text, secret
    assert [e.action for e in audit_rows if e.action == "member.erased"] == ["member.erased"]
    counts_after = {t: _raw(db, f"SELECT count(*) FROM {t}")[0][0] for t in counts_before}
    assert counts_after == counts_before

    # nothing finds the member any more, and the phone is free for someone new
    assert (
        client.get(
            f"{M}/lookup", params={"type": "phone", "value": "13800138000"}, headers=a.headers
        ).status_code
        == 404
    )
    assert client.get(f"{M}", params={"phone": "13800138000"}, headers=a.headers).json()["items"] == []
    assert (
        client.get(
            f"{M}/lookup", params={"type": "card_number", "value": "C7777"}, headers=a.headers
        ).status_code
        == 404
    )
    newcomer = enroll(client, a.headers, phone="13800138000")
    assert newcomer["id"] != m["id"]
    # the erased member is still there as a closed, anonymous row (ledgers keep pointing at it)
    got = client.get(f"{M}/{m['id']}", headers=a.headers).json()
    assert (
        got["status"] == "closed"
        and got["phone"] is None
        and got["name"] is None
        and got["identifiers"] == []
    )
    assert client.get(f"{M}/{m['id']}/export", headers=a.headers).json()["member"]["phone"] is None


def test_other_brand_gets_404_on_privacy_routes(client, world: World) -> None:
    a, b = world.brands
    m = enroll(client, a.headers, phone="13700000001")
    assert client.get(f"{M}/{m['id']}/export", headers=b.headers).status_code == 404
    assert client.post(f"{M}/{m['id']}/erase", json={"reason": "x"}, headers=b.headers).status_code == 404
    assert client.get(f"{M}/{m['id']}", headers=a.headers).json()["phone"] == "13700000001"


# -- key rotation ----------------------------------------------------------------------------------


@pytest.fixture
def pii_keys(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    def use(keys: str) -> None:
        monkeypatch.setenv("HUIYUAN_PII_KEYS", keys)
        reset_settings_cache()

    yield use
    monkeypatch.delenv("HUIYUAN_PII_KEYS", raising=False)
    reset_settings_cache()


def test_token_columns_cover_every_encrypted_column() -> None:
    found = {(t.name, c) for t, cols in token_columns() for c in cols}
    assert {
        ("members", "phone_enc"),
        ("members", "email_enc"),
        ("member_identifiers", "value_enc"),
        ("webhook_subscriptions", "secret_enc"),
    } <= found


def test_rotate_pii_keys(client, world: World, pii_keys) -> None:  # type: ignore[no-untyped-def]
    key_a, key_b = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    a = world.brands[0]
    pii_keys(key_a)
    m = enroll(client, a.headers, phone="13600000001", email="rot@example.com")
    client.post(
        f"{M}/{m['id']}/identifiers", json={"type": "device_id", "value": "dev-rot"}, headers=a.headers
    )
    with world.db.unit_of_work() as s:
        s.add(
            WebhookSubscription(brand_id=a.id, url="https://example.com/h", secret_enc=pii.encrypt("whsec_1"))
        )

    pii_keys(f"{key_b},{key_a}")
    seen: list[tuple[str, int, int]] = []
    rewritten = privacy.rotate_pii_tokens(
        world.db, lambda t, n, total: seen.append((t, n, total)), chunk_size=1
    )
    assert rewritten["members"] == 1 and rewritten["member_identifiers"] == 3
    assert rewritten["webhook_subscriptions"] == 1
    assert ("member_identifiers", 1, 3) in seen
    # resumable: a second run finds nothing left to do
    assert set(privacy.rotate_pii_tokens(world.db).values()) == {0}

    pii_keys(key_b)
    got = client.get(f"{M}/{m['id']}", headers=a.headers).json()
    assert got["phone"] == "13600000001" and got["email"] == "rot@example.com"
    assert {i["value"] for i in got["identifiers"]} == {"13600000001", "rot@example.com", "dev-rot"}
    with world.db.unit_of_work() as s:
        assert pii.decrypt(s.scalars(select(WebhookSubscription)).one().secret_enc) == "whsec_1"
    # blind indexes do not depend on the encryption keys: lookup still works
    r = client.get(f"{M}/lookup", params={"type": "phone", "value": "13600000001"}, headers=a.headers)
    assert r.status_code == 200


def test_rotate_refuses_tokens_no_key_opens(world: World, client, pii_keys) -> None:  # type: ignore[no-untyped-def]
    pii_keys(Fernet.generate_key().decode())
    enroll(client, world.brands[0].headers, phone="13600000002")
    pii_keys(Fernet.generate_key().decode())
    with pytest.raises(privacy.UndecryptableToken):
        privacy.rotate_pii_tokens(world.db)
    from huiyuan.cli.main import app

    result = CliRunner().invoke(app, ["keys", "rotate-pii", "--db", world.db.url])
    assert result.exit_code == 1 and "HUIYUAN_PII_KEYS" in result.output


def test_keys_cli(world: World, client, pii_keys) -> None:  # type: ignore[no-untyped-def]
    from huiyuan.cli.main import app

    runner = CliRunner()
    result = runner.invoke(app, ["keys", "generate-pii-key"])
    assert result.exit_code == 0, result.output
    new_key = result.output.strip().splitlines()[0]
    Fernet(new_key.encode())  # a valid Fernet key

    old_key = Fernet.generate_key().decode()
    pii_keys(old_key)
    m = enroll(client, world.brands[0].headers, phone="13600000003")
    pii_keys(f"{new_key},{old_key}")
    result = runner.invoke(app, ["keys", "rotate-pii", "--db", world.db.url])
    assert result.exit_code == 0, result.output
    assert "members" in result.output
    pii_keys(new_key)
    with world.db.unit_of_work() as s:
        member = s.get(Member, m["id"])
        assert member is not None and member.phone_enc and pii.decrypt(member.phone_enc) == "13600000003"
        assert s.scalar(select(func.count()).select_from(MemberIdentifier)) == 1
        assert s.scalar(select(func.count()).select_from(MemberCard)) == 0

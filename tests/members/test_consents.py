from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from huiyuan.audit.models import AuditEntry
from huiyuan.kit.errors import ValidationFailed
from huiyuan.kit.scope import system_for_brand
from huiyuan.members import consent
from huiyuan.members.models import Consent, Member
from huiyuan.outbox.models import OutboxEvent
from tests.conftest import World
from tests.factories import enroll


def consents_url(member_id: int) -> str:
    return f"/api/v1/members/{member_id}/consents"


def give(client: Any, headers: dict[str, str], member_id: int, **body: Any) -> Any:
    r = client.post(consents_url(member_id), json=body, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def test_give_withdraw_history_and_current(client, world: World) -> None:
    h = world.brands[0].headers
    m = enroll(client, h, name="甲")
    state = give(
        client, h, m["id"], purpose="marketing", channel="sms", granted=True, evidence={"form": "v3"}
    )
    assert state["changed"] is True and state["effective"]["marketing"]["sms"] is True
    assert state["effective"]["marketing"]["email"] is False  # opt-in: nothing else is allowed
    # the same state again adds nothing
    assert give(client, h, m["id"], purpose="marketing", channel="sms", granted=True)["changed"] is False
    state = give(client, h, m["id"], purpose="marketing", channel="sms", granted=False, source="sms:TD")
    assert state["effective"]["marketing"]["sms"] is False
    got = client.get(consents_url(m["id"]), headers=h).json()
    assert [(c["granted"], c["source"]) for c in got["history"]] == [(False, "sms:TD"), (True, "api:test")]
    assert got["history"][1]["evidence"] == {"form": "v3"}
    assert [(c["purpose"], c["channel"], c["granted"]) for c in got["current"]] == [
        ("marketing", "sms", False)
    ]
    with world.db.unit_of_work() as s:
        # In id order: PostgreSQL returns the rows of an unordered query in any order.
        actions = [
            a.action
            for a in s.scalars(
                select(AuditEntry).where(AuditEntry.action.like("consent.%")).order_by(AuditEntry.id)
            )
        ]
        events = [
            e.payload
            for e in s.scalars(
                select(OutboxEvent).where(OutboxEvent.type == "consent.changed").order_by(OutboxEvent.id)
            )
        ]
    assert actions == ["consent.granted", "consent.withdrawn"]
    assert [(e["channel"], e["granted"]) for e in events] == [("sms", True), ("sms", False)]


def test_all_channel_rule(client, world: World, db) -> None:
    a = world.brands[0]
    m = enroll(client, a.headers)
    give(client, a.headers, m["id"], purpose="marketing", channel="all", granted=True)
    give(client, a.headers, m["id"], purpose="marketing", channel="email", granted=False)
    with db.unit_of_work(None, write=False) as s:
        assert consent.consent_allows(s, m["id"], "marketing", "sms") is True
        assert consent.consent_allows(s, m["id"], "marketing", "email") is False  # newer explicit row wins
        assert consent.consent_allows(s, m["id"], "marketing", "all") is False
        assert consent.consent_allows(s, m["id"], "profiling", "sms") is False  # per purpose
    # granting sms again is a no-op (already allowed through "all"); withdrawing "all" is one step
    assert (
        give(client, a.headers, m["id"], purpose="marketing", channel="sms", granted=True)["changed"] is False
    )
    state = give(client, a.headers, m["id"], purpose="marketing", channel="all", granted=False)
    assert state["changed"] is True and not any(state["effective"]["marketing"].values())
    # withdrawing again, or a channel already off, adds nothing
    assert (
        give(client, a.headers, m["id"], purpose="marketing", channel="all", granted=False)["changed"]
        is False
    )
    # an explicit grant after the "all" withdrawal wins for its channel only
    state = give(client, a.headers, m["id"], purpose="marketing", channel="wechat", granted=True)
    assert [c for c, v in state["effective"]["marketing"].items() if v] == ["wechat"]
    with db.unit_of_work(None, write=False) as s:
        assert len(s.scalars(select(Consent)).all()) == 4


def test_enrollment_with_consents(client, world: World) -> None:
    h = world.brands[0].headers
    m = enroll(
        client,
        h,
        enroll_channel="mini_program",
        consents=[
            {"purpose": "marketing", "channel": "wechat", "granted": True, "evidence": {"checkbox": "mk"}},
            {"purpose": "partner_sharing", "channel": "all", "granted": False, "source": "form:v2"},
            {"purpose": "profiling", "channel": "all", "granted": True},
        ],
    )
    got = client.get(consents_url(m["id"]), headers=h).json()
    assert got["effective"]["marketing"] == {
        "sms": False,
        "email": False,
        "wechat": True,
        "app_push": False,
        "phone": False,
    }
    assert all(got["effective"]["profiling"].values())
    # withdrawing something never given records nothing
    assert [(c["purpose"], c["source"]) for c in got["history"]] == [
        ("profiling", "enrollment:mini_program"),
        ("marketing", "enrollment:mini_program"),
    ]
    with world.db.unit_of_work() as s:
        types = [e.type for e in s.scalars(select(OutboxEvent).order_by(OutboxEvent.id))]
    assert types == ["member.enrolled", "consent.changed", "consent.changed"]
    # duplicates and unknown purposes are refused before anything is written
    bad = {
        "enroll_channel": "store",
        "consents": [
            {"purpose": "marketing", "channel": "sms", "granted": True},
            {"purpose": "marketing", "channel": "sms", "granted": False},
        ],
    }
    r = client.post("/api/v1/members", json=bad, headers=h)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "consents"
    bad["consents"] = [{"purpose": "spam", "channel": "fax", "granted": True}]
    r = client.post("/api/v1/members", json=bad, headers=h)
    assert {e["field"] for e in r.json()["errors"]} == {"consents.0.purpose", "consents.0.channel"}
    with world.db.unit_of_work() as s:
        assert len(s.scalars(select(Member)).all()) == 1


def test_consent_input_checks_and_closed_member(client, world: World) -> None:
    h = world.brands[0].headers
    m = enroll(client, h)
    url = consents_url(m["id"])
    r = client.post(
        url,
        json={
            "purpose": "marketing",
            "channel": "sms",
            "granted": True,
            "evidence": {"id": "310101199001011234"},
        },
        headers=h,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "evidence"
    r = client.post(url, json={"purpose": "marketing", "channel": "sms"}, headers=h)
    assert r.status_code == 422
    r = client.post(url, json={"purpose": "marketing", "channel": "sms", "granted": "yes"}, headers=h)
    assert r.status_code == 422  # consent is never inferred from a loose value
    give(client, h, m["id"], purpose="marketing", channel="sms", granted=True)
    client.post(f"/api/v1/members/{m['id']}/close", json={"reason": "requested"}, headers=h)
    r = client.post(url, json={"purpose": "marketing", "channel": "email", "granted": True}, headers=h)
    assert r.status_code == 409
    # withdrawal stays as easy as giving
    assert give(client, h, m["id"], purpose="marketing", channel="sms", granted=False)["changed"] is True
    with world.db.unit_of_work(None, write=False) as s:
        assert consent.consent_allows(s, m["id"], "marketing", "sms") is False


def test_consent_allows_is_false_for_closed_member(client, world: World, db) -> None:
    a = world.brands[0]
    m = enroll(client, a.headers)
    give(client, a.headers, m["id"], purpose="marketing", channel="all", granted=True)
    with db.unit_of_work(None, write=False) as s:
        assert consent.consent_allows(s, m["id"], "marketing", "all") is True
    client.post(f"/api/v1/members/{m['id']}/close", json={"reason": "x"}, headers=a.headers)
    with db.unit_of_work(None, write=False) as s:
        assert consent.consent_allows(s, m["id"], "marketing", "sms") is False
    # the service checks its inputs for callers other than the API
    with db.unit_of_work(system_for_brand(a.id).scope) as s, pytest.raises(ValidationFailed):
        consent.record_consent(
            s,
            actor=system_for_brand(a.id),
            member_id=m["id"],
            purpose="x",
            channel="sms",
            granted=False,
            source="t",
        )


def test_verifications(client, world: World) -> None:
    h = world.brands[0].headers
    m = enroll(client, h)
    url = f"/api/v1/members/{m['id']}/verifications"
    body = {
        "kind": "student",
        "status": "pending",
        "evidence": {"document_type": "student_card", "document_last4": "0421", "checked_by": "store:SH001"},
    }
    r = client.post(url, json=body, headers=h)
    assert r.status_code == 201 and r.json()["by"] == "api_key:test"
    again = client.post(url, json=body, headers=h)
    assert again.json()["id"] == r.json()["id"]  # same result twice: one row
    body["status"] = "verified"
    body["evidence"]["expires_on"] = "2027-07-31"
    client.post(url, json=body, headers=h)
    client.post(
        url,
        json={"kind": "real_name", "status": "rejected", "evidence": {"document_type": "resident_id"}},
        headers=h,
    )
    got = client.get(url, headers=h).json()
    assert [(v["kind"], v["status"]) for v in got["items"]] == [
        ("real_name", "rejected"),
        ("student", "verified"),
        ("student", "pending"),
    ]
    assert got["current"]["student"]["evidence"]["expires_on"] == "2027-07-31"
    with world.db.unit_of_work() as s:
        events = [
            e.payload
            for e in s.scalars(
                select(OutboxEvent).where(OutboxEvent.type == "member.verified").order_by(OutboxEvent.id)
            )
        ]
    assert [(e["kind"], e["status"]) for e in events] == [
        ("student", "pending"),
        ("student", "verified"),
        ("real_name", "rejected"),
    ]


def test_verification_evidence_never_holds_full_numbers(client, world: World) -> None:
    h = world.brands[0].headers
    m = enroll(client, h)
    url = f"/api/v1/members/{m['id']}/verifications"
    cases = [
        (
            {"document_type": "resident_id", "document_number": "310101199001011234"},
            "evidence.document_number",
        ),
        ({"document_type": "resident_id", "document_last4": "310101199001011234"}, "evidence.document_last4"),
        ({"document_type": "resident_id", "reference": "310101199001011234"}, "evidence"),
        ({"document_last4": "1234"}, "evidence.document_type"),
        ({"document_type": "resident_id", "expires_on": "someday"}, "evidence.expires_on"),
    ]
    for evidence, field in cases:
        r = client.post(
            url, json={"kind": "real_name", "status": "verified", "evidence": evidence}, headers=h
        )
        assert r.status_code == 422, evidence
        assert field in {e["field"] for e in r.json()["errors"]}, r.text
    r = client.post(
        url, json={"kind": "alien", "status": "verified", "evidence": {"document_type": "x"}}, headers=h
    )
    assert r.status_code == 422
    assert client.get(url, headers=h).json()["items"] == []


def test_tenancy(client, world: World) -> None:
    a, b = world.brands
    m = enroll(client, a.headers)
    give(client, a.headers, m["id"], purpose="marketing", channel="sms", granted=True)
    base = f"/api/v1/members/{m['id']}"
    assert client.get(f"{base}/consents", headers=b.headers).status_code == 404
    r = client.post(
        f"{base}/consents",
        json={"purpose": "marketing", "channel": "sms", "granted": False},
        headers=b.headers,
    )
    assert r.status_code == 404
    assert client.get(f"{base}/verifications", headers=b.headers).status_code == 404
    r = client.post(
        f"{base}/verifications",
        json={"kind": "student", "status": "verified", "evidence": {"document_type": "card"}},
        headers=b.headers,
    )
    assert r.status_code == 404
    # nothing changed in alpha
    got = client.get(f"{base}/consents", headers=a.headers).json()
    assert got["effective"]["marketing"]["sms"] is True and len(got["history"]) == 1
    assert client.get(f"{base}/verifications", headers=a.headers).json()["items"] == []

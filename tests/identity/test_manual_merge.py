"""Manual merge through the API on both databases: two people named by identifier or OneID become one
with a manual link (operator and reason audited), per-type limits turn a merge into a recorded
conflict (409), a retry with the same Idempotency-Key replays the first answer, bad input is problem
details, and another brand's OneIDs are not found."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from huiyuan.audit.models import AuditEntry
from huiyuan.identity.models import IdentityConflict, IdentityLink
from huiyuan.kit.scope import system_for_brand
from tests.conftest import World
from tests.identity.helpers import link, oneid_of

MERGES = "/api/v1/oneid/merges"


def _merge(client: Any, h: dict[str, str], left: dict[str, Any], right: dict[str, Any], **kw: Any) -> Any:
    headers = {**h, **({"Idempotency-Key": kw.pop("key")} if "key" in kw else {})}
    body = {"left": left, "right": right, "reason": kw.pop("reason", "same customer, checked at the desk")}
    return client.post(MERGES, json=body, headers=headers)


def test_two_people_merge_by_oneid_and_identifier_with_an_audited_manual_link(
    client: Any, world: World
) -> None:
    brand = world.brands[0]
    link(world.db, brand.id, "phone:13800138000", "device_id:d1")
    link(world.db, brand.id, "email:wang@example.com", "device_id:d2")
    first = oneid_of(world.db, brand.id, "phone:13800138000")
    second = oneid_of(world.db, brand.id, "email:wang@example.com")
    assert first and second and first != second

    r = _merge(client, brand.headers, {"oneid": second}, {"type": "phone", "value": "138 0013 8000"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "merged" and body["oneid"] == min(first, second)
    assert body["oneids"] == sorted([first, second])
    assert oneid_of(world.db, brand.id, "email:wang@example.com") == body["oneid"]

    with world.db.unit_of_work(system_for_brand(brand.id).scope, write=False) as s:
        made = s.get(IdentityLink, body["link_id"])
        assert made is not None
        assert (made.source, made.rule, made.status) == ("manual", "manual-merge", "active")
        assert made.created_by  # the operator (the API key's label)
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "oneid.merged_manually")).one()
        assert entry.changes["_note"] == "same customer, checked at the desk"
        assert entry.actor_name and entry.entity_id == str(body["oneid"])
        assert entry.changes["status"] == [None, "merged"]
        assert entry.changes["link_id"] == [None, body["link_id"]]
        assert entry.changes["right"] == [None, {"type": "phone"}]  # no identifier value in the trail

    # The history shows the merge; a merge of one person with themself changes nothing.
    history = client.get("/api/v1/oneid/history", params={"oneid": body["oneid"]}, headers=brand.headers)
    assert any(c["kind"] == "merge" for c in history.json())
    again = _merge(client, brand.headers, {"oneid": body["oneid"]}, {"type": "device_id", "value": "d2"})
    assert again.status_code == 201 and again.json()["status"] == "same"
    # A retired OneID stands for the one it was merged into.
    retired = max(first, second)
    same = _merge(client, brand.headers, {"oneid": retired}, {"oneid": body["oneid"]})
    assert same.status_code == 201 and same.json()["status"] == "same"


def test_a_merge_over_a_limit_is_a_recorded_conflict_not_a_merge(client: Any, world: World) -> None:
    brand = world.brands[0]
    put = client.put(
        "/api/v1/oneid/settings", json={"types": {"device_id": {"max_per_person": 1}}}, headers=brand.headers
    )
    assert put.status_code == 200, put.text
    link(world.db, brand.id, "phone:13800138000", "device_id:d1")
    link(world.db, brand.id, "email:li@example.com", "device_id:d2")
    before = oneid_of(world.db, brand.id, "email:li@example.com")

    r = _merge(
        client, brand.headers, {"type": "phone", "value": "13800138000"}, {"type": "device_id", "value": "d2"}
    )
    assert r.status_code == 409, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["code"] == "oneid-conflict" and problem["reason"] == "limit-exceeded"
    assert oneid_of(world.db, brand.id, "email:li@example.com") == before  # nothing merged
    with world.db.unit_of_work(system_for_brand(brand.id).scope, write=False) as s:
        conflict = s.get(IdentityConflict, problem["conflict_id"])
        assert conflict is not None and conflict.status == "open"
        assert (
            conflict.detail["source"] == "manual"
            and conflict.detail["note"] == "same customer, checked at the desk"
        )
        assert conflict.detail["by"]
    listed = client.get("/api/v1/oneid/conflicts", headers=brand.headers).json()["items"]
    assert [c["id"] for c in listed] == [problem["conflict_id"]]


def test_a_retry_with_the_same_key_replays_the_first_answer(client: Any, world: World) -> None:
    brand = world.brands[0]
    link(world.db, brand.id, "phone:13800138000", "device_id:d1")
    link(world.db, brand.id, "email:zhang@example.com", "device_id:d2")
    left, right = {"type": "device_id", "value": "d1"}, {"type": "device_id", "value": "d2"}
    first = _merge(client, brand.headers, left, right, key="merge-0001")
    assert first.status_code == 201 and first.json()["status"] == "merged"
    replay = _merge(client, brand.headers, left, right, key="merge-0001")
    assert replay.status_code == 201 and replay.json() == first.json()  # not "same": the first answer
    other = _merge(client, brand.headers, left, right, key="merge-0001", reason="another reason")
    assert other.status_code == 422 and other.json()["code"] == "idempotency-key-reused"
    with world.db.unit_of_work(system_for_brand(brand.id).scope, write=False) as s:
        merges = s.scalars(select(AuditEntry).where(AuditEntry.action == "oneid.merged_manually")).all()
        assert len(merges) == 1


def test_identifiers_unlinked_by_hand_stay_apart(client: Any, world: World) -> None:
    brand = world.brands[0]
    link(world.db, brand.id, "phone:13800138000", "device_id:d1")
    link(world.db, brand.id, "email:zhao@example.com", "device_id:d2")
    left, right = {"type": "device_id", "value": "d1"}, {"type": "device_id", "value": "d2"}
    merged = _merge(client, brand.headers, left, right).json()
    body = {"link_id": merged["link_id"], "reason": "two people after all"}
    removed = client.post("/api/v1/oneid/links/remove", json=body, headers=brand.headers)
    assert removed.status_code == 200, removed.text
    apart = oneid_of(world.db, brand.id, "device_id:d2")
    assert apart != oneid_of(world.db, brand.id, "device_id:d1")
    again = _merge(client, brand.headers, left, right)
    assert again.status_code == 201 and again.json()["status"] == "blocked"
    assert oneid_of(world.db, brand.id, "device_id:d2") == apart


def test_bad_input_is_problem_details(client: Any, world: World) -> None:
    h = world.brands[0].headers
    link(world.db, world.brands[0].id, "phone:13800138000", "device_id:d1")
    for left, reason in (
        ({"oneid": 1, "type": "phone", "value": "13800138000"}, "ok"),  # both ways
        ({}, "ok"),  # neither
        ({"type": "phone"}, "ok"),  # a type without a value
        ({"oneid": 1}, "   "),  # a blank reason
    ):
        r = _merge(client, h, left, {"type": "device_id", "value": "d1"}, reason=reason)
        assert r.status_code == 422, (left, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    missing = _merge(
        client, h, {"type": "phone", "value": "13900000000"}, {"type": "device_id", "value": "d1"}
    )
    assert missing.status_code == 404
    junk = _merge(client, h, {"type": "phone", "value": "00000000000"}, {"type": "device_id", "value": "d1"})
    assert junk.status_code == 422 and junk.json()["code"] == "identifier-refused"


def test_another_brands_oneid_is_not_found(client: Any, world: World) -> None:
    a, b = world.brands
    link(world.db, a.id, "phone:13800138000", "device_id:d1")
    link(world.db, b.id, "phone:13800138001", "device_id:d9")
    theirs = oneid_of(world.db, b.id, "phone:13800138001")
    r = _merge(client, a.headers, {"oneid": theirs}, {"type": "device_id", "value": "d1"})
    assert r.status_code == 404, r.text
    assert oneid_of(world.db, b.id, "device_id:d9") == theirs

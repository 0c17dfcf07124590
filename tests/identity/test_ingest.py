"""Identify/alias/track calls into the graph (the input interface of event collection), the events
job, seeding from member records, and survivorship."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from huiyuan.identity import jobs as identity_jobs
from huiyuan.identity.ingest import call_identifiers, link_identity_calls
from huiyuan.identity.survivorship import Seen, golden_record
from huiyuan.jobs.service import enqueue, get_run
from huiyuan.kit.db import Database
from huiyuan.kit.scope import system_for_brand
from tests.conftest import World
from tests.factories import enroll, make_brand
from tests.identity.helpers import oneid_of, writer

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


def _calls() -> list[dict[str, Any]]:
    return [
        {"id": 1, "type": "track", "anonymousId": "anon-1", "event": "Viewed"},
        {
            "id": 2,
            "type": "identify",
            "userId": "u-42",
            "anonymousId": "anon-1",
            "traits": {
                "name": "李雷",
                "email": "LiLei@Example.cn",
                "phone": "13800138000",
                "address": {"city": "上海", "street": "南京路1号"},
            },
            "context": {
                "externalIds": [
                    {"id": "oOpen1", "type": "wechat_openid", "collection": "users"},
                    {"id": "tb-9", "type": "taobao"},
                ]
            },
            "timestamp": "2026-05-01T08:00:00Z",
        },
        {"id": 3, "type": "alias", "userId": "u-42", "previousId": "anon-2"},
        {
            "id": 4,
            "type": "track",
            "userId": "u-42",
            "anonymousId": "anon-3",
            "context": {"externalIds": [{"id": "null", "type": "device_id"}]},
        },
        {"id": 5, "type": "identify", "userId": "0", "anonymousId": "anon-9"},  # junk user id
    ]


def test_call_identifiers_reads_the_segment_shape() -> None:
    found = {(i.type, i.value) for i in call_identifiers(_calls()[1])}
    assert found == {
        ("user_id", "u-42"),
        ("anonymous_id", "anon-1"),
        ("wechat_openid", "oOpen1"),
        ("external_id", "taobao:tb-9"),
        ("email", "LiLei@Example.cn"),
        ("phone", "13800138000"),
    }


def test_identity_calls_link_one_person(db: Database) -> None:
    brand = make_brand(db, "alpha")
    with writer(db, brand) as w:
        stats = link_identity_calls(w, _calls())
    assert stats.calls == 5 and stats.refused_values >= 2
    person = oneid_of(db, brand, "user_id:u-42")
    for spec in (
        "anonymous_id:anon-1",
        "anonymous_id:anon-2",
        "anonymous_id:anon-3",
        "wechat_openid:oOpen1",
        "email:lilei@example.cn",
        "phone:13800138000",
    ):
        assert oneid_of(db, brand, spec) == person, spec
    assert oneid_of(db, brand, "anonymous_id:anon-9") not in (None, person)
    with db.unit_of_work(system_for_brand(brand).scope, write=False) as s:
        from huiyuan.identity.service import get_person

        out = get_person(s, actor=system_for_brand(brand), oneid=person)  # type: ignore[arg-type]
    assert out.golden["name"].value == "李雷" and out.golden["address"].value == "上海, 南京路1号"


@dataclass(frozen=True)
class FakeIdentityCall:
    """The shape of ``events.service.IdentityCall``."""

    id: int
    type: str
    user_id: str | None
    anonymous_id: str | None
    previous_id: str | None = None
    external_ids: list[dict[str, Any]] = field(default_factory=list)
    traits: dict[str, Any] = field(default_factory=dict)
    timestamp: datetime = T0


def test_link_events_job_follows_the_cursor(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    brand = make_brand(db, "alpha")
    store = [
        FakeIdentityCall(10, "identify", "u-1", "a-1", traits={"name": "韩梅梅"}),
        FakeIdentityCall(11, "alias", "u-1", None, previous_id="a-2"),
        FakeIdentityCall(12, "track", "u-2", "a-3", external_ids=[{"id": "dev-7", "type": "device_id"}]),
    ]
    seen_cursors: list[int] = []

    def identity_calls(session: Any, after_id: int = 0, limit: int = 1000) -> list[FakeIdentityCall]:
        seen_cursors.append(after_id)
        return [c for c in store if c.id > after_id][:2]

    monkeypatch.setattr(identity_jobs, "events_source", lambda: identity_calls)
    actor = system_for_brand(brand)
    with db.unit_of_work(actor.scope) as s:
        run_id = enqueue(s, actor=actor, kind=identity_jobs.LINK_EVENTS).id
    with db.unit_of_work(actor.scope, write=False) as s:
        run = get_run(s, run_id)
        assert run.status == "succeeded", run.error
        assert run.result["calls"] == 3  # type: ignore[index]
    assert seen_cursors == [0, 11, 12]
    assert oneid_of(db, brand, "anonymous_id:a-2") == oneid_of(db, brand, "user_id:u-1")
    assert oneid_of(db, brand, "device_id:dev-7") == oneid_of(db, brand, "user_id:u-2")
    # a second run starts after the last call linked
    with db.unit_of_work(actor.scope) as s:
        enqueue(s, actor=actor, kind=identity_jobs.LINK_EVENTS)
    assert seen_cursors[-1] == 12


def test_sync_members_job_seeds_the_graph_from_member_records(client: Any, world: World) -> None:
    h = world.brands[0].headers
    members = [enroll(client, h, name=f"会员{i}", phone=f"1380000000{i}") for i in range(3)]
    r = client.post("/api/v1/oneid/sync-members", headers=h)
    assert r.status_code == 202
    job = client.get(f"/api/v1/jobs/{r.json()['job_id']}", headers=h).json()
    assert job["status"] == "succeeded" and job["result"] == {"members": 3}
    for i, m in enumerate(members):
        found = client.get(
            "/api/v1/oneid/resolve", params={"type": "phone", "value": f"1380000000{i}"}, headers=h
        ).json()
        assert {x["value"] for x in found["identifiers"] if x["type"] == "member_number"} == {
            m["member_number"]
        }
    # running it again changes nothing
    again = client.post("/api/v1/oneid/sync-members", headers=h)
    assert client.get(f"/api/v1/jobs/{again.json()['job_id']}", headers=h).json()["status"] == "succeeded"
    assert client.get("/api/v1/oneid/changes", headers=h).json()["items"] == []


def _seen(
    attribute: str, value: Any, source: str, day: int, node: int = 1, first_day: int | None = None
) -> Seen:
    at = T0.replace(day=day)
    return Seen(attribute, value, source, T0.replace(day=first_day or day), at, node)


def test_survivorship_rules() -> None:
    seen = [
        _seen("name", "Lei Li", "identify", 9),
        _seen("name", "李雷", "member", 2),
        _seen("city", "北京", "member", 2),
        _seen("city", "上海", "identify", 9),
        _seen("interests", ["running"], "member", 2),
        _seen("interests", ["reading", "running"], "identify", 5, node=2),
        _seen("first_seen_channel", "store", "order", 3),
        _seen("first_seen_channel", "app", "identify", 1),
        _seen("email", "", "identify", 10),
        _seen("email", "li@example.cn", "order", 4),
    ]
    golden = golden_record(seen)
    assert golden["name"].value == "李雷" and golden["name"].rule == "most_trusted"  # member beats identify
    assert golden["city"].value == "上海" and golden["city"].rule == "most_recent"
    assert golden["interests"].value == ["running", "reading"]
    assert golden["first_seen_channel"].value == "app"
    assert golden["email"].value == "li@example.cn"  # empty values never survive
    custom = golden_record(seen, rules={"name": "most_recent"}, source_trust=["identify", "member"])
    assert custom["name"].value == "Lei Li"
    assert (
        golden_record(seen, rules={"city": "most_trusted"}, source_trust=["identify"])["city"].value == "上海"
    )


def test_events_source_is_the_events_domain_when_installed() -> None:
    source = identity_jobs.events_source()
    if importlib.util.find_spec("huiyuan.events") is None:
        assert source is None
        return
    from huiyuan.events import service as events_service

    assert source is getattr(events_service, "identity_calls", None)


def test_erasure_wipes_what_the_graph_kept(client: Any, world: World) -> None:
    from huiyuan.outbox.dispatcher import dispatch_pending

    h = world.brands[0].headers
    member = enroll(
        client, h, name="赵六", phone="13700137000", identifiers=[{"type": "wechat_openid", "value": "oZ6"}]
    )
    dispatch_pending(world.db)
    before = client.get(
        "/api/v1/oneid/resolve", params={"type": "phone", "value": "13700137000"}, headers=h
    ).json()
    assert before["golden"]["name"]["value"] == "赵六"
    assert (
        client.post(
            f"/api/v1/members/{member['id']}/erase", json={"reason": "request"}, headers=h
        ).status_code
        == 200
    )
    dispatch_pending(world.db)
    after = client.get(
        "/api/v1/oneid/resolve", params={"type": "member_number", "value": member["member_number"]}, headers=h
    ).json()
    assert [i["type"] for i in after["identifiers"]] == ["member_number"] and after["golden"] == {}
    phone = client.get(
        "/api/v1/oneid/resolve", params={"type": "phone", "value": "13700137000"}, headers=h
    ).json()
    assert phone["oneid"] != after["oneid"] and phone["identifiers"][0]["value"] == "****"

"""A source's events belong to its brand only: write keys write to their own brand, and no route lets
another brand see or touch a source, a definition, an unplanned event, an event or the quarantine.
Also the identity feed for OneID: what it returns, its cursor, and its tenancy."""

from __future__ import annotations

from typing import Any

from huiyuan.events.service import identity_calls, person_events
from huiyuan.kit.scope import Scope
from tests.conftest import World
from tests.events.conftest import basic, make_source
from tests.factories import make_key


def test_a_source_writes_to_its_brand_only(client: Any, world: World) -> None:
    alpha, beta = world.brands
    sid_a, key_a = make_source(world.db, alpha.id)
    _sid_b, key_b = make_source(world.db, beta.id)
    client.post(
        "/v1/track", json={"userId": "u", "event": "Alpha Only", "properties": {}}, headers=basic(key_a)
    )
    client.post("/v1/track", json={"event": "broken"}, headers=basic(key_a))  # quarantined
    client.post(
        "/v1/track", json={"userId": "u", "event": "Beta Only", "properties": {}}, headers=basic(key_b)
    )
    definition = client.post(
        "/api/v1/tracking-plan/events", json={"name": "Alpha Plan", "properties": []}, headers=alpha.headers
    ).json()

    a_events = client.get("/api/v1/events", headers=alpha.headers).json()["items"]
    b_events = client.get("/api/v1/events", headers=beta.headers).json()["items"]
    assert [e["event"] for e in a_events] == ["Alpha Only"]
    assert [e["event"] for e in b_events] == ["Beta Only"]
    assert client.get("/api/v1/events/quarantine", headers=beta.headers).json()["items"] == []
    assert len(client.get("/api/v1/events/quarantine", headers=alpha.headers).json()["items"]) == 1
    assert [
        u["name"] for u in client.get("/api/v1/tracking-plan/unplanned", headers=beta.headers).json()["items"]
    ] == ["Beta Only"]
    assert client.get("/api/v1/tracking-plan/events", headers=beta.headers).json() == []
    assert sid_a not in [s["id"] for s in client.get("/api/v1/event-sources", headers=beta.headers).json()]

    unplanned_a = client.get("/api/v1/tracking-plan/unplanned", headers=alpha.headers).json()["items"][0]
    for method, path, body in [
        ("GET", f"/api/v1/event-sources/{sid_a}", None),
        ("PATCH", f"/api/v1/event-sources/{sid_a}", {"status": "disabled"}),
        ("POST", f"/api/v1/event-sources/{sid_a}/revoke", None),
        ("GET", f"/api/v1/tracking-plan/events/{definition['id']}/versions", None),
        ("POST", f"/api/v1/tracking-plan/events/{definition['id']}/versions", {"properties": []}),
        ("POST", f"/api/v1/tracking-plan/events/{definition['id']}/status", {"status": "deprecated"}),
        ("POST", f"/api/v1/tracking-plan/unplanned/{unplanned_a['id']}/approve", None),
        ("POST", f"/api/v1/tracking-plan/unplanned/{unplanned_a['id']}/ignore", None),
    ]:
        r = client.request(method, path, json=body, headers=beta.headers)
        assert r.status_code == 404, (method, path, r.text)
    # Beta's release cannot reach Alpha's quarantine.
    quarantined = client.get("/api/v1/events/quarantine", headers=alpha.headers).json()["items"]
    r = client.post(
        "/api/v1/events/quarantine/release", json={"ids": [quarantined[0]["id"]]}, headers=beta.headers
    )
    assert r.json() == {"released": 0, "kept": 0}
    # Beta's systems cannot send into Alpha's source.
    pos_b = {"Authorization": f"Bearer {make_key(world.db, beta.id, ['events:collect'], name='pos')}"}
    batch = [{"type": "track", "userId": "u", "event": "x"}]
    r = client.post("/api/v1/events/batch", json={"source_id": sid_a, "batch": batch}, headers=pos_b)
    assert r.status_code == 404
    # Alpha's source is still active and untouched.
    assert client.get(f"/api/v1/event-sources/{sid_a}", headers=alpha.headers).json()["status"] == "active"


def test_identity_feed(client: Any, world: World) -> None:
    alpha, beta = world.brands
    _sa, key_a = make_source(world.db, alpha.id)
    _sb, key_b = make_source(world.db, beta.id)
    batch = [
        {"type": "page", "anonymousId": "a-1", "name": "首页"},  # nobody to link
        {"type": "identify", "userId": "LX1", "anonymousId": "a-1", "traits": {"phone_suffix": "1234"}},
        {"type": "track", "userId": "LX1", "event": "x"},  # a user alone links nothing
        {"type": "track", "userId": "LX1", "anonymousId": "a-2", "event": "y"},
        {"type": "alias", "userId": "LX1", "previousId": "guest-7"},
        {
            "type": "track",
            "anonymousId": "a-3",
            "event": "Mini Program Opened",
            "context": {"externalIds": [{"id": "oX1", "type": "wechat_openid", "collection": "users"}]},
        },
    ]
    client.post("/v1/batch", json={"batch": batch}, headers=basic(key_a))
    client.post("/v1/identify", json={"userId": "B1", "anonymousId": "b-1"}, headers=basic(key_b))

    with world.db.unit_of_work(write=False) as s:
        calls = identity_calls(s, 0, 100)
    assert [(c.type, c.user_id) for c in calls] == [
        ("identify", "LX1"),
        ("track", "LX1"),
        ("alias", "LX1"),
        ("track", None),
        ("identify", "B1"),
    ]
    assert calls[0].traits == {"phone_suffix": "1234"} and calls[0].anonymous_id == "a-1"
    assert calls[2].previous_id == "guest-7"
    assert calls[3].external_ids == [{"id": "oX1", "type": "wechat_openid", "collection": "users"}]
    assert calls[4].brand_id == beta.id

    # The cursor: pass the last id back; a brand scope sees its brand only.
    with world.db.unit_of_work(Scope(brand_id=alpha.id), write=False) as s:
        first = identity_calls(s, 0, 2)
        rest = identity_calls(s, first[-1].id, 100)
    assert [c.type for c in first + rest] == ["identify", "track", "alias", "track"]
    with world.db.unit_of_work(Scope(brand_id=beta.id), write=False) as s:
        assert [c.user_id for c in identity_calls(s)] == ["B1"]

    # The profile's timeline of that person: signed-in events by user id, earlier ones by device.
    with world.db.unit_of_work(Scope(brand_id=alpha.id), write=False) as s:
        timeline = person_events(s, user_ids=["LX1"], anonymous_ids=["a-1", "a-3"])
        assert [(e.type, e.anonymous_id) for e in timeline] == [
            ("track", "a-3"),
            ("alias", None),
            ("track", "a-2"),
            ("track", None),
            ("identify", "a-1"),
            ("page", "a-1"),
        ]
        assert [e.id for e in person_events(s, user_ids=["LX1"], anonymous_ids=[], limit=2)] == [
            e.id for e in timeline[1:3]
        ]
        assert person_events(s, user_ids=[], anonymous_ids=[]) == []

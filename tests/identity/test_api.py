"""The OneID API on both databases: resolve one and many, the change feed, manual link and unlink
with audit, conflicts as problem details, settings, jobs, and another brand seeing nothing."""

from __future__ import annotations

import io
from typing import Any

from sqlalchemy import select

from huiyuan.audit.models import AuditEntry
from huiyuan.outbox.dispatcher import dispatch_pending
from tests.conftest import World
from tests.factories import enroll, make_key
from tests.orders.helpers import order_body


def _link(client: Any, h: dict[str, str], left: str, right: str, reason: str = "same person") -> Any:
    lt, _, lv = left.partition(":")
    rt, _, rv = right.partition(":")
    body = {"left": {"type": lt, "value": lv}, "right": {"type": rt, "value": rv}, "reason": reason}
    return client.post("/api/v1/oneid/links", json=body, headers=h)


def _resolve(client: Any, h: dict[str, str], spec: str, **params: Any) -> Any:
    t, _, v = spec.partition(":")
    return client.get("/api/v1/oneid/resolve", params={"type": t, "value": v, **params}, headers=h)


def test_members_and_orders_feed_the_graph_and_resolve_finds_them(client: Any, world: World) -> None:
    h = world.brands[0].headers
    member = enroll(
        client,
        h,
        name="王小明",
        phone="13800138000",
        birthday="1990-05-01",
        identifiers=[{"type": "wechat_openid", "value": "oAlpha1"}],
    )
    order = order_body(
        "A-1",
        identifiers=[{"type": "phone", "value": "13800138000"}, {"type": "alipay_id", "value": "2088001"}],
    )
    assert client.post("/api/v1/orders", json=order, headers=h).status_code == 201
    dispatch_pending(world.db)

    r = _resolve(client, h, "phone:+86 138 0013 8000")
    assert r.status_code == 200, r.text
    body = r.json()
    types = {i["type"]: i["value"] for i in body["identifiers"]}
    assert types["member_number"] == member["member_number"]
    assert types["phone"] == "+8613800138000"  # the full key sees PII (members:pii), as E.164
    assert {"wechat_openid", "alipay_id"} <= set(types)
    assert body["golden"]["name"]["value"] == "王小明" and body["golden"]["name"]["source"] == "member"
    assert body["golden"]["birthday"]["value"] == "1990-05-01"
    same = _resolve(client, h, "alipay_id:2088001").json()
    assert same["oneid"] == body["oneid"]

    # a reader without members:pii sees masks
    reader = make_key(world.db, world.brands[0].id, ["identity:read"])
    masked = _resolve(client, {"Authorization": f"Bearer {reader}"}, "wechat_openid:oAlpha1").json()
    shown = {i["type"]: i["value"] for i in masked["identifiers"]}
    assert shown["phone"] == "138****8000" and shown["member_number"] == member["member_number"]
    assert masked["golden"]["phone"]["value"] == "138****8000"

    # the member changes phone: the old phone leaves the OneID, the new one joins
    assert (
        client.patch(f"/api/v1/members/{member['id']}", json={"phone": "13900139000"}, headers=h).status_code
        == 200
    )
    dispatch_pending(world.db)
    assert _resolve(client, h, "phone:13900139000").json()["oneid"] == body["oneid"]
    old = _resolve(client, h, "phone:13800138000").json()
    # the old phone stays linked through the order (alipay id) but not to the member record
    assert old["oneid"] != body["oneid"]


def test_resolve_errors_are_problem_details(client: Any, world: World) -> None:
    h = world.brands[0].headers
    r = _resolve(client, h, "device_id:never-seen")
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")
    r = _resolve(client, h, "device_id:null")
    assert r.status_code == 422 and r.json()["code"] == "identifier-refused"
    r = client.get("/api/v1/oneid/resolve", params={"type": "Bad Type", "value": "x"}, headers=h)
    assert r.status_code == 422 and r.json()["code"] == "validation-failed"
    too_many = {"identifiers": [{"type": "device_id", "value": f"d{i}"} for i in range(10_001)]}
    r = client.post("/api/v1/oneid/resolve/batch", json=too_many, headers=h)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "identifiers"
    r = client.get("/api/v1/oneid/changes", params={"cursor": "%%%"}, headers=h)
    assert r.status_code == 422


def test_batch_resolve_keeps_order_and_reports_each(client: Any, world: World) -> None:
    h = world.brands[0].headers
    assert _link(client, h, "user_id:u1", "device_id:d1").status_code == 201
    assert _link(client, h, "user_id:u2", "device_id:d2").status_code == 201
    items = [
        {"type": "device_id", "value": "d2"},
        {"type": "device_id", "value": "nope"},
        {"type": "device_id", "value": "0"},
        {"type": "user_id", "value": "u1"},
        {"type": "device_id", "value": "d1"},
    ] + [{"type": "device_id", "value": f"x{i}"} for i in range(2000)]
    r = client.post("/api/v1/oneid/resolve/batch", json={"identifiers": items, "expand": True}, headers=h)
    assert r.status_code == 200, r.text
    out = r.json()["items"]
    assert out[0]["oneid"] and out[3]["oneid"] == out[4]["oneid"] != out[0]["oneid"]
    assert out[1] == {"index": 1, "oneid": None, "error": "unknown-identifier", "identifiers": None}
    assert out[2]["error"] == "blocked-value"
    assert {i["type"] for i in out[3]["identifiers"]} == {"user_id", "device_id"}
    assert r.json()["found"] == 3


def test_manual_link_unlink_feed_and_audit(client: Any, world: World) -> None:
    h = world.brands[0].headers
    _link(client, h, "user_id:u1", "device_id:d1")
    r = _link(client, h, "anonymous_id:a2", "device_id:d2")
    first = _resolve(client, h, "user_id:u1").json()["oneid"]
    second = r.json()["oneid"]
    merged = _link(client, h, "device_id:d1", "device_id:d2", reason="same tablet, same family member")
    assert (
        merged.status_code == 201 and merged.json()["status"] == "merged" and merged.json()["oneid"] == first
    )

    feed = client.get("/api/v1/oneid/changes", headers=h).json()
    assert [(c["kind"], c["oneid"], c["others"]) for c in feed["items"]] == [("merge", first, [second])]
    cursor = feed["cursor"]
    assert client.get("/api/v1/oneid/changes", params={"cursor": cursor}, headers=h).json()["items"] == []

    unlinked = client.post(
        "/api/v1/oneid/links/remove",
        json={"link_id": merged.json()["link_id"], "reason": "wrong call"},
        headers=h,
    )
    assert unlinked.status_code == 200, unlinked.text
    assert unlinked.json()["splits"] == [{"oneid": first, "parts": [second]}]
    after = client.get("/api/v1/oneid/changes", params={"cursor": cursor}, headers=h).json()
    assert [(c["kind"], c["oneid"], c["others"], c["reason"]) for c in after["items"]] == [
        ("split", first, [second], "wrong call")
    ]
    assert _resolve(client, h, "device_id:d2").json()["oneid"] == second
    history = client.get("/api/v1/oneid/history", params={"oneid": second}, headers=h).json()
    assert [c["kind"] for c in history] == ["split", "merge"]
    person = client.get(
        "/api/v1/oneid/persons", params={"oneid": first, "include_links": True}, headers=h
    ).json()
    assert {link["status"] for link in person["links"]} == {"active", "removed"}

    with world.db.unit_of_work(write=False) as s:
        actions = [e.action for e in s.scalars(select(AuditEntry).where(AuditEntry.action.like("oneid.%")))]
    assert actions.count("oneid.linked") == 3 and actions.count("oneid.unlinked") == 1


def test_refused_manual_link_is_409_and_the_conflict_is_kept(client: Any, world: World) -> None:
    h = world.brands[0].headers
    _link(client, h, "member_number:M1", "device_id:d1")
    _link(client, h, "member_number:M2", "device_id:d2")
    r = _link(client, h, "device_id:d1", "device_id:d2")
    assert r.status_code == 409 and r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["code"] == "oneid-conflict" and problem["reason"] == "member-clash"
    conflicts = client.get("/api/v1/oneid/conflicts", headers=h).json()["items"]
    assert [c["id"] for c in conflicts] == [problem["conflict_id"]]
    r = client.post(
        "/api/v1/oneid/conflicts/resolve",
        json={"conflict_id": problem["conflict_id"], "action": "accept"},
        headers=h,
    )
    assert r.status_code == 409 and r.json()["code"] == "conflict-not-acceptable"

    # a limit conflict can be accepted: the link is made despite the limit
    put = client.put(
        "/api/v1/oneid/settings", json={"types": {"device_id": {"max_per_person": 1}}}, headers=h
    )
    assert put.status_code == 200
    limited = _link(client, h, "member_number:M1", "device_id:d3")
    assert limited.status_code == 409 and limited.json()["reason"] == "limit-exceeded"
    accepted = client.post(
        "/api/v1/oneid/conflicts/resolve",
        json={"conflict_id": limited.json()["conflict_id"], "action": "accept", "note": "checked by phone"},
        headers=h,
    )
    assert accepted.status_code == 200 and accepted.json()["status"] == "accepted"
    assert (
        _resolve(client, h, "device_id:d3").json()["oneid"]
        == _resolve(client, h, "member_number:M1").json()["oneid"]
    )
    open_ = client.get("/api/v1/oneid/conflicts", headers=h).json()["items"]
    assert [c["reason"] for c in open_] == ["member-clash"]


def test_settings_validate_and_apply(client: Any, world: World) -> None:
    h = world.brands[0].headers
    current = client.get("/api/v1/oneid/settings", headers=h).json()
    assert current["types"][0]["code"] == "member_number"
    bad = client.put(
        "/api/v1/oneid/settings",
        json={"types": {"device_id": {"blocked_patterns": ["(unclosed"]}}},
        headers=h,
    )
    assert bad.status_code == 422
    bad = client.put("/api/v1/oneid/settings", json={"survivorship": {"name": "loudest"}}, headers=h)
    assert bad.status_code == 422
    bad = client.put("/api/v1/oneid/settings", json={"types": {"tmall_id": {"max_per_person": 1}}}, headers=h)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "types.tmall_id.priority"
    ok = client.put(
        "/api/v1/oneid/settings",
        json={
            "types": {
                "tmall_id": {"priority": 9, "max_per_person": 1, "label": "Tmall"},
                "device_id": {"blocked_values": ["dev-test"]},
            }
        },
        headers=h,
    )
    assert ok.status_code == 200
    assert _link(client, h, "tmall_id:t1", "device_id:d1").status_code == 201
    assert _link(client, h, "tmall_id:t1", "device_id:dev-test").status_code == 422


def test_mapping_import_and_recompute_jobs(client: Any, world: World) -> None:
    h = world.brands[0].headers
    csv = (
        "left_type,left_value,right_type,right_value,confidence\n"
        + "".join(f"wechat_openid,o{i},wechat_unionid,un{i // 2},0.99\n" for i in range(30))
        + "wechat_openid,oX,wechat_unionid,null,1\nwechat_openid,,device_id,d,1\n"
    )
    r = client.post(
        "/api/v1/oneid/imports/mappings",
        files={"file": ("map.csv", io.BytesIO(csv.encode("utf-8-sig")), "text/csv")},
        headers=h,
    )
    assert r.status_code == 202, r.text
    job = client.get(f"/api/v1/jobs/{r.json()['job_id']}", headers=h).json()
    assert job["status"] == "succeeded", job
    assert job["result"]["rows"] == 32 and job["result"]["links"] == 31 and len(job["result"]["errors"]) == 2
    assert job["progress_done"] == 32
    assert (
        _resolve(client, h, "wechat_openid:o0").json()["oneid"]
        == _resolve(client, h, "wechat_openid:o1").json()["oneid"]
    )

    bad = client.post(
        "/api/v1/oneid/imports/mappings",
        files={"file": ("m.csv", io.BytesIO(b"a,b\n1,2\n"), "text/csv")},
        headers=h,
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["code"] == "missing-column"

    r = client.post("/api/v1/oneid/recompute", headers=h)
    assert r.status_code == 202
    job = client.get(f"/api/v1/jobs/{r.json()['job_id']}", headers=h).json()
    assert job["status"] == "succeeded" and job["result"]["changed"] == 0 and job["result"]["oneids"] == 15


def test_another_brand_gets_nothing(client: Any, world: World) -> None:
    alpha, beta = world.brands[0].headers, world.brands[1].headers
    made = _link(client, alpha, "user_id:u1", "device_id:d1").json()
    _link(client, alpha, "member_number:M1", "device_id:d5")
    conflict = _link(client, alpha, "member_number:M2", "device_id:d5").json()
    assert _resolve(client, beta, "user_id:u1").status_code == 404
    assert (
        client.get("/api/v1/oneid/persons", params={"oneid": made["oneid"]}, headers=beta).status_code == 404
    )
    assert (
        client.get("/api/v1/oneid/history", params={"oneid": made["oneid"]}, headers=beta).status_code == 404
    )
    batch = client.post(
        "/api/v1/oneid/resolve/batch",
        json={"identifiers": [{"type": "user_id", "value": "u1"}]},
        headers=beta,
    )
    assert batch.json()["items"][0]["oneid"] is None
    assert client.get("/api/v1/oneid/changes", headers=beta).json()["items"] == []
    assert client.get("/api/v1/oneid/conflicts", headers=beta).json()["items"] == []
    r = client.post(
        "/api/v1/oneid/links/remove", json={"link_id": made["link_id"], "reason": "x"}, headers=beta
    )
    assert r.status_code == 404
    r = client.post(
        "/api/v1/oneid/conflicts/resolve",
        json={"conflict_id": conflict["conflict_id"], "action": "dismiss"},
        headers=beta,
    )
    assert r.status_code == 404
    r = client.post("/api/v1/oneid/proposals/decide", json={"proposal_id": 1, "accept": True}, headers=beta)
    assert r.status_code == 404
    # the same identifier in beta is another person
    assert _link(client, beta, "user_id:u1", "device_id:d1").json()["oneid"] != made["oneid"]
    assert _resolve(client, alpha, "user_id:u1").json()["oneid"] == made["oneid"]


def test_permissions(client: Any, world: World) -> None:
    reader = make_key(world.db, world.brands[0].id, ["identity:read"])
    h = {"Authorization": f"Bearer {reader}"}
    assert _link(client, h, "user_id:u1", "device_id:d1").status_code == 403
    assert client.post("/api/v1/oneid/recompute", headers=h).status_code == 403
    nobody = make_key(world.db, world.brands[0].id, ["members:read"])
    assert _resolve(client, {"Authorization": f"Bearer {nobody}"}, "user_id:u1").status_code == 403
    platform = world.platform_headers
    assert _resolve(client, platform, "user_id:u1").json()["code"] == "brand-required"

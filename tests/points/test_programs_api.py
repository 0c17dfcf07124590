"""The shared point programme API on both backends: the platform manages programmes, brands link,
earn, spend and read their members' points, the clearing report and its export, a brand leaving,
with problem details and idempotent retries."""

from __future__ import annotations

from typing import Any

import pytest

from huiyuan.kit.db import Database
from tests.factories import make_key
from tests.points.program_helpers import PHONE, api_headers, make_alliance

pytestmark = pytest.mark.usefixtures("fresh_programme_memory")


# -- the API --------------------------------------------------------------------------------------


def test_api_round_trip_with_problem_details(client: Any, db: Database) -> None:
    al = make_alliance(db)
    platform = api_headers(make_key(db, None, ["*"], name="platform"))
    hb, bb, cb, db_ = (api_headers(make_key(db, i)) for i in (al.host, al.b, al.c, al.d))
    base = f"/api/v1/points/programs/{al.code}"

    # The platform manages programmes; a brand may not.
    body = {"code": "other", "name": "x", "host_brand": al.codes[al.host], "point_type": "alliance"}
    assert client.post("/api/v1/points/programs", json=body, headers=bb).status_code == 403
    dup = client.post("/api/v1/points/programs", json=body, headers=platform)
    assert dup.status_code == 409 and dup.json()["errors"][0]["field"] == "point_type"
    listed = client.get("/api/v1/points/programs", headers=bb).json()
    assert [p["code"] for p in listed] == [al.code]
    assert [p["role"] for p in listed[0]["brands"]] == ["participant"]  # B sees its own participation

    b_member = client.post(
        "/api/v1/members", json={"enroll_channel": "store", "phone": PHONE}, headers=bb
    ).json()
    c_member = client.post(
        "/api/v1/members", json={"enroll_channel": "store", "phone": PHONE}, headers=cb
    ).json()
    linked = client.post(base + "/links", json={"member_id": b_member["id"]}, headers=bb)
    assert linked.status_code == 201 and linked.json()["matched_by"] == "created"
    assert client.post(base + "/links", json={"member_id": b_member["id"]}, headers=bb).status_code == 200
    assert (
        client.post(base + "/links", json={"member_id": c_member["id"]}, headers=cb).json()["matched_by"]
        == "phone"
    )

    earn = {"idempotency_key": "b-ord-0001", "paid_amount": "12.34", "order_ref": "B-1"}
    first = client.post(f"{base}/members/{b_member['id']}/earn", json=earn, headers=bb)
    assert first.status_code == 201, first.text
    assert first.json()["points"] == 24  # 12.34 × 2, rounded down
    again = client.post(f"{base}/members/{b_member['id']}/earn", json=earn, headers=bb)
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    reused = client.post(
        f"{base}/members/{b_member['id']}/earn", json={**earn, "paid_amount": "20"}, headers=bb
    )
    assert reused.status_code == 422 and reused.json()["code"] == "idempotency-key-reused"

    bad = client.post(f"{base}/members/{b_member['id']}/earn", json={"idempotency_key": "k-0001"}, headers=bb)
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")
    no_key = client.post(f"{base}/members/{b_member['id']}/spend", json={"points": 1}, headers=bb)
    assert no_key.status_code == 422 and no_key.json()["errors"][0]["field"] == "idempotency_key"
    too_much = client.post(
        f"{base}/members/{c_member['id']}/spend",
        json={"idempotency_key": "c-pay-1", "points": 25},
        headers=cb,
    )
    assert too_much.status_code == 409 and too_much.json()["code"] == "insufficient-points"
    paid = client.post(
        f"{base}/members/{c_member['id']}/spend",
        json={"idempotency_key": "c-pay-2", "points": 20},
        headers=cb,
    )
    assert paid.status_code == 201 and paid.json()["balance"]["available"] == 4

    # C's member and link are not B's; D is not in the programme at all.
    assert client.get(f"{base}/links/{c_member['id']}", headers=bb).status_code == 404
    assert client.get(f"{base}/members/{c_member['id']}/points", headers=bb).status_code == 404
    view = client.get(f"{base}/members/{b_member['id']}/points", headers=bb).json()
    assert view["balance"]["available"] == 4 and [e["key"] for e in view["entries"]] == ["b-ord-0001"]
    for url in (base, base + "/clearing?from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z"):
        assert client.get(url, headers=db_).status_code == 404

    params = {"from": "2026-01-01T00:00:00Z", "to": "2099-01-01T00:00:00Z"}
    report = client.get(base + "/clearing", params=params, headers=hb)
    assert report.status_code == 200, report.text
    nets = {p["party"]: p["net"] for p in report.json()["positions"]}
    assert nets == {f"brand:{al.b}": "-0.20", f"brand:{al.c}": "0.20"}
    exported = client.get(base + "/clearing", params={**params, "format": "csv"}, headers=platform)
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    assert f"brand:{al.c}" in exported.text

    left = client.patch(f"{base}/brands/{al.codes[al.b]}", json={"status": "left"}, headers=platform)
    assert left.status_code == 200 and left.json()["left_at"] is not None
    refused = client.post(
        f"{base}/members/{b_member['id']}/spend", json={"idempotency_key": "b-pay-9", "points": 1}, headers=bb
    )
    assert refused.status_code == 409 and refused.json()["code"] == "program-inactive"
    host_leaves = client.patch(
        f"{base}/brands/{al.codes[al.host]}", json={"status": "left"}, headers=platform
    )
    assert host_leaves.status_code == 422
    # A brand in the programme may not manage it; a period is required for clearing.
    assert client.patch(base, json={"status": "closed"}, headers=cb).status_code == 403
    no_period = client.get(base + "/clearing", headers=cb)
    assert no_period.status_code == 422 and {e["field"] for e in no_period.json()["errors"]} == {"from", "to"}

"""Action earning and the clearing report through the API."""

from __future__ import annotations

import io

from openpyxl import load_workbook

from tests.conftest import World
from tests.factories import enroll
from tests.points.test_points_api import CHECKOUT, add_type, balance, grant

CHECK_IN = {
    "code": "check-in",
    "name": "签到",
    "definition": {
        "trigger": {"kind": "action", "action": "check_in"},
        "point_type": "points",
        "formula": {"kind": "fixed", "points": 5},
        "caps": {"per_day": 5},
    },
}


def test_action_earns_once_per_key_and_caps_apply(client, world: World) -> None:
    a = world.brands[0]
    add_type(client, a.headers)
    r = client.post("/api/v1/points/rules", json=CHECK_IN, headers=a.headers)
    assert r.status_code == 201, r.text
    m = enroll(client, a.headers)
    url = f"/api/v1/members/{m['id']}/points/actions"
    body = {"idempotency_key": "ci-0001", "action": "check_in"}
    first = client.post(url, json=body, headers=a.headers)
    assert first.status_code == 201, first.text
    assert [g["amount"] for g in first.json()["grants"]] == [5]
    again = client.post(url, json=body, headers=a.headers)
    assert again.status_code == 200 and again.json() == first.json()
    capped = client.post(url, json={**body, "idempotency_key": "ci-0002"}, headers=a.headers)
    assert capped.status_code == 201 and capped.json()["grants"] == []
    assert balance(client, a.headers, m["id"])["available"] == 5
    bad = client.post(url, json={"idempotency_key": "ci-0003", "action": "Bad Name"}, headers=a.headers)
    assert bad.status_code == 422 and bad.json()["code"] == "validation-failed"
    # Another brand's member is not found.
    other = client.post(url, json=body, headers=world.brands[1].headers)
    assert other.status_code == 404


def test_clearing_report_as_json_csv_and_xlsx(client, world: World) -> None:
    a = world.brands[0]
    add_type(client, a.headers, points_per_yuan=100, max_pay_ratio="1")
    m = enroll(client, a.headers)
    assert grant(client, a.headers, m["id"], 1000, "g-0001", funded_by="platform").status_code == 201
    r = client.post(
        f"{CHECKOUT}/reserve",
        json={"idempotency_key": "pos-0001", "member_id": m["id"], "point_type": "points", "points": 400},
        headers=a.headers,
    )
    assert r.status_code == 201, r.text
    assert client.post(f"{CHECKOUT}/pos-0001/confirm", headers=a.headers).status_code == 200
    params = {"from": "2000-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"}
    got = client.get("/api/v1/points/clearing", params=params, headers=a.headers)
    assert got.status_code == 200, got.text
    report = got.json()
    assert report["consumed_points"] == 400 and report["consumed_value"] == "4.00"
    assert {(f["funder"], f["redeemer"], f["points"]) for f in report["flows"]} == {
        ("platform", "brand", 400)
    }
    csv = client.get("/api/v1/points/clearing", params={**params, "format": "csv"}, headers=a.headers)
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert "出资方" in csv.text
    xlsx = client.get("/api/v1/points/clearing", params={**params, "format": "xlsx"}, headers=a.headers)
    assert xlsx.status_code == 200
    assert load_workbook(io.BytesIO(xlsx.content)).sheetnames
    bad = client.get(
        "/api/v1/points/clearing",
        params={"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
        headers=a.headers,
    )
    assert bad.status_code == 422

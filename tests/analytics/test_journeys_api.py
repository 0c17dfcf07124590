"""The paths and attribution endpoints read the synced warehouse for the caller's brand only,
answer JSON (a Sankey-ready shape; credits per source and model) or CSV, and reject invalid
requests with problem details."""

from __future__ import annotations

import base64
import csv
import io
from pathlib import Path
from typing import Any

import pytest

from huiyuan.kit.db import Database
from huiyuan.settings import get_settings
from huiyuan.warehouse import sync as wsync
from tests.factories import enroll
from tests.orders.helpers import order_body


def _send(client: Any, headers: dict[str, str], batch: list[dict[str, Any]]) -> None:
    source = client.post("/api/v1/event-sources", json={"name": "web", "kind": "web"}, headers=headers)
    assert source.status_code == 201, source.text
    auth = {"Authorization": "Basic " + base64.b64encode(f"{source.json()['write_key']}:".encode()).decode()}
    sent = client.post("/v1/batch", json={"batch": batch}, headers=auth)
    assert sent.status_code == 200, sent.text


def _track(user: str, event: str, at: str, **properties: Any) -> dict[str, Any]:
    return {"type": "track", "userId": user, "event": event, "timestamp": at, "properties": properties}


def _csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))


def test_paths_and_attribution_over_http(
    client: Any, world: Any, db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alpha, beta = world.brands
    path = tmp_path / "journeys.duckdb"
    monkeypatch.setattr(get_settings(), "warehouse_path", str(path))
    flow = {"start": "2026-03-10", "end": "2026-03-20", "start_event": {"event": "Home"}, "steps": 2}
    missing = client.post("/api/v1/analytics/paths", json=flow, headers=alpha.headers)
    assert missing.status_code == 409 and missing.json()["code"] == "warehouse-not-ready"

    member = enroll(client, alpha.headers)
    number = member["member_number"]
    _send(
        client,
        alpha.headers,
        [
            _track("u1", "Home", "2026-03-10T02:00:00Z"),
            _track("u1", "Search", "2026-03-10T02:05:00Z"),
            _track("u1", "Product", "2026-03-10T02:06:00Z"),
            _track("u2", "Home", "2026-03-10T03:00:00Z"),
            _track("u2", "Product", "2026-03-10T03:01:00Z"),
            _track("u2", "Home", "2026-03-10T05:00:00Z"),  # a new session: two hours later
            _track(number, "Campaign Clicked", "2026-03-13T06:30:00Z", campaign="spring"),
            _track(number, "Message Opened", "2026-03-14T06:30:00Z", campaign="vip"),
        ],
    )
    r = client.post(
        "/api/v1/orders", json=order_body("A-1", member_id=member["id"]), headers=alpha.headers
    )  # paid 2026-03-15T06:30Z, 180.00
    assert r.status_code == 201, r.text
    _send(client, beta.headers, [_track("b1", "Home", "2026-03-10T02:00:00Z")])
    wsync.sync(db, path, settle_seconds=0)

    got = client.post("/api/v1/analytics/paths", json=flow, headers=alpha.headers)
    assert got.status_code == 200, got.text
    out = got.json()
    assert (out["sessions"], out["people"], out["direction"]) == (3, 2, "after")
    assert [(n["name"], n["value"]) for n in out["nodes"]] == [
        ("step0:Home", 3),
        ("step1:Product", 1),
        ("step1:Search", 1),
        ("step2:Product", 1),
    ]
    assert {(x["source"], x["target"], x["value"]) for x in out["links"]} == {
        ("step0:Home", "step1:Product", 1),
        ("step0:Home", "step1:Search", 1),
        ("step1:Search", "step2:Product", 1),
    }
    assert out["paths"][0] == {"events": ["Home"], "sessions": 1}
    theirs = client.post("/api/v1/analytics/paths", json=flow, headers=beta.headers).json()
    assert (theirs["sessions"], [n["name"] for n in theirs["nodes"]]) == (1, ["step0:Home"])

    as_csv = client.post("/api/v1/analytics/paths?format=csv", json=flow, headers=alpha.headers)
    assert as_csv.status_code == 200 and as_csv.headers["content-type"].startswith("text/csv")
    rows = _csv(as_csv.text)
    assert (
        rows[0] == ["Links"] and rows[1] == ["source", "target", "sessions", "people"] and len(rows[2:5]) == 3
    )
    assert ["Home → Search → Product", "1"] in rows

    both_anchors = client.post(
        "/api/v1/analytics/paths", json={**flow, "end_event": {"event": "Product"}}, headers=alpha.headers
    )
    assert both_anchors.status_code == 422
    assert both_anchors.headers["content-type"].startswith("application/problem+json")

    body = {
        "start": "2026-03-01",
        "end": "2026-03-31",
        "touches": [{"event": "Campaign Clicked"}, {"event": "Message Opened"}],
        "lookback_days": 7,
    }
    credited = client.post("/api/v1/analytics/attribution", json=body, headers=alpha.headers)
    assert credited.status_code == 200, credited.text
    result = credited.json()
    assert result["models"] == ["first_touch", "last_touch", "linear", "position_based", "time_decay"]
    assert result["totals"] == {
        "goals": 1,
        "revenue": 180.0,
        "attributed": 1,
        "unattributed": 0,
        "unattributed_revenue": 0.0,
    }
    by_source = {i["source"]: i for i in result["items"]}
    assert set(by_source) == {"spring", "vip"}
    assert (by_source["spring"]["first_touch_revenue"], by_source["vip"]["last_touch_revenue"]) == (
        180.0,
        180.0,
    )
    assert by_source["spring"]["position_based_conversions"] == 0.5  # two touches: 50/50
    short = client.post(
        "/api/v1/analytics/attribution", json={**body, "lookback_days": 1}, headers=alpha.headers
    )
    assert [i["source"] for i in short.json()["items"]] == ["vip"]

    theirs = client.post("/api/v1/analytics/attribution", json=body, headers=beta.headers).json()
    assert theirs["items"] == [] and theirs["totals"]["goals"] == 0

    as_csv = client.post("/api/v1/analytics/attribution?format=csv", json=body, headers=alpha.headers)
    assert as_csv.status_code == 200 and as_csv.headers["content-type"].startswith("text/csv")
    rows = _csv(as_csv.text)
    assert rows[0] == ["Attribution"] and rows[1][:3] == ["source", "touches", "conversions_touched"]
    assert {r[0] for r in rows[2:4]} == {"spring", "vip"}

    bad = client.post("/api/v1/analytics/attribution", json={**body, "touches": []}, headers=alpha.headers)
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")

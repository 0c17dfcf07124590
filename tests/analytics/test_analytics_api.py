"""The RFM and lifecycle endpoints read the synced warehouse for the caller's brand only, answer
JSON or CSV, and say so (409) when the warehouse was never synced."""

from __future__ import annotations

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


def test_rfm_and_lifecycle_over_http(
    client: Any, world: Any, db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alpha, beta = world.brands
    path = tmp_path / "w.duckdb"
    monkeypatch.setattr(get_settings(), "warehouse_path", str(path))
    body = {"as_of": "2026-03-31", "levels": 3}
    missing = client.post("/api/v1/analytics/rfm", json=body, headers=alpha.headers)
    assert missing.status_code == 409 and missing.json()["code"] == "warehouse-not-ready"

    members = [enroll(client, alpha.headers)["id"] for _ in range(3)]
    paid = ["2026-03-30T02:00:00Z", "2026-02-01T02:00:00Z", "2025-06-01T02:00:00Z"]
    for n, (member, at) in enumerate(zip(members, paid, strict=True)):
        r = client.post(
            "/api/v1/orders", json=order_body(f"A-{n}", member_id=member, paid_at=at), headers=alpha.headers
        )
        assert r.status_code == 201, r.text
    other = enroll(client, beta.headers)["id"]
    r = client.post(
        "/api/v1/orders", json=order_body("B-1", store="beta-s1", member_id=other), headers=beta.headers
    )
    assert r.status_code == 201, r.text
    wsync.sync(db, path, settle_seconds=0)

    got = client.post("/api/v1/analytics/rfm", json=body, headers=alpha.headers)
    assert got.status_code == 200, got.text
    out = got.json()
    assert out["members"] == 3 and [i["member_id"] for i in out["items"]] == sorted(members)
    assert {i["recency"] for i in out["items"]} == {1, 58, 303}
    assert sum(s["members"] for s in out["segments"]) == 3
    assert all(s["label_zh"] for s in out["segments"])
    theirs = client.post("/api/v1/analytics/rfm", json=body, headers=beta.headers).json()
    assert [i["member_id"] for i in theirs["items"]] == [other]

    as_csv = client.post("/api/v1/analytics/rfm?format=csv", json=body, headers=alpha.headers)
    assert as_csv.status_code == 200 and as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(as_csv.text.lstrip("\ufeff"))))
    assert rows[1][0] == "member_id" and len(rows) == 2 + 3

    life = client.post(
        "/api/v1/analytics/lifecycle", json={"as_of": "2026-03-31"}, headers=alpha.headers
    ).json()
    assert {s["state"]: s["members"] for s in life["states"]} == {
        "active": 1,
        "silent": 1,
        "sleeping": 0,
        "about_to_churn": 1,
        "churned": 0,
    }
    cohorts = client.post(
        "/api/v1/analytics/ltv/cohorts",
        json={"enrolled_from": "2025-01-01", "enrolled_to": "2026-12-31", "as_of": "2026-12-31", "months": 1},
        headers=alpha.headers,
    )
    assert cohorts.status_code == 200, cohorts.text
    assert (3, 0) in {(i["size"], i["k"]) for i in cohorts.json()["items"]}  # enrolled today
    spread = client.post(
        "/api/v1/analytics/distribution",
        json={"start": "2025-01-01", "end": "2026-03-31", "edges": [1, 2]},
        headers=alpha.headers,
    )
    assert [(i["bucket"], i["members"]) for i in spread.json()["items"]] == [(0, 3)]

    # KPIs of the same warehouse: orders of 180.00 on 2026-03-30, 2026-02-01 and 2025-06-01.
    q = {"start": "2026-03-01", "end": "2026-03-31"}
    k = client.get("/api/v1/analytics/kpi", params=q, headers=alpha.headers)
    assert k.status_code == 200, k.text
    now = k.json()["current"]
    assert (now["sales"], now["orders"], now["buyers"], now["aov"]) == (180.0, 1, 1, 180.0)
    assert k.json()["previous_period"]["orders"] == 1 and k.json()["previous_year"]["orders"] == 0
    trend = client.get("/api/v1/analytics/kpi/trend", params={**q, "grain": "week"}, headers=alpha.headers)
    assert [i["orders"] for i in trend.json()["items"]] == [1]  # 2026-02-01 is outside March
    assert client.get(
        "/api/v1/analytics/kpi/trend", params={**q, "format": "csv"}, headers=alpha.headers
    ).text.startswith("\ufeff")
    cities = client.get(
        "/api/v1/analytics/kpi/breakdown", params={**q, "dimension": "city"}, headers=alpha.headers
    )
    assert [i["sales"] for i in cities.json()["items"]] == [180.0]
    moved = client.get(
        "/api/v1/analytics/kpi/contribution", params={**q, "against": "year"}, headers=alpha.headers
    ).json()
    assert [(i["delta"], i["share_of_change"]) for i in moved["items"]] == [(180.0, 1.0)]
    backwards = client.get(
        "/api/v1/analytics/kpi", params={"start": "2026-03-31", "end": "2026-03-01"}, headers=alpha.headers
    )
    assert backwards.status_code == 422 and backwards.json()["errors"][0]["field"] == "end"

    bad = client.post(
        "/api/v1/analytics/rfm", json={"as_of": "2026-03-31", "scoring": "thresholds"}, headers=alpha.headers
    )
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")


def test_funnel_and_retention_over_http(
    client: Any, world: Any, db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import base64

    alpha = world.brands[0]
    path = tmp_path / "events.duckdb"
    monkeypatch.setattr(get_settings(), "warehouse_path", str(path))
    source = client.post("/api/v1/event-sources", json={"name": "web", "kind": "web"}, headers=alpha.headers)
    assert source.status_code == 201, source.text
    auth = {"Authorization": "Basic " + base64.b64encode(f"{source.json()['write_key']}:".encode()).decode()}
    batch = [
        {"type": "track", "userId": "u1", "event": "Viewed", "timestamp": "2026-03-10T02:00:00Z"},
        {"type": "track", "userId": "u1", "event": "Bought", "timestamp": "2026-03-10T02:30:00Z"},
        {"type": "track", "userId": "u1", "event": "Viewed", "timestamp": "2026-03-11T02:00:00Z"},
        {"type": "track", "userId": "u2", "event": "Viewed", "timestamp": "2026-03-10T03:00:00Z"},
    ]
    sent = client.post("/v1/batch", json={"batch": batch}, headers=auth)
    assert sent.status_code == 200, sent.text
    wsync.sync(db, path, settle_seconds=0)

    body = {"start": "2026-03-10", "end": "2026-03-11", "steps": [{"event": "Viewed"}, {"event": "Bought"}]}
    got = client.post("/api/v1/analytics/funnel", json={**body, "trend": "day"}, headers=alpha.headers)
    assert got.status_code == 200, got.text
    [row] = got.json()["items"]
    assert (row["step_1"], row["step_2"], row["overall_2"], row["median_s_2"]) == (2, 1, 0.5, 1800.0)
    assert [t["entered"] for t in got.json()["trend"]] == [2]
    csv_r = client.post("/api/v1/analytics/funnel?format=csv", json=body, headers=alpha.headers)
    assert csv_r.status_code == 200 and "step_1" in csv_r.text

    ret = {"start": "2026-03-10", "end": "2026-03-11", "as_of": "2026-03-12", "periods": 2}
    ret |= {"start_event": {"event": "Viewed"}, "return_event": {"event": "Viewed"}}
    r = client.post("/api/v1/analytics/retention", json=ret, headers=alpha.headers)
    assert r.status_code == 200, r.text
    [cohort] = r.json()["items"]
    assert (cohort["size"], cohort["n1"], cohort["e1"], cohort["e2"]) == (2, 1, True, True)
    assert r.json()["curve"][0]["rate"] == 0.5
    bad = client.post(
        "/api/v1/analytics/funnel", json={**body, "steps": body["steps"][:1]}, headers=alpha.headers
    )
    assert bad.status_code == 422

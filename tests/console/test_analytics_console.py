"""The analytics page: a notice until the warehouse is synced, then the brand's KPIs, trend,
channels, RFM segments and lifecycle states as the charts' JSON, and the freshness table. An analyst
reads it; another brand's figures never appear; a platform user is asked to choose a brand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from huiyuan.settings import get_settings
from huiyuan.warehouse import sync as wsync
from tests.conftest import World
from tests.console.conftest import make_user, signed_in
from tests.factories import enroll
from tests.orders.helpers import order_body


def test_analytics_page_and_its_data(
    client: Any, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = world.brands
    path = tmp_path / "w.duckdb"
    monkeypatch.setattr(get_settings(), "warehouse_path", str(path))
    make_user(world.db, "ana", "analyst", a.id)
    signed_in(client, "ana")
    page = client.get("/console/analytics")
    assert page.status_code == 200 and "huiyuan warehouse sync" in page.text

    for n, at in enumerate(("2026-03-02T02:00:00Z", "2026-03-20T02:00:00Z")):
        m = enroll(client, a.headers)["id"]
        r = client.post(
            "/api/v1/orders", json=order_body(f"A-{n}", member_id=m, paid_at=at), headers=a.headers
        )
        assert r.status_code == 201, r.text
    other = enroll(client, b.headers)["id"]
    r = client.post(
        "/api/v1/orders", json=order_body("B-1", store="beta-s1", member_id=other), headers=b.headers
    )
    assert r.status_code == 201, r.text
    wsync.sync(world.db, path, settle_seconds=0)

    page = client.get("/console/analytics?start=2026-03-01&end=2026-03-31")
    assert page.status_code == 200
    assert 'id="analytics-trend"' in page.text and "fact_orders" in page.text and "客单价" in page.text
    data = client.get("/console/analytics/data.json?start=2026-03-01&end=2026-03-31").json()
    assert data["ready"] is True
    assert (data["kpi"]["current"]["sales"], data["kpi"]["current"]["orders"]) == (360.0, 2)
    assert [c["value"] for c in data["channels"]] == ["store"]
    assert sum(s["members"] for s in data["segments"]) == 2
    assert {s["state"]: s["members"] for s in data["lifecycle"]}["active"] == 2  # 29 and 11 days

    make_user(world.db, "root", "platform_admin", None)
    signed_in(client, "root")
    assert client.get("/console/analytics/data.json?start=2026-03-01&end=2026-03-31").json() == {
        "ready": False
    }

"""The demo's events: ``huiyuan demo --events N`` writes each brand's tracking write key beside its API
key, a tracking plan, and about N events of members and visitors through the ingestion path (a few
flagged, one unplanned event waiting for approval); the write key it hands out works. The same
builder on PostgreSQL through ``build_world``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from huiyuan.cli.main import app as cli
from huiyuan.demo.world import build_world
from huiyuan.events.models import Event, EventDefinition, EventSource, UnplannedEvent
from huiyuan.kit.db import Database
from tests.events.conftest import basic

END = datetime(2026, 6, 30, 16, 0, tzinfo=UTC)


def test_cli_demo_with_events(tmp_path: Path) -> None:
    path = tmp_path / "demo.db"
    out = tmp_path / "demo-credentials.json"
    args = ["demo", "--members", "60", "--months", "2", "--seed", "3", "--end", END.isoformat(), "--no-serve"]
    args += ["--no-loyalty", "--no-coupons", "--events", "3000", "--db", f"sqlite:///{path}"]
    result = CliRunner().invoke(cli, [*args, "--credentials-out", str(out)])
    assert result.exit_code == 0, result.output
    assert "事件 events" in result.output and "Tracking write keys" in result.output
    creds = json.loads(out.read_text(encoding="utf-8"))
    for brand in creds["brands"]:
        assert brand["write_key"].startswith("hyw_") and brand["api_key"].startswith("hy_")
    assert 3000 <= sum(b["counts"]["events"] for b in creds["brands"]) < 3200

    db = Database(f"sqlite:///{path}")
    try:
        with db.unit_of_work(write=False) as s:
            assert s.scalar(select(func.count()).select_from(EventSource)) == 6  # web + app per brand
            assert s.scalar(select(func.count()).select_from(EventDefinition)) == 18
            kinds = dict(s.execute(select(Event.type, func.count()).group_by(Event.type)).all())
            assert {"page", "screen", "track"} <= set(kinds)
            names = set(s.scalars(select(Event.event).where(Event.type == "track").distinct()))
            assert {"Product Viewed", "Order Paid", "Element Clicked"} <= names
            assert set(s.scalars(select(UnplannedEvent.name))) == {"Wishlist Added"}
            first, last = s.execute(select(func.min(Event.timestamp), func.max(Event.timestamp))).one()
            assert datetime(2026, 4, 30, tzinfo=UTC) <= first < last <= END
            members = s.scalar(select(func.count(Event.user_id.distinct())))
            assert members and members > 10
    finally:
        db.dispose()

    # The write key of the credentials file works against the API.
    from fastapi.testclient import TestClient

    from huiyuan.app import create_app
    from huiyuan.settings import get_settings

    db = Database(f"sqlite:///{path}")
    with TestClient(create_app(get_settings(), db, start_worker=False)) as client:
        lanxi = creds["brands"][0]
        r = client.post(
            "/v1/track",
            json={"userId": "LX00000001", "event": "Order Paid"},
            headers=basic(lanxi["write_key"]),
        )
        assert r.status_code == 200 and r.json()["flagged"] == 1  # the demo plan needs order_id and value
        newest = client.get("/api/v1/events?limit=1", headers={"Authorization": f"Bearer {lanxi['api_key']}"})
        assert newest.json()["items"][0]["violations"][0]["rule"] == "required"
    db.dispose()


@pytest.mark.parametrize("db", ["postgresql"], indirect=True)
def test_build_world_events_on_postgresql(db: Database) -> None:
    world = build_world(db, members=30, seed=5, months=1, end=END, loyalty=False, events=800)
    counts: dict[str, Any] = {b.code: b.counts for b in world.brands}
    assert 800 <= sum(c["events"] for c in counts.values()) < 1000
    with db.unit_of_work(write=False) as s:
        stored = s.scalar(select(func.count()).select_from(Event))
        assert stored == sum(c["events"] - c["events_quarantined"] for c in counts.values())
        assert (
            s.scalar(select(func.count()).select_from(Event).where(Event.received_at != Event.timestamp)) == 0
        )

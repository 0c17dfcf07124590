"""The warehouse sync on both databases: the copy adds up to OLTP, a second sync copies nothing,
changed rows replace their copy, a sync stopped mid-way resumes to the same result as a clean one,
and a rebuild equals the incremental file. PII never reaches the warehouse."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
from sqlalchemy import func, select, update

from huiyuan.coupons.models import CouponLock
from huiyuan.demo.world import build_world
from huiyuan.events.models import Event
from huiyuan.kit.db import Database
from huiyuan.members.models import Member
from huiyuan.orders.models import Order, OrderItem
from huiyuan.points.models import PointEntry
from huiyuan.settings import get_settings
from huiyuan.warehouse import connect
from huiyuan.warehouse import sync as wsync

END = datetime(2026, 6, 30, 16, 0, tzinfo=UTC)
FACTS = (
    "fact_orders",
    "fact_order_items",
    "fact_points",
    "fact_events",
    "fact_coupon_redemptions",
    "dim_member",
)


def _world(db: Database) -> Any:
    return build_world(
        db, members=40, seed=5, months=1, end=END, loyalty=True, events=300, coupons=True, coupon_days=3
    )


def _rows(path: Path, table: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        cols = [c[0] for c in con.execute(f"DESCRIBE {table}").fetchall() if c[0] != "updated_at"]
        return con.execute(f"SELECT {', '.join(cols)} FROM {table} ORDER BY ALL").fetchall()
    finally:
        con.close()


def _count(db: Database, model: Any) -> int:
    with db.unit_of_work(write=False) as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def test_sync_copies_everything_once_and_follows_changes(db: Database, tmp_path: Path) -> None:
    _world(db)
    path = tmp_path / "w.duckdb"
    first = wsync.sync(db, path, settle_seconds=0)
    assert first.copied["fact_orders"] == _count(db, Order) > 0
    assert first.copied["fact_points"] == _count(db, PointEntry) > 0
    assert first.copied["fact_events"] == _count(db, Event) >= 300
    assert first.copied["dim_member"] == _count(db, Member) == 40
    assert len(_rows(path, "fact_order_items")) == _count(db, OrderItem)
    assert first.copied["fact_coupon_redemptions"] == _count(db, CouponLock) > 0

    # Money adds up per brand, and the warehouse answers through Ibis.
    with db.unit_of_work(write=False) as s:
        oltp = dict(
            s.execute(select(Order.brand_id, func.sum(Order.paid_amount)).group_by(Order.brand_id)).all()
        )
    wh = connect(path)
    orders = wh.table("fact_orders")
    sums = orders.group_by("brand_id").aggregate(total=orders.amount.sum()).execute()
    assert {
        int(b): Decimal(str(t)).quantize(Decimal("0.01"))
        for b, t in zip(sums.brand_id, sums.total, strict=True)
    } == {b: Decimal(v) for b, v in oltp.items()}
    wh.disconnect()
    # Every event has a person; member events point at the member.
    con = duckdb.connect(str(path), read_only=True)
    assert con.execute("SELECT count(*) FROM fact_events WHERE person_key IS NULL").fetchone() == (0,)
    columns = {c[0] for c in con.execute("DESCRIBE dim_member").fetchall()}
    assert not columns & {"phone", "email", "name", "phone_enc", "email_enc"}
    dates = con.execute("SELECT min(date_key), max(date_key), count(*) FROM dim_date").fetchone()
    con.close()
    assert dates is not None and dates[2] >= 30

    # A second sync copies nothing; a changed member and a new order come over, alone.
    before = {t: _rows(path, t) for t in FACTS}
    again = wsync.sync(db, path, settle_seconds=0)
    assert again.rows == 0 and {t: _rows(path, t) for t in FACTS} == before
    member_id = before["dim_member"][0][1]  # (brand_id, member_id, …)
    with db.unit_of_work() as s:
        s.execute(
            update(Member).where(Member.id == member_id).values(city="拉萨市", updated_at=datetime.now(UTC))
        )
    changed = wsync.sync(db, path, settle_seconds=0)
    assert changed.copied["dim_member"] == 1 and changed.rows == 1
    con = duckdb.connect(str(path), read_only=True)
    assert con.execute("SELECT city FROM dim_member WHERE member_id = ?", [member_id]).fetchone() == (
        "拉萨市",
    )
    con.close()

    # Rebuilding from nothing gives the same warehouse as the incremental syncs.
    rebuilt = tmp_path / "r.duckdb"
    wsync.sync(db, rebuilt, full=True, settle_seconds=0)
    assert not Path(f"{rebuilt}.rebuild").exists()
    for table in FACTS:
        assert _rows(rebuilt, table) == _rows(path, table), table


def test_a_stopped_sync_resumes_to_the_same_result(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _world(db)
    clean = tmp_path / "clean.duckdb"
    wsync.sync(db, clean, settle_seconds=0)

    monkeypatch.setattr(wsync, "CHUNK", 50)
    stopped = tmp_path / "stopped.duckdb"

    def crash(table: str, chunk: int) -> None:
        if table == "fact_events" and chunk == 2:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        wsync.sync(db, stopped, settle_seconds=0, after_chunk=crash)
    con = duckdb.connect(str(stopped), read_only=True)
    assert con.execute("SELECT count(*) FROM fact_events").fetchone() == (100,)  # two whole chunks
    con.close()
    resumed = wsync.sync(db, stopped, settle_seconds=0)
    assert resumed.copied["fact_events"] == _count(db, Event) - 100
    assert resumed.copied["fact_orders"] == 0
    for table in FACTS:
        assert _rows(stopped, table) == _rows(clean, table), table


def test_unknown_tables_are_refused(db: Database, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no warehouse table nope"):
        wsync.sync(db, tmp_path / "w.duckdb", tables=["nope"])


def test_status_endpoint_counts_the_callers_rows(
    client: Any, world: Any, db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.factories import enroll

    alpha, beta = world.brands
    enroll(client, alpha.headers)
    enroll(client, alpha.headers)
    enroll(client, beta.headers)
    path = tmp_path / "status.duckdb"
    monkeypatch.setattr(get_settings(), "warehouse_path", str(path))
    wsync.sync(db, path, settle_seconds=0)
    mine = client.get("/api/v1/warehouse/status", headers=alpha.headers)
    assert mine.status_code == 200, mine.text
    members = next(t for t in mine.json()["tables"] if t["table"] == "dim_member")
    assert members["rows"] == 2 and members["synced_at"] is not None
    theirs = client.get("/api/v1/warehouse/status", headers=beta.headers).json()
    assert next(t for t in theirs["tables"] if t["table"] == "dim_member")["rows"] == 1

"""The warehouse sync on both databases, over a small demo world (loyalty, coupons, events) whose
identities are linked by the real OneID jobs: the copy adds up to OLTP, people resolve through the
OneID lookup table, a second sync copies nothing, new and changed rows come over alone, a sync
stopped mid-way resumes to the same file as a clean one, a rebuild equals the incremental file, and
PII never reaches the warehouse."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
from sqlalchemy import func, select

from huiyuan.coupons.models import CouponLock
from huiyuan.demo.world import DemoWorld, build_world
from huiyuan.events.models import Event
from huiyuan.identity import jobs as identity_jobs
from huiyuan.identity.models import IdentifierNode
from huiyuan.jobs.service import enqueue
from huiyuan.kit.db import Database
from huiyuan.kit.scope import system_for_brand
from huiyuan.members.models import Member
from huiyuan.orders.models import Order, OrderItem, Product
from huiyuan.points.models import PointEntry
from huiyuan.tenancy.models import Store
from huiyuan.tiers.models import MemberTier
from huiyuan.warehouse import connect, freshness, store
from huiyuan.warehouse import sync as wsync
from huiyuan.warehouse.schema import DATA_TABLES
from tests.events.conftest import basic
from tests.factories import enroll
from tests.identity.helpers import oneid_of

END = datetime(2026, 6, 30, 16, 0, tzinfo=UTC)
PHONE = "13912345678"


def _world(db: Database) -> DemoWorld:
    world = build_world(
        db, members=30, seed=5, months=1, end=END, loyalty=True, coupons=True, coupon_days=2, events=300
    )
    for brand in world.brands:  # the graph, as the OneID jobs build it from members and events
        actor = system_for_brand(brand.id)
        for kind in (identity_jobs.SYNC_MEMBERS, identity_jobs.LINK_EVENTS):
            with db.unit_of_work(actor.scope) as s:
                enqueue(s, actor=actor, kind=kind)
    return world


def dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table analyses read, in a stable order."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in DATA_TABLES}
    finally:
        con.close()


def query(path: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


def count(db: Database, model: Any) -> int:
    with db.unit_of_work(write=False) as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


class StopAfter:
    """A reporter that kills the sync once ``chunks`` chunks of ``phase`` are committed."""

    def __init__(self, phase: str, chunks: int) -> None:
        self.phase, self.left = phase, chunks

    def start(self, phase: str, total: int) -> None:
        return None

    def advance(self, phase: str, rows: int) -> None:
        if phase == self.phase:
            self.left -= 1
            if self.left == 0:
                raise KeyboardInterrupt("killed")

    def finish(self, phase: str) -> None:
        return None


def _check_against_oltp(db: Database, path: Path, report: wsync.SyncReport) -> None:
    expected = {
        "dim_store": count(db, Store),
        "dim_product": count(db, Product),
        "identity_map": count(db, IdentifierNode),
        "dim_member": count(db, Member),
        "dim_member.tier": count(db, MemberTier),
        "fact_orders": count(db, Order),
        "fact_points": count(db, PointEntry),
        "fact_coupon_redemptions": count(db, CouponLock),
        "fact_events": count(db, Event),
    }
    assert report.copied == expected
    assert min(n for source, n in expected.items() if source != "dim_member.tier") > 0  # no tiers yet
    rows = {r["table"]: r["rows"] for r in freshness(path)}
    assert rows["fact_order_items"] == count(db, OrderItem)
    with db.unit_of_work(write=False) as s:
        paid = dict(
            s.execute(select(Order.brand_id, func.sum(Order.paid_amount)).group_by(Order.brand_id)).all()
        )
        points = Counter(
            {
                (b, k): int(v)
                for b, k, v in s.execute(
                    select(PointEntry.brand_id, PointEntry.kind, func.sum(PointEntry.amount)).group_by(
                        PointEntry.brand_id, PointEntry.kind
                    )
                )
            }
        )
        locks = s.execute(
            select(CouponLock.discount, CouponLock.allocation).where(CouponLock.redeemed_at.is_not(None))
        )
        discounts, coupons = Decimal(0), 0
        for discount, allocation in locks:
            discounts, coupons = discounts + discount, coupons + len(allocation["coupons"])
    # Money adds up per brand, read through Ibis as analyses read it.
    wh = connect(path)
    orders = wh.table("fact_orders")
    sums = orders.group_by("brand_id").aggregate(total=orders.amount.sum()).execute()
    assert {int(b): Decimal(str(t)) for b, t in zip(sums.brand_id, sums.total, strict=True)} == paid
    wh.disconnect()
    assert rows["fact_coupon_redemptions"] == coupons
    assert query(path, "SELECT sum(discount) FROM fact_coupon_redemptions") == [(discounts,)]
    assert (
        Counter(
            {
                (b, k): int(v)
                for b, k, v in query(path, "SELECT brand_id, kind, sum(amount) FROM fact_points GROUP BY ALL")
            }
        )
        == points
    )
    # An order's lines add up to what was paid for it.
    assert query(
        path,
        """SELECT count(*) FROM fact_orders o
           JOIN (SELECT order_id, sum(amount) AS lines FROM fact_order_items GROUP BY order_id) i
             USING (order_id)
           WHERE i.lines <> o.amount""",
    ) == [(0,)]
    # dim_date covers every day the facts name.
    assert query(
        path,
        """SELECT count(*) FROM (SELECT date_key FROM fact_orders UNION SELECT date_key FROM fact_events
           UNION SELECT date_key FROM fact_points) f ANTI JOIN dim_date d USING (date_key)""",
    ) == [(0,)]


def _check_people(db: Database, path: Path) -> None:
    """person_key: the OneID of the event's user id or anonymous id, else of the member its user id
    names, else member:<id>, else anon:<anonymous id> — checked against the graph itself."""
    with db.unit_of_work(write=False) as s:
        events = s.execute(select(Event.id, Event.brand_id, Event.user_id, Event.anonymous_id)).all()
        numbers = {
            (b, n): i for i, b, n in s.execute(select(Member.id, Member.brand_id, Member.member_number))
        }
    copied = {r[0]: r[1:] for r in query(path, "SELECT event_id, person_key, member_id FROM fact_events")}
    memo: dict[tuple[int, str], int | None] = {}

    def one(brand_id: int, spec: str | None) -> str | None:
        if spec is None or spec.endswith(":"):
            return None
        if (brand_id, spec) not in memo:
            memo[(brand_id, spec)] = oneid_of(db, brand_id, spec)
        found = memo[(brand_id, spec)]
        return None if found is None else str(found)

    kinds: Counter[str] = Counter()
    for event_id, brand_id, user_id, anonymous_id in events:
        member_id = numbers.get((brand_id, user_id)) if user_id is not None else None
        expected = (
            one(brand_id, user_id and f"user_id:{user_id}")
            or one(brand_id, anonymous_id and f"anonymous_id:{anonymous_id}")
            or one(brand_id, user_id and f"member_number:{user_id}")
            or (f"member:{member_id}" if member_id else None)
            or f"anon:{anonymous_id}"
        )
        assert copied[event_id] == (expected, member_id), event_id
        kinds["oneid" if expected[0].isdigit() else expected.split(":")[0]] += 1
    assert kinds["oneid"] > 0 and kinds["anon"] > 0, kinds
    # Orders of members carry the member's OneID.
    assert query(
        path,
        """SELECT count(*) FROM fact_orders o JOIN dim_member m USING (member_id)
           WHERE o.person_key IS DISTINCT FROM m.oneid""",
    ) == [(0,)]


@pytest.mark.slow
def test_sync_adds_up_resumes_follows_changes_and_rebuilds(
    db: Database, client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = _world(db)
    monkeypatch.setattr(wsync, "CHUNK", 20)  # many chunks from a small world (events: 100 a chunk)
    clean = tmp_path / "clean.duckdb"
    first = wsync.sync(db, clean, settle_seconds=0)
    _check_against_oltp(db, clean, first)
    _check_people(db, clean)
    member_columns = {c[0] for c in query(clean, "DESCRIBE dim_member")}
    assert not member_columns & {"name", "phone", "email", "phone_enc", "email_enc", "phone_bidx"}

    # Killed right after the second events chunk: those two chunks stay, with their cursor ...
    stopped = tmp_path / "stopped.duckdb"
    with pytest.raises(KeyboardInterrupt):
        wsync.sync(db, stopped, settle_seconds=0, reporter=StopAfter("fact_events", 2))
    assert query(stopped, "SELECT count(*), max(event_id) FROM fact_events")[0][0] == 200
    # ... and killed inside the third (before its commit): nothing of it stays.
    real_write_state = store.write_state

    def dies_on_events(con: Any, name: str, *args: Any) -> None:
        if name == "fact_events":
            raise KeyboardInterrupt("killed")
        real_write_state(con, name, *args)

    monkeypatch.setattr(store, "write_state", dies_on_events)
    with pytest.raises(KeyboardInterrupt):
        wsync.sync(db, stopped, settle_seconds=0)
    monkeypatch.setattr(store, "write_state", real_write_state)
    assert query(stopped, "SELECT count(*) FROM fact_events") == [(200,)]
    resumed = wsync.sync(db, stopped, settle_seconds=0)
    assert resumed.copied["fact_events"] == count(db, Event) - 200
    assert resumed.copied["fact_orders"] == resumed.copied["dim_member"] == 0
    assert dump(stopped) == dump(clean)

    # Idempotent: a second sync copies nothing and changes nothing.
    before = dump(clean)
    again = wsync.sync(db, clean, settle_seconds=0)
    assert again.rows == 0 and dump(clean) == before

    # New and changed rows come over, and only they: a member moves, buys, and is tracked.
    brand = world.brands[0]
    headers = {"Authorization": f"Bearer {brand.api_key}"}
    with db.unit_of_work(write=False) as s:
        member_id, number = s.execute(
            select(Member.id, Member.member_number).where(Member.brand_id == brand.id).order_by(Member.id)
        ).first()  # type: ignore[misc]
    points_before = count(db, PointEntry)
    r = client.patch(f"/api/v1/members/{member_id}", json={"city": "拉萨市"}, headers=headers)
    assert r.status_code == 200, r.text
    top = max(client.get("/api/v1/tiers/levels", headers=headers).json(), key=lambda lv: lv["rank"])
    r = client.post(
        f"/api/v1/members/{member_id}/tier/override",
        json={"level_code": top["code"], "reason": "VIP"},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    body = {
        "order_number": "WH-NEW-1",
        "store_code": brand.stores[0],
        "channel": "store",
        "member_number": number,
        "items": [
            {"sku": "WH-1", "name": "仓库测试", "quantity": 2, "list_price": "60.00", "deal_price": "50.00"}
        ],
        "payments": [{"method": "cash", "amount": "100.00"}],
    }
    r = client.post("/api/v1/orders", json=body, headers=headers)
    assert r.status_code == 201, r.text
    track = {
        "type": "track",
        "event": "Product Viewed",
        "userId": number,
        "messageId": "wh-msg-1",
        "properties": {"sku": "WH-1", "price": 50, "phone": PHONE},
        "context": {"ip": "10.1.2.3", "traits": {"phone": PHONE}, "locale": "zh-CN"},
    }
    r = client.post("/v1/batch", json={"batch": [track]}, headers=basic(brand.write_key))
    assert r.status_code == 200, r.text
    changed = wsync.sync(db, clean, settle_seconds=0)
    assert changed.copied["dim_member"] >= 1 and changed.copied["dim_member.tier"] == 1
    assert changed.copied["fact_orders"] == 1
    assert changed.copied["fact_events"] == 1
    assert changed.copied["fact_points"] == count(db, PointEntry) - points_before
    assert changed.copied["dim_store"] == changed.copied["dim_product"] == 0
    after = dump(clean)
    assert len(after["fact_orders"]) == len(before["fact_orders"]) + 1
    assert len(after["fact_order_items"]) == len(before["fact_order_items"]) + 1
    assert len(after["dim_member"]) == len(before["dim_member"])
    assert query(clean, "SELECT city, tier, tier_rank FROM dim_member WHERE member_id = ?", member_id) == [
        ("拉萨市", top["code"], top["rank"])
    ]
    assert query(
        clean, "SELECT amount, person_key IS NOT NULL FROM fact_orders WHERE order_number = 'WH-NEW-1'"
    ) == [(Decimal("100.00"), True)]
    # The tracked phone number and IP stayed in OLTP.
    (props, context, person), *_ = query(
        clean,
        "SELECT properties, context, person_key FROM fact_events ORDER BY event_id DESC LIMIT 1",
    )
    assert PHONE not in props and PHONE not in context and "10.1.2.3" not in context and "zh-CN" in context
    assert person == str(
        oneid_of(db, brand.id, f"user_id:{number}") or oneid_of(db, brand.id, f"member_number:{number}")
    )

    # A rebuild from nothing, swapped in over the file, equals the incremental result.
    rebuilt = wsync.sync(db, clean, full=True, settle_seconds=0)
    assert rebuilt.rebuilt and not Path(f"{clean}.rebuild").exists()
    assert dump(clean) == after

    # A member the graph learns about later: its dimension row follows the graph, not its record.
    new_member = enroll(client, headers)["id"]
    wsync.sync(db, clean, settle_seconds=0)
    assert query(clean, "SELECT oneid FROM dim_member WHERE member_id = ?", new_member) == [(None,)]
    actor = system_for_brand(brand.id)
    with db.unit_of_work(actor.scope) as s:
        enqueue(s, actor=actor, kind=identity_jobs.SYNC_MEMBERS)
    learned = wsync.sync(db, clean, settle_seconds=0)
    assert learned.copied["identity_map"] > 0 and learned.copied["dim_member"] == 0
    number = query(clean, "SELECT member_number FROM dim_member WHERE member_id = ?", new_member)[0][0]
    assert query(clean, "SELECT oneid FROM dim_member WHERE member_id = ?", new_member) == [
        (str(oneid_of(db, brand.id, f"member_number:{number}")),)
    ]

"""The demo world: a tiny world on both databases, built by the CLI and by ``build_world``; counts,
determinism (same seed → same digest, whatever the database), order and refund invariants, no plaintext
PII at rest, the credentials file, and tenancy through the API with the keys it hands out."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select
from typer.testing import CliRunner

from huiyuan.audit.models import AuditEntry
from huiyuan.cli.main import app as cli
from huiyuan.demo.sales import _allocate
from huiyuan.demo.world import build_world
from huiyuan.kit import pii
from huiyuan.kit.db import Database
from huiyuan.members.models import Member, MemberIdentifier
from huiyuan.orders import planning
from huiyuan.orders.models import Order, OrderDiscount, OrderItem, OrderPayment, Refund, RefundItem
from huiyuan.orders.schemas import OrderIn
from huiyuan.outbox.models import OutboxEvent
from huiyuan.tenancy.models import Brand, Store

END = datetime(2026, 6, 30, 16, 0, tzinfo=UTC)
MEMBERS, MONTHS, SEED = 200, 3, 7


@dataclass
class Reference:
    path: Path
    credentials: dict
    digest: str


def world_digest(db: Database) -> str:
    """sha256 over what the seed decides: members (number, name, enrollment) and orders (totals)."""
    h = hashlib.sha256()
    with db.unit_of_work(write=False) as s:
        codes = dict(s.execute(select(Brand.id, Brand.code)).tuples().all())
        members = s.execute(
            select(Member.brand_id, Member.member_number, Member.name, Member.enrolled_at, Member.status)
        ).all()
        for b, number, name, at, status in sorted(members, key=lambda r: (codes[r[0]], r[1])):
            h.update(f"{codes[b]}|{number}|{name}|{at.isoformat()}|{status}\n".encode())
        orders = s.execute(
            select(
                Order.brand_id,
                Order.order_number,
                Order.deal_amount,
                Order.discount_amount,
                Order.paid_amount,
                Order.refunded_amount,
                Order.status,
                Order.request_hash,
            )
        ).all()
        for row in sorted(orders, key=lambda r: (codes[r[0]], r[1])):
            h.update(("|".join(map(str, (codes[row[0]], *row[1:]))) + "\n").encode())
    return h.hexdigest()


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """A tiny world built once through the CLI, into its own SQLite file."""
    path = tmp_path_factory.mktemp("demo") / "demo.db"
    out = path.parent / "demo-credentials.json"
    args = ["demo", "--members", str(MEMBERS), "--months", str(MONTHS), "--seed", str(SEED)]
    args += [
        "--end",
        END.isoformat(),
        "--no-serve",
        "--no-coupons",  # coupons have their own, smaller world (test_demo_coupons)
        "--db",
        f"sqlite:///{path}",
        "--credentials-out",
        str(out),
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    db = Database(f"sqlite:///{path}")
    digest = world_digest(db)
    db.dispose()
    return Reference(path, json.loads(out.read_text(encoding="utf-8")), digest)


def test_credentials_file_and_no_plaintext_phone(reference: Reference) -> None:
    creds = reference.credentials
    assert creds["platform_api_key"].startswith("hy_")
    assert [b["code"] for b in creds["brands"]] == ["lanxi", "mucha", "yunjian"]
    for b in creds["brands"]:
        assert {"code", "api_key", "console_user", "console_password"} <= set(b)
        assert b["api_key"].startswith("hy_") and len(b["console_password"]) >= 8
        assert [u["role"] for u in b["users"]] == ["brand_admin", "operator", "analyst"]
    assert sum(b["counts"]["members"] for b in creds["brands"]) == MEMBERS

    db = Database(f"sqlite:///{reference.path}")
    with db.unit_of_work(write=False) as s:
        tokens = s.scalars(select(Member.phone_enc).limit(50)).all()
    db.dispose()
    phones = [pii.decrypt(t) for t in tokens if t]
    assert len(phones) == 50 and all(len(p) == 11 for p in phones)
    raw = b"".join(p.read_bytes() for p in reference.path.parent.glob("demo.db*"))
    assert not [p for p in phones if p.encode() in raw]


def test_demo_world(db: Database, client, reference: Reference) -> None:
    world = build_world(db, members=MEMBERS, seed=SEED, months=MONTHS, end=END)

    # Same seed and end → the same world, on either database.
    assert world_digest(db) == reference.digest
    counts = {b.code: b.counts for b in world.brands}
    assert counts == {b["code"]: b["counts"] for b in reference.credentials["brands"]}
    assert [counts[c]["members"] for c in ("lanxi", "mucha", "yunjian")] == [80, 70, 50]

    with db.unit_of_work(write=False) as s:
        brands = dict(s.execute(select(Brand.code, Brand.id)).tuples().all())
        stores = dict(s.execute(select(Store.brand_id, func.count()).group_by(Store.brand_id)).tuples().all())
        assert sum(stores.values()) == 30
        for code, bid in brands.items():
            n_orders = s.scalar(select(func.count()).select_from(Order).where(Order.brand_id == bid))
            assert n_orders == counts[code]["orders"] > 0
        assert s.scalar(select(Brand.member_seq).where(Brand.id == brands["lanxi"])) == 80
        numbers = s.scalars(select(Member.member_number).where(Member.brand_id == brands["lanxi"])).all()
        assert sorted(numbers) == [f"LX{n:08d}" for n in range(1, 81)]
        phone_idents = s.scalar(
            select(func.count())
            .select_from(MemberIdentifier)
            .join(Member, Member.id == MemberIdentifier.member_id)
            .where(MemberIdentifier.type == "phone", MemberIdentifier.value_bidx == Member.phone_bidx)
        )
        assert phone_idents == MEMBERS

        _check_order_invariants(s)
        _check_request_hashes(s)
        seeded = s.scalars(select(AuditEntry).where(AuditEntry.action == "demo.seeded")).all()
        assert len(seeded) == 3
        assert s.scalar(select(func.count()).select_from(OutboxEvent)) == 0  # history is a backfill

    # The keys handed out work, and only for their own brand.
    lanxi, mucha = world.brands[0], world.brands[1]
    h = {"Authorization": f"Bearer {lanxi.api_key}"}
    page = client.get("/api/v1/members?limit=5", headers=h).json()
    assert len(page["items"]) == 5 and {m["brand_id"] for m in page["items"]} == {lanxi.id}
    with db.unit_of_work(write=False) as s:
        other = s.scalar(select(Member.id).where(Member.brand_id == mucha.id).limit(1))
    assert client.get(f"/api/v1/members/{other}", headers=h).status_code == 404
    assert (
        client.get(
            f"/api/v1/members/{other}", headers={"Authorization": f"Bearer {mucha.api_key}"}
        ).status_code
        == 200
    )
    # Ids and member numbers continue after the backfill (PostgreSQL sequences were moved on).
    r = client.post("/api/v1/members", json={"enroll_channel": "store", "phone": "19900000001"}, headers=h)
    assert r.status_code == 201, r.text
    assert r.json()["member_number"] == "LX00000081"


def _check_order_invariants(s) -> None:  # type: ignore[no-untyped-def]
    def per_order(model, column):  # type: ignore[no-untyped-def]
        return dict(
            s.execute(select(model.order_id, func.sum(column)).group_by(model.order_id)).tuples().all()
        )

    payments = per_order(OrderPayment, OrderPayment.amount)
    discounts = per_order(OrderDiscount, OrderDiscount.amount)
    item_amount = per_order(OrderItem, OrderItem.amount)
    item_paid = per_order(OrderItem, OrderItem.paid_amount)
    item_refunded = per_order(OrderItem, OrderItem.refunded_amount)
    refunds = per_order(Refund, Refund.amount)
    zero = Decimal("0.00")
    orders = s.scalars(select(Order)).all()
    assert orders
    for o in orders:
        assert o.paid_amount == o.deal_amount - o.discount_amount > 0
        assert payments[o.id] == o.paid_amount
        assert discounts.get(o.id, zero) == o.discount_amount
        assert item_amount[o.id] == o.deal_amount and item_paid[o.id] == o.paid_amount
        assert o.deal_amount <= o.list_amount
        assert zero <= o.refunded_amount <= o.paid_amount
        assert refunds.get(o.id, zero) == o.refunded_amount == item_refunded[o.id]
        assert (o.status == "paid") == (o.refunded_amount == 0)
    assert (
        s.scalar(
            select(func.count()).select_from(OrderItem).where(OrderItem.deal_price > OrderItem.list_price)
        )
        == 0
    )
    per_refund = dict(
        s.execute(select(RefundItem.refund_id, func.sum(RefundItem.amount)).group_by(RefundItem.refund_id))
        .tuples()
        .all()
    )
    refund_rows = s.scalars(select(Refund)).all()
    assert refund_rows
    for r in refund_rows:
        assert per_refund[r.id] == r.amount > 0


@given(
    total=st.integers(min_value=0, max_value=10**7),
    weights=st.lists(st.integers(min_value=1, max_value=10**6), min_size=1, max_size=8),
)
def test_allocation_matches_the_order_service(total: int, weights: list[int]) -> None:
    total = min(total, sum(weights))
    ours = _allocate(total, weights)
    theirs = planning.allocate(Decimal(total) / 100, [Decimal(w) / 100 for w in weights])
    assert ours == [int(x * 100) for x in theirs] and sum(ours) == total


def _check_request_hashes(s) -> None:  # type: ignore[no-untyped-def]
    """Historical orders carry the hash the order service computes for the same request, so a replay
    through the API is recognised as a duplicate."""
    stores = dict(s.execute(select(Store.id, Store.code)).tuples().all())
    numbers = dict(s.execute(select(Member.id, Member.member_number)).tuples().all())
    checked = 0
    for o in s.scalars(select(Order).order_by(Order.id).limit(40)).all():
        if o.anonymous_identifiers:
            continue
        where = {"order_id": o.id}
        items = s.scalars(select(OrderItem).filter_by(**where).order_by(OrderItem.line_no)).all()
        discounts = s.scalars(select(OrderDiscount).filter_by(**where).order_by(OrderDiscount.id)).all()
        payments = s.scalars(select(OrderPayment).filter_by(**where).order_by(OrderPayment.id)).all()
        data = OrderIn.model_validate(
            {
                "order_number": o.order_number,
                "store_code": stores.get(o.store_id),
                "channel": o.channel,
                "member_number": numbers.get(o.member_id),
                "paid_at": o.paid_at,
                "items": [
                    {
                        "sku": i.sku,
                        "quantity": i.quantity,
                        "list_price": i.list_price,
                        "deal_price": i.deal_price,
                    }
                    for i in items
                ],
                "discounts": [{"kind": d.kind, "code": d.code, "amount": d.amount} for d in discounts],
                "payments": [
                    {"method": p.method, "amount": p.amount, "reference": p.reference} for p in payments
                ],
            }
        )
        assert planning.request_hash(data) == o.request_hash
        checked += 1
    assert checked > 10


def test_retail_calendar() -> None:
    from datetime import date

    from huiyuan.demo.seasons import day_factor, is_promotion

    tuesday = date(2026, 4, 14)
    assert day_factor(date(2026, 11, 11), "apparel") > 3 * day_factor(date(2026, 11, 18), "apparel")
    assert day_factor(date(2026, 6, 18), "beauty") > 2 * day_factor(date(2026, 6, 25), "beauty")
    # Spring Festival 2026 is 17 February: shopping before it, empty streets during it.
    assert (
        day_factor(date(2026, 2, 3), "apparel")
        > day_factor(tuesday, "apparel")
        > day_factor(date(2026, 2, 17), "apparel")
    )
    assert day_factor(date(2026, 4, 18), "coffee") < day_factor(tuesday, "coffee")  # offices closed
    assert day_factor(date(2026, 4, 18), "apparel") > day_factor(tuesday, "apparel")  # malls busy
    assert is_promotion(date(2026, 11, 11), "coffee") and not is_promotion(tuesday, "apparel")

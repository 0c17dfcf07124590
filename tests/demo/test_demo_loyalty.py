"""The demo world's loyalty programme: configuration per brand (point types, earn rules, tier levels,
paid plans), a points account for every member who paid an order, the ledger's invariants on a sample
of accounts, tier snapshots back to 90 days, paid subscriptions, and the same balances for the same
seed on either database."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from huiyuan.audit.models import AuditEntry
from huiyuan.demo.loyalty import History
from huiyuan.demo.world import build_world
from huiyuan.kit.clock import utcnow
from huiyuan.kit.db import Database
from huiyuan.kit.migrate import upgrade
from huiyuan.kit.scope import system_for_brand
from huiyuan.members.models import Member
from huiyuan.orders.models import Order
from huiyuan.paid.models import PlanCategory, PlanLevel, Subscription
from huiyuan.points import ledger
from huiyuan.points.models import EarnRule, PointAccount, PointLot, PointType
from huiyuan.tenancy.models import Brand
from huiyuan.tiers.models import MemberTier, TierLevel, TierProgram, TierSnapshot

from .test_demo import END

# The whole module goes first (see tests/conftest.py): its worlds are built once per module.
pytestmark = pytest.mark.slow

# More months than the world test: the clearing at the end of 2025 falls inside this history.
MEMBERS, MONTHS, SEED = 150, 20, 11


@dataclass
class Built:
    db: Database
    digest: str


def loyalty_digest(db: Database) -> str:
    """sha256 over what the walk decides: balances per member and point type, levels, subscriptions."""
    h = hashlib.sha256()
    with db.unit_of_work(write=False) as s:
        numbers = {m: n for m, n in s.execute(select(Member.id, Member.member_number))}
        codes = {t: c for t, c in s.execute(select(PointType.id, PointType.code))}
        accounts = s.execute(
            select(
                PointAccount.member_id,
                PointAccount.point_type_id,
                PointAccount.available,
                PointAccount.pending,
                PointAccount.reserved,
                PointAccount.debt,
                PointAccount.earned_total,
                PointAccount.spent_total,
                PointAccount.expired_total,
            )
        ).all()
        for row in sorted(accounts, key=lambda r: (numbers[r[0]], codes[r[1]])):
            h.update(f"{numbers[row[0]]}|{codes[row[1]]}|{'|'.join(map(str, row[2:]))}\n".encode())
        levels = {i: c for i, c in s.execute(select(TierLevel.id, TierLevel.code))}
        for m, lv in sorted(
            (numbers[m], levels[lv]) for m, lv in s.execute(select(MemberTier.member_id, MemberTier.level_id))
        ):
            h.update(f"{m}|{lv}\n".encode())
        for m, status, paid in sorted(
            (numbers[m], status, str(paid))
            for m, status, paid in s.execute(
                select(Subscription.member_id, Subscription.status, Subscription.amount_paid)
            )
        ):
            h.update(f"{m}|{status}|{paid}\n".encode())
    return h.hexdigest()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    """A small world with its loyalty programme, built once into its own SQLite file."""
    path = tmp_path_factory.mktemp("loyalty") / "demo.db"
    upgrade(f"sqlite:///{path}")
    db = Database(f"sqlite:///{path}")
    build_world(db, members=MEMBERS, seed=SEED, months=MONTHS, end=END)
    yield Built(db, loyalty_digest(db))
    db.dispose()


def test_programme_is_configured_per_brand(reference: Built) -> None:
    with reference.db.unit_of_work(write=False) as s:
        brands = {b: c for b, c in s.execute(select(Brand.id, Brand.code))}
        assert len(brands) == 3
        for bid in brands:
            types = {t.code: t for t in s.scalars(select(PointType).where(PointType.brand_id == bid))}
            assert set(types) == {"points", "growth"}
            assert types["points"].expiry_policy["kind"] == "yearly_clearing"
            assert types["points"].pending_days == 7 and types["growth"].expiry_policy == {"kind": "never"}
            rules = {r.code: r for r in s.scalars(select(EarnRule).where(EarnRule.brand_id == bid))}
            assert set(rules) == {"base-points", "member-day", "growth", "check-in", "store-bonus"}
            assert rules["check-in"].trigger == "check_in"
            assert rules["store-bonus"].definition["funded_by"] != "brand"
            assert s.scalar(select(func.count()).where(TierProgram.brand_id == bid)) == 1
            ranks = s.scalars(
                select(TierLevel.rank).where(TierLevel.brand_id == bid).order_by(TierLevel.rank)
            )
            assert list(ranks) == [0, 1, 2, 3]
            assert s.scalar(select(func.count()).where(PlanCategory.brand_id == bid)) == 2
            assert s.scalar(select(func.count()).where(PlanLevel.brand_id == bid)) == 4
        assert sum(t.transferable for t in s.scalars(select(PointType))) == 1
        # Configuration went through the services: audited.
        actions = set(s.scalars(select(AuditEntry.action)))
        assert {
            "point_type.created",
            "earn_rule.created",
            "tier_program.configured",
            "tier_level.created",
            "paid.category.created",
            "paid.level.created",
        } <= actions


def test_every_buyer_has_points_and_the_ledger_adds_up(reference: Built) -> None:
    with reference.db.unit_of_work(write=False) as s:
        buyers = set(
            s.scalars(
                select(Order.member_id)
                .join(Member, Member.id == Order.member_id)
                .where(Member.status != "closed")
                .distinct()
            )
        )
        holders = set(
            s.scalars(
                select(PointAccount.member_id)
                .join(PointType, PointType.id == PointAccount.point_type_id)
                .where(PointType.code == "points")
            )
        )
        assert buyers and buyers <= holders
        accounts = s.scalars(select(PointAccount).order_by(PointAccount.id)).all()
        # Every account of the smallest brand and every 7th of the others.
        smallest = min({a.brand_id for a in accounts})
        sample = [a for i, a in enumerate(accounts) if a.brand_id == smallest or i % 7 == 0]
        assert len(sample) > 50
        for a in sample:
            t = ledger.account_totals(s, a.id)
            assert (t["entries_available"], t["entries_pending"], t["entries_frozen"]) == (
                a.available,
                a.pending,
                a.frozen,
            ), a.id
            assert (t["entries_reserved"], t["entries_debt"]) == (a.reserved, a.debt), a.id
            assert t["entries_balance"] == a.available + a.pending + a.frozen, a.id
            assert (t["lots_active"], t["lots_pending"], t["lots_frozen"]) == (
                a.available,
                a.pending,
                a.frozen,
            )
            assert t["lots_expired"] == 0 and min(a.available, a.pending, a.reserved, a.debt) >= 0
        # The history shows the programme at work: expiry, spending, funders other than the brand.
        assert (s.scalar(select(func.sum(PointAccount.expired_total))) or 0) > 0
        assert (s.scalar(select(func.sum(PointAccount.spent_total))) or 0) > 0
        funders = set(s.scalars(select(PointLot.funded_by).distinct()))
        assert "brand" in funders and len(funders) >= 2
        # Lots keep the time of the order they were earned for; the last week's are still pending.
        first = s.scalar(select(func.min(PointLot.earned_at)))
        assert first is not None and first < END - timedelta(days=300)
        assert (s.scalar(select(func.count()).where(PointLot.state == "pending")) or 0) > 0


def test_tiers_and_paid_plans(reference: Built) -> None:
    with reference.db.unit_of_work(write=False) as s:
        snapshots = s.execute(
            select(
                TierSnapshot.brand_id, func.count(func.distinct(TierSnapshot.day)), func.max(TierSnapshot.day)
            ).group_by(TierSnapshot.brand_id)
        ).all()
        assert len(snapshots) == 3
        today = (END + timedelta(hours=8)).date()
        assert all(days == 91 and last == today for _b, days, last in snapshots)
        levels = {
            rank: n
            for rank, n in s.execute(
                select(TierLevel.rank, func.count())
                .join(MemberTier, MemberTier.level_id == TierLevel.id)
                .group_by(TierLevel.rank)
            )
        }
        assert levels.get(1, 0) > 0 and levels.get(2, 0) > 0
        statuses = set(s.scalars(select(Subscription.status)))
        assert (s.scalar(select(func.count()).select_from(Subscription)) or 0) >= 6
        assert statuses <= {"active", "expired"} and "active" in statuses


def test_same_seed_same_balances(db: Database, reference: Built) -> None:
    """The walk is deterministic: the same seed and end give the same balances on either database."""
    build_world(db, members=MEMBERS, seed=SEED, months=MONTHS, end=END)
    assert loyalty_digest(db) == reference.digest


def test_without_loyalty(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'plain.db'}"
    upgrade(url)
    db = Database(url)
    world = build_world(db, members=60, seed=SEED, months=2, end=END, loyalty=False)
    with db.unit_of_work(write=False) as s:
        assert s.scalar(select(func.count()).select_from(PointType)) == 0
        assert s.scalar(select(func.count()).select_from(PointAccount)) == 0
    assert "point_grants" not in world.brands[0].counts
    db.dispose()


def test_the_walk_sizes_a_spend_by_what_the_ledger_can_draw(reference: Built) -> None:
    """A lot past its expiry that no sweep has reached still counts in the account's ``available``;
    the walk sizes redemptions and checkouts by the unexpired active lots, which a spend can draw."""
    now = utcnow()
    with Session(reference.db.engine) as s:  # rolled back: the reference world stays as built
        pt = s.scalars(select(PointType).where(PointType.code == "points").order_by(PointType.id)).first()
        assert pt is not None
        lot = s.scalars(
            select(PointLot)
            .where(PointLot.point_type_id == pt.id, PointLot.state == "active", PointLot.remaining > 0)
            .order_by(PointLot.id)
        ).first()
        assert lot is not None
        lot.expires_at = now - timedelta(hours=1)
        s.flush()
        account = s.scalars(
            select(PointAccount).where(
                PointAccount.member_id == lot.member_id, PointAccount.point_type_id == pt.id
            )
        ).one()
        history = History(
            reference.db,
            brand_id=pt.brand_id,
            code="x",
            store_ids=[],
            seed=SEED,
            start=END,
            end=END,
            advance=lambda *_: None,
        )
        spendable = history._available(s, lot.member_id)
        lots = s.scalars(
            select(PointLot).where(PointLot.account_id == account.id, PointLot.state == "active")
        )
        assert spendable == sum(
            x.remaining for x in lots if x.expires_at is None or x.expires_at.replace(tzinfo=UTC) > now
        )
        assert account.available >= spendable + lot.remaining > spendable
        if spendable:
            ledger.spend(
                s,
                actor=system_for_brand(pt.brand_id),
                member_id=lot.member_id,
                point_type="points",
                amount=spendable,
                key="walk-sized",
                source_type="test",
            )
        s.rollback()

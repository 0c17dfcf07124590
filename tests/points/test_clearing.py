"""Points clearing: a settlement built through the ledger verbs on both backends, its period bounds,
the clearing arithmetic as a property, and the CSV / XLSX exports."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openpyxl import load_workbook
from sqlalchemy import select, update

from huiyuan.kit.clock import FrozenClock, get_clock, set_clock
from huiyuan.kit.db import Database
from huiyuan.kit.errors import ValidationFailed
from huiyuan.kit.scope import system_for_brand
from huiyuan.kit.types import to_money
from huiyuan.members.schemas import MemberEnroll
from huiyuan.members.service import enroll_member
from huiyuan.points import clearing, ledger
from huiyuan.points.clearing import Consumption, Settlement, clear, settle
from huiyuan.points.models import PointType
from huiyuan.tenancy.models import Store
from tests.factories import make_brand

FEB = datetime(2026, 2, 1, tzinfo=UTC)
MAR = datetime(2026, 3, 1, tzinfo=UTC)
APR = datetime(2026, 4, 1, tzinfo=UTC)


def D(text: str) -> Decimal:
    return Decimal(text)


@pytest.fixture
def clock() -> Iterator[FrozenClock]:
    previous = get_clock()
    frozen = FrozenClock(datetime(2025, 12, 25, tzinfo=UTC))
    set_clock(frozen)
    yield frozen
    set_clock(previous)


@dataclass
class Shop:
    db: Database
    clock: FrozenClock
    brand_id: int
    s1: int
    s2: int
    members: list[int]

    def at(self, when: datetime) -> None:
        self.clock.advance(seconds=(when - self.clock.now()).total_seconds())

    def do(self, verb: Any, **kwargs: Any) -> ledger.LedgerResult:
        actor = system_for_brand(self.brand_id)
        with self.db.unit_of_work(actor.scope) as s:
            result: ledger.LedgerResult = verb(s, actor=actor, **kwargs)
            return result

    def fair_value(self, value: str) -> None:
        with self.db.unit_of_work(system_for_brand(self.brand_id).scope) as s:
            s.execute(
                update(PointType).where(PointType.brand_id == self.brand_id).values(fair_value=D(value))
            )

    def settle(self, start: datetime, end: datetime, **kwargs: Any) -> Settlement:
        with self.db.unit_of_work(system_for_brand(self.brand_id).scope, write=False) as s:
            return settle(s, brand_id=self.brand_id, start=start, end=end, **kwargs)


def make_shop(
    db: Database, clock: FrozenClock, code: str = "alpha", policy: dict[str, Any] | None = None
) -> Shop:
    brand_id = make_brand(db, code, stores=2)
    actor = system_for_brand(brand_id)
    with db.unit_of_work(actor.scope) as s:
        s.add(
            PointType(
                brand_id=brand_id,
                code="points",
                name="积分",
                kind="spendable",
                fair_value=D("0.01"),
                expiry_policy=policy or {"kind": "relative", "days": 45},
            )
        )
        s.add(
            PointType(
                brand_id=brand_id,
                code="growth",
                name="成长值",
                kind="growth",
                spendable=False,
                expiry_policy={"kind": "never"},
            )
        )
        members = [
            enroll_member(s, actor=actor, data=MemberEnroll(enroll_channel="store", name=n)).id
            for n in ("甲", "乙")
        ]
        stores = list(s.scalars(select(Store.id).where(Store.brand_id == brand_id).order_by(Store.code)))
    return Shop(db=db, clock=clock, brand_id=brand_id, s1=stores[0], s2=stores[1], members=members)


def build_scenario(shop: Shop) -> None:
    """Platform-, merchant-, store- and brand-funded lots spent in two stores and the points mall.

    m1: L1 1000 platform @0.01, L2 600 merchant:acme @0.0125 (earned at s1).
    m2: L3 300 store-funded at s2 @0.01 (expires in the period), L4 400 brand @0.0125.
    """
    m1, m2 = shop.members
    do = shop.do
    pts = {"point_type": "points"}
    shop.at(datetime(2025, 12, 25, tzinfo=UTC))  # L3 expires 2026-02-08
    do(
        ledger.earn,
        member_id=m2,
        amount=300,
        key="l3",
        source_type="order",
        funded_by="store",
        store_id=shop.s2,
        **pts,
    )
    do(ledger.earn, member_id=m2, amount=7, key="g1", source_type="check_in", point_type="growth")
    shop.at(datetime(2026, 1, 20, tzinfo=UTC))
    do(ledger.earn, member_id=m1, amount=1000, key="l1", source_type="game", funded_by="platform", **pts)
    shop.fair_value("0.0125")
    shop.at(datetime(2026, 1, 25, tzinfo=UTC))
    do(
        ledger.earn,
        member_id=m1,
        amount=600,
        key="l2",
        source_type="order",
        funded_by="merchant:acme",
        store_id=shop.s1,
        **pts,
    )

    shop.at(FEB)  # exactly at the start: counted
    do(ledger.spend, member_id=m1, amount=250, key="sp1", source_type="pos", store_id=shop.s1, **pts)
    shop.at(datetime(2026, 2, 5, tzinfo=UTC))  # L1 750 + L2 150 at s2
    sp2 = do(ledger.spend, member_id=m1, amount=900, key="sp2", source_type="pos", store_id=shop.s2, **pts)
    shop.at(datetime(2026, 2, 10, tzinfo=UTC))
    do(ledger.expire_due, now=shop.clock.now())  # L3: 300 expire
    shop.at(datetime(2026, 2, 12, tzinfo=UTC))  # partial refund: 100 back to L2 (latest drawn first)
    do(ledger.restore_entry, entry_id=sp2.entries[-1], amount=100, key="rs1", reason="refund")
    shop.at(datetime(2026, 2, 15, tzinfo=UTC))  # L2 100 held, confirmed the next day at s1
    do(ledger.reserve, member_id=m1, amount=100, key="r1", store_id=shop.s1, ttl_minutes=60 * 48, **pts)
    shop.at(datetime(2026, 2, 16, tzinfo=UTC))
    do(ledger.confirm, reservation_key="r1")
    shop.at(datetime(2026, 2, 20, tzinfo=UTC))
    do(
        ledger.earn,
        member_id=m2,
        amount=400,
        key="l4",
        source_type="order",
        funded_by="brand",
        store_id=shop.s1,
        **pts,
    )
    shop.at(datetime(2026, 2, 21, tzinfo=UTC))  # points mall: no store, so the brand redeems
    do(ledger.spend, member_id=m2, amount=300, key="mall", source_type="mall", **pts)
    shop.at(datetime(2026, 2, 22, tzinfo=UTC))
    do(ledger.spend, member_id=m2, amount=33, key="sp3", source_type="pos", store_id=shop.s2, **pts)
    shop.at(datetime(2026, 2, 25, tzinfo=UTC))  # still held at the end of the period
    do(ledger.reserve, member_id=m2, amount=20, key="r2", store_id=shop.s2, ttl_minutes=60 * 24 * 10, **pts)

    shop.at(MAR)  # exactly at the end: belongs to the next period
    do(ledger.spend, member_id=m1, amount=10, key="sp4", source_type="pos", store_id=shop.s2, **pts)
    shop.at(datetime(2026, 3, 2, tzinfo=UTC))  # a refund of a February spend, in March
    do(ledger.restore_entry, entry_id=sp2.entries[-1], amount=30, key="rs2", reason="refund")


def flows_of(s: Settlement) -> dict[tuple[str, str], tuple[int, int, int, Decimal]]:
    return {(f.funder, f.redeemer): (f.spent_points, f.restored_points, f.points, f.value) for f in s.flows}


def test_settlement_of_a_period(db: Database, clock: FrozenClock) -> None:
    shop = make_shop(db, clock)
    build_scenario(shop)
    s1, s2 = f"store:{shop.s1}", f"store:{shop.s2}"
    s = shop.settle(FEB, MAR)

    assert s.point_types == ("points",)  # growth value carries no money
    assert flows_of(s) == {
        ("platform", s1): (250, 0, 250, D("2.50")),
        ("platform", s2): (750, 0, 750, D("7.50")),
        ("brand", "brand"): (300, 0, 300, D("3.75")),
        ("brand", s2): (33, 0, 33, D("0.41")),  # 0.4125
        ("merchant:acme", s1): (100, 0, 100, D("1.25")),  # the confirmed reservation
        ("merchant:acme", s2): (150, 100, 50, D("0.63")),  # 0.625, rounded half up
    }
    assert s.consumed_points == 1483
    assert s.consumed_value == D("16.04")

    uni = {
        u.party: (u.funded_points, u.funded_value, u.redeemed_points, u.redeemed_value, u.net)
        for u in s.unilateral
    }
    assert s.operator == "brand" and "brand" not in uni
    assert uni == {
        "platform": (1000, D("10.00"), 0, D("0.00"), D("-10.00")),
        "merchant:acme": (150, D("1.88"), 0, D("0.00"), D("-1.88")),
        s1: (0, D("0.00"), 350, D("3.75"), D("3.75")),
        s2: (0, D("0.00"), 833, D("8.54"), D("8.54")),
    }

    pairs = {
        (p.party_a, p.party_b): (p.a_to_b_points, p.a_to_b_value, p.b_to_a_points, p.b_to_a_value, p.net)
        for p in s.pairs
    }
    assert pairs == {
        ("platform", s1): (250, D("2.50"), 0, D("0.00"), D("2.50")),
        ("platform", s2): (750, D("7.50"), 0, D("0.00"), D("7.50")),
        ("brand", s2): (33, D("0.41"), 0, D("0.00"), D("0.41")),
        ("merchant:acme", s1): (100, D("1.25"), 0, D("0.00"), D("1.25")),
        ("merchant:acme", s2): (50, D("0.63"), 0, D("0.00"), D("0.63")),
    }
    positions = {p.party: (p.receivable, p.payable, p.net) for p in s.positions}
    assert positions == {
        "platform": (D("0.00"), D("10.00"), D("-10.00")),
        "brand": (D("0.00"), D("0.41"), D("-0.41")),
        "merchant:acme": (D("0.00"), D("1.88"), D("-1.88")),
        s1: (D("3.75"), D("0.00"), D("3.75")),
        s2: (D("8.54"), D("0.00"), D("8.54")),
    }
    assert sum(p.net for p in s.positions) == 0
    # Unilateral against the operator and multilateral positions agree party by party.
    assert all(positions[u.party][2] == u.net for u in s.unilateral)

    funders = {
        f.funder: (
            f.expired_points,
            f.expired_value,
            f.outstanding_points,
            f.outstanding_value,
            f.held_points,
            f.held_value,
        )
        for f in s.funders
    }
    assert funders == {
        # L2: 600 − 150 + 100 − 100 = 450 at 0.0125 = 5.625; the spend at `end` is not counted
        "merchant:acme": (0, D("0.00"), 450, D("5.63"), 0, D("0.00")),
        # L4: 400 − 300 − 33 − 20 held = 47 at 0.0125 = 0.5875
        "brand": (0, D("0.00"), 47, D("0.59"), 20, D("0.25")),
        s2: (300, D("3.00"), 0, D("0.00"), 0, D("0.00")),  # L3 expired: breakage
    }
    assert s.name_of(s1) == "alpha store 1 (alpha-s1)" and s.name_of("platform") == "平台 / Platform"


def test_period_bounds_and_later_refunds(db: Database, clock: FrozenClock) -> None:
    shop = make_shop(db, clock)
    build_scenario(shop)
    s2 = f"store:{shop.s2}"
    march = shop.settle(MAR, APR)
    # The spend at exactly 1 March is March's; the refund of a February spend is a March adjustment
    # (30 back to L2), so the cell goes negative and the store owes the merchant.
    assert flows_of(march) == {("merchant:acme", s2): (10, 30, -20, D("-0.25"))}
    assert {p.party: p.net for p in march.positions} == {"merchant:acme": D("0.25"), s2: D("-0.25")}
    # Until a sweep writes them, a timed-out reservation is still held and a lot past due still
    # outstanding: the entries are the truth.
    assert {f.funder: (f.expired_points, f.outstanding_points, f.held_points) for f in march.funders} == {
        "merchant:acme": (0, 470, 0),
        "brand": (0, 47, 20),
    }
    shop.at(datetime(2026, 3, 31, tzinfo=UTC))
    shop.do(ledger.release_due_reservations, now=shop.clock.now())  # r2: 20 back to L4
    shop.do(ledger.expire_due, now=shop.clock.now())  # L2 (due 11 March): 470 expire
    march = shop.settle(MAR, APR)
    assert {
        f.funder: (
            f.expired_points,
            f.expired_value,
            f.outstanding_points,
            f.outstanding_value,
            f.held_points,
        )
        for f in march.funders
    } == {
        "merchant:acme": (470, D("5.88"), 0, D("0.00"), 0),  # 5.875
        "brand": (0, D("0.00"), 67, D("0.84"), 0),  # 0.8375
    }
    # A period ending just before the first in-period spend sees nothing consumed.
    assert shop.settle(datetime(2026, 1, 1, tzinfo=UTC), FEB).flows == []
    # Two halves add up to the whole.
    first = shop.settle(FEB, datetime(2026, 2, 15, tzinfo=UTC))
    second = shop.settle(datetime(2026, 2, 15, tzinfo=UTC), MAR)
    whole = shop.settle(FEB, MAR)
    assert first.consumed_points + second.consumed_points == whole.consumed_points
    with pytest.raises(ValidationFailed):
        shop.settle(MAR, FEB)
    with pytest.raises(ValidationFailed):
        shop.settle(datetime(2026, 2, 1), MAR)


def test_other_brands_operator_and_carry_over(db: Database, clock: FrozenClock) -> None:
    shop = make_shop(db, clock, policy={"kind": "relative", "days": 10, "decay_ratio": 0.3})
    other = make_shop(db, clock, code="beta")
    m1 = shop.members[0]
    shop.at(datetime(2026, 1, 25, tzinfo=UTC))  # expires 4 February, 30% carried into a new lot
    shop.do(
        ledger.earn,
        member_id=m1,
        point_type="points",
        amount=101,
        key="e",
        source_type="order",
        funded_by="merchant:acme",
    )
    other.do(
        ledger.earn,
        member_id=other.members[0],
        point_type="points",
        amount=50,
        key="e",
        source_type="order",
        funded_by="platform",
    )
    shop.at(datetime(2026, 2, 6, tzinfo=UTC))
    shop.do(ledger.expire_due, now=shop.clock.now())
    shop.do(
        ledger.spend,
        member_id=m1,
        point_type="points",
        amount=10,
        key="s",
        source_type="pos",
        store_id=shop.s1,
    )
    other.do(
        ledger.spend,
        member_id=other.members[0],
        point_type="points",
        amount=50,
        key="s",
        source_type="pos",
        store_id=other.s1,
    )

    s = shop.settle(FEB, MAR, operator="platform")
    assert flows_of(s) == {("merchant:acme", f"store:{shop.s1}"): (10, 0, 10, D("0.10"))}
    assert [u.party for u in s.unilateral] == ["merchant:acme", f"store:{shop.s1}"]
    # 101 expired, 30 carried into a new lot of the same funder: the breakage is 71.
    [acme] = s.funders
    assert (acme.expired_points, acme.expired_value, acme.outstanding_points) == (71, D("0.71"), 20)
    growth = shop.settle(FEB, MAR, point_types=["growth"])
    assert growth.flows == [] and growth.point_types == ("growth",)
    with pytest.raises(ValidationFailed):
        shop.settle(FEB, MAR, point_types=["nope"])


def test_exports_read_back(db: Database, clock: FrozenClock) -> None:
    shop = make_shop(db, clock)
    build_scenario(shop)
    s = shop.settle(FEB, MAR)

    text = clearing.to_csv(s)
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text[1:])))
    blocks: dict[str, list[list[str]]] = {}
    current: list[list[str]] = []
    for row in rows:
        if not row:
            continue
        if len(row) == 1:
            current = blocks.setdefault(row[0], [])
        else:
            current.append(row)
    assert list(blocks) == [clearing.SUMMARY_TITLE, *clearing.SECTION_TITLES]
    flows = blocks["清算明细 / Flows"]
    assert flows[0][0] == "出资方 / Funder" and flows[0][-1] == "结算金额(元) / Amount (CNY)"
    assert len(flows) == 1 + len(s.flows)
    acme = next(r for r in flows[1:] if r[0] == "merchant:acme" and r[2] == f"store:{shop.s2}")
    assert acme[3] == "alpha store 2 (alpha-s2)" and acme[4:] == ["150", "100", "50", "0.63"]
    summary = dict((r[0], r[1]) for r in blocks[clearing.SUMMARY_TITLE][1:])
    assert summary["结算金额(元) / Amount (CNY)"] == "16.04"
    positions = blocks["净头寸 / Net positions"][1:]
    assert sum(D(r[4]) for r in positions) == 0

    book = load_workbook(io.BytesIO(clearing.to_xlsx(s)))
    assert len(book.sheetnames) == 6 and "/" not in "".join(book.sheetnames)
    sheet = book[book.sheetnames[1]]
    table = list(sheet.iter_rows(values_only=True))
    assert table[0] == clearing.FLOW_HEADERS
    got = {(r[0], r[2]): (r[6], to_money(Decimal(str(r[7])))) for r in table[1:]}
    assert got == {(f.funder, f.redeemer): (f.points, f.value) for f in s.flows}
    assert sheet.cell(row=2, column=8).number_format == "0.00"
    funders = list(book[book.sheetnames[5]].iter_rows(values_only=True))
    assert funders[0][0] == "出资方 / Funder" and len(funders) == 1 + len(s.funders)


# -- the arithmetic, as a property ----------------------------------------------------------------

PARTIES = ["platform", "brand", "merchant:a", "merchant:b", "store:1", "store:2", "store:10"]
consumptions = st.lists(
    st.builds(
        lambda f, r, v, spent, back: Consumption(f, r, v, spent, min(back, spent)),
        st.sampled_from(PARTIES),
        st.sampled_from(PARTIES),
        st.decimals(min_value=0, max_value=2, places=6, allow_nan=False, allow_infinity=False),
        st.integers(0, 1_000_000),
        st.integers(0, 1_000_000),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(consumptions, st.sampled_from(PARTIES))
def test_net_positions_sum_to_zero(items: list[Consumption], operator: str) -> None:
    result = clear(items, operator=operator)
    # Each cell is rounded once from its exact value.
    for f in result.flows:
        exact = sum(
            (
                (c.spent - c.restored) * c.unit_value
                for c in items
                if (c.funder, c.redeemer) == (f.funder, f.redeemer)
            ),
            Decimal(0),
        )
        assert f.value == to_money(exact) and abs(f.value - exact) <= D("0.005")
        assert f.value == f.value.quantize(D("0.01"))
    # Σ net positions is zero in fen; receivables match payables.
    assert sum((p.net for p in result.positions), Decimal(0)) == 0
    assert sum((p.receivable for p in result.positions), Decimal(0)) == sum(
        (p.payable for p in result.positions), Decimal(0)
    )
    positions = {p.party: p.net for p in result.positions}
    # Each pair's nets add up to the parties' positions.
    from_pairs: dict[str, Decimal] = dict.fromkeys(positions, Decimal(0))
    for p in result.pairs:
        assert p.net == p.a_to_b_value - p.b_to_a_value
        from_pairs[p.party_b] += p.net
        from_pairs[p.party_a] -= p.net
    assert from_pairs == positions
    # Unilateral: each party against the operator nets to its multilateral position; the operator
    # carries the rest.
    assert all(u.net == positions[u.party] for u in result.unilateral)
    assert operator not in {u.party for u in result.unilateral}
    assert positions.get(operator, Decimal(0)) == -sum((u.net for u in result.unilateral), Decimal(0))

"""Shared point programmes on both backends: members linked across brands, earning at one brand and
spending at another on one host account (ledger invariants hold), clearing between brands, per-brand
idempotency, tenancy isolation and concurrent spends from two brands. Checkout holds are in
``test_program_checkout``, the API in ``test_programs_api``, earning from paid orders in
``test_program_handlers``."""

from __future__ import annotations

import csv
import io
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from huiyuan.kit.clock import FrozenClock
from huiyuan.kit.errors import IdempotencyMismatch
from huiyuan.kit.scope import Scope
from huiyuan.members.models import Member
from huiyuan.points import clearing, program_admin, programs
from huiyuan.points.ledger import InsufficientPoints
from huiyuan.points.models import PointEntry, PointLot
from huiyuan.points.program_models import PointProgramLink, PointProgramOperation
from huiyuan.points.program_schemas import ParticipationUpdate
from huiyuan.points.programs import MemberNotLinked, ProgramInactive
from tests.points.helpers import check_ledger, race
from tests.points.program_helpers import Alliance

pytestmark = pytest.mark.usefixtures("fresh_programme_memory")


def _lots(al: Alliance) -> list[PointLot]:
    with al.db.unit_of_work(Scope(brand_id=al.host), write=False) as s:
        found = list(s.scalars(select(PointLot).order_by(PointLot.id)))
        s.expunge_all()
        return found


# -- linking, earning, spending -------------------------------------------------------------------


def test_members_of_two_brands_share_one_account_found_by_phone(al: Alliance) -> None:
    first = al.link(al.b, al.members["b"])
    second = al.link(al.c, al.members["c"])

    assert first.matched_by == "created"  # the host had no member with this phone
    assert second.matched_by == "phone"
    assert first.host_member_id == second.host_member_id
    with al.db.unit_of_work(Scope(brand_id=al.host), write=False) as s:
        host_member = s.get(Member, first.host_member_id)
        assert host_member is not None and host_member.enroll_source == f"program:{al.code}:{al.codes[al.b]}"
    # Linking again answers the same link; the host's own member links to itself.
    again, created = al.run(al.b, programs.link_member, code=al.code, member_id=al.members["b"])
    assert (again.id, created) == (first.id, False)
    own = al.enroll(al.host, "host member", phone="13900139000")
    assert al.link(al.host, own).matched_by == "self"


def test_a_host_member_with_the_phone_is_found_not_duplicated(al: Alliance) -> None:
    existing = al.enroll(al.host, "already a host member")

    link = al.link(al.b, al.members["b"])

    assert (link.host_member_id, link.matched_by) == (existing, "phone")


def test_earn_at_b_spend_at_c_on_one_account(al: Alliance) -> None:
    al.link(al.b, al.members["b"])
    al.link(al.c, al.members["c"])

    granted = al.earn(al.b, al.members["b"], "b-1", amount=100, order_ref="B-1")
    by_rate = al.earn(al.c, al.members["c"], "c-1", paid_amount=Decimal("50.90"))
    spent = al.spend(al.c, al.members["c"], 120, "c-pay-1", order_ref="C-7")

    assert (granted.operation.points, by_rate.operation.points) == (100, 50)  # 50.90 × 1, rounded down
    assert spent.ledger.balance["available"] == 30
    for brand, member in ((al.b, al.members["b"]), (al.c, al.members["c"])):
        view = al.points(brand, member)
        assert (view.balance.available, view.balance.earned_total, view.balance.spent_total) == (30, 150, 120)
    assert {lot.funded_by for lot in _lots(al)} == {f"brand:{al.b}", f"brand:{al.c}"}
    # balance = Σ entries = Σ lots, per account, in the host's ledger.
    snap = check_ledger(al.db, al.host)
    assert [a["available"] for a in snap.accounts.values()] == [30]


def test_a_brand_sees_the_balance_and_only_its_own_lines(al: Alliance) -> None:
    al.link(al.b, al.members["b"])
    al.link(al.c, al.members["c"])
    al.earn(al.b, al.members["b"], "b-1", amount=100)
    al.spend(al.c, al.members["c"], 40, "c-1", order_ref="C-1")

    at_b = al.points(al.b, al.members["b"])
    at_c = al.points(al.c, al.members["c"])

    assert at_b.balance.available == at_c.balance.available == 60
    assert [(e.kind, e.amount, e.key) for e in at_b.entries] == [("earn", 100, "b-1")]
    assert [(e.kind, e.amount, e.key, e.order_ref) for e in at_c.entries] == [("spend", -40, "c-1", "C-1")]


def test_refund_gives_back_to_the_spent_lots(al: Alliance) -> None:
    al.link(al.c, al.members["c"])
    al.earn(al.c, al.members["c"], "c-e", amount=50)
    al.spend(al.c, al.members["c"], 30, "c-s")

    back = al.run(
        al.c, programs.refund, code=al.code, member_id=al.members["c"], key="c-r", spend_key="c-s", amount=10
    )

    assert back.operation.kind == "refund" and back.ledger.balance["available"] == 30
    with pytest.raises(Exception, match="No spend"):
        al.run(
            al.c,
            programs.refund,
            code=al.code,
            member_id=al.members["c"],
            key="c-r2",
            spend_key="c-e",
            amount=1,
        )
    check_ledger(al.db, al.host)


def test_unlinked_members_and_inactive_participations_are_refused(al: Alliance) -> None:
    with pytest.raises(MemberNotLinked):
        al.earn(al.b, al.members["b"], "b-1", amount=5)
    no_phone = al.enroll(al.b, "no phone", phone=None)
    with pytest.raises(Exception, match="no phone"):
        al.link(al.b, no_phone)
    al.link(al.b, al.members["b"])
    al.earn(al.b, al.members["b"], "b-1", amount=5)

    al.run(
        None,
        program_admin.update_participation,
        code=al.code,
        brand_code=al.codes[al.b],
        data=ParticipationUpdate(status="left"),
    )
    with pytest.raises(ProgramInactive):
        al.spend(al.b, al.members["b"], 1, "b-2")
    # What the brand did stays readable for its clearing.
    assert al.settle(al.b, datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)).funders


# -- idempotency ----------------------------------------------------------------------------------


def test_keys_are_namespaced_per_brand(al: Alliance) -> None:
    al.link(al.b, al.members["b"])
    al.link(al.c, al.members["c"])

    first = al.earn(al.b, al.members["b"], "same-key", amount=10)
    other_brand = al.earn(al.c, al.members["c"], "same-key", amount=10)
    retry = al.earn(al.b, al.members["b"], "same-key", amount=10)

    assert not first.replayed and not other_brand.replayed and retry.replayed
    assert first.operation.id != other_brand.operation.id
    assert retry.operation.id == first.operation.id and retry.ledger.to_json() == first.ledger.to_json()
    with pytest.raises(IdempotencyMismatch):
        al.earn(al.b, al.members["b"], "same-key", amount=11)
    with pytest.raises(IdempotencyMismatch):  # the same points, but from another paid amount
        al.earn(al.c, al.members["c"], "same-key", paid_amount=Decimal("10.50"))
    assert al.points(al.b, al.members["b"]).balance.available == 20
    with al.db.unit_of_work(write=False) as s:
        assert s.scalar(select(func.count()).select_from(PointProgramOperation)) == 2

    # A retry after the brand's earn rate changed still replays what the first call earned.
    by_rate = al.earn(al.c, al.members["c"], "by-rate", paid_amount=Decimal("30"))
    al.run(
        None,
        program_admin.update_participation,
        code=al.code,
        brand_code=al.codes[al.c],
        data=ParticipationUpdate(earn_rate=Decimal(3)),
    )
    retried = al.earn(al.c, al.members["c"], "by-rate", paid_amount=Decimal("30"))
    assert retried.replayed and (retried.operation.id, retried.operation.points) == (by_rate.operation.id, 30)


# -- tenancy --------------------------------------------------------------------------------------


def test_brands_cannot_reach_each_others_links_entries_or_other_programmes(al: Alliance) -> None:
    al.link(al.b, al.members["b"])
    al.link(al.c, al.members["c"])
    al.earn(al.b, al.members["b"], "b-1", amount=10)
    al.spend(al.c, al.members["c"], 3, "c-1")

    with al.db.unit_of_work(Scope(brand_id=al.b), write=False) as s:
        links = list(s.scalars(select(PointProgramLink)))
        assert [link.brand_id for link in links] == [al.b]
        assert [op.brand_id for op in s.scalars(select(PointProgramOperation))] == [al.b]
        assert list(s.scalars(select(PointEntry))) == []  # the host's ledger is not B's to read
    # B cannot act on C's member, nor read C's link.
    with pytest.raises(Exception, match="not found"):
        al.spend(al.b, al.members["c"], 1, "b-steal")
    with pytest.raises(Exception, match="not found"):
        al.run(al.b, programs.get_link, code=al.code, member_id=al.members["c"])
    # D is not in the programme: it does not exist for D.
    d_member = al.enroll(al.d, "小明@D")
    for attempt in (
        lambda: al.link(al.d, d_member),
        lambda: al.earn(al.d, d_member, "d-1", amount=1),
        lambda: al.settle(al.d, datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)),
        lambda: al.run(al.d, program_admin.get_program, code=al.code),
    ):
        with pytest.raises(Exception, match="not found"):
            attempt()
    assert al.run(al.d, program_admin.list_programs) == []


# -- clearing -------------------------------------------------------------------------------------


def test_clearing_nets_positions_between_brands(al: Alliance, clock: FrozenClock) -> None:
    start = clock.now() - timedelta(days=1)
    al.link(al.b, al.members["b"])
    al.link(al.c, al.members["c"])
    al.earn(al.b, al.members["b"], "b-e", amount=100)  # 1.00 yuan funded by B
    clock.advance(seconds=1)
    al.earn(al.c, al.members["c"], "c-e", amount=50)  # 0.50 yuan funded by C
    # Same expiry day: the spend draws first in, B's lot, then C's.
    al.spend(al.c, al.members["c"], 120, "c-s")  # B→C 100, C→C 20
    al.spend(al.b, al.members["b"], 10, "b-s")  # C→B 10
    al.run(
        al.c, programs.refund, code=al.code, member_id=al.members["c"], key="c-r", spend_key="c-s", amount=30
    )
    # The refund gives back latest-drawn first: C's 20, then 10 of B's → B→C 90.
    end = clock.now() + timedelta(seconds=1)

    s = al.settle(None, start, end)

    B, C, H = f"brand:{al.b}", f"brand:{al.c}", f"brand:{al.host}"
    cells = {(f.funder, f.redeemer): (f.points, f.value) for f in s.flows}
    assert cells == {
        (B, C): (90, Decimal("0.90")),
        (C, C): (0, Decimal("0.00")),
        (C, B): (10, Decimal("0.10")),
    }
    positions = {p.party: p.net for p in s.positions}
    assert positions == {B: Decimal("-0.80"), C: Decimal("0.80")}
    assert sum(positions.values()) == 0
    (pair,) = s.pairs
    assert {pair.party_a, pair.party_b} == {B, C} and abs(pair.net) == Decimal("0.80")
    outstanding = {f.funder: f.outstanding_points for f in s.funders}
    assert outstanding == {B: 10, C: 40}  # 150 − 120 − 10 + 30 = 50 points still in lots
    assert s.operator == H and s.name_of(B).endswith(f"({al.codes[al.b]})")
    # Every brand of the programme reads the same settlement; it exports like brand clearing.
    assert al.settle(al.b, start, end).positions == s.positions
    rows = list(csv.reader(io.StringIO(clearing.to_csv(s).lstrip("\ufeff"))))
    assert [C, s.name_of(C), "0.90", "0.10", "0.80"] in rows


# -- concurrency ----------------------------------------------------------------------------------


def test_concurrent_spends_from_two_brands_never_overdraw(al: Alliance) -> None:
    al.link(al.b, al.members["b"])
    al.link(al.c, al.members["c"])
    al.earn(al.b, al.members["b"], "b-e", amount=10)

    def one(i: int) -> Any:
        brand, member = (al.b, al.members["b"]) if i % 2 else (al.c, al.members["c"])
        return al.spend(brand, member, 1, f"s-{i}")

    results = race(100, one)

    unexpected = [r for r in results if isinstance(r, Exception) and not isinstance(r, InsufficientPoints)]
    assert not unexpected, unexpected
    assert Counter(type(r).__name__ for r in results) == {"ProgramResult": 10, "InsufficientPoints": 90}
    assert al.points(al.b, al.members["b"]).balance.available == 0
    with al.db.unit_of_work(write=False) as s:
        spends = s.scalar(select(func.count()).where(PointProgramOperation.kind == "spend"))
        assert spends == 10
    check_ledger(al.db, al.host)

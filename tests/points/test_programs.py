"""Shared point programmes on both backends: members linked across brands, earning at one brand and
spending at another on one host account (ledger invariants hold), clearing between brands, per-brand
idempotency, tenancy isolation, concurrent spends from two brands, and the API's problem details;
checkout holds through a programme (quote, reserve, confirm, release, timeout, refund, per-brand keys,
50 concurrent reserves under one key), and the memory of brands outside every programme."""

from __future__ import annotations

import csv
import io
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import func, select

from huiyuan.jobs.context import JobContext
from huiyuan.jobs.registry import get_job
from huiyuan.kit.clock import FrozenClock
from huiyuan.kit.db import Database
from huiyuan.kit.errors import IdempotencyMismatch, NotFound
from huiyuan.kit.scope import SYSTEM, Principal, Scope, system_for_brand
from huiyuan.members import service as members
from huiyuan.members.models import Member
from huiyuan.members.schemas import MemberEnroll
from huiyuan.outbox.dispatcher import dispatch_pending
from huiyuan.outbox.models import OutboxEvent
from huiyuan.points import (
    clearing,
    program_admin,
    program_cache,
    program_checkout,
    program_clearing,
    program_handlers,
    programs,
)
from huiyuan.points.ledger import InsufficientPoints, ReservationClosed
from huiyuan.points.models import PointEntry, PointLot, PointReservation, PointType
from huiyuan.points.program_models import PointProgramLink, PointProgramOperation
from huiyuan.points.program_schemas import ParticipationIn, ParticipationUpdate, ProgramIn
from huiyuan.points.programs import MemberNotLinked, ProgramInactive
from tests.factories import make_brand, make_key
from tests.orders.helpers import order_body
from tests.points.helpers import MONTHLY, check_ledger, frozen_clock, race

PHONE = "13800138000"


@pytest.fixture
def clock() -> Iterator[FrozenClock]:
    with frozen_clock() as c:
        yield c


@pytest.fixture(autouse=True)
def _fresh_programme_memory() -> Iterator[None]:
    # Brand ids repeat across the tests' databases: no test starts with another's memory.
    program_cache.forget_all()
    yield
    program_cache.forget_all()


def _code(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


@dataclass
class Alliance:
    """A host brand H with the programme's point type, participants B and C, and outsider D."""

    db: Database
    code: str
    host: int
    b: int
    c: int
    d: int
    codes: dict[int, str]
    members: dict[str, int] = field(default_factory=dict)

    def actor(self, brand_id: int) -> Principal:
        return system_for_brand(brand_id)

    def run(self, brand_id: int | None, fn: Callable[..., Any], **kw: Any) -> Any:
        actor = SYSTEM if brand_id is None else self.actor(brand_id)
        with self.db.unit_of_work(actor.scope) as s:
            return fn(s, actor=actor, **kw)

    def enroll(self, brand_id: int, name: str, phone: str | None = PHONE) -> int:
        member = self.run(
            brand_id, members.enroll_member, data=MemberEnroll(enroll_channel="store", name=name, phone=phone)
        )
        return int(member.id)

    def link(self, brand_id: int, member_id: int) -> PointProgramLink:
        link, _created = self.run(brand_id, programs.link_member, code=self.code, member_id=member_id)
        return link

    def earn(self, brand_id: int, member_id: int, key: str, **kw: Any) -> programs.ProgramResult:
        return self.run(brand_id, programs.earn, code=self.code, member_id=member_id, key=key, **kw)

    def spend(
        self, brand_id: int, member_id: int, amount: int, key: str, **kw: Any
    ) -> programs.ProgramResult:
        return self.run(
            brand_id, programs.spend, code=self.code, member_id=member_id, amount=amount, key=key, **kw
        )

    def points(self, brand_id: int, member_id: int) -> Any:
        return self.run(brand_id, programs.member_points, code=self.code, member_id=member_id)

    def settle(self, brand_id: int | None, start: datetime, end: datetime) -> clearing.Settlement:
        return self.run(brand_id, program_clearing.settle, code=self.code, start=start, end=end)


def make_alliance(db: Database, *, fair_value: str = "0.01") -> Alliance:
    ids = [make_brand(db, _code(p)) for p in ("h", "b", "c", "d")]
    host, b, c, d = ids
    with db.unit_of_work(Scope(brand_id=host)) as s:
        s.add(
            PointType(
                brand_id=host,
                code="alliance",
                name="联盟积分",
                kind="spendable",
                fair_value=Decimal(fair_value),
                expiry_policy=MONTHLY,
            )
        )
    code = _code("al-")
    with db.unit_of_work() as s:
        from huiyuan.tenancy.models import Brand

        codes = {i: s.get(Brand, i).code for i in ids}  # type: ignore[union-attr]
        program_admin.create_program(
            s,
            actor=SYSTEM,
            data=ProgramIn(code=code, name="联盟", host_brand=codes[host], point_type="alliance"),
        )
        program_admin.add_brand(
            s, actor=SYSTEM, code=code, data=ParticipationIn(brand=codes[b], earn_rate=Decimal(2))
        )
        program_admin.add_brand(
            s, actor=SYSTEM, code=code, data=ParticipationIn(brand=codes[c], earn_rate=Decimal(1))
        )
    return Alliance(db=db, code=code, host=host, b=b, c=c, d=d, codes=codes)


@pytest.fixture
def al(db: Database, clock: FrozenClock) -> Alliance:
    alliance = make_alliance(db)
    alliance.members["b"] = alliance.enroll(alliance.b, "小明@B")
    alliance.members["c"] = alliance.enroll(alliance.c, "小明@C")
    return alliance


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


# -- the API --------------------------------------------------------------------------------------


def _headers(key: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **extra}


def test_api_round_trip_with_problem_details(client: Any, db: Database) -> None:
    al = make_alliance(db)
    platform = _headers(make_key(db, None, ["*"], name="platform"))
    hb, bb, cb, db_ = (_headers(make_key(db, i)) for i in (al.host, al.b, al.c, al.d))
    base = f"/api/v1/points/programs/{al.code}"

    # The platform manages programmes; a brand may not.
    body = {"code": "other", "name": "x", "host_brand": al.codes[al.host], "point_type": "alliance"}
    assert client.post("/api/v1/points/programs", json=body, headers=bb).status_code == 403
    dup = client.post("/api/v1/points/programs", json=body, headers=platform)
    assert dup.status_code == 409 and dup.json()["errors"][0]["field"] == "point_type"
    listed = client.get("/api/v1/points/programs", headers=bb).json()
    assert [p["code"] for p in listed] == [al.code]
    assert [p["role"] for p in listed[0]["brands"]] == ["participant"]  # B sees its own participation

    b_member = client.post(
        "/api/v1/members", json={"enroll_channel": "store", "phone": PHONE}, headers=bb
    ).json()
    c_member = client.post(
        "/api/v1/members", json={"enroll_channel": "store", "phone": PHONE}, headers=cb
    ).json()
    linked = client.post(base + "/links", json={"member_id": b_member["id"]}, headers=bb)
    assert linked.status_code == 201 and linked.json()["matched_by"] == "created"
    assert client.post(base + "/links", json={"member_id": b_member["id"]}, headers=bb).status_code == 200
    assert (
        client.post(base + "/links", json={"member_id": c_member["id"]}, headers=cb).json()["matched_by"]
        == "phone"
    )

    earn = {"idempotency_key": "b-ord-0001", "paid_amount": "12.34", "order_ref": "B-1"}
    first = client.post(f"{base}/members/{b_member['id']}/earn", json=earn, headers=bb)
    assert first.status_code == 201, first.text
    assert first.json()["points"] == 24  # 12.34 × 2, rounded down
    again = client.post(f"{base}/members/{b_member['id']}/earn", json=earn, headers=bb)
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    reused = client.post(
        f"{base}/members/{b_member['id']}/earn", json={**earn, "paid_amount": "20"}, headers=bb
    )
    assert reused.status_code == 422 and reused.json()["code"] == "idempotency-key-reused"

    bad = client.post(f"{base}/members/{b_member['id']}/earn", json={"idempotency_key": "k-0001"}, headers=bb)
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")
    no_key = client.post(f"{base}/members/{b_member['id']}/spend", json={"points": 1}, headers=bb)
    assert no_key.status_code == 422 and no_key.json()["errors"][0]["field"] == "idempotency_key"
    too_much = client.post(
        f"{base}/members/{c_member['id']}/spend",
        json={"idempotency_key": "c-pay-1", "points": 25},
        headers=cb,
    )
    assert too_much.status_code == 409 and too_much.json()["code"] == "insufficient-points"
    paid = client.post(
        f"{base}/members/{c_member['id']}/spend",
        json={"idempotency_key": "c-pay-2", "points": 20},
        headers=cb,
    )
    assert paid.status_code == 201 and paid.json()["balance"]["available"] == 4

    # C's member and link are not B's; D is not in the programme at all.
    assert client.get(f"{base}/links/{c_member['id']}", headers=bb).status_code == 404
    assert client.get(f"{base}/members/{c_member['id']}/points", headers=bb).status_code == 404
    view = client.get(f"{base}/members/{b_member['id']}/points", headers=bb).json()
    assert view["balance"]["available"] == 4 and [e["key"] for e in view["entries"]] == ["b-ord-0001"]
    for url in (base, base + "/clearing?from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z"):
        assert client.get(url, headers=db_).status_code == 404

    params = {"from": "2026-01-01T00:00:00Z", "to": "2099-01-01T00:00:00Z"}
    report = client.get(base + "/clearing", params=params, headers=hb)
    assert report.status_code == 200, report.text
    nets = {p["party"]: p["net"] for p in report.json()["positions"]}
    assert nets == {f"brand:{al.b}": "-0.20", f"brand:{al.c}": "0.20"}
    exported = client.get(base + "/clearing", params={**params, "format": "csv"}, headers=platform)
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    assert f"brand:{al.c}" in exported.text

    left = client.patch(f"{base}/brands/{al.codes[al.b]}", json={"status": "left"}, headers=platform)
    assert left.status_code == 200 and left.json()["left_at"] is not None
    refused = client.post(
        f"{base}/members/{b_member['id']}/spend", json={"idempotency_key": "b-pay-9", "points": 1}, headers=bb
    )
    assert refused.status_code == 409 and refused.json()["code"] == "program-inactive"
    host_leaves = client.patch(
        f"{base}/brands/{al.codes[al.host]}", json={"status": "left"}, headers=platform
    )
    assert host_leaves.status_code == 422
    # A brand in the programme may not manage it; a period is required for clearing.
    assert client.patch(base, json={"status": "closed"}, headers=cb).status_code == 403
    no_period = client.get(base + "/clearing", headers=cb)
    assert no_period.status_code == 422 and {e["field"] for e in no_period.json()["errors"]} == {"from", "to"}


# -- automatic earning from paid orders -----------------------------------------------------------


def test_paid_orders_earn_programme_points_once_and_refunds_take_them_back(client: Any, db: Database) -> None:
    al = make_alliance(db)
    bb = _headers(make_key(db, al.b))
    linked = al.enroll(al.b, "linked")
    unlinked = al.enroll(al.b, "not linked", phone="13700137000")
    al.link(al.b, linked)
    orders = {}
    for number, member in (("B-1", linked), ("B-2", unlinked)):
        body = order_body(number, store=f"{al.codes[al.b]}-s1", member_id=member)
        made = client.post("/api/v1/orders", json=body, headers=bb)
        assert made.status_code == 201, made.text
        orders[number] = made.json()["id"]

    dispatch_pending(db)
    dispatch_pending(db)  # nothing left to do: the event was handled once

    view = al.points(al.b, linked)
    assert view.balance.available == 360  # 180.00 paid × 2 points per yuan
    assert [(e.kind, e.amount, e.order_ref) for e in view.entries] == [("earn", 360, "B-1")]
    assert view.entries[0].key.startswith("order#")
    with db.unit_of_work(write=False) as s:
        ops = list(s.scalars(select(PointProgramOperation)))
        assert [(op.kind, op.member_id, op.paid_amount) for op in ops] == [
            ("earn", linked, Decimal("180.00"))
        ]

    # Refund one T-shirt (72.00 of 180.00): 40 % of the programme lot is taken back, then the rest.
    url = f"/api/v1/orders/{orders['B-1']}/refunds"
    one = {"refund_number": "RF-1", "items": [{"line_no": 1, "quantity": 1}]}
    assert client.post(url, json=one, headers=bb).status_code == 201
    dispatch_pending(db)
    dispatch_pending(db)
    assert al.points(al.b, linked).balance.available == 216  # 360 − 144
    assert client.post(url, json={"refund_number": "RF-2", "full": True}, headers=bb).status_code == 201
    dispatch_pending(db)
    view = al.points(al.b, linked)
    assert view.balance.available == 0
    assert [(e.kind, e.amount) for e in view.entries] == [("reverse", -216), ("reverse", -144), ("earn", 360)]
    check_ledger(db, al.host)


# -- checkout holds -------------------------------------------------------------------------------


def _reserve(al: Alliance, brand: int, member: int, amount: int, key: str, **kw: Any) -> Any:
    return al.run(
        brand, program_checkout.reserve, code=al.code, member_id=member, key=key, amount=amount, **kw
    )


def _settle(al: Alliance, brand: int, key: str, *, confirm: bool) -> Any:
    return al.run(brand, program_checkout.settle, code=al.code, reservation_key=key, confirm=confirm)


def _reservations(al: Alliance) -> dict[str, str]:
    """Host ledger reservation key → status."""
    with al.db.unit_of_work(Scope(brand_id=al.host), write=False) as s:
        return {r.key: r.status for r in s.scalars(select(PointReservation))}


def _ops(al: Alliance, brand: int) -> list[tuple[str, str, int]]:
    with al.db.unit_of_work(Scope(brand_id=brand), write=False) as s:
        rows = s.scalars(select(PointProgramOperation).order_by(PointProgramOperation.id))
        return [(op.kind, op.key, op.points) for op in rows]


def test_checkout_quote_reserve_confirm_release_through_the_programme(
    al: Alliance, clock: FrozenClock
) -> None:
    start = clock.now() - timedelta(days=1)
    al.link(al.b, al.members["b"])
    al.link(al.c, al.members["c"])
    al.earn(al.b, al.members["b"], "b-e", amount=300)  # funded by B

    quoted = al.run(
        al.c,
        program_checkout.quote,
        code=al.code,
        member_id=al.members["c"],
        cart_amount=Decimal("1.00"),
        max_points=80,
    )
    assert (quoted.program, quoted.member_id, quoted.available) == (al.code, al.members["c"], 300)
    assert quoted.usable_points == min(300, quoted.ratio_limit, 80)

    held = _reserve(al, al.c, al.members["c"], 100, "c-pos-1", order_ref="C-1")
    assert held.operation.kind == "reserve" and held.ledger.balance == {
        **held.ledger.balance,
        "available": 200,
        "reserved": 100,
    }
    out = program_checkout.reservation_out(held, "c-pos-1")
    assert (out.status, out.member_id, out.reservation_key) == ("held", al.members["c"], "c-pos-1")
    confirmed = _settle(al, al.c, "c-pos-1", confirm=True)
    assert confirmed.ledger.balance["reserved"] == 0 and confirmed.ledger.balance["available"] == 200
    assert program_checkout.reservation_out(confirmed, "c-pos-1").status == "confirmed"

    _reserve(al, al.c, al.members["c"], 50, "c-pos-2")
    released = _settle(al, al.c, "c-pos-2", confirm=False)
    assert released.ledger.balance == {**released.ledger.balance, "available": 200, "reserved": 0}
    with pytest.raises(ReservationClosed):  # released: it cannot be confirmed any more
        _settle(al, al.c, "c-pos-2", confirm=True)

    # Every step is C's programme operation; the view of C shows its own lines.
    assert _ops(al, al.c) == [
        ("reserve", "c-pos-1", 100),
        ("confirm", "c-pos-1#confirm", 100),
        ("reserve", "c-pos-2", 50),
        ("release", "c-pos-2#release", 50),
    ]
    kinds = [e.kind for e in al.points(al.c, al.members["c"]).entries]
    assert kinds == ["release", "reserve", "confirm", "reserve"]
    # The confirm is consumed at C: B, the funder, owes C the points' value.
    s = al.settle(None, start, clock.now() + timedelta(seconds=1))
    cells = {(f.funder, f.redeemer): f.points for f in s.flows}
    assert cells == {(f"brand:{al.b}", f"brand:{al.c}"): 100}
    # A confirmed reservation is refunded like a spend, to its lots.
    back = al.run(
        al.c,
        programs.refund,
        code=al.code,
        member_id=al.members["c"],
        key="c-ref-1",
        spend_key="c-pos-1",
        amount=40,
    )
    assert back.ledger.balance["available"] == 240
    s = al.settle(None, start, clock.now() + timedelta(seconds=1))
    assert {(f.funder, f.redeemer): f.points for f in s.flows} == {(f"brand:{al.b}", f"brand:{al.c}"): 60}
    check_ledger(al.db, al.host)


def test_checkout_is_idempotent_per_brand_and_a_brand_cannot_settle_anothers(al: Alliance) -> None:
    al.link(al.b, al.members["b"])
    al.link(al.c, al.members["c"])
    al.earn(al.b, al.members["b"], "b-e", amount=100)

    first = _reserve(al, al.b, al.members["b"], 30, "pos-1")
    again = _reserve(al, al.b, al.members["b"], 30, "pos-1")
    assert again.replayed and again.operation.id == first.operation.id
    assert again.ledger.to_json() == first.ledger.to_json()
    with pytest.raises(IdempotencyMismatch):
        _reserve(al, al.b, al.members["b"], 31, "pos-1")
    with pytest.raises(IdempotencyMismatch):  # a key used for an earn cannot name a reservation
        _reserve(al, al.b, al.members["b"], 30, "b-e")

    # C names its own reservations: B's "pos-1" is not C's to confirm or release.
    for confirm in (True, False):
        with pytest.raises(NotFound):
            _settle(al, al.c, "pos-1", confirm=confirm)
    with pytest.raises(NotFound):  # nor a brand outside the programme
        _settle(al, al.d, "pos-1", confirm=True)
    # The same key at C is C's own reservation.
    other = _reserve(al, al.c, al.members["c"], 20, "pos-1")
    assert other.operation.id != first.operation.id
    assert _reservations(al) == {
        f"program:{first.operation.program_id}:{al.b}:pos-1": "held",
        f"program:{first.operation.program_id}:{al.c}:pos-1": "held",
    }

    done = _settle(al, al.b, "pos-1", confirm=True)
    repeated = _settle(al, al.b, "pos-1", confirm=True)
    assert repeated.replayed and repeated.operation.id == done.operation.id
    with pytest.raises(ReservationClosed):
        _settle(al, al.b, "pos-1", confirm=False)
    assert _reservations(al)[f"program:{first.operation.program_id}:{al.c}:pos-1"] == "held"
    assert al.points(al.b, al.members["b"]).balance.available == 50
    check_ledger(al.db, al.host)


def test_a_left_brand_may_release_but_not_confirm(al: Alliance) -> None:
    al.link(al.b, al.members["b"])
    al.earn(al.b, al.members["b"], "b-e", amount=10)
    _reserve(al, al.b, al.members["b"], 4, "pos-1")
    _reserve(al, al.b, al.members["b"], 4, "pos-2")
    al.run(
        None,
        program_admin.update_participation,
        code=al.code,
        brand_code=al.codes[al.b],
        data=ParticipationUpdate(status="left"),
    )

    with pytest.raises(ProgramInactive):
        _settle(al, al.b, "pos-1", confirm=True)
    with pytest.raises(ProgramInactive):
        _reserve(al, al.b, al.members["b"], 1, "pos-3")
    assert _settle(al, al.b, "pos-1", confirm=False).ledger.balance["reserved"] == 4


def test_timed_out_programme_holds_are_released_by_the_hosts_sweep(al: Alliance, clock: FrozenClock) -> None:
    al.link(al.c, al.members["c"])
    al.earn(al.c, al.members["c"], "c-e", amount=50)
    _reserve(al, al.c, al.members["c"], 30, "pos-1", ttl_minutes=5)
    clock.advance(seconds=6 * 60)

    run = get_job("points.release_reservations")
    assert run is not None
    host = system_for_brand(al.host)
    ctx = JobContext(
        db=al.db,
        run_id=0,
        kind="points.release_reservations",
        brand_id=al.host,
        params={"at": clock.now().isoformat()},
        actor=host,
        state={},
    )
    assert run(ctx) == {"released": 1}

    assert set(_reservations(al).values()) == {"released"}
    assert al.points(al.c, al.members["c"]).balance.available == 50
    with pytest.raises(ReservationClosed):
        _settle(al, al.c, "pos-1", confirm=True)
    check_ledger(al.db, al.host)


def test_fifty_concurrent_reserves_under_one_key_hold_once(al: Alliance) -> None:
    al.link(al.c, al.members["c"])
    al.earn(al.c, al.members["c"], "c-e", amount=100)

    results = race(50, lambda _i: _reserve(al, al.c, al.members["c"], 10, "pos-race"))

    errors = [r for r in results if isinstance(r, Exception)]
    assert not errors, errors
    assert len({r.operation.id for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    assert [op for op in _ops(al, al.c) if op[0] == "reserve"] == [("reserve", "pos-race", 10)]
    assert len(_reservations(al)) == 1
    assert al.points(al.c, al.members["c"]).balance.reserved == 10
    check_ledger(al.db, al.host)


def test_checkout_api_round_trip(client: Any, db: Database) -> None:
    al = make_alliance(db)
    bb, cb = (_headers(make_key(db, i)) for i in (al.b, al.c))
    base = f"/api/v1/points/programs/{al.code}"
    member = al.enroll(al.b, "小明@B")
    c_member = al.enroll(al.c, "小明@C")
    al.link(al.b, member)
    al.earn(al.b, member, "b-e", amount=500)

    quote = client.post(
        base + "/checkout/quote", json={"member_id": member, "cart_amount": "10.00"}, headers=bb
    )
    assert quote.status_code == 200, quote.text
    assert quote.json()["available"] == 500 and quote.json()["program"] == al.code
    body = {"idempotency_key": "B-POS-0001", "member_id": member, "points": 120, "order_ref": "B-1"}
    held = client.post(base + "/checkout/reserve", json=body, headers=bb)
    assert held.status_code == 201, held.text
    assert (held.json()["status"], held.json()["balance"]["reserved"]) == ("held", 120)
    again = client.post(base + "/checkout/reserve", json=body, headers=bb)
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    reused = client.post(base + "/checkout/reserve", json={**body, "points": 121}, headers=bb)
    assert reused.status_code == 422 and reused.json()["code"] == "idempotency-key-reused"
    no_key = client.post(base + "/checkout/reserve", json={"member_id": member, "points": 1}, headers=bb)
    assert no_key.status_code == 422 and no_key.json()["errors"][0]["field"] == "idempotency_key"
    not_linked = client.post(
        base + "/checkout/reserve",
        json={**body, "member_id": c_member, "idempotency_key": "C-POS-1"},
        headers=cb,
    )
    assert not_linked.status_code == 409 and not_linked.json()["code"] == "member-not-linked"

    assert client.post(base + "/checkout/B-POS-0001/confirm", headers=cb).status_code == 404
    confirmed = client.post(base + "/checkout/B-POS-0001/confirm", headers=bb)
    assert confirmed.status_code == 200 and confirmed.json()["status"] == "confirmed"
    repeat = client.post(base + "/checkout/B-POS-0001/confirm", headers=bb)
    assert repeat.status_code == 200 and repeat.headers["Idempotent-Replayed"] == "true"
    closed = client.post(base + "/checkout/B-POS-0001/release", headers=bb)
    assert closed.status_code == 409 and closed.json()["code"] == "reservation-closed"
    assert closed.headers["content-type"].startswith("application/problem+json")


# -- automatic earning: brands outside every programme --------------------------------------------


def _paid(brand_id: int, member_id: int, order_id: int) -> OutboxEvent:
    return OutboxEvent(
        brand_id=brand_id,
        type="order.paid",
        aggregate_type="order",
        aggregate_id=str(order_id),
        payload={"member_id": member_id, "order_id": order_id, "paid_amount": "10.00", "order_number": "N"},
    )


def _queries(al: Alliance, brand_id: int, event: OutboxEvent) -> int:
    """SQL statements the order.paid handler runs for the event."""
    seen: list[str] = []

    def count(*args: Any) -> None:
        seen.append(args[2])

    engine = al.db.engine
    sa_event.listen(engine, "before_cursor_execute", count)
    try:
        with al.db.unit_of_work(Scope(brand_id=brand_id)) as s:
            program_handlers.earn_programme_points_on_order_paid(s, event)
    finally:
        sa_event.remove(engine, "before_cursor_execute", count)
    return len([q for q in seen if "point_program" in q])


def test_paid_orders_of_brands_in_no_programme_cost_no_query_once_known(
    al: Alliance, clock: FrozenClock
) -> None:
    outsider = al.enroll(al.d, "小明@D")
    assert _queries(al, al.d, _paid(al.d, outsider, 1)) == 1  # learnt once …
    assert _queries(al, al.d, _paid(al.d, outsider, 2)) == 0  # … then answered from memory
    clock.advance(seconds=program_cache.TTL_SECONDS + 1)
    assert _queries(al, al.d, _paid(al.d, outsider, 3)) == 1  # the memory expires

    # D joins (in this process): its very next paid order earns, with no wait for the memory to expire.
    assert _queries(al, al.d, _paid(al.d, outsider, 4)) == 0
    al.run(
        None,
        program_admin.add_brand,
        code=al.code,
        data=ParticipationIn(brand=al.codes[al.d], earn_rate=Decimal(1)),
    )
    al.link(al.d, outsider)
    assert _queries(al, al.d, _paid(al.d, outsider, 5)) > 0
    assert al.points(al.d, outsider).balance.available == 10
    # A brand in a programme is looked up each time (nothing stale is earned after it leaves).
    assert _queries(al, al.d, _paid(al.d, outsider, 6)) > 0
    al.run(
        None,
        program_admin.update_participation,
        code=al.code,
        brand_code=al.codes[al.d],
        data=ParticipationUpdate(status="left"),
    )
    with al.db.unit_of_work(Scope(brand_id=al.d)) as s:
        program_handlers.earn_programme_points_on_order_paid(s, _paid(al.d, outsider, 7))
    assert al.points(al.d, outsider).balance.available == 20

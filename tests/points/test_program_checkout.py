"""Checkout holds through a shared point programme on both backends: quote, reserve, confirm,
release, timeout, refund, per-brand keys, a brand that left, 50 concurrent reserves under one key,
and the checkout API with its problem details."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from huiyuan.jobs.context import JobContext
from huiyuan.jobs.registry import get_job
from huiyuan.kit.clock import FrozenClock
from huiyuan.kit.db import Database
from huiyuan.kit.errors import IdempotencyMismatch, NotFound
from huiyuan.kit.scope import Scope, system_for_brand
from huiyuan.points import program_admin, program_checkout, programs
from huiyuan.points.ledger import ReservationClosed
from huiyuan.points.models import PointReservation
from huiyuan.points.program_models import PointProgramOperation
from huiyuan.points.program_schemas import ParticipationUpdate
from huiyuan.points.programs import ProgramInactive
from tests.factories import make_key
from tests.points.helpers import check_ledger, race
from tests.points.program_helpers import Alliance, api_headers, make_alliance

pytestmark = pytest.mark.usefixtures("fresh_programme_memory")


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
    bb, cb = (api_headers(make_key(db, i)) for i in (al.b, al.c))
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

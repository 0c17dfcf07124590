"""The points mall: gifts, the stock ledger, third-party codes and redemptions (points only and
points + cash), on SQLite and PostgreSQL, through the service and the HTTP API."""

from __future__ import annotations

import io
import itertools
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from huiyuan.kit.db import Database
from huiyuan.kit.errors import AppError, IdempotencyMismatch, ValidationFailed
from huiyuan.kit.scope import Principal
from huiyuan.points import ledger, mall, mall_repository, mall_views
from huiyuan.points.ledger import InsufficientPoints
from huiyuan.points.mall_models import MallGift, MallGiftCode, MallRedemption, MallStockEntry
from huiyuan.points.mall_schemas import GiftIn, GiftUpdate, RedemptionOut
from tests.conftest import World
from tests.factories import enroll
from tests.points.helpers import T0, PointsBrand, check_ledger, frozen_clock, make_points_brand, race

_n = itertools.count(1)


# -- service-level helpers --------------------------------------------------------------------------


def _brand(db: Database, members: int = 2, points: int = 1000) -> PointsBrand:
    pb = make_points_brand(db, members_count=members)
    for m in pb.members:
        pb.earn(m, points, f"seed-{m}")
    return pb


def add_gift(pb: PointsBrand, **fields: Any) -> int:
    body = {
        "code": f"G{next(_n)}",
        "name": "会员马克杯",
        "kind": "physical",
        "point_type": "pts",
        "points_price": 100,
        "stock": 10,
        **fields,
    }
    with pb.db.unit_of_work(pb.actor.scope) as s:
        return mall.create_gift(s, actor=pb.actor, data=GiftIn.model_validate(body)).id


def redeem(
    pb: PointsBrand, member: int, gift_id: int, key: str, quantity: int = 1, actor: Principal | None = None
) -> tuple[RedemptionOut, bool]:
    with pb.db.unit_of_work(pb.actor.scope) as s:
        done = mall.redeem(
            s, actor=actor or pb.actor, member_id=member, gift_id=gift_id, quantity=quantity, key=key
        )
        return mall_views.redemption_out(s, done.redemption), done.replayed


def pay(pb: PointsBrand, redemption_id: int, ref: str = "PAY-1", **kw: Any) -> RedemptionOut:
    with pb.db.unit_of_work(pb.actor.scope) as s:
        done = mall.pay_redemption(
            s, actor=pb.actor, redemption_id=redemption_id, payment_reference=ref, **kw
        )
        return mall_views.redemption_out(s, done.redemption)


def cancel(pb: PointsBrand, redemption_id: int, reason: str = "会员申请") -> RedemptionOut:
    with pb.db.unit_of_work(pb.actor.scope) as s:
        done = mall.cancel_redemption(s, actor=pb.actor, redemption_id=redemption_id, reason=reason)
        return mall_views.redemption_out(s, done.redemption)


def stock(pb: PointsBrand, gift_id: int) -> int:
    """The gift's cached stock, after checking it against Σ entries (and the free codes)."""
    with pb.db.unit_of_work(pb.actor.scope, write=False) as s:
        gift = s.get(MallGift, gift_id)
        assert gift is not None
        totals = mall_repository.MallRepository(s).stock_totals(gift_id)
        assert gift.stock_available == totals["entries"] >= 0, (gift.stock_available, totals)
        if gift.kind == "third_party_code":
            assert totals.get("codes_available", 0) == gift.stock_available, totals
        return gift.stock_available


def stock_kinds(pb: PointsBrand, gift_id: int) -> list[tuple[str, int]]:
    with pb.db.unit_of_work(pb.actor.scope, write=False) as s:
        rows = s.execute(
            select(MallStockEntry.kind, MallStockEntry.quantity)
            .where(MallStockEntry.gift_id == gift_id)
            .order_by(MallStockEntry.id)
        ).all()
        return [(k, q) for k, q in rows]


def import_codes(pb: PointsBrand, gift_id: int, text: str) -> Any:
    with pb.db.unit_of_work(pb.actor.scope) as s:
        return mall.import_codes(s, actor=pb.actor, gift_id=gift_id, content=text.encode(), filename="c.csv")


def code_of(error: BaseException) -> str:
    assert isinstance(error, AppError), error
    return error.code


# -- points only ------------------------------------------------------------------------------------


def test_points_only_redeem_and_cancel(db: Database) -> None:
    pb = _brand(db)
    m = pb.members[0]
    gift = add_gift(pb, points_price=120, stock=5)
    out, replayed = redeem(pb, m, gift, "k-0001", quantity=2)
    assert not replayed
    assert (out.status, out.points, out.quantity, out.cash_amount) == ("completed", 240, 2, 0)
    assert pb.balance(m)["available"] == 760
    assert stock(pb, gift) == 3
    spend = pb.entries(kind="spend")
    assert len(spend) == 1 and (spend[0].source_type, spend[0].amount) == ("mall", -240)

    # the same key and request: the first result; another request under it: refused
    again, replayed = redeem(pb, m, gift, "k-0001", quantity=2)
    assert replayed and again.id == out.id
    with pytest.raises(IdempotencyMismatch):
        redeem(pb, m, gift, "k-0001", quantity=1)
    assert pb.balance(m)["available"] == 760 and stock(pb, gift) == 3

    back = cancel(pb, out.id)
    assert (back.status, back.points_restored, back.stock_returned) == ("cancelled", 240, 2)
    assert pb.balance(m)["available"] == 1000
    assert stock(pb, gift) == 5
    assert cancel(pb, out.id).status == "cancelled"  # repeating changes nothing
    assert pb.balance(m)["available"] == 1000 and stock(pb, gift) == 5
    assert stock_kinds(pb, gift) == [("restock", 5), ("redeem", -2), ("return", 2)]
    check_ledger(db, pb.brand_id)


def test_insufficient_points_change_nothing(db: Database) -> None:
    pb = _brand(db, points=150)
    gift = add_gift(pb, points_price=100, stock=5)
    with pytest.raises(InsufficientPoints):
        redeem(pb, pb.members[0], gift, "k-poor", quantity=2)
    assert stock(pb, gift) == 5 and pb.balance(pb.members[0])["available"] == 150
    # the key was not used up by the failure
    assert redeem(pb, pb.members[0], gift, "k-poor", quantity=1)[0].points == 100


def test_cancel_gives_points_back_to_their_lots_expiring_the_dead_ones(db: Database) -> None:
    with frozen_clock(T0) as clock:
        pb = _brand(db, points=100)
        m = pb.members[0]
        gift = add_gift(pb, points_price=100, stock=1)
        out, _ = redeem(pb, m, gift, "k-old")
        clock.advance(days=40)  # the lot the points came from has expired since
        back = cancel(pb, out.id)
    assert back.status == "cancelled" and back.points_restored == 100
    assert pb.balance(m)["available"] == 0
    assert pb.account(m).expired_total == 100
    assert stock(pb, gift) == 1
    check_ledger(db, pb.brand_id)


# -- points + cash ----------------------------------------------------------------------------------


def test_points_and_cash_pay_then_take_back(db: Database) -> None:
    pb = _brand(db)
    m = pb.members[0]
    gift = add_gift(pb, points_price=300, cash_price="9.90", stock=2, payment_minutes=10)
    out, _ = redeem(pb, m, gift, "k-cash")
    assert (out.status, out.points, str(out.cash_amount)) == ("awaiting_payment", 300, "9.90")
    assert out.pay_by is not None
    assert pb.balance(m)["available"] == 700 and pb.balance(m)["reserved"] == 300
    assert stock(pb, gift) == 1

    with pytest.raises(ValidationFailed):
        pay(pb, out.id, amount="9.00")
    paid = pay(pb, out.id, "WX-1", amount="9.90")
    assert (paid.status, paid.payment_reference) == ("completed", "WX-1")
    assert pb.balance(m) == {"available": 700, "pending": 0, "frozen": 0, "reserved": 0, "debt": 0}
    assert pay(pb, out.id, "WX-1").status == "completed"  # a retry
    with pytest.raises(mall.RedemptionClosed):
        pay(pb, out.id, "WX-2")
    assert stock(pb, gift) == 1

    back = cancel(pb, out.id)
    assert back.status == "cancelled" and pb.balance(m)["available"] == 1000
    assert stock(pb, gift) == 2
    assert stock_kinds(pb, gift) == [("restock", 2), ("reserve", -1), ("return", 1)]
    check_ledger(db, pb.brand_id)


def test_unpaid_cancel_and_payment_timeout(db: Database) -> None:
    with frozen_clock(T0) as clock:
        pb = _brand(db)
        m = pb.members[0]
        gift = add_gift(pb, points_price=300, cash_price="5.00", stock=2, payment_minutes=10)
        first, _ = redeem(pb, m, gift, "k-unpaid")
        back = cancel(pb, first.id)
        assert (back.status, back.points_restored, back.stock_returned) == ("cancelled", 300, 1)
        assert pb.balance(m)["available"] == 1000 and stock(pb, gift) == 2
        with pytest.raises(mall.RedemptionClosed):
            pay(pb, first.id)

        late, _ = redeem(pb, m, gift, "k-late")
        clock.advance(minutes=11)
        with pytest.raises(mall.RedemptionClosed):
            pay(pb, late.id)
        with pb.db.unit_of_work(pb.actor.scope, write=False) as s:
            assert mall_views.redemption_out(s, mall.get_redemption(s, late.id)).status == "expired"
        with pb.db.unit_of_work(pb.actor.scope) as s:
            assert mall.expire_overdue_redemptions(s, actor=pb.actor) == 1
            assert ledger.release_due_reservations(s, actor=pb.actor, now=clock.now()) == 1
        with pb.db.unit_of_work(pb.actor.scope) as s:
            assert mall.expire_overdue_redemptions(s, actor=pb.actor) == 0
        assert stock(pb, gift) == 2
        assert pb.balance(m)["available"] == 1000 and pb.balance(m)["reserved"] == 0
        assert cancel(pb, late.id).status == "expired"
    check_ledger(db, pb.brand_id)


def test_overdue_redemptions_free_stock_for_the_next_buyer(db: Database) -> None:
    with frozen_clock(T0) as clock:
        pb = _brand(db)
        a, b = pb.members
        gift = add_gift(pb, points_price=100, cash_price="1.00", stock=1, payment_minutes=5)
        redeem(pb, a, gift, "k-a")
        with pytest.raises(mall.OutOfStock):
            redeem(pb, b, gift, "k-b")
        clock.advance(minutes=5)
        out, _ = redeem(pb, b, gift, "k-b2")
        assert out.status == "awaiting_payment" and stock(pb, gift) == 0


# -- limits and the sale window ---------------------------------------------------------------------


def test_limits_per_member_in_all_and_per_local_day(db: Database) -> None:
    # T0 is 12:00 in Asia/Shanghai; the brand-local day turns at 16:00 UTC.
    with frozen_clock(T0) as clock:
        pb = _brand(db)
        a, b = pb.members
        gift = add_gift(pb, points_price=10, stock=50, limit_per_member=3, limit_per_member_per_day=2)
        redeem(pb, a, gift, "l-1", quantity=2)
        with pytest.raises(mall.RedemptionLimitReached) as day:
            redeem(pb, a, gift, "l-2")
        assert day.value.extra["period"] == "day"
        redeem(pb, b, gift, "l-b")  # another member's count is their own
        clock.advance(hours=12, minutes=1)  # 00:01 the next local day
        out, _ = redeem(pb, a, gift, "l-3")
        with pytest.raises(mall.RedemptionLimitReached) as total:
            redeem(pb, a, gift, "l-4")
        assert total.value.extra["period"] == "total"
        cancel(pb, out.id)  # a cancelled redemption no longer counts
        redeem(pb, a, gift, "l-5")
    assert stock(pb, gift) == 46


def test_sale_window_and_status(db: Database) -> None:
    with frozen_clock(T0) as clock:
        pb = _brand(db)
        m = pb.members[0]
        gift = add_gift(
            pb, sale_from=(T0 + timedelta(hours=1)).isoformat(), sale_to=(T0 + timedelta(hours=2)).isoformat()
        )
        with pytest.raises(mall.GiftNotOnSale) as early:
            redeem(pb, m, gift, "w-1")
        assert early.value.extra["reason"] == "not_started"
        clock.advance(hours=1)
        redeem(pb, m, gift, "w-2")
        with pb.db.unit_of_work(pb.actor.scope) as s:
            mall.update_gift(s, actor=pb.actor, gift_id=gift, data=GiftUpdate(status="paused"))
        with pytest.raises(mall.GiftNotOnSale):
            redeem(pb, m, gift, "w-3")
        with pb.db.unit_of_work(pb.actor.scope) as s:
            mall.update_gift(s, actor=pb.actor, gift_id=gift, data=GiftUpdate(status="active"))
        clock.advance(hours=1)  # sale_to is exclusive
        with pytest.raises(mall.GiftNotOnSale) as late:
            redeem(pb, m, gift, "w-4")
        assert late.value.extra["reason"] == "ended"
        with pb.db.unit_of_work(pb.actor.scope, write=False) as s:
            assert mall.list_gifts_on_sale(s, after_id=None, limit=10) == []


# -- the stock ledger -------------------------------------------------------------------------------


def test_stock_ledger_keeps_the_cache_equal_to_its_entries(db: Database) -> None:
    pb = _brand(db)
    gift = add_gift(pb, stock=0)
    with pytest.raises(mall.OutOfStock):
        redeem(pb, pb.members[0], gift, "s-1")
    with pb.db.unit_of_work(pb.actor.scope) as s:
        mall.restock(s, actor=pb.actor, gift_id=gift, quantity=4, reason="到货")
    redeem(pb, pb.members[0], gift, "s-2", quantity=3)
    with pb.db.unit_of_work(pb.actor.scope) as s, pytest.raises(mall.OutOfStock):
        mall.restock(s, actor=pb.actor, gift_id=gift, quantity=-2, reason="破损")
    with pb.db.unit_of_work(pb.actor.scope) as s:
        mall.restock(s, actor=pb.actor, gift_id=gift, quantity=-1, reason="破损")
    assert stock(pb, gift) == 0
    with pytest.raises(mall.OutOfStock):
        redeem(pb, pb.members[1], gift, "s-3")
    assert stock_kinds(pb, gift) == [("restock", 4), ("redeem", -3), ("adjust", -1)]
    with pb.db.unit_of_work(pb.actor.scope, write=False) as s:
        balances = s.scalars(
            select(MallStockEntry.balance_after)
            .where(MallStockEntry.gift_id == gift)
            .order_by(MallStockEntry.id)
        ).all()
    assert balances == [4, 1, 0]


def test_thirty_members_race_for_the_last_three(db: Database) -> None:
    pb = _brand(db, members=30, points=500)
    gift = add_gift(pb, points_price=200, stock=3)

    results = race(30, lambda i: redeem(pb, pb.members[i], gift, f"race-{i}")[0])
    won = [r for r in results if isinstance(r, RedemptionOut)]
    lost = [r for r in results if not isinstance(r, RedemptionOut)]
    assert len(won) == 3, results
    assert {code_of(e) for e in lost} == {"out-of-stock"}
    assert stock(pb, gift) == 0
    spent = {pb.members.index(r.member_id) for r in won}
    for i, m in enumerate(pb.members):
        assert pb.balance(m)["available"] == (300 if i in spent else 500)
    with pb.db.unit_of_work(pb.actor.scope, write=False) as s:
        assert s.scalar(select(func.count()).select_from(MallRedemption)) == 3
    check_ledger(db, pb.brand_id)


def test_same_key_racing_lands_once(db: Database) -> None:
    pb = _brand(db)
    gift = add_gift(pb, stock=5)
    results = race(10, lambda i: redeem(pb, pb.members[0], gift, "same-key"))
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert len({out.id for out, _ in results}) == 1
    assert sorted(replayed for _, replayed in results) == [False] + [True] * 9
    assert stock(pb, gift) == 4 and pb.balance(pb.members[0])["available"] == 900


# -- third-party codes ------------------------------------------------------------------------------


def test_code_import_is_idempotent_and_reports(db: Database) -> None:
    pb = _brand(db)
    gift = add_gift(pb, kind="third_party_code", stock=0)
    first = import_codes(pb, gift, "code\nAAA-1\nAAA-2\n\nAAA-2\nhas space\nAAA-3,extra\n")
    assert (first.added, first.duplicates, first.invalid) == (3, 1, 1)
    assert [e.line for e in first.errors] == [6]
    again = import_codes(pb, gift, "AAA-1\nAAA-2\nAAA-3\nAAA-4\n")
    assert (again.added, again.duplicates, again.invalid, again.stock_available) == (1, 3, 0, 4)
    assert stock(pb, gift) == 4
    with pb.db.unit_of_work(pb.actor.scope) as s, pytest.raises(ValidationFailed):
        mall.restock(s, actor=pb.actor, gift_id=gift, quantity=5, reason=None)
    physical = add_gift(pb)
    with pytest.raises(ValidationFailed):
        import_codes(pb, physical, "X-1\n")
    with pytest.raises(ValidationFailed):
        add_gift(pb, kind="third_party_code", stock=3)


def test_twenty_members_race_for_five_codes(db: Database) -> None:
    pb = _brand(db, members=20, points=500)
    gift = add_gift(pb, kind="third_party_code", stock=0, points_price=50)
    import_codes(pb, gift, "".join(f"CODE-{n}\n" for n in range(5)))

    results = race(20, lambda i: redeem(pb, pb.members[i], gift, f"code-{i}")[0])
    won = [r for r in results if isinstance(r, RedemptionOut)]
    assert len(won) == 5, results
    assert {code_of(e) for e in results if not isinstance(e, RedemptionOut)} == {"out-of-stock"}
    codes = [c for r in won for c in r.codes]
    assert sorted(codes) == [f"CODE-{n}" for n in range(5)]
    assert stock(pb, gift) == 0
    with pb.db.unit_of_work(pb.actor.scope, write=False) as s:
        rows = s.execute(select(MallGiftCode.status, MallGiftCode.redemption_id)).all()
    assert {status for status, _ in rows} == {"assigned"}
    assert len({rid for _, rid in rows}) == 5


def test_codes_with_cash_are_held_until_paid_and_revealed_codes_do_not_return(db: Database) -> None:
    pb = _brand(db)
    m = pb.members[0]
    gift = add_gift(pb, kind="third_party_code", stock=0, cash_price="2.00")
    import_codes(pb, gift, "C-1\nC-2\n")
    held, _ = redeem(pb, m, gift, "c-held")
    assert held.codes == [] and stock(pb, gift) == 1
    cancel(pb, held.id)
    assert stock(pb, gift) == 2  # the held code is free again

    out, _ = redeem(pb, m, gift, "c-paid")
    paid = pay(pb, out.id)
    assert len(paid.codes) == 1
    back = cancel(pb, out.id)
    assert back.codes == paid.codes and back.stock_returned == 0
    assert stock(pb, gift) == 1
    assert pb.balance(m)["available"] == 1000


# -- HTTP -------------------------------------------------------------------------------------------


def _api_setup(client: Any, h: dict[str, str], points: int = 1000) -> int:
    body = {"code": "points", "name": "积分", "kind": "spendable"}
    assert client.post("/api/v1/points/types", json=body, headers=h).status_code == 201
    member = enroll(client, h, name="甲")["id"]
    grant = {"idempotency_key": f"seed-{member}", "point_type": "points", "amount": points, "reason": "x"}
    assert client.post(f"/api/v1/members/{member}/points/grant", json=grant, headers=h).status_code == 201
    return int(member)


def _api_gift(client: Any, h: dict[str, str], **fields: Any) -> dict[str, Any]:
    body = {"code": f"G{next(_n)}", "name": "杯子", "kind": "physical", "point_type": "points"}
    body |= {"points_price": 100, "stock": 3, **fields}
    r = client.post("/api/v1/points/mall/gifts", json=body, headers=h)
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_api_gifts_redeem_pay_cancel(client: Any, world: World) -> None:
    h = world.brands[0].headers
    m = _api_setup(client, h)
    gift = _api_gift(client, h, cash_price="9.9")
    assert (gift["payment_mode"], gift["cash_price"], gift["stock_available"]) == ("points_cash", "9.90", 3)
    listed = client.get("/api/v1/points/mall/gifts", params={"kind": "physical"}, headers=h).json()
    assert [g["id"] for g in listed["items"]] == [gift["id"]]
    patched = client.patch(f"/api/v1/points/mall/gifts/{gift['id']}", json={"name": "新杯子"}, headers=h)
    assert patched.json()["name"] == "新杯子"
    restocked = client.post(
        f"/api/v1/points/mall/gifts/{gift['id']}/restock", json={"quantity": 2}, headers=h
    )
    assert restocked.json() == {"gift_id": gift["id"], "kind": "restock", "quantity": 2, "stock_available": 5}

    url = f"/api/v1/members/{m}/points/mall/redeem"
    r = client.post(url, json={"gift_id": gift["id"]}, headers={**h, "Idempotency-Key": "api-redeem-1"})
    assert r.status_code == 201, r.text
    red = r.json()
    assert red["status"] == "awaiting_payment" and red["cash_amount"] == "9.90"
    replay = client.post(url, json={"gift_id": gift["id"], "idempotency_key": "api-redeem-1"}, headers=h)
    assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json()["id"] == red["id"]
    reused = client.post(
        url, json={"gift_id": gift["id"], "quantity": 2, "idempotency_key": "api-redeem-1"}, headers=h
    )
    assert reused.status_code == 422 and reused.json()["code"] == "idempotency-key-reused"

    rid = red["id"]
    assert (
        client.get(f"/api/v1/points/mall/redemptions/{rid}", headers=h).json()["status"] == "awaiting_payment"
    )
    paid = client.post(
        f"/api/v1/points/mall/redemptions/{rid}/pay", json={"payment_reference": "WX-9"}, headers=h
    )
    assert paid.status_code == 200 and paid.json()["status"] == "completed"
    again = client.post(
        f"/api/v1/points/mall/redemptions/{rid}/pay", json={"payment_reference": "WX-9"}, headers=h
    )
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert client.get(f"/api/v1/members/{m}/points", headers=h).json()["balances"][0]["available"] == 900
    cancelled = client.post(
        f"/api/v1/points/mall/redemptions/{rid}/cancel", json={"reason": "退货"}, headers=h
    )
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert client.get(f"/api/v1/members/{m}/points", headers=h).json()["balances"][0]["available"] == 1000
    assert client.get(f"/api/v1/points/mall/gifts/{gift['id']}", headers=h).json()["stock_available"] == 5

    out = client.post(
        url, json={"gift_id": gift["id"], "idempotency_key": "api-redeem-2", "quantity": 99}, headers=h
    )
    assert out.status_code == 409 and out.json()["code"] == "out-of-stock"
    assert out.headers["content-type"].startswith("application/problem+json")


def test_api_code_upload(client: Any, world: World) -> None:
    h = world.brands[0].headers
    _api_setup(client, h)
    gift = _api_gift(client, h, kind="third_party_code", stock=0)
    url = f"/api/v1/points/mall/gifts/{gift['id']}/codes"
    csv_body = b"code\nX-1\nX-2\nX 3\n"
    first = client.post(url, files={"file": ("codes.csv", io.BytesIO(csv_body), "text/csv")}, headers=h)
    assert first.status_code == 200, first.text
    assert {k: first.json()[k] for k in ("added", "duplicates", "invalid", "stock_available")} == {
        "added": 2,
        "duplicates": 0,
        "invalid": 1,
        "stock_available": 2,
    }
    second = client.post(url, files={"file": ("codes.csv", io.BytesIO(csv_body), "text/csv")}, headers=h)
    assert (second.json()["added"], second.json()["duplicates"]) == (0, 2)
    missing = client.post(url, headers=h)
    assert missing.status_code == 422
    restock = client.post(f"/api/v1/points/mall/gifts/{gift['id']}/restock", json={"quantity": 1}, headers=h)
    assert restock.status_code == 422 and restock.json()["errors"][0]["code"] == "codes-only"


def test_api_validation_errors(client: Any, world: World) -> None:
    h = world.brands[0].headers
    m = _api_setup(client, h)
    base = {"code": "BAD", "name": "x", "kind": "physical", "point_type": "points", "points_price": 10}
    for change, bad_field in (
        ({"points_price": 0}, "points_price"),
        ({"kind": "coupon"}, "kind"),
        ({"cash_price": "-1"}, "cash_price"),
        ({"cash_price": "1.234"}, "cash_price"),
        ({"code": "has space"}, "code"),
        ({"point_type": "nope"}, "point_type"),
        ({"sale_from": "2026-02-01T00:00:00Z", "sale_to": "2026-01-01T00:00:00Z"}, "sale_to"),
        ({"sale_from": "2026-02-01T00:00:00"}, "sale_from"),
        ({"limit_per_member": 0}, "limit_per_member"),
    ):
        r = client.post("/api/v1/points/mall/gifts", json={**base, **change}, headers=h)
        assert r.status_code == 422, (change, r.text)
        assert bad_field in {e["field"].split(".")[-1] for e in r.json()["errors"]}, (change, r.json())
    gift = _api_gift(client, h)
    dup = client.post("/api/v1/points/mall/gifts", json={**base, "code": gift["code"]}, headers=h)
    assert dup.status_code == 409
    url = f"/api/v1/members/{m}/points/mall/redeem"
    no_key = client.post(url, json={"gift_id": gift["id"]}, headers=h)
    assert no_key.status_code == 422 and no_key.json()["errors"][0]["code"] == "required"
    bad_key = client.post(
        url, json={"gift_id": gift["id"]}, headers={**h, "Idempotency-Key": "bad key with spaces"}
    )
    assert bad_key.status_code == 422
    zero = client.post(
        url, json={"gift_id": gift["id"], "quantity": 0, "idempotency_key": "zero-qty"}, headers=h
    )
    assert zero.status_code == 422
    both = client.post(
        url,
        json={"gift_id": gift["id"], "idempotency_key": "key-one"},
        headers={**h, "Idempotency-Key": "key-two2"},
    )
    assert both.status_code == 422 and both.json()["errors"][0]["code"] == "conflicting"


def test_api_other_brand_sees_404(client: Any, world: World) -> None:
    a, b = world.brands[0].headers, world.brands[1].headers
    m = _api_setup(client, a)
    mb = _api_setup(client, b)
    gift = _api_gift(client, a)
    red = client.post(
        f"/api/v1/members/{m}/points/mall/redeem",
        json={"gift_id": gift["id"], "idempotency_key": "a-1111"},
        headers=a,
    ).json()
    for method, path, body in (
        ("GET", f"/api/v1/points/mall/gifts/{gift['id']}", None),
        ("PATCH", f"/api/v1/points/mall/gifts/{gift['id']}", {"name": "偷改"}),
        ("POST", f"/api/v1/points/mall/gifts/{gift['id']}/restock", {"quantity": 5}),
        (
            "POST",
            f"/api/v1/members/{mb}/points/mall/redeem",
            {"gift_id": gift["id"], "idempotency_key": "b-1111"},
        ),
        ("GET", f"/api/v1/points/mall/redemptions/{red['id']}", None),
        ("POST", f"/api/v1/points/mall/redemptions/{red['id']}/cancel", {"reason": "x"}),
        ("POST", f"/api/v1/points/mall/redemptions/{red['id']}/pay", {"payment_reference": "P"}),
    ):
        r = client.request(method, path, json=body, headers=b)
        assert r.status_code == 404, (method, path, r.text)
    assert client.get("/api/v1/points/mall/gifts", headers=b).json()["items"] == []
    assert client.get(f"/api/v1/points/mall/gifts/{gift['id']}", headers=a).json()["stock_available"] == 2


def test_member_browses_and_redeems_with_a_token(client: Any, world: World) -> None:
    h = world.brands[0].headers
    m = _api_setup(client, h)
    on_sale = _api_gift(client, h, kind="third_party_code", stock=0, points_price=200)
    _api_gift(client, h, status="paused")
    csv_body = io.BytesIO(b"TOKEN-1\nTOKEN-2\n")
    client.post(
        f"/api/v1/points/mall/gifts/{on_sale['id']}/codes", files={"file": ("c.csv", csv_body)}, headers=h
    )
    token = client.post("/api/v1/member-tokens", json={"member_id": m}, headers=h).json()["token"]
    me = {"Authorization": f"Bearer {token}"}

    gifts = client.get("/api/v1/me/points/mall/gifts", headers=me)
    assert gifts.status_code == 200, gifts.text
    assert [(g["id"], g["in_stock"]) for g in gifts.json()["items"]] == [(on_sale["id"], True)]
    assert "stock_available" not in gifts.json()["items"][0]

    body = {"gift_id": on_sale["id"]}
    r = client.post(
        "/api/v1/me/points/mall/redeem", json=body, headers={**me, "Idempotency-Key": "mine-0001"}
    )
    assert r.status_code == 201, r.text
    assert r.json()["channel"] == "member" and r.json()["codes"] == ["TOKEN-1"]
    replay = client.post(
        "/api/v1/me/points/mall/redeem", json=body, headers={**me, "Idempotency-Key": "mine-0001"}
    )
    assert replay.status_code == 200 and replay.json()["id"] == r.json()["id"]
    # the member's keys are their own: a staff call with the same key is a new redemption
    staff = client.post(
        f"/api/v1/members/{m}/points/mall/redeem", json={**body, "idempotency_key": "mine-0001"}, headers=h
    )
    assert staff.status_code == 201 and staff.json()["codes"] == ["TOKEN-2"]
    mine = client.get("/api/v1/me/points/mall/redemptions", headers=me).json()["items"]
    assert [x["codes"] for x in mine] == [["TOKEN-2"], ["TOKEN-1"]]
    assert client.get("/api/v1/me/points", headers=me).json()["balances"][0]["available"] == 600

    assert client.get("/api/v1/points/mall/gifts", headers=me).status_code == 403
    assert client.get("/api/v1/me/points/mall/gifts", headers=h).status_code == 403
    assert client.get("/api/v1/me/points/mall/gifts").status_code == 401

"""The demo world's coupons: a few templates per brand and sixty days of them lived through the real
verbs, with the clock set to the moment each thing happened, so the console's coupon pages,
settlement and figures have something to show.

Per brand (``TEMPLATES``): 满300减50 (stackable; the brand pays 70 %, the store 30 %), 9折 capped at
40 yuan (stackable), free shipping online, a limited grab in the claim centre (stock 300, one per
member) and 20 yuan off exchanged for 2,000 points. Over the last ``DAYS`` days, day by day: a
share of active members receive a campaign coupon (``issuing.issue``, channel ``activity``), some
grab, and some of the coupons members hold are used at a store — the best combination for a
synthetic basket is locked (``checkout.lock``) and redeemed, a few locks are released instead and a
few redeemed orders are returned. The expiry sweep runs at the end. Outbox events written here are
dropped, like the rest of the backfilled history; audit rows stay.

Randomness comes from ``random.Random`` streams named after the seed and the brand. Must not print:
progress goes to the caller's callbacks.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select

from huiyuan.coupons import checkout, issuing, templates
from huiyuan.coupons.schemas import CartIn, TemplateIn
from huiyuan.kit.clock import Clock, FrozenClock, get_clock, set_clock
from huiyuan.kit.db import Database
from huiyuan.kit.errors import AppError
from huiyuan.kit.scope import system_for_brand
from huiyuan.members.models import Member
from huiyuan.outbox.models import OutboxEvent
from huiyuan.points.models import PointType

DAYS = 60
ISSUES_PER_DAY = 25
GRABS_PER_DAY = 4
USES_PER_DAY = 10
RELATIVE_30 = {"kind": "relative", "days": 30, "round_to": "end_of_day"}
TEMPLATES: list[dict[str, Any]] = [
    {
        "code": "FULL300-50",
        "name": "满300减50",
        "rules": {
            "discount": {"kind": "threshold", "threshold": "300.00", "amount": "50.00"},
            "stacking": "stackable",
            "cost_sharing": [{"party": "brand", "percent": "70"}, {"party": "store", "percent": "30"}],
            "validity": RELATIVE_30,
        },
        "stock_total": 50_000,
        "budget_total": "2500000.00",
        "limit_per_member_per_day": 1,
    },
    {
        "code": "PCT90",
        "name": "9折券（最高减40）",
        "rules": {
            "discount": {"kind": "percent_off", "percent": "10", "cap": "40.00"},
            "stacking": "stackable",
            "validity": RELATIVE_30,
        },
    },
    {
        "code": "FREESHIP",
        "name": "包邮券",
        "rules": {
            "discount": {"kind": "free_shipping"},
            "conditions": {"scenes": ["online", "shipping"]},
            "stacking": "stackable",
            "validity": {"kind": "relative", "days": 14, "round_to": "end_of_day"},
        },
    },
    {
        "code": "GRAB-20",
        "name": "限时抢券 立减20",
        "rules": {
            "discount": {"kind": "amount_off", "amount": "20.00"},
            "cost_sharing": [{"party": "platform", "percent": "100"}],
            "validity": RELATIVE_30,
        },
        "stock_total": 300,
        "limit_per_member": 1,
        "claimable": True,
    },
    {
        "code": "PTS-20",
        "name": "2000积分兑20元券",
        "rules": {"discount": {"kind": "amount_off", "amount": "20.00"}, "validity": RELATIVE_30},
        "points_price": 2000,
        "claimable": True,
    },
]


def _templates(db: Database, brand_id: int, start: datetime) -> dict[str, int]:
    actor = system_for_brand(brand_id)
    out = {}
    with db.unit_of_work(actor.scope) as s:
        has_points = s.scalar(select(PointType.id).where(PointType.code == "points")) is not None
        for spec in TEMPLATES:
            body = {**spec, "status": "active", "claim_from": start.isoformat()}
            if "points_price" in spec:
                if not has_points:
                    continue
                body["point_type"] = "points"
            out[spec["code"]] = templates.create_template(
                s, actor=actor, data=TemplateIn.model_validate(body)
            ).id
    return out


def _basket(rng: random.Random, store_id: int | None, online: bool) -> CartIn:
    lines = [
        {
            "line_id": str(n),
            "sku": f"DEMO-{rng.randint(1, 400):03d}",
            "unit_price": f"{rng.choice([59, 89, 129, 199, 259, 399])}.00",
            "quantity": rng.randint(1, 2),
        }
        for n in range(1, rng.randint(1, 4) + 1)
    ]
    return CartIn.model_validate(
        {
            "lines": lines,
            "shipping_fee": "10.00" if online else "0",
            "store_id": None if online else store_id,
            "scene": "online" if online else "in_store",
            "channel": "mini_program" if online else "store",
        }
    )


def _issued(fn: Callable[..., Any], session: Any, **kwargs: Any) -> bool:
    """Run one issue verb in a savepoint; ``False`` when the template refuses (limit, stock …)."""
    try:
        with session.begin_nested():
            fn(session, **kwargs)
    except AppError:
        return False
    return True


def live_brand(
    db: Database,
    *,
    brand_id: int,
    code: str,
    store_ids: list[int],
    seed: int,
    end: datetime,
    days: int,
    advance: Callable[[int], None],
) -> dict[str, int]:
    rng = random.Random(f"{seed}:coupons:{code}")
    actor = system_for_brand(brand_id)
    start = end - timedelta(days=days)
    set_clock(FrozenClock(start))
    ids = _templates(db, brand_id, start)
    with db.unit_of_work(actor.scope, write=False) as s:
        members = list(s.scalars(select(Member.id).where(Member.status == "active").order_by(Member.id)))
    counts = {"coupon_templates": len(ids), "coupons_issued": 0, "coupon_locks_redeemed": 0}
    if not members:
        return counts
    holders: list[int] = []
    for day in range(days):
        base = start + timedelta(days=day, hours=2)
        with db.unit_of_work(actor.scope) as s:
            for n in range(ISSUES_PER_DAY):
                set_clock(FrozenClock(base + timedelta(minutes=n * 7)))
                member = rng.choice(members)
                template = ids[rng.choice(["FULL300-50", "FULL300-50", "PCT90", "FREESHIP"])]
                if _issued(
                    issuing.issue,
                    s,
                    actor=actor,
                    template_id=template,
                    member_id=member,
                    key=f"demo:{day}:{n}",
                    channel="activity",
                ):
                    counts["coupons_issued"] += 1
                    holders.append(member)
            for n in range(GRABS_PER_DAY):
                set_clock(FrozenClock(base + timedelta(hours=8, minutes=n)))
                member = rng.choice(members)
                if _issued(
                    issuing.claim,
                    s,
                    actor=actor,
                    member_id=member,
                    template_id=ids["GRAB-20"],
                    key=f"demo-grab:{day}:{n}",
                ):
                    counts["coupons_issued"] += 1
                    holders.append(member)
        with db.unit_of_work(actor.scope) as s:
            for n in range(USES_PER_DAY if holders else 0):
                at = base + timedelta(hours=10 + n % 10, minutes=rng.randint(0, 59))
                set_clock(FrozenClock(at))
                member = rng.choice(holders)
                online = rng.random() < 0.4
                basket = _basket(rng, rng.choice(store_ids) if store_ids else None, online)
                with s.begin_nested():
                    try:
                        held = checkout.lock(
                            s,
                            actor=actor,
                            member_id=member,
                            order_ref=f"DEMO-{code}-{day}-{n}",
                            data=basket,
                            coupon_ids=None,
                            ttl_minutes=15,
                            key=f"demo-lock:{day}:{n}",
                        ).lock
                    except AppError:
                        continue
                    if not held.allocation["coupons"]:
                        checkout.release(s, actor=actor, lock_id=held.id, reason="no coupon applies")
                        continue
                    if rng.random() < 0.08:
                        checkout.release(s, actor=actor, lock_id=held.id, reason="order cancelled")
                        continue
                    checkout.redeem(s, actor=actor, lock_id=held.id, payment_reference=f"PAY-{day}-{n}")
                    counts["coupon_locks_redeemed"] += 1
                    if rng.random() < 0.04 and at + timedelta(days=2) < end:
                        set_clock(FrozenClock(at + timedelta(days=2)))
                        checkout.return_lock(s, actor=actor, lock_id=held.id, reason="order refunded")
        advance(1)
    set_clock(FrozenClock(end))
    with db.unit_of_work(actor.scope) as s:
        after = 0
        while True:
            _expired, last = checkout.expire_due(s, actor=actor, now=end, after_id=after)
            if last == after:
                break
            after = last
    return counts


def build_coupons(
    db: Database,
    brands: list[tuple[int, str, list[int]]],
    *,
    seed: int,
    end: datetime,
    days: int = DAYS,
    start_phase: Callable[[str, int], None],
    advance: Callable[[str, int], None],
    finish_phase: Callable[[str], None],
) -> dict[str, dict[str, int]]:
    """Configure and live each brand's coupons; returns counts per brand code (phase ``coupons``)."""
    previous: Clock = get_clock()
    with db.unit_of_work(write=False) as s:
        last_event = int(s.scalar(select(func.coalesce(func.max(OutboxEvent.id), 0))) or 0)
    start_phase("coupons", days * len(brands))
    out = {}
    try:
        for brand_id, code, store_ids in brands:
            out[code] = live_brand(
                db,
                brand_id=brand_id,
                code=code,
                days=days,
                store_ids=store_ids,
                seed=seed,
                end=end,
                advance=lambda n: advance("coupons", n),
            )
    finally:
        set_clock(previous)
    finish_phase("coupons")
    with db.unit_of_work() as s:
        s.execute(delete(OutboxEvent).where(OutboxEvent.id > last_event))
    return out

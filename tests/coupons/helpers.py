"""Shared set-up and checks for the coupon service tests.

``make_coupon_brand`` builds a brand with a spendable point type, two stores and a few members
through the real services; ``CouponBrand`` runs one verb per transaction (as the API does) and
``check_coupons`` asserts the stock-and-budget ledger and the coupons' invariants.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select

from huiyuan.coupons import checkout, issuing, templates
from huiyuan.coupons.models import (
    Coupon,
    CouponEvent,
    CouponLock,
    CouponShare,
    CouponStockEntry,
    CouponTemplate,
)
from huiyuan.coupons.schemas import CartIn, TemplateIn
from huiyuan.kit.db import Database
from huiyuan.kit.scope import SYSTEM, Principal, system_for_brand
from huiyuan.members import service as members
from huiyuan.members.schemas import MemberEnroll
from huiyuan.points.models import PointType
from huiyuan.tenancy import service as tenancy

_codes = itertools.count(1)

RELATIVE_30 = {"kind": "relative", "days": 30, "round_to": "end_of_day"}


def rules(discount: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"discount": discount, "validity": RELATIVE_30, **extra}


def cart(*lines: tuple[str, str, int], shipping: str = "0", store_id: int | None = None, **kw: Any) -> CartIn:
    """A cart of (sku, unit price, quantity) lines."""
    return CartIn.model_validate(
        {
            "lines": [
                {"line_id": f"L{i}", "sku": sku, "unit_price": price, "quantity": qty}
                for i, (sku, price, qty) in enumerate(lines, start=1)
            ],
            "shipping_fee": shipping,
            "store_id": store_id,
            **kw,
        }
    )


@dataclass
class CouponBrand:
    db: Database
    brand_id: int
    actor: Principal
    members: list[int] = field(default_factory=list)
    stores: list[int] = field(default_factory=list)

    def run(self, fn: Callable[..., Any], **kwargs: Any) -> Any:
        with self.db.unit_of_work(self.actor.scope) as s:
            out = fn(s, actor=self.actor, **kwargs)
            s.flush()
            for name in ("coupon", "lock"):
                if hasattr(out, name):
                    s.refresh(getattr(out, name))
                    s.expunge(getattr(out, name))
            if isinstance(out, Coupon | CouponTemplate | CouponLock):
                s.refresh(out)
                s.expunge(out)
            return out

    def template(self, discount: dict[str, Any] | None = None, **fields: Any) -> CouponTemplate:
        body: dict[str, Any] = {
            "code": f"T{next(_codes)}",
            "name": "测试券",
            "status": "active",
            "rules": rules(
                discount or {"kind": "amount_off", "amount": "10.00"}, **fields.pop("rules_extra", {})
            ),
        }
        body.update(fields)
        return self.run(templates.create_template, data=TemplateIn.model_validate(body))

    def issue(
        self, template_id: int, member: int, key: str, channel: str = "activity"
    ) -> issuing.IssueResult:
        return self.run(issuing.issue, template_id=template_id, member_id=member, key=key, channel=channel)

    def claim(self, template_id: int, member: int, key: str) -> issuing.IssueResult:
        return self.run(issuing.claim, template_id=template_id, member_id=member, key=key)

    def lock(
        self, member: int, the_cart: CartIn, key: str, coupon_ids: list[int] | None = None, **kw: Any
    ) -> checkout.LockResult:
        return self.run(
            checkout.lock,
            member_id=member,
            order_ref=kw.pop("order_ref", f"O-{key}"),
            data=the_cart,
            coupon_ids=coupon_ids,
            ttl_minutes=kw.pop("ttl_minutes", 15),
            key=key,
        )

    def coupon(self, coupon_id: int) -> Coupon:
        with self.db.unit_of_work(self.actor.scope, write=False) as s:
            found = s.get(Coupon, coupon_id)
            assert found is not None
            s.expunge(found)
            return found

    def get_template(self, template_id: int) -> CouponTemplate:
        with self.db.unit_of_work(self.actor.scope, write=False) as s:
            found = s.get(CouponTemplate, template_id)
            assert found is not None
            s.expunge(found)
            return found

    def events(self, coupon_id: int) -> list[str]:
        with self.db.unit_of_work(self.actor.scope, write=False) as s:
            return list(
                s.scalars(
                    select(CouponEvent.kind)
                    .where(CouponEvent.coupon_id == coupon_id)
                    .order_by(CouponEvent.id)
                )
            )


def make_coupon_brand(db: Database, *, members_count: int = 3) -> CouponBrand:
    code = f"c{next(_codes)}{uuid.uuid4().hex[:8]}"
    with db.unit_of_work() as s:
        brand = tenancy.create_brand(s, actor=SYSTEM, code=code, name=code.upper(), member_number_prefix="C")
        brand_id = brand.id
    actor = system_for_brand(brand_id)
    world = CouponBrand(db=db, brand_id=brand_id, actor=actor)
    with db.unit_of_work(actor.scope) as s:
        s.add(
            PointType(
                brand_id=brand_id,
                code="pts",
                name="积分",
                kind="spendable",
                expiry_policy={"kind": "never"},
            )
        )
        for n in range(members_count):
            member = members.enroll_member(
                s, actor=actor, data=MemberEnroll(enroll_channel="store", name=f"m{n}")
            )
            world.members.append(member.id)
    return world


def check_coupons(db: Database, brand_id: int) -> None:
    """The invariants: each template's caches equal the sum of its stock entries; every coupon has
    exactly one ``issued`` event; a redeemed coupon's cost shares add up to its discount."""
    with db.unit_of_work(system_for_brand(brand_id).scope, write=False) as s:
        for t in s.scalars(select(CouponTemplate)):
            qty, budget = s.execute(
                select(
                    func.coalesce(func.sum(CouponStockEntry.quantity), 0),
                    func.coalesce(func.sum(CouponStockEntry.budget), 0),
                ).where(CouponStockEntry.template_id == t.id)
            ).one()
            if t.stock_available is not None:
                assert t.stock_available == qty >= 0, (t.code, t.stock_available, qty)
            if t.budget_available is not None:
                assert t.budget_available == Decimal(budget) >= 0, (t.code, t.budget_available, budget)
        issued = dict(
            s.execute(
                select(CouponEvent.coupon_id, func.count())
                .where(CouponEvent.kind == "issued")
                .group_by(CouponEvent.coupon_id)
            ).all()
        )
        for c in s.scalars(select(Coupon)):
            assert issued.get(c.id) == 1, c.id
            shares = s.scalar(
                select(func.coalesce(func.sum(CouponShare.amount), 0)).where(CouponShare.coupon_id == c.id)
            )
            lock_state = (
                s.scalar(select(CouponLock.state).where(CouponLock.id == c.lock_id)) if c.lock_id else None
            )
            if c.status == "redeemed" and lock_state == "redeemed":
                assert Decimal(shares) == c.discount, (c.id, shares, c.discount)
            else:
                assert Decimal(shares) == 0, (c.id, c.status, shares)

"""Read models of the points mall: gifts as staff and members see them, redemptions with their codes.

Each builder shapes a page of rows at once (one query per kind of row it looks up, however many rows
are shown). Nothing here writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from huiyuan.kit.clock import utcnow
from huiyuan.kit.types import to_money
from huiyuan.points.mall import ZERO
from huiyuan.points.mall_models import MallGift, MallRedemption
from huiyuan.points.mall_repository import MallRepository
from huiyuan.points.mall_schemas import GiftOut, MemberGiftOut, RedemptionOut


def gift_outs(session: Session, gifts: Sequence[MallGift]) -> list[GiftOut]:
    codes = MallRepository(session).point_type_codes({g.point_type_id for g in gifts})
    return [
        GiftOut(
            id=g.id,
            code=g.code,
            name=g.name,
            description=g.description,
            kind=g.kind,  # type: ignore[arg-type]
            point_type=codes[g.point_type_id],
            points_price=g.points_price,
            cash_price=to_money(g.cash_price),
            payment_mode="points_cash" if g.cash_price > ZERO else "points",
            status=g.status,  # type: ignore[arg-type]
            sale_from=g.sale_from,
            sale_to=g.sale_to,
            limit_per_member=g.limit_per_member,
            limit_per_member_per_day=g.limit_per_member_per_day,
            payment_minutes=g.payment_minutes,
            stock_available=g.stock_available,
            created_at=g.created_at,
            updated_at=g.updated_at,
        )
        for g in gifts
    ]


def gift_out(session: Session, gift: MallGift) -> GiftOut:
    return gift_outs(session, [gift])[0]


def member_gift_outs(session: Session, gifts: Sequence[MallGift]) -> list[MemberGiftOut]:
    return [
        MemberGiftOut(
            id=g.id,
            code=g.code,
            name=g.name,
            description=g.description,
            kind=g.kind,
            point_type=g.point_type,
            points_price=g.points_price,
            cash_price=g.cash_price,
            payment_mode=g.payment_mode,
            sale_to=g.sale_to,
            limit_per_member=g.limit_per_member,
            limit_per_member_per_day=g.limit_per_member_per_day,
            in_stock=g.stock_available > 0,
        )
        for g in gift_outs(session, gifts)
    ]


def _shown_status(redemption: MallRedemption, now: datetime) -> Any:
    # An unpaid redemption past its time can no longer be paid, even before a sweep has expired it.
    if redemption.status == "awaiting_payment" and redemption.pay_by is not None and redemption.pay_by <= now:
        return "expired"
    return redemption.status


def redemption_outs(session: Session, redemptions: Sequence[MallRedemption]) -> list[RedemptionOut]:
    repo = MallRepository(session)
    gifts = {
        g.id: g
        for g in session.scalars(select(MallGift).where(MallGift.id.in_({r.gift_id for r in redemptions})))
    }
    type_codes = repo.point_type_codes({r.point_type_id for r in redemptions})
    codes = repo.codes_of([r.id for r in redemptions])
    now = utcnow()
    return [
        RedemptionOut(
            id=r.id,
            gift_id=r.gift_id,
            gift_code=gifts[r.gift_id].code,
            gift_name=gifts[r.gift_id].name,
            member_id=r.member_id,
            quantity=r.quantity,
            point_type=type_codes[r.point_type_id],
            points=r.points,
            cash_amount=to_money(r.cash_amount),
            status=_shown_status(r, now),
            codes=codes[r.id],
            pay_by=r.pay_by,
            payment_reference=r.payment_reference,
            paid_at=r.paid_at,
            cancelled_at=r.cancelled_at,
            cancel_reason=r.cancel_reason,
            points_restored=r.points_restored,
            stock_returned=r.stock_returned,
            channel=r.channel,  # type: ignore[arg-type]
            created_at=r.created_at,
        )
        for r in redemptions
    ]


def redemption_out(session: Session, redemption: MallRedemption) -> RedemptionOut:
    return redemption_outs(session, [redemption])[0]

"""How members get coupons: one ``issue`` core behind every channel, and the channels around it.

Owns ``issue`` (the core), ``claim`` (claim centre and limited-time grabs), ``exchange`` (for
points, spent through ``points.ledger`` in the same transaction), ``purchase`` and
``refund_purchase``, ``void``, ``claimable_for`` (what a member may claim now) and the member and
operator read models of coupons. Nothing here commits.

Policies:

* **Locks.** An issue queues on its idempotency key (PostgreSQL advisory lock; SQLite writers are
  serialised by ``BEGIN IMMEDIATE``), then locks the template row, then — for an exchange — lets
  the ledger lock the points account: always key → template → account. The template lock is what
  makes stock, the per-member and per-day limits and the budget exact under any concurrency: 50
  members grabbing the last coupon meet there and exactly one gets it.
* **Idempotency.** One key, one coupon: a retry with the same key and request returns that coupon
  (``replayed``); the same key for another template, member or channel is
  ``idempotency-key-reused``. Client keys are stored prefixed by channel (``claim:<key>``), so
  they never meet the keys the system issues with (push runs, benefits).
* **Limits** count the member's coupons of the template that were not voided, in all and on the
  brand-local day of issue; the daily cap counts every member's coupons of that day.
* **Codes.** A generated-code template draws a fresh code in its format (``coupons.codes``),
  checked against the brand's codes; an imported-code template hands out its oldest available
  third-party code, under the template lock, so no code is given twice.
* **Voids** (an operator, or a refunded purchase) apply to unused coupons only and give their
  stock and budget back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from huiyuan.audit import service as audit
from huiyuan.coupons import codes as codegen
from huiyuan.coupons.models import Coupon, CouponCode, CouponEvent, CouponTemplate
from huiyuan.coupons.rules import valid_window
from huiyuan.coupons.schemas import CouponOut
from huiyuan.coupons.templates import locked_template, move_stock, template_rules
from huiyuan.kit.clock import utcnow
from huiyuan.kit.db import advisory_lock
from huiyuan.kit.errors import (
    AppError,
    Conflict,
    IdempotencyMismatch,
    NotFound,
    ValidationFailed,
    field_error,
)
from huiyuan.kit.scope import Principal
from huiyuan.kit.types import to_money
from huiyuan.members.models import Member
from huiyuan.outbox.service import emit
from huiyuan.points import ledger
from huiyuan.points.models import PointEntry, PointType
from huiyuan.tenancy.models import Brand

ZERO = Decimal("0.00")


class CouponNotIssuable(AppError):
    status = 409
    code = "coupon-not-issuable"
    title = "The coupon cannot be issued now"


class CouponLimitReached(AppError):
    status = 409
    code = "coupon-limit-reached"
    title = "The member has reached the coupon's limit"


class MemberNotActive(AppError):
    status = 409
    code = "member-not-active"
    title = "The member cannot receive coupons"


class CouponNotVoidable(AppError):
    status = 409
    code = "coupon-not-voidable"
    title = "Only an unused coupon can be voided"


@dataclass
class IssueResult:
    coupon: Coupon
    replayed: bool = False


def brand_zone(session: Session, brand_id: int) -> ZoneInfo:
    brand = session.get(Brand, brand_id)
    return ZoneInfo(brand.timezone if brand else "Asia/Shanghai")


def add_event(
    session: Session,
    actor: Principal,
    coupon: Coupon,
    kind: str,
    *,
    lock_id: int | None = None,
    amount: Decimal | None = None,
    detail: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> None:
    session.add(
        CouponEvent(
            brand_id=coupon.brand_id,
            coupon_id=coupon.id,
            kind=kind,
            lock_id=lock_id,
            amount=amount,
            detail=detail,
            actor=actor.label[:120],
            occurred_at=at or utcnow(),
        )
    )


def _counts(session: Session, template: CouponTemplate, member_id: int, day: date) -> tuple[int, int, int]:
    """(member's coupons in all, member's coupons today, everyone's coupons today), voids excluded;
    each count reads one index range (the last only when the template has a daily cap)."""
    live = (Coupon.template_id == template.id, Coupon.status != "voided")
    member_all, member_day = session.execute(
        select(func.count(), func.count().filter(Coupon.local_day == day)).where(
            *live, Coupon.member_id == member_id
        )
    ).one()
    everyone_day = 0
    if template.limit_per_day is not None:
        everyone_day = session.scalar(select(func.count()).where(*live, Coupon.local_day == day)) or 0
    return int(member_all), int(member_day), int(everyone_day)


def _why_not(
    template: CouponTemplate, counts: tuple[int, int, int], now: datetime, *, window: bool
) -> str | None:
    """Why the template cannot be issued to this member now (a reason code), or ``None``."""
    if template.status != "active":
        return f"template-{template.status}"
    if window and template.claim_from is not None and now < template.claim_from:
        return "not-started"
    if window and template.claim_to is not None and now >= template.claim_to:
        return "ended"
    validity = template.rules.get("validity", {})
    if validity.get("kind") == "fixed" and now >= datetime.fromisoformat(validity["end"]):
        return "validity-ended"
    member_all, member_day, everyone_day = counts
    if template.limit_per_member is not None and member_all >= template.limit_per_member:
        return "limit-per-member"
    if template.limit_per_member_per_day is not None and member_day >= template.limit_per_member_per_day:
        return "limit-per-member-per-day"
    if template.limit_per_day is not None and everyone_day >= template.limit_per_day:
        return "limit-per-day"
    if template.stock_available is not None and template.stock_available < 1:
        return "out-of-stock"
    if template.budget_available is not None and template.budget_available < template.face_value:
        return "budget-exhausted"
    return None


_LIMIT_REASONS = {"limit-per-member", "limit-per-member-per-day", "limit-per-day"}


def _refuse(reason: str) -> AppError:
    from huiyuan.coupons.templates import BudgetExhausted, OutOfStock

    if reason == "out-of-stock":
        return OutOfStock("No coupon of this template is left.", reason=reason)
    if reason == "budget-exhausted":
        return BudgetExhausted("The template's budget is spent.", reason=reason)
    if reason in _LIMIT_REASONS:
        return CouponLimitReached(f"The coupon's limit is reached ({reason}).", reason=reason)
    return CouponNotIssuable(f"The coupon cannot be issued now ({reason}).", reason=reason)


def _new_code(session: Session, template: CouponTemplate, coupon_key: str) -> tuple[str, CouponCode | None]:
    if template.code_source == "imported":
        code_row = session.scalars(
            select(CouponCode)
            .where(CouponCode.template_id == template.id, CouponCode.status == "available")
            .order_by(CouponCode.id)
            .limit(1)
        ).first()
        if code_row is None:  # stock says otherwise only if the ledger was broken
            raise _refuse("out-of-stock")
        return code_row.code, code_row
    fmt = codegen.CodeFormat.model_validate(template.code_format)

    def existing(candidates: list[str]) -> set[str]:
        return set(
            session.scalars(
                select(Coupon.code).where(Coupon.brand_id == template.brand_id, Coupon.code.in_(candidates))
            )
        )

    return codegen.generate(fmt, 1, existing=existing)[0], None


def issue(
    session: Session,
    *,
    actor: Principal,
    template_id: int,
    member_id: int,
    key: str,
    channel: str,
    reference: str | None = None,
    window: bool = False,
    now: datetime | None = None,
    pay: dict[str, Any] | None = None,
) -> IssueResult:
    """Issue one coupon of the template to the member, once per ``key``.

    ``window`` enforces the claim window (claims, grabs, exchanges); ``pay`` carries what was paid
    (``points_entry_id`` or ``payment_reference`` + ``paid_amount``) for exchanges and purchases.
    """
    brand_id = actor.scope.require_brand()
    member = session.get(Member, member_id)
    if member is None:
        raise NotFound(f"Member {member_id} was not found.")
    advisory_lock(session, f"coupon-issue:{brand_id}:{key}")
    template = locked_template(session, template_id)
    done = session.scalars(
        select(Coupon).where(Coupon.brand_id == brand_id, Coupon.issue_key == key)
    ).one_or_none()
    if done is not None:
        if (done.template_id, done.member_id, done.channel) != (template_id, member_id, channel):
            raise IdempotencyMismatch(
                "This idempotency key was already used for another coupon.",
                errors=[field_error("idempotency_key", "already used with another request", "reused")],
            )
        return IssueResult(done, replayed=True)
    if member.status in ("closed", "frozen"):
        raise MemberNotActive(
            f"A {member.status} member cannot receive coupons.", member_status=member.status
        )
    now = now or utcnow()
    zone = brand_zone(session, brand_id)
    day = now.astimezone(zone).date()
    reason = _why_not(template, _counts(session, template, member_id, day), now, window=window)
    if reason is not None:
        raise _refuse(reason)
    valid_from, valid_to = valid_window(template_rules(template).validity, now, zone)
    code, code_row = _new_code(session, template, key)
    pay = pay or {}
    coupon = Coupon(
        brand_id=brand_id,
        template_id=template.id,
        member_id=member_id,
        code=code,
        status="available",
        valid_from=valid_from,
        valid_to=valid_to,
        issued_at=now,
        local_day=day,
        channel=channel,
        issue_key=key,
        issue_ref=reference,
        budget_reserved=template.face_value if template.budget_available is not None else ZERO,
        points_entry_id=pay.get("points_entry_id"),
        payment_reference=pay.get("payment_reference"),
        paid_amount=pay.get("paid_amount"),
        updated_at=now,
    )
    session.add(coupon)
    session.flush()
    if code_row is not None:
        code_row.status = "assigned"
        code_row.coupon_id = coupon.id
    move_stock(
        session, actor, template, "issue", quantity=-1, budget=-coupon.budget_reserved, coupon_id=coupon.id
    )
    add_event(session, actor, coupon, "issued", detail={"channel": channel, "reference": reference}, at=now)
    emit(
        session,
        type="coupon.issued",
        brand_id=brand_id,
        aggregate_type="coupon",
        aggregate_id=coupon.id,
        payload={
            "coupon_id": coupon.id,
            "template_id": template.id,
            "template_code": template.code,
            "member_id": member_id,
            "channel": channel,
            "valid_to": valid_to.isoformat(),
        },
    )
    return IssueResult(coupon)


def claim(session: Session, *, actor: Principal, member_id: int, template_id: int, key: str) -> IssueResult:
    """A member takes a claimable coupon (claim centre; a grab when the window and stock are short)."""
    template = session.get(CouponTemplate, template_id)
    if template is None:
        raise NotFound(f"Coupon template {template_id} was not found.")
    if not template.claimable:
        raise CouponNotIssuable("This coupon cannot be claimed by members.", reason="not-claimable")
    channel = "grab" if template.claim_from is not None and template.stock_total is not None else "claim"
    return issue(
        session,
        actor=actor,
        template_id=template_id,
        member_id=member_id,
        key=f"claim:{key}",
        channel=channel,
        window=True,
    )


def exchange(
    session: Session, *, actor: Principal, member_id: int, template_id: int, key: str
) -> IssueResult:
    """Swap the member's points for a coupon: the spend and the issue land together or not at all."""
    template = session.get(CouponTemplate, template_id)
    if template is None:
        raise NotFound(f"Coupon template {template_id} was not found.")
    if template.points_price is None or template.point_type_id is None:
        raise CouponNotIssuable("This coupon is not sold for points.", reason="no-points-price")
    issued = issue(
        session,
        actor=actor,
        template_id=template_id,
        member_id=member_id,
        key=f"exchange:{key}",
        channel="exchange",
        window=True,
    )
    if issued.replayed:
        return issued
    pt = session.get(PointType, template.point_type_id)
    assert pt is not None
    spent = ledger.spend(
        session,
        actor=actor,
        member_id=member_id,
        point_type=pt.code,
        amount=template.points_price,
        key=f"coupon-exchange:{key}",
        source_type="coupon",
        source_id=template.code,
    )
    issued.coupon.points_entry_id = session.scalar(
        select(PointEntry.id).where(PointEntry.operation_id == spent.operation_id, PointEntry.kind == "spend")
    )
    return issued


def purchase(
    session: Session,
    *,
    actor: Principal,
    member_id: int,
    template_id: int,
    key: str,
    payment_reference: str,
    amount: Decimal,
) -> IssueResult:
    """Sell a coupon for cash already paid (``payment_reference``); the amount must be the price."""
    template = session.get(CouponTemplate, template_id)
    if template is None:
        raise NotFound(f"Coupon template {template_id} was not found.")
    if template.cash_price is None:
        raise CouponNotIssuable("This coupon is not sold for cash.", reason="no-cash-price")
    if to_money(amount) != template.cash_price:
        raise ValidationFailed(
            f"The coupon costs {template.cash_price} yuan.",
            errors=[field_error("amount", f"must be {template.cash_price}", "price-mismatch")],
        )
    return issue(
        session,
        actor=actor,
        template_id=template_id,
        member_id=member_id,
        key=f"purchase:{key}",
        channel="purchase",
        window=True,
        pay={"payment_reference": payment_reference, "paid_amount": to_money(amount)},
    )


def locked_coupon(session: Session, coupon_id: int) -> Coupon:
    stmt = (
        select(Coupon)
        .where(Coupon.id == coupon_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    coupon = session.scalars(stmt).one_or_none()
    if coupon is None:
        raise NotFound(f"Coupon {coupon_id} was not found.")
    return coupon


def void(session: Session, *, actor: Principal, coupon_id: int, reason: str, kind: str = "void") -> Coupon:
    """Cancel an unused coupon; its stock and budget come back. Voiding a voided coupon is a no-op."""
    coupon = session.get(Coupon, coupon_id)
    if coupon is None:
        raise NotFound(f"Coupon {coupon_id} was not found.")
    template = locked_template(session, coupon.template_id)
    coupon = locked_coupon(session, coupon_id)
    if coupon.status == "voided":
        return coupon
    if coupon.status != "available":
        raise CouponNotVoidable(f"The coupon is {coupon.status}.", coupon_status=coupon.status)
    coupon.status = "voided"
    coupon.updated_at = utcnow()
    move_stock(session, actor, template, kind, quantity=1, budget=coupon.budget_reserved, coupon_id=coupon.id)
    add_event(session, actor, coupon, "voided", detail={"reason": reason})
    audit.record(
        session,
        actor=actor,
        action="coupon.voided",
        entity_type="coupon",
        entity_id=coupon.id,
        brand_id=coupon.brand_id,
        after={"status": "voided", "template_id": coupon.template_id, "member_id": coupon.member_id},
        note=reason,
    )
    return coupon


def refund_purchase(session: Session, *, actor: Principal, coupon_id: int, reason: str) -> Coupon:
    """Refund a bought coupon that was not used: it is voided (stock and budget back); the cash goes
    back through the payment system the ``payment_reference`` names."""
    coupon = session.get(Coupon, coupon_id)
    if coupon is None:
        raise NotFound(f"Coupon {coupon_id} was not found.")
    if coupon.channel != "purchase":
        raise Conflict(
            "Only a bought coupon can be refunded.", errors=[field_error("coupon_id", "not bought")]
        )
    coupon = void(session, actor=actor, coupon_id=coupon_id, reason=f"refund: {reason}")
    emit(
        session,
        type="coupon.purchase_refunded",
        brand_id=coupon.brand_id,
        aggregate_type="coupon",
        aggregate_id=coupon.id,
        payload={
            "coupon_id": coupon.id,
            "member_id": coupon.member_id,
            "payment_reference": coupon.payment_reference,
            "amount": str(coupon.paid_amount),
        },
    )
    return coupon


# -- reads ------------------------------------------------------------------------------------------


@dataclass
class Claimable:
    template: CouponTemplate
    claimed: int
    claimed_today: int
    reason: str | None


def claimable_for(
    session: Session, *, brand_id: int, member_id: int, now: datetime | None = None
) -> list[Claimable]:
    """The claim centre: templates members may claim now, with this member's standing on each."""
    now = now or utcnow()
    day = now.astimezone(brand_zone(session, brand_id)).date()
    templates = session.scalars(
        select(CouponTemplate)
        .where(
            CouponTemplate.claimable.is_(True),
            CouponTemplate.status == "active",
            (CouponTemplate.claim_to.is_(None)) | (CouponTemplate.claim_to > now),
        )
        .order_by(CouponTemplate.id)
        .limit(200)
    ).all()
    out = []
    for t in templates:
        counts = _counts(session, t, member_id, day)
        out.append(Claimable(t, counts[0], counts[1], _why_not(t, counts, now, window=True)))
    return out


def list_coupons(
    session: Session,
    *,
    member_id: int | None = None,
    template_id: int | None = None,
    status: str | None = None,
    code: str | None = None,
    after_id: int | None = None,
    limit: int = 50,
) -> list[Coupon]:
    stmt = select(Coupon).order_by(Coupon.id.desc()).limit(limit)
    if member_id is not None:
        stmt = stmt.where(Coupon.member_id == member_id)
    if template_id is not None:
        stmt = stmt.where(Coupon.template_id == template_id)
    if status is not None:
        stmt = stmt.where(Coupon.status == status)
    if code is not None:
        # Generated codes are stored upper-case without separators; imported ones as they came.
        typed = code.strip()
        stmt = stmt.where(Coupon.code.in_({typed, typed.upper().replace("-", "").replace(" ", "")}))
    if after_id is not None:
        stmt = stmt.where(Coupon.id < after_id)
    return list(session.scalars(stmt))


def get_coupon(session: Session, coupon_id: int) -> Coupon:
    coupon = session.get(Coupon, coupon_id)
    if coupon is None:
        raise NotFound(f"Coupon {coupon_id} was not found.")
    return coupon


def coupon_events(session: Session, coupon_id: int) -> list[CouponEvent]:
    return list(
        session.scalars(
            select(CouponEvent).where(CouponEvent.coupon_id == coupon_id).order_by(CouponEvent.id)
        )
    )


def coupon_outs(session: Session, coupons: Sequence[Coupon]) -> list[CouponOut]:
    ids = {c.template_id for c in coupons}
    templates = (
        {t.id: t for t in session.scalars(select(CouponTemplate).where(CouponTemplate.id.in_(ids)))}
        if ids
        else {}
    )
    now = utcnow()
    return [
        CouponOut(
            id=c.id,
            template_id=c.template_id,
            template_code=templates[c.template_id].code,
            name=templates[c.template_id].name,
            member_id=c.member_id,
            code=c.code,
            status="expired" if c.status == "available" and c.valid_to <= now else c.status,
            valid_from=c.valid_from,
            valid_to=c.valid_to,
            issued_at=c.issued_at,
            channel=c.channel,
            issue_ref=c.issue_ref,
            discount=c.discount,
            redeemed_at=c.redeemed_at,
            store_id=c.store_id,
            rules=templates[c.template_id].rules,
        )
        for c in coupons
    ]

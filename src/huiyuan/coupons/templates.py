"""Coupon templates: create, update, restock, import third-party codes; the stock-and-budget ledger.

Owns the verbs ``create_template``, ``update_template``, ``restock`` and ``import_codes``, the
template read model, and ``move_stock`` — the only writer of a template's ``stock_available`` and
``budget_available`` (the issuing and checkout modules call it). Nothing here commits.

Policies:

* **Rules are fixed once coupons exist.** A template's ``rules`` (discount, conditions, stacking,
  cost sharing, validity) and code settings are given at creation; issued coupons carry their
  template's rules, so changing them later would change coupons members already hold. Names,
  limits, the claim window, prices and the status may change at any time.
* **Stock** (when ``stock_total`` is set) and **budget** (when ``budget_total`` is set) are one
  ledger: each change is a ``CouponStockEntry`` whose deltas are applied to the cached columns in
  the same transaction, under the template's row lock; the check constraints refuse a negative.
  An imported-code template gets its stock from its codes: importing adds stock, so stock equals
  the codes still available.
* **Budget = exposure.** Each issued coupon reserves its *face value* (the most it can take off:
  amount off, threshold amount × times, a percent-off cap, the gift's value, a shipping cap) and
  keeps it until it expires or is voided. A percent-off coupon without a cap has no face value, so
  its template cannot have a budget.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from huiyuan.audit import service as audit
from huiyuan.coupons import codes as codegen
from huiyuan.coupons.models import CouponCode, CouponStockEntry, CouponTemplate
from huiyuan.coupons.rules import TemplateRules, face_value
from huiyuan.coupons.schemas import CodeImportOut, RestockIn, TemplateIn, TemplateOut, TemplateUpdate
from huiyuan.kit.clock import utcnow
from huiyuan.kit.errors import AppError, Conflict, NotFound, ValidationFailed, field_error
from huiyuan.kit.scope import Principal
from huiyuan.kit.types import to_money
from huiyuan.points.ledger import point_type_by_code
from huiyuan.points.models import PointType

ZERO = Decimal("0.00")


class OutOfStock(AppError):
    status = 409
    code = "coupon-out-of-stock"
    title = "The coupon is out of stock"


class BudgetExhausted(AppError):
    status = 409
    code = "coupon-budget-exhausted"
    title = "The coupon's budget is spent"


def locked_template(session: Session, template_id: int) -> CouponTemplate:
    stmt = (
        select(CouponTemplate)
        .where(CouponTemplate.id == template_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    template = session.scalars(stmt).one_or_none()
    if template is None:
        raise NotFound(f"Coupon template {template_id} was not found.")
    return template


def get_template(session: Session, template_id: int) -> CouponTemplate:
    template = session.get(CouponTemplate, template_id)
    if template is None:
        raise NotFound(f"Coupon template {template_id} was not found.")
    return template


def list_templates(
    session: Session, *, status: str | None, claimable: bool | None, after_id: int | None, limit: int
) -> list[CouponTemplate]:
    stmt = select(CouponTemplate).order_by(CouponTemplate.id).limit(limit)
    if status is not None:
        stmt = stmt.where(CouponTemplate.status == status)
    if claimable is not None:
        stmt = stmt.where(CouponTemplate.claimable == claimable)
    if after_id is not None:
        stmt = stmt.where(CouponTemplate.id > after_id)
    return list(session.scalars(stmt))


def template_rules(template: CouponTemplate) -> TemplateRules:
    """The template's parsed rules. Rules never change once a template exists and ``TemplateRules``
    is frozen, so parses are shared (keyed by the canonical JSON, which is safe across databases)."""
    return _parsed(json.dumps(template.rules, sort_keys=True, separators=(",", ":")))


@lru_cache(maxsize=4096)
def _parsed(canonical: str) -> TemplateRules:
    return TemplateRules.model_validate_json(canonical)


def move_stock(
    session: Session,
    actor: Principal,
    template: CouponTemplate,
    kind: str,
    *,
    quantity: int = 0,
    budget: Decimal = ZERO,
    coupon_id: int | None = None,
    reason: str | None = None,
) -> CouponStockEntry | None:
    """Append a stock/budget entry and apply it to the (locked) template's caches.

    Unlimited stock or budget ignores its delta; an entry with nothing left to record is skipped.
    """
    quantity = quantity if template.stock_available is not None else 0
    budget = to_money(budget) if template.budget_available is not None else ZERO
    if quantity == 0 and budget == ZERO:
        return None
    if template.stock_available is not None and template.stock_available + quantity < 0:
        raise OutOfStock(
            f"{-quantity} coupon(s) asked for; {template.stock_available} left.",
            stock_available=template.stock_available,
        )
    if template.budget_available is not None and template.budget_available + budget < ZERO:
        raise BudgetExhausted(
            f"The coupon needs {-budget} yuan of budget; {template.budget_available} left.",
            budget_available=str(template.budget_available),
        )
    if template.stock_available is not None:
        template.stock_available += quantity
    if template.budget_available is not None:
        template.budget_available = to_money(template.budget_available + budget)
    entry = CouponStockEntry(
        brand_id=template.brand_id,
        template_id=template.id,
        kind=kind,
        quantity=quantity,
        budget=budget,
        coupon_id=coupon_id,
        reason=reason,
        actor=actor.label[:120],
        occurred_at=utcnow(),
    )
    session.add(entry)
    return entry


def _check_window(claim_from: datetime | None, claim_to: datetime | None) -> None:
    if claim_from is not None and claim_to is not None and claim_from >= claim_to:
        raise ValidationFailed(
            "The claim window ends before it starts.",
            errors=[field_error("claim_to", "must be after claim_from", "window")],
        )


def _point_type_id(session: Session, brand_id: int, code: str | None, points_price: int | None) -> int | None:
    if points_price is None and code is None:
        return None
    if points_price is None or code is None:
        raise ValidationFailed(
            "A points price needs its point type and the other way round.",
            errors=[field_error("point_type" if code is None else "points_price", "required with the other")],
        )
    pt = point_type_by_code(session, brand_id, code)
    if pt.kind != "spendable" or not pt.spendable:
        raise ValidationFailed(
            "Coupons are exchanged for spendable points only.",
            errors=[field_error("point_type", "not a spendable point type", "not-spendable")],
        )
    return pt.id


def _snapshot(template: CouponTemplate) -> dict[str, Any]:
    return {
        "code": template.code,
        "name": template.name,
        "status": template.status,
        "stock_available": template.stock_available,
        "budget_available": str(template.budget_available) if template.budget_available is not None else None,
        "limit_per_member": template.limit_per_member,
        "limit_per_member_per_day": template.limit_per_member_per_day,
        "limit_per_day": template.limit_per_day,
        "claimable": template.claimable,
        "claim_from": template.claim_from.isoformat() if template.claim_from else None,
        "claim_to": template.claim_to.isoformat() if template.claim_to else None,
        "points_price": template.points_price,
        "cash_price": str(template.cash_price) if template.cash_price is not None else None,
    }


def create_template(session: Session, *, actor: Principal, data: TemplateIn) -> CouponTemplate:
    brand_id = actor.scope.require_brand()
    if session.scalar(
        select(CouponTemplate.id).where(CouponTemplate.brand_id == brand_id, CouponTemplate.code == data.code)
    ):
        raise Conflict(
            f"A coupon template with code '{data.code}' exists.", errors=[field_error("code", "taken")]
        )
    _check_window(data.claim_from, data.claim_to)
    face = face_value(data.rules)
    if data.budget_total is not None and face is None:
        raise ValidationFailed(
            "A budget needs a face value: give the percent-off discount a cap, or the repeat threshold a "
            "maximum number of times.",
            errors=[field_error("budget_total", "the discount has no upper bound", "no-face-value")],
        )
    if data.code_source == "imported" and data.stock_total is not None:
        raise ValidationFailed(
            "An imported-code template's stock is its codes.",
            errors=[field_error("stock_total", "comes from the imported codes", "imported-codes")],
        )
    template = CouponTemplate(
        brand_id=brand_id,
        code=data.code,
        name=data.name,
        description=data.description,
        status=data.status,
        rules=data.rules.model_dump(mode="json"),
        face_value=face if face is not None else ZERO,
        code_source=data.code_source,
        code_format=(data.code_format or codegen.CodeFormat()).model_dump(mode="json"),
        stock_total=data.stock_total,
        stock_available=0 if data.code_source == "imported" or data.stock_total is not None else None,
        budget_total=data.budget_total,
        budget_available=ZERO if data.budget_total is not None else None,
        limit_per_member=data.limit_per_member,
        limit_per_member_per_day=data.limit_per_member_per_day,
        limit_per_day=data.limit_per_day,
        claimable=data.claimable,
        claim_from=data.claim_from,
        claim_to=data.claim_to,
        point_type_id=_point_type_id(session, brand_id, data.point_type, data.points_price),
        points_price=data.points_price,
        cash_price=data.cash_price,
        return_on_refund=data.return_on_refund,
    )
    if data.code_source == "imported":
        template.stock_total = 0
    session.add(template)
    session.flush()
    move_stock(
        session,
        actor,
        template,
        "restock",
        quantity=data.stock_total or 0,
        budget=data.budget_total or ZERO,
        reason="initial stock",
    )
    audit.record(
        session,
        actor=actor,
        action="coupon_template.created",
        entity_type="coupon_template",
        entity_id=template.id,
        brand_id=brand_id,
        after={**_snapshot(template), "rules": template.rules},
    )
    return template


def update_template(
    session: Session, *, actor: Principal, template_id: int, data: TemplateUpdate
) -> CouponTemplate:
    template = locked_template(session, template_id)
    before = _snapshot(template)
    changes = data.model_dump(exclude_unset=True)
    if template.status == "retired" and changes.get("status", "retired") != "retired":
        raise Conflict(
            "A retired template stays retired.", errors=[field_error("status", "retired for good")]
        )
    if "points_price" in changes and changes["points_price"] is not None and template.point_type_id is None:
        raise ValidationFailed(
            "The template has no point type; create it with one to sell it for points.",
            errors=[field_error("points_price", "no point type on this template", "no-point-type")],
        )
    for name, value in changes.items():
        setattr(template, name, value)
    _check_window(template.claim_from, template.claim_to)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="coupon_template.updated",
        entity_type="coupon_template",
        entity_id=template.id,
        brand_id=template.brand_id,
        before=before,
        after=_snapshot(template),
    )
    return template


def restock(session: Session, *, actor: Principal, template_id: int, data: RestockIn) -> CouponTemplate:
    template = locked_template(session, template_id)
    if template.code_source == "imported" and data.quantity != 0:
        raise ValidationFailed(
            "An imported-code template gets stock by importing codes.",
            errors=[field_error("quantity", "import codes instead", "imported-codes")],
        )
    if data.quantity != 0 and template.stock_available is None:
        raise ValidationFailed(
            "This template has unlimited stock.",
            errors=[field_error("quantity", "stock is unlimited", "unlimited")],
        )
    if data.budget != ZERO and template.budget_available is None:
        raise ValidationFailed(
            "This template has no budget.", errors=[field_error("budget", "no budget to change", "unlimited")]
        )
    before = _snapshot(template)
    move_stock(
        session, actor, template, "adjust", quantity=data.quantity, budget=data.budget, reason=data.reason
    )
    if template.stock_total is not None:
        template.stock_total += data.quantity
    if template.budget_total is not None:
        template.budget_total = to_money(template.budget_total + data.budget)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="coupon_template.restocked",
        entity_type="coupon_template",
        entity_id=template.id,
        brand_id=template.brand_id,
        before=before,
        after=_snapshot(template),
        note=data.reason,
    )
    return template


def import_codes(session: Session, *, actor: Principal, template_id: int, text: str) -> CodeImportOut:
    """Add third-party codes (CSV: one per row or a ``code`` column) to an imported-code template.

    Duplicates in the file, invalid codes and codes this brand already stores are reported, not
    imported; the rest become stock.
    """
    template = locked_template(session, template_id)
    if template.code_source != "imported":
        raise ValidationFailed(
            "This template generates its own codes.",
            errors=[field_error("file", "the template's codes are generated", "generated-codes")],
        )
    parsed = codegen.parse_import(text, None)
    stored = _stored_codes(session, template.brand_id, parsed.codes)
    fresh = [c for c in parsed.codes if c not in stored]
    now = utcnow()
    if fresh:
        session.execute(
            insert(CouponCode),
            [
                {
                    "brand_id": template.brand_id,
                    "template_id": template.id,
                    "code": c,
                    "status": "available",
                    "created_at": now,
                }
                for c in fresh
            ],
        )
        move_stock(session, actor, template, "restock", quantity=len(fresh), reason="codes imported")
        template.stock_total = (template.stock_total or 0) + len(fresh)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="coupon_template.codes_imported",
        entity_type="coupon_template",
        entity_id=template.id,
        brand_id=template.brand_id,
        after={"imported": len(fresh), "duplicates": len(parsed.duplicates), "invalid": len(parsed.invalid)},
    )
    return CodeImportOut(
        imported=len(fresh),
        duplicates=[dict(d) for d in parsed.duplicates],
        invalid=[dict(d) for d in parsed.invalid],
        already_stored=sorted(stored)[:1000],
        stock_available=template.stock_available,
    )


def _stored_codes(session: Session, brand_id: int, candidates: Sequence[str]) -> set[str]:
    """Which of ``candidates`` this brand already holds, as imported codes or issued coupons."""
    from huiyuan.coupons.models import Coupon

    found: set[str] = set()
    for start in range(0, len(candidates), 1000):
        chunk = list(candidates[start : start + 1000])
        for model in (CouponCode, Coupon):
            found.update(
                session.scalars(select(model.code).where(model.brand_id == brand_id, model.code.in_(chunk)))
            )
    return found


def point_type_codes(session: Session, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    return dict(session.execute(select(PointType.id, PointType.code).where(PointType.id.in_(ids))).all())


def template_outs(session: Session, templates: Sequence[CouponTemplate]) -> list[TemplateOut]:
    pts = point_type_codes(session, {t.point_type_id for t in templates if t.point_type_id is not None})
    return [
        TemplateOut(
            id=t.id,
            code=t.code,
            name=t.name,
            description=t.description,
            status=t.status,
            rules=t.rules,
            face_value=t.face_value,
            code_source=t.code_source,
            code_format=t.code_format,
            stock_total=t.stock_total,
            stock_available=t.stock_available,
            budget_total=t.budget_total,
            budget_available=t.budget_available,
            limit_per_member=t.limit_per_member,
            limit_per_member_per_day=t.limit_per_member_per_day,
            limit_per_day=t.limit_per_day,
            claimable=t.claimable,
            claim_from=t.claim_from,
            claim_to=t.claim_to,
            point_type=pts.get(t.point_type_id) if t.point_type_id is not None else None,
            points_price=t.points_price,
            cash_price=t.cash_price,
            return_on_refund=t.return_on_refund,
            created_at=t.created_at,
            updated_at=t.updated_at,
        )
        for t in templates
    ]


def template_out(session: Session, template: CouponTemplate) -> TemplateOut:
    return template_outs(session, [template])[0]

"""Business verbs configuring what a brand sells: plan categories and plan levels. Each verb writes its
audit row in the caller's transaction and never commits. Benefit specs are checked by their grantor
(``benefits.registry.validate_benefit``) before they are stored. Subscriptions live in ``service``."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from huiyuan.audit import service as audit
from huiyuan.benefits.registry import validate_benefit
from huiyuan.kit.errors import Conflict, NotFound, ValidationFailed, field_error
from huiyuan.kit.scope import Principal
from huiyuan.kit.types import to_money
from huiyuan.paid.models import MULTIPLIER_SCALE, PlanCategory, PlanLevel
from huiyuan.paid.repository import PlanRepository
from huiyuan.paid.schemas import CategoryIn, CategoryUpdate, LevelBenefits, LevelIn, LevelUpdate

# -- categories ------------------------------------------------------------------------------------


def _category_snapshot(c: PlanCategory) -> dict[str, Any]:
    return {
        "code": c.code,
        "name": c.name,
        "customer_group": c.customer_group,
        "description": c.description,
        "status": c.status,
    }


def create_category(session: Session, *, actor: Principal, data: CategoryIn) -> PlanCategory:
    """Add a plan category to the actor's brand; the code is unique within the brand."""
    brand_id = actor.scope.require_brand()
    repo = PlanRepository(session)
    existing = repo.category_by_code(brand_id, data.code)
    if existing is not None:
        raise Conflict(
            f"Plan category '{data.code}' exists.",
            errors=[field_error("code", "already in use", "taken")],
            existing_category_id=existing.id,
        )
    category = PlanCategory(
        brand_id=brand_id,
        code=data.code,
        name=data.name,
        customer_group=data.customer_group,
        description=data.description,
        status="active",
    )
    session.add(category)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="paid.category.created",
        entity_type="paid_plan_category",
        entity_id=category.id,
        brand_id=brand_id,
        after=_category_snapshot(category),
    )
    return category


def list_categories(session: Session) -> list[PlanCategory]:
    """Plan categories in the caller's scope."""
    return PlanRepository(session).categories()


def get_category(session: Session, category_id: int) -> PlanCategory:
    """The plan category with this id in the caller's scope, or 404."""
    category = PlanRepository(session).category(category_id)
    if category is None:
        raise NotFound(f"Plan category {category_id} was not found.")
    return category


def update_category(
    session: Session, *, actor: Principal, category_id: int, data: CategoryUpdate
) -> PlanCategory:
    """Change a category's attributes; only the fields sent change."""
    category = PlanRepository(session).category(category_id, for_update=True)
    if category is None:
        raise NotFound(f"Plan category {category_id} was not found.")
    before = _category_snapshot(category)
    sent = data.model_dump(exclude_unset=True)
    for name in ("name", "customer_group", "status"):
        if sent.get(name) is not None:
            setattr(category, name, sent[name])
    if "description" in sent:
        category.description = sent["description"]
    after = _category_snapshot(category)
    if after != before:
        session.flush()
        audit.record(
            session,
            actor=actor,
            action="paid.category.updated",
            entity_type="paid_plan_category",
            entity_id=category.id,
            brand_id=category.brand_id,
            before=before,
            after=after,
        )
    return category


# -- levels ----------------------------------------------------------------------------------------


def check_benefits(benefits: LevelBenefits, *, field: str = "benefits") -> None:
    """Every benefit spec of a level, checked by its grantor; all problems are reported at once."""
    errors: list[dict[str, Any]] = []
    specs = [(f"{field}.one_time.{i}", b) for i, b in enumerate(benefits.one_time)]
    if benefits.periodic is not None:
        specs += [(f"{field}.periodic.benefits.{i}", b) for i, b in enumerate(benefits.periodic.benefits)]
    for name, spec in specs:
        try:
            validate_benefit(spec, field=name)
        except ValidationFailed as exc:
            errors.extend(exc.errors)
    if errors:
        raise ValidationFailed("Some benefits are not valid.", errors=errors)


def _apply_benefits(level: PlanLevel, benefits: LevelBenefits) -> None:
    level.one_time_benefits = [dict(b) for b in benefits.one_time]
    level.benefit_period = benefits.periodic.period if benefits.periodic else None
    level.periodic_benefits = [dict(b) for b in benefits.periodic.benefits] if benefits.periodic else []
    level.points_multiplier_bp = int(benefits.points_multiplier * MULTIPLIER_SCALE)


def level_snapshot(lv: PlanLevel) -> dict[str, Any]:
    return {
        "code": lv.code,
        "name": lv.name,
        "rank": lv.rank,
        "price": str(lv.price),
        "validity": f"{lv.validity_count} {lv.validity_unit}",
        "cooling_off_days": lv.cooling_off_days,
        "one_time_benefits": lv.one_time_benefits,
        "benefit_period": lv.benefit_period,
        "periodic_benefits": lv.periodic_benefits,
        "points_multiplier": str(lv.points_multiplier),
        "status": lv.status,
    }


def _check_rank_free(repo: PlanRepository, category_id: int, rank: int, level_id: int | None) -> None:
    holder = repo.level_by_rank(category_id, rank)
    if holder is not None and holder.id != level_id:
        raise Conflict(
            f"Level '{holder.code}' already has rank {rank} in this category.",
            errors=[field_error("rank", "already used in this category", "taken")],
            existing_level_id=holder.id,
        )


def create_level(session: Session, *, actor: Principal, data: LevelIn) -> PlanLevel:
    """Add a level to a category of the actor's brand; code and rank are unique within the category."""
    brand_id = actor.scope.require_brand()
    repo = PlanRepository(session)
    category = repo.category(data.category_id, for_update=True)
    if category is None:
        raise ValidationFailed(
            "Unknown plan category.",
            errors=[field_error("category_id", "no such category", "unknown-category")],
        )
    existing = repo.level_by_code(category.id, data.code)
    if existing is not None:
        raise Conflict(
            f"Level '{data.code}' exists in this category.",
            errors=[field_error("code", "already in use", "taken")],
            existing_level_id=existing.id,
        )
    _check_rank_free(repo, category.id, data.rank, None)
    check_benefits(data.benefits)
    level = PlanLevel(
        brand_id=brand_id,
        category_id=category.id,
        code=data.code,
        name=data.name,
        rank=data.rank,
        price=to_money(data.price),
        validity_unit=data.validity.unit,
        validity_count=data.validity.count,
        cooling_off_days=data.cooling_off_days,
        status="active",
    )
    _apply_benefits(level, data.benefits)
    session.add(level)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="paid.level.created",
        entity_type="paid_plan_level",
        entity_id=level.id,
        brand_id=brand_id,
        after={"category_id": category.id, **level_snapshot(level)},
    )
    return level


def get_level(session: Session, level_id: int) -> PlanLevel:
    """The plan level with this id in the caller's scope, or 404."""
    level = PlanRepository(session).level(level_id)
    if level is None:
        raise NotFound(f"Plan level {level_id} was not found.")
    return level


def list_levels(session: Session, *, category_id: int | None) -> list[PlanLevel]:
    """Levels in the caller's scope, by category then rank."""
    return PlanRepository(session).levels(category_id=category_id)


def update_level(session: Session, *, actor: Principal, level_id: int, data: LevelUpdate) -> PlanLevel:
    """Change a level; only the fields sent change. Sold subscriptions keep what they paid."""
    repo = PlanRepository(session)
    level = repo.level(level_id, for_update=True)
    if level is None:
        raise NotFound(f"Plan level {level_id} was not found.")
    before = level_snapshot(level)
    sent = data.model_dump(exclude_unset=True)
    if data.rank is not None and data.rank != level.rank:
        _check_rank_free(repo, level.category_id, data.rank, level.id)
        level.rank = data.rank
    if data.name is not None:
        level.name = data.name
    if data.price is not None:
        level.price = to_money(data.price)
    if data.validity is not None:
        level.validity_unit, level.validity_count = data.validity.unit, data.validity.count
    if data.cooling_off_days is not None:
        level.cooling_off_days = data.cooling_off_days
    if data.status is not None:
        level.status = data.status
    if "benefits" in sent and data.benefits is not None:
        check_benefits(data.benefits)
        _apply_benefits(level, data.benefits)
    after = level_snapshot(level)
    if after != before:
        session.flush()
        audit.record(
            session,
            actor=actor,
            action="paid.level.updated",
            entity_type="paid_plan_level",
            entity_id=level.id,
            brand_id=level.brand_id,
            before=before,
            after=after,
        )
    return level

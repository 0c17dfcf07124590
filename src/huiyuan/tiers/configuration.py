"""Configuring a brand's tier program and its levels. Rules within one level are checked by the
schemas; rules across levels (one base level at rank 0, unique ranks, downgrade targets ranked
below) here. Each verb writes its audit row and outbox event and never commits."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from huiyuan.audit import service as audit
from huiyuan.benefits import registry as benefits
from huiyuan.kit.errors import Conflict, NotFound, ValidationFailed, field_error
from huiyuan.kit.scope import Principal
from huiyuan.outbox.service import emit
from huiyuan.tiers.ladder import NoTierProgram
from huiyuan.tiers.models import TierLevel, TierProgram
from huiyuan.tiers.repository import TierRepository
from huiyuan.tiers.schemas import LevelIn, LevelUpdate, ProgramIn, condition_document

MULTIPLIER_PLACES = Decimal("0.001")


def _program_snapshot(p: TierProgram) -> dict[str, Any]:
    return {"window": p.window, "settlement": p.settlement, "grace_days": p.grace_days}


def configure_program(session: Session, *, actor: Principal, data: ProgramIn) -> TierProgram:
    """Create or change the brand's tier program (window, settlement, grace period). New values
    apply to validity periods set from now on."""
    brand_id = actor.scope.require_brand()
    repo = TierRepository(session)
    program = repo.program(brand_id)
    before = _program_snapshot(program) if program else None
    values = {
        "window": data.window.model_dump(mode="json"),
        "settlement": data.settlement.model_dump(mode="json"),
        "grace_days": data.grace_days,
    }
    if program is None:
        program = TierProgram(brand_id=brand_id, **values)
        session.add(program)
    else:
        for name, value in values.items():
            setattr(program, name, value)
    session.flush()
    after = _program_snapshot(program)
    if after == before:
        return program
    audit.record(
        session,
        actor=actor,
        action="tier_program.configured",
        entity_type="tier_program",
        entity_id=program.id,
        brand_id=brand_id,
        before=before,
        after=after,
    )
    emit(
        session,
        type="tier.program_configured",
        brand_id=brand_id,
        aggregate_type="tier_program",
        aggregate_id=program.id,
        payload={"program_id": program.id, **after},
    )
    return program


def get_program(session: Session, *, actor: Principal) -> tuple[TierProgram, list[TierLevel]]:
    """The brand's program and levels, or 404."""
    brand_id = actor.scope.require_brand()
    repo = TierRepository(session)
    program = repo.program(brand_id)
    if program is None:
        raise NotFound("This brand has no tier program.")
    return program, repo.levels(brand_id)


def list_levels(session: Session, *, actor: Principal) -> list[TierLevel]:
    """The brand's levels by rank."""
    return TierRepository(session).levels(actor.scope.require_brand())


def get_level(session: Session, level_id: int) -> TierLevel:
    """The level with this id in the caller's scope, or 404."""
    level = TierRepository(session).level(level_id)
    if level is None:
        raise NotFound(f"Tier level {level_id} was not found.")
    return level


def level_snapshot(lv: TierLevel) -> dict[str, Any]:
    return {
        "code": lv.code,
        "name_zh": lv.name_zh,
        "name_en": lv.name_en,
        "rank": lv.rank,
        "upgrade": lv.upgrade,
        "retention": lv.retention,
        "validity": lv.validity,
        "downgrade_to": lv.downgrade_to_code,
        "points_multiplier": str(lv.points_multiplier),
        "upgrade_gifts": lv.upgrade_gifts,
        "benefits": lv.benefits,
    }


def _check_benefits(specs: list[dict[str, Any]], field: str) -> None:
    for i, spec in enumerate(specs):
        benefits.validate_benefit(spec, field=f"{field}.{i}")


def _check_ladder(levels: list[TierLevel], changed: TierLevel) -> None:
    """Rules across levels: one base level at rank 0, unique ranks, downgrade targets below."""
    errors: list[dict[str, Any]] = []
    ranks = [lv.rank for lv in levels]
    if len(set(ranks)) != len(ranks):
        errors.append(field_error("rank", f"rank {changed.rank} is taken", "rank-taken"))
    if 0 not in ranks:
        errors.append(field_error("rank", "the first level must be the base level (rank 0)", "no-base-level"))
    if changed.rank == 0:
        if changed.upgrade is not None:
            errors.append(field_error("upgrade", "the base level has no upgrade condition", "base-level"))
        if changed.validity is not None:
            errors.append(field_error("validity", "the base level does not expire", "base-level"))
        if changed.downgrade_to_code is not None:
            errors.append(field_error("downgrade_to", "nothing is below the base level", "base-level"))
    by_code = {lv.code: lv for lv in levels}
    for lv in levels:
        if lv.downgrade_to_code is None:
            continue
        target = by_code.get(lv.downgrade_to_code)
        if target is None or target.rank >= lv.rank:
            where = "downgrade_to" if lv is changed else f"levels.{lv.code}.downgrade_to"
            errors.append(field_error(where, "must name a level ranked below", "invalid-downgrade-target"))
    if errors:
        raise ValidationFailed("The tier levels are not consistent.", errors=errors)


def create_level(session: Session, *, actor: Principal, data: LevelIn) -> TierLevel:
    """Add a level to the brand's program (the first one must be the base level, rank 0)."""
    brand_id = actor.scope.require_brand()
    repo = TierRepository(session)
    program = repo.program(brand_id)
    if program is None:
        raise NoTierProgram("Configure the tier program first (PUT /api/v1/tiers/program).")
    existing = repo.levels(brand_id)
    taken = next((lv for lv in existing if lv.code == data.code), None)
    if taken is not None:
        raise Conflict(
            f"Tier level '{data.code}' exists.",
            errors=[field_error("code", "already in use", "taken")],
            existing_level_id=taken.id,
        )
    _check_benefits(data.upgrade_gifts, "upgrade_gifts")
    _check_benefits(data.benefits, "benefits")
    level = TierLevel(
        brand_id=brand_id,
        program_id=program.id,
        code=data.code,
        name_zh=data.name_zh,
        name_en=data.name_en,
        rank=data.rank,
        upgrade=condition_document(data.upgrade),
        retention=condition_document(data.retention),
        validity=data.validity.model_dump(mode="json") if data.validity else None,
        downgrade_to_code=data.downgrade_to,
        points_multiplier=data.points_multiplier.quantize(MULTIPLIER_PLACES),
        upgrade_gifts=list(data.upgrade_gifts),
        benefits=list(data.benefits),
    )
    _check_ladder([*existing, level], level)
    session.add(level)
    session.flush()
    after = level_snapshot(level)
    audit.record(
        session,
        actor=actor,
        action="tier_level.created",
        entity_type="tier_level",
        entity_id=level.id,
        brand_id=brand_id,
        after=after,
    )
    emit(
        session,
        type="tier.level_created",
        brand_id=brand_id,
        aggregate_type="tier_level",
        aggregate_id=level.id,
        payload={"level_id": level.id, **after},
    )
    return level


def update_level(session: Session, *, actor: Principal, level_id: int, data: LevelUpdate) -> TierLevel:
    """Change a level; only the fields sent change. The base level stays at rank 0."""
    repo = TierRepository(session)
    level = repo.level(level_id, for_update=True)
    if level is None:
        raise NotFound(f"Tier level {level_id} was not found.")
    before = level_snapshot(level)
    sent = data.model_fields_set
    if "rank" in sent and data.rank is not None and (data.rank == 0) != (level.rank == 0):
        raise ValidationFailed(
            "The base level keeps rank 0 and no other level may take it.",
            errors=[field_error("rank", "rank 0 is the base level", "base-level")],
        )
    for name in ("name_zh", "name_en", "rank"):
        if name in sent and getattr(data, name) is not None:
            setattr(level, name, getattr(data, name))
    if data.points_multiplier is not None:
        level.points_multiplier = data.points_multiplier.quantize(MULTIPLIER_PLACES)
    if "upgrade" in sent:
        level.upgrade = condition_document(data.upgrade)
    if "retention" in sent:
        level.retention = condition_document(data.retention)
    if "validity" in sent:
        level.validity = data.validity.model_dump(mode="json") if data.validity else None
    if "downgrade_to" in sent:
        level.downgrade_to_code = data.downgrade_to
    for name in ("upgrade_gifts", "benefits"):
        specs = getattr(data, name)
        if name in sent and specs is not None:
            _check_benefits(specs, name)
            setattr(level, name, list(specs))
    others = [lv for lv in repo.levels(level.brand_id) if lv.id != level.id]
    _check_ladder([*others, level], level)
    after = level_snapshot(level)
    if after == before:
        return level
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="tier_level.updated",
        entity_type="tier_level",
        entity_id=level.id,
        brand_id=level.brand_id,
        before=before,
        after=after,
    )
    emit(
        session,
        type="tier.level_updated",
        brand_id=level.brand_id,
        aggregate_type="tier_level",
        aggregate_id=level.id,
        payload={"level_id": level.id, **after},
    )
    return level

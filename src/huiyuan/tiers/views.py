"""Response shapes built from tier rows and service results (no queries, no rules)."""

from __future__ import annotations

from typing import Any

from huiyuan.tiers import policy
from huiyuan.tiers.distribution import Distribution
from huiyuan.tiers.models import TierChange, TierLevel, TierProgram
from huiyuan.tiers.reads import MemberTierView
from huiyuan.tiers.schemas import (
    BasisOut,
    DistributionLevel,
    DistributionOut,
    LevelBrief,
    LevelOut,
    MemberTierOut,
    OverrideOut,
    ProgramOut,
    ProgressOut,
    TierChangeOut,
)


def level_out(lv: TierLevel) -> LevelOut:
    return LevelOut(
        id=lv.id,
        code=lv.code,
        name_zh=lv.name_zh,
        name_en=lv.name_en,
        rank=lv.rank,
        upgrade=lv.upgrade,
        retention=lv.retention,
        validity=lv.validity,
        downgrade_to=lv.downgrade_to_code,
        points_multiplier=lv.points_multiplier,
        upgrade_gifts=lv.upgrade_gifts,
        benefits=lv.benefits,
    )


def level_brief(lv: TierLevel) -> LevelBrief:
    return LevelBrief(
        id=lv.id,
        code=lv.code,
        name_zh=lv.name_zh,
        name_en=lv.name_en,
        rank=lv.rank,
        points_multiplier=lv.points_multiplier,
    )


def program_out(program: TierProgram, levels: list[TierLevel]) -> ProgramOut:
    return ProgramOut(
        id=program.id,
        window=program.window,
        settlement=program.settlement,
        grace_days=program.grace_days,
        levels=[level_out(lv) for lv in levels],
    )


def _progress(
    level: TierLevel | None, condition: dict[str, Any] | None, basis: policy.Basis
) -> ProgressOut | None:
    if level is None:
        return None
    return ProgressOut(
        level=level_brief(level),
        met=policy.is_met(condition, basis),
        condition=policy.progress(condition, basis),
    )


def member_tier_out(view: MemberTierView) -> MemberTierOut:
    state = view.state
    override = None
    if state is not None and state.override_level_id is not None:
        override = OverrideOut(
            level=level_brief(view.ladder.by_id(state.override_level_id)),
            until=state.override_until,
            reason=state.override_reason,
        )
    retention = view.retention_level
    return MemberTierOut(
        member_id=view.member_id,
        level=level_brief(view.level),
        since=state.since if state else None,
        valid_until=state.valid_until if state else None,
        review_at=state.review_at if state else None,
        lapsed=state.lapsed if state else False,
        rfm_score=state.rfm_score if state else None,
        override=override,
        basis=BasisOut(**view.basis.as_dict()),
        next_level=_progress(
            view.next_level, view.next_level.upgrade if view.next_level else None, view.basis
        ),
        retention=_progress(
            retention, (retention.retention or retention.upgrade) if retention else None, view.basis
        ),
    )


def change_out(change: TierChange, codes: dict[int, str]) -> TierChangeOut:
    return TierChangeOut(
        id=change.id,
        member_id=change.member_id,
        reason=change.reason,
        from_level=codes.get(change.from_level_id) if change.from_level_id is not None else None,
        to_level=codes.get(change.to_level_id, str(change.to_level_id)),
        from_rank=change.from_rank,
        to_rank=change.to_rank,
        valid_until=change.valid_until,
        basis=change.basis,
        note=change.note,
        actor=change.actor,
        occurred_at=change.occurred_at,
    )


def distribution_out(dist: Distribution) -> DistributionOut:
    return DistributionOut(
        days=dist.days,
        levels=[
            DistributionLevel(
                code=lv.code, name_zh=lv.name_zh, name_en=lv.name_en, rank=lv.rank, counts=dist.counts[lv.id]
            )
            for lv in dist.levels
        ],
    )

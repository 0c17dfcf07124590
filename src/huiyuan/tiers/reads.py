"""Read-only queries of member tiers: a member's level with the values that decide the next change
(``member_tier``, shown by the API, the member's own ``/me/tier`` and the console), the member's
tier changes (``tier_history``), the level other domains look up (``current_tier``,
``current_tiers``: earn multipliers, prices, card and coupon conditions; points earning resolves
these two by this module's path), and the lookups evaluation shares with them (the member, the
current qualification window and the member's values in a window). Nothing here writes; the verbs
that change a level are in ``service``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from huiyuan.kit.clock import utcnow
from huiyuan.kit.errors import NotFound
from huiyuan.members.models import Member
from huiyuan.members.repository import MemberRepository
from huiyuan.tiers import policy
from huiyuan.tiers.ladder import Ladder, load_ladder, require_ladder
from huiyuan.tiers.models import MemberTier, TierChange, TierLevel
from huiyuan.tiers.repository import BasisRepository, TierRepository


def require_member(session: Session, member_id: int) -> Member:
    """The member (of the caller's brand); ``NotFound`` otherwise."""
    member = MemberRepository(session).get(member_id)
    if member is None:
        raise NotFound(f"Member {member_id} was not found.")
    return member


def basis_for(
    session: Session, state: MemberTier | None, member_id: int, window: policy.Window
) -> policy.Basis:
    """The member's values in ``window``."""
    repo = BasisRepository(session)
    spend, best = repo.spend(member_id, window.start, window.end)
    return policy.Basis(
        growth=repo.growth(member_id, window.start, window.end),
        spend=spend,
        single_order=best,
        rfm_score=state.rfm_score if state is not None else None,
        window=window,
    )


def current_window(ladder: Ladder, now: datetime) -> policy.Window:
    """The qualification window of the ladder's programme ending ``now``."""
    return policy.qualification_window(ladder.program.window, end=now, anchor=now, tz=ladder.tz)


@dataclass
class MemberTierView:
    member_id: int
    ladder: Ladder
    state: MemberTier | None
    level: TierLevel
    basis: policy.Basis
    next_level: TierLevel | None
    retention_level: TierLevel | None


def member_tier(session: Session, member_id: int) -> MemberTierView:
    """A member's level with the values that decide the next change (read-only)."""
    member = require_member(session, member_id)
    ladder = require_ladder(session, member.brand_id)
    state = TierRepository(session).state(member_id)
    level = ladder.by_id(state.level_id) if state is not None else ladder.base
    basis = basis_for(session, state, member_id, current_window(ladder, utcnow()))
    return MemberTierView(
        member_id=member_id,
        ladder=ladder,
        state=state,
        level=level,
        basis=basis,
        next_level=ladder.above(level),
        retention_level=level if state is not None and state.valid_until is not None else None,
    )


def tier_history(
    session: Session, member_id: int, *, before_id: int | None, limit: int
) -> tuple[list[TierChange], dict[int, str]]:
    """The member's tier changes, newest first, with level codes by id."""
    member = require_member(session, member_id)
    repo = TierRepository(session)
    codes = {lv.id: lv.code for lv in repo.levels(member.brand_id)}
    return repo.changes(member_id, before_id=before_id, limit=limit), codes


@dataclass(frozen=True)
class CurrentTier:
    """What other domains need to know about a member's level."""

    member_id: int
    level_id: int
    code: str
    rank: int
    points_multiplier: Decimal
    valid_until: datetime | None


# -- the level other domains look up ---------------------------------------------------------------


def current_tier(session: Session, member_id: int) -> CurrentTier | None:
    """The member's level for other domains (earn multipliers, prices); the base level for a member
    never evaluated; ``None`` when the member is unknown or the brand has no tier program."""
    member = MemberRepository(session).get(member_id)
    if member is None:
        return None
    ladder = load_ladder(session, member.brand_id)
    if ladder is None:
        return None
    return _current(ladder, member_id, TierRepository(session).state(member_id))


def current_tiers(session: Session, brand_id: int, member_ids: list[int]) -> dict[int, CurrentTier]:
    """``current_tier`` for many members of one brand in two queries (set-based earning); empty
    when the brand has no tier program."""
    ladder = load_ladder(session, brand_id)
    if ladder is None:
        return {}
    states = TierRepository(session).state_facts(member_ids)
    return {member_id: _current(ladder, member_id, states.get(member_id)) for member_id in member_ids}


def _current(ladder: Ladder, member_id: int, state: Any) -> CurrentTier:
    """The level of a member whose state (a ``MemberTier`` or its facts: ``level_id``,
    ``valid_until``) is ``state``; the base level when there is none."""
    level = ladder.by_id(state.level_id) if state is not None else ladder.base
    return CurrentTier(
        member_id=member_id,
        level_id=level.id,
        code=level.code,
        rank=level.rank,
        points_multiplier=level.points_multiplier,
        valid_until=state.valid_until if state is not None else None,
    )

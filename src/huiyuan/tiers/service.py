"""Business verbs of member tiers: evaluating a member (upgrade, settlement of an end of validity,
reactivation), operator overrides and the RFM score given from outside. Every change writes a
``TierChange`` row, an audit row and a ``tier.changed`` event in the caller's transaction; nothing
here commits. A member's tier as shown (``member_tier``), the member's changes (``tier_history``)
and the level other domains look up (``current_tier``, ``current_tiers``) are read in ``reads``;
configuration lives in ``configuration``, the distribution over time in ``distribution``.

Policies:

* Upgrade as soon as reached, to the highest level whose upgrade condition is met in the window
  ending now (levels may be skipped); only the gifts of the level reached are granted, keyed by the
  change, so a repeated evaluation grants nothing twice. An upgrade of a member who was dropped
  for not meeting retention is recorded as a reactivation.
* An end of validity is settled at ``review_at``: validity end + grace days, moved to the next
  settlement date for programs settled on a set date. The level is kept when its retention
  condition (or its upgrade condition again) is met in the window ending then; validity runs on
  from the previous end. Otherwise the member drops to the level's downgrade target (or one level
  down), but never below an active override floor, nor below a lower level whose upgrade condition
  the member still meets (which would upgrade them again at once). Settlement happens on any
  evaluation (order, growth value, API) and in the ``tiers.review`` job, whichever comes first.
* An override sets a level and is a floor until its end (or until lifted): automatic evaluation
  may raise the member above it, never below it; a level held only by the floor lasts as long as
  the override, then the level's own retention decides.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session

from huiyuan.audit import service as audit
from huiyuan.audit.models import AuditEntry
from huiyuan.benefits import registry as benefits
from huiyuan.kit.bulkinsert import insert_returning_ids
from huiyuan.kit.clock import utcnow
from huiyuan.kit.context import current_request_id
from huiyuan.kit.errors import NotFound, ValidationFailed, field_error
from huiyuan.kit.scope import Principal
from huiyuan.members.models import Member
from huiyuan.outbox.models import OutboxEvent
from huiyuan.outbox.service import emit
from huiyuan.tiers import policy
from huiyuan.tiers.ladder import Ladder, load_ladder, require_ladder
from huiyuan.tiers.models import MemberTier, TierChange, TierLevel
from huiyuan.tiers.reads import basis_for, current_window, require_member
from huiyuan.tiers.repository import ZERO, BasisRepository, TierRepository

# A member not reviewed for years is settled period by period, up to this many at once.
MAX_SETTLEMENTS = 24

CHANGES: Table = TierChange.__table__  # type: ignore[assignment]
AUDIT_LOG: Table = AuditEntry.__table__  # type: ignore[assignment]
EVENTS: Table = OutboxEvent.__table__  # type: ignore[assignment]


@dataclass
class _NewChange:
    """A change decided in a batch evaluation and not written yet: its row, and its id once the
    batch's changes are inserted."""

    row: dict[str, Any]
    id: int = 0


@dataclass
class _Batch:
    """What a batch evaluation (``evaluate_members``) writes together, by Core statements rather
    than the unit of work: the change rows in the order they were decided; what needs their ids
    (``then``: the state's last change, the upgrade gifts' keys), run once they are inserted; and
    the audit rows and ``tier.changed`` events those steps produce, in the same order."""

    changes: list[_NewChange] = field(default_factory=list)
    then: list[Callable[[], None]] = field(default_factory=list)
    audits: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    def write(self, session: Session) -> None:
        """Insert the changes, run what needs their ids, then insert the audit rows and events
        (one executemany each; ids in the order the changes were decided, as the unit of work
        would give them)."""
        now = utcnow()  # the column's default, which a driver-level insert does not apply
        ids = insert_returning_ids(session, CHANGES, [{**c.row, "created_at": now} for c in self.changes])
        for change, change_id in zip(self.changes, ids, strict=True):
            change.id = change_id
        for then in self.then:
            then()
        if self.audits:
            session.execute(insert(AUDIT_LOG), self.audits)
        if self.events:
            session.execute(insert(EVENTS), self.events)


def _floor_rank(state: MemberTier, ladder: Ladder, at: datetime) -> int:
    if state.override_level_id is None:
        return 0
    if state.override_until is not None and state.override_until <= at:
        return 0
    return ladder.by_id(state.override_level_id).rank


def _review_at(ladder: Ladder, valid_until: datetime | None) -> datetime | None:
    return policy.review_moment(
        valid_until, settlement=ladder.program.settlement, grace_days=ladder.program.grace_days, tz=ladder.tz
    )


def _record_change(
    session: Session,
    *,
    actor: Principal,
    ladder: Ladder,
    state: MemberTier,
    to: TierLevel,
    reason: str,
    since: datetime,
    valid_until: datetime | None,
    basis: policy.Basis | None,
    note: str | None,
    now: datetime,
    from_level: TierLevel | None,
    batch: _Batch | None = None,
) -> TierChange | _NewChange:
    """Write a change of ``state`` to ``to``: the change row, the state, an audit row and the
    ``tier.changed`` event. With ``batch`` the change is not written here: the state is updated at
    once (later steps of the evaluation read it), the change row joins the batch's, and what needs
    the change's id (``last_change_id``, the audit row and the event, in this order) runs once the
    batch's changes are inserted (``_Batch.write``)."""
    row: dict[str, Any] = {
        "brand_id": state.brand_id,
        "member_id": state.member_id,
        "from_level_id": from_level.id if from_level else None,
        "to_level_id": to.id,
        "from_rank": from_level.rank if from_level else None,
        "to_rank": to.rank,
        "reason": reason,
        "basis": basis.as_dict() if basis else {},
        "valid_until": valid_until,
        "note": note[:200] if note else None,
        "actor": actor.label[:200],
        "occurred_at": now,
    }
    state.level_id = to.id
    state.since = since
    state.valid_until = valid_until
    state.review_at = _review_at(ladder, valid_until)
    if batch is None:
        change = TierChange(**row)
        session.add(change)
        session.flush()
        _announce_change(
            session,
            actor=actor,
            state=state,
            change_id=change.id,
            to=to,
            from_level=from_level,
            reason=reason,
            valid_until=valid_until,
            note=note,
        )
        return change
    new = _NewChange(row)
    batch.changes.append(new)
    batch.then.append(
        lambda: _announce_change(
            session,
            actor=actor,
            state=state,
            change_id=new.id,
            to=to,
            from_level=from_level,
            reason=reason,
            valid_until=valid_until,
            note=note,
            batch=batch,
        )
    )
    return new


def _announce_change(
    session: Session,
    *,
    actor: Principal,
    state: MemberTier,
    change_id: int,
    to: TierLevel,
    from_level: TierLevel | None,
    reason: str,
    valid_until: datetime | None,
    note: str | None,
    batch: _Batch | None = None,
) -> None:
    """The part of a change that needs its id: the state's last change, the audit row and the
    ``tier.changed`` event (with ``batch``: the rows ``audit.record`` and ``emit`` would add, kept
    for one executemany each)."""
    state.last_change_id = change_id
    before = {"level": from_level.code if from_level else None}
    after = {"level": to.code, "valid_until": valid_until.isoformat() if valid_until else None}
    payload = {
        "member_id": state.member_id,
        "change_id": change_id,
        "reason": reason,
        "from_level": from_level.code if from_level else None,
        "from_rank": from_level.rank if from_level else None,
        "to_level": to.code,
        "to_rank": to.rank,
        "valid_until": valid_until.isoformat() if valid_until else None,
        "points_multiplier": str(to.points_multiplier),
    }
    if batch is None:
        audit.record(
            session,
            actor=actor,
            action=f"tier.{reason}",
            entity_type="member",
            entity_id=state.member_id,
            brand_id=state.brand_id,
            before=before,
            after=after,
            note=note,
        )
        emit(
            session,
            type="tier.changed",
            brand_id=state.brand_id,
            aggregate_type="member",
            aggregate_id=state.member_id,
            payload=payload,
        )
        return
    changes = audit.diff(before, after)
    if note:
        changes["_note"] = note
    batch.audits.append(
        {
            "brand_id": state.brand_id,
            "actor_kind": actor.kind,
            "actor_id": actor.id,
            "actor_name": actor.name,
            "action": f"tier.{reason}",
            "entity_type": "member",
            "entity_id": str(state.member_id),
            "changes": changes,
            "request_id": current_request_id(),
        }
    )
    batch.events.append(
        {
            "type": "tier.changed",
            "brand_id": state.brand_id,
            "aggregate_type": "member",
            "aggregate_id": str(state.member_id),
            "payload": payload,
        }
    )


def _ensure_state(
    session: Session, *, actor: Principal, ladder: Ladder, member: Member, now: datetime
) -> MemberTier:
    state = TierRepository(session).state(member.id, for_update=True)
    if state is not None:
        return state
    return _create_state(session, actor=actor, ladder=ladder, member=member, now=now)


def _create_state(
    session: Session,
    *,
    actor: Principal,
    ladder: Ladder,
    member: Member,
    now: datetime,
    batch: _Batch | None = None,
) -> MemberTier:
    """A member's first tier state: the base level, recorded as the ``initial`` change (flushed
    with the batch's changes when ``batch`` is given, see ``_record_change``)."""
    state = MemberTier(brand_id=member.brand_id, member_id=member.id, level_id=ladder.base.id, since=now)
    session.add(state)
    if batch is None:
        session.flush()
    _record_change(
        session,
        actor=actor,
        ladder=ladder,
        state=state,
        to=ladder.base,
        reason="initial",
        since=now,
        valid_until=None,
        basis=None,
        note=None,
        now=now,
        from_level=None,
        batch=batch,
    )
    return state


def _settle(
    session: Session,
    *,
    actor: Principal,
    ladder: Ladder,
    member: Member,
    state: MemberTier,
    now: datetime,
    batch: _Batch | None = None,
) -> None:
    """Settle the end of validity due at ``state.review_at``: keep the level or drop."""
    level = ladder.by_id(state.level_id)
    at = state.review_at
    ended = state.valid_until
    assert at is not None and ended is not None
    window = policy.qualification_window(
        ladder.program.window, end=at, anchor=ended - policy.EPSILON, tz=ladder.tz
    )
    basis = basis_for(session, state, member.id, window)
    kept = policy.is_met(level.retention or level.upgrade, basis) or policy.is_met(level.upgrade, basis)
    floor = _floor_rank(state, ladder, at)
    if kept or floor >= level.rank:
        # Validity runs on from the previous end; a level held only by the override floor lasts
        # as long as the override.
        until = policy.validity_end(level.validity, start=ended, enrolled_at=member.enrolled_at, tz=ladder.tz)
        if not kept:
            until = state.override_until
        _record_change(
            session,
            actor=actor,
            ladder=ladder,
            state=state,
            to=level,
            reason="retain",
            since=state.since,
            valid_until=until,
            basis=basis,
            note=None if kept else "held by the override floor",
            now=now,
            from_level=level,
            batch=batch,
        )
        return
    target = ladder.by_code(level.downgrade_to_code) if level.downgrade_to_code else None
    if target is None or target.rank >= level.rank:
        target = ladder.below(level)
    # Never below the override floor, nor below a lower level the member would be upgraded to at once.
    for candidate in ladder.levels:
        if target.rank < candidate.rank < level.rank and (
            candidate.rank <= floor or policy.is_met(candidate.upgrade, basis)
        ):
            target = candidate
    until = policy.validity_end(target.validity, start=at, enrolled_at=member.enrolled_at, tz=ladder.tz)
    if target.rank <= floor and not policy.is_met(target.upgrade, basis):
        until = state.override_until  # held by the floor: as long as the override lasts
    _record_change(
        session,
        actor=actor,
        ladder=ladder,
        state=state,
        to=target,
        reason="downgrade",
        since=at,
        valid_until=until,
        basis=basis,
        note=None,
        now=now,
        from_level=level,
        batch=batch,
    )
    state.lapsed = True


def _upgrade_if_reached(
    session: Session,
    *,
    actor: Principal,
    ladder: Ladder,
    member: Member,
    state: MemberTier,
    now: datetime,
    trigger: str,
    values: Values | None = None,
    gifts: list[benefits.BenefitGrant] | None = None,
    batch: _Batch | None = None,
) -> None:
    """Upgrade to the highest level reached. In a batch (``gifts`` and ``batch`` given) the
    upgrade gifts are collected in ``gifts`` once the change has its id, and granted together."""
    current = ladder.by_id(state.level_id)
    candidates = [lv for lv in ladder.levels if lv.rank > current.rank and lv.upgrade is not None]
    if not candidates:
        return
    window = current_window(ladder, now)
    if values is None:
        basis = basis_for(session, state, member.id, window)
    else:
        basis = _basis_of(values, state.rfm_score, window)
    reached = [lv for lv in candidates if policy.is_met(lv.upgrade, basis)]
    if not reached:
        return
    target = reached[-1]
    reason = "reactivation" if state.lapsed else "upgrade"
    until = policy.validity_end(target.validity, start=now, enrolled_at=member.enrolled_at, tz=ladder.tz)
    change = _record_change(
        session,
        actor=actor,
        ladder=ladder,
        state=state,
        to=target,
        reason=reason,
        since=now,
        valid_until=until,
        basis=basis,
        note=trigger,
        now=now,
        from_level=current,
        batch=batch,
    )
    state.lapsed = False
    if gifts is not None and batch is not None:
        # A batch grants them together once every member is evaluated and the changes are written.
        batch.then.append(lambda: gifts.extend(_gifts(member.id, target, change.id)))
        return
    for gift in _gifts(member.id, target, change.id):
        benefits.grant(
            session,
            actor=actor,
            member_id=gift.member_id,
            benefit=gift.benefit,
            source_type=gift.source_type,
            source_id=gift.source_id,
            key=gift.key,
        )


def _gifts(member_id: int, level: TierLevel, change_id: int) -> list[benefits.BenefitGrant]:
    """The upgrade gifts of ``level``, keyed by the change that reached it."""
    return [
        benefits.BenefitGrant(
            member_id=member_id,
            benefit=spec,
            source_type="tier",
            source_id=f"{level.id}",
            key=f"tier:{member_id}:{change_id}:{i}",
        )
        for i, spec in enumerate(level.upgrade_gifts)
    ]


def evaluate_member(
    session: Session, *, actor: Principal, member_id: int, reason: str, ladder: Ladder | None = None
) -> MemberTier | None:
    """Bring a member's level up to date now: settle ends of validity that are due, then upgrade
    if a higher level is reached. Idempotent; ``None`` when the brand has no tier program."""
    member = require_member(session, member_id)
    ladder = ladder or load_ladder(session, member.brand_id)
    if ladder is None:
        return None
    return _evaluate(session, actor=actor, ladder=ladder, member=member, now=utcnow(), reason=reason)


def _evaluate(
    session: Session,
    *,
    actor: Principal,
    ladder: Ladder,
    member: Member,
    now: datetime,
    reason: str,
    values: Values | None = None,
    state: MemberTier | None = None,
    gifts: list[benefits.BenefitGrant] | None = None,
    batch: _Batch | None = None,
) -> MemberTier:
    """Settle, then upgrade. With ``batch`` nothing is flushed here (see
    ``_record_change``)."""
    if state is None:  # not read and locked by the caller
        state = _ensure_state(session, actor=actor, ladder=ladder, member=member, now=now)
    if member.status == "closed":
        return state
    for _ in range(MAX_SETTLEMENTS):
        if state.review_at is None or state.review_at > now:
            break
        _settle(session, actor=actor, ladder=ladder, member=member, state=state, now=now, batch=batch)
    if state.override_until is not None and state.override_until <= now:
        state.override_level_id = state.override_until = state.override_reason = None
    _upgrade_if_reached(
        session,
        actor=actor,
        ladder=ladder,
        member=member,
        state=state,
        now=now,
        trigger=reason,
        values=values,
        gifts=gifts,
        batch=batch,
    )
    if batch is None:
        session.flush()
    return state


def evaluate_members(
    session: Session, *, actor: Principal, member_ids: Sequence[int], reason: str
) -> list[int]:
    """``evaluate_member`` for many members of the actor's brand (a batch of paid orders): the
    ladder, the states and the values of the current window are read for all of them in a few
    queries, and only the members whose level may change (no state yet, an end of validity or an
    override end due, a higher level reached) are evaluated one by one, in member order, and their
    changes written together; their upgrade gifts are then granted together
    (``benefits.grant_many``). Returns the members evaluated; empty when the brand has no tier
    program."""
    brand_id = actor.scope.require_brand()
    ladder = load_ladder(session, brand_id)
    if ladder is None:
        return []
    ids = sorted(set(member_ids))
    now = utcnow()
    window = current_window(ladder, now)
    tiers, basis = TierRepository(session), BasisRepository(session)
    states: dict[int, Any] = {}  # plain rows: only the members evaluated below get state objects
    values: dict[int, Values] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        states.update(tiers.state_facts(chunk))
        growth = basis.growth_by_member(chunk, window.start, window.end)
        spend = basis.spend_by_member(chunk, window.start, window.end)
        for member_id in chunk:
            total, best = spend.get(member_id, (ZERO, ZERO))
            values[member_id] = (growth.get(member_id, 0), total, best)
    changing = [
        member_id
        for member_id in ids
        if member_id not in states or _may_change(ladder, states[member_id], now, values[member_id], window)
    ]
    members = tiers.members(changing)
    locked = tiers.states([m for m in changing if m in states], for_update=True)
    gifts: list[benefits.BenefitGrant] = []
    # The changes, audit rows and events of the whole batch are written by one executemany each
    # (``_Batch``), what needs a change's id runs in between, in the order of the changes, and the
    # new and changed states are flushed together once they know their last change.
    batch = _Batch()
    for member_id in changing:
        member = members.get(member_id)
        if member is None:
            raise NotFound(f"Member {member_id} was not found.")
        _evaluate(
            session,
            actor=actor,
            ladder=ladder,
            member=member,
            now=now,
            reason=reason,
            values=values[member_id],
            # Read in this batch: locked, or known to be missing (a concurrent first evaluation
            # then fails the batch on the unique member, and the per-event handlers take over).
            state=locked.get(member_id)
            or _create_state(session, actor=actor, ladder=ladder, member=member, now=now, batch=batch),
            gifts=gifts,
            batch=batch,
        )
    with session.no_autoflush:  # the states are flushed once, with their last change
        batch.write(session)
    session.flush()
    # The upgrade gifts of the whole batch at once: each kind's grantor may write them set-based.
    benefits.grant_many(session, actor=actor, grants=gifts)
    return ids


# A member's growth, spend and best single order in the current window, read for a batch at once.
Values = tuple[int, Decimal, Decimal]


def _basis_of(values: Values, rfm_score: Decimal | None, window: policy.Window) -> policy.Basis:
    growth, spend, best = values
    return policy.Basis(growth=growth, spend=spend, single_order=best, rfm_score=rfm_score, window=window)


def _may_change(ladder: Ladder, state: Any, now: datetime, values: Values, window: policy.Window) -> bool:
    # What ``evaluate_member`` would act on: a settlement or an override end that is due, or a
    # higher level whose upgrade condition is met in the current window.
    if state.review_at is not None and state.review_at <= now:
        return True
    if state.override_until is not None and state.override_until <= now:
        return True
    current = ladder.by_id(state.level_id)
    basis = _basis_of(values, state.rfm_score, window)
    return any(
        policy.is_met(lv.upgrade, basis)
        for lv in ladder.levels
        if lv.rank > current.rank and lv.upgrade is not None
    )


def override_tier(
    session: Session,
    *,
    actor: Principal,
    member_id: int,
    level_code: str,
    reason: str,
    until: datetime | None,
) -> MemberTier:
    """Set a member's level by hand. The level is a floor until ``until`` (or until lifted):
    automatic evaluation may raise the member above it, never below it."""
    member = require_member(session, member_id)
    ladder = require_ladder(session, member.brand_id)
    level = ladder.by_code(level_code)
    if level is None:
        raise ValidationFailed(
            "Unknown tier level.", errors=[field_error("level_code", "no such level", "unknown-level")]
        )
    now = utcnow()
    if until is not None and until <= now:
        raise ValidationFailed(
            "The override must end in the future.", errors=[field_error("until", "must be in the future")]
        )
    state = _ensure_state(session, actor=actor, ladder=ladder, member=member, now=now)
    state.override_level_id = level.id
    state.override_until = until
    state.override_reason = reason
    state.lapsed = False
    _record_change(
        session,
        actor=actor,
        ladder=ladder,
        state=state,
        to=level,
        reason="override",
        since=now,
        valid_until=until,
        basis=None,
        note=reason,
        now=now,
        from_level=ladder.by_id(state.level_id),
    )
    return state


def lift_override(session: Session, *, actor: Principal, member_id: int) -> MemberTier:
    """Remove a member's override floor. A level held only by it is settled at the next review."""
    member = require_member(session, member_id)
    ladder = require_ladder(session, member.brand_id)
    state = TierRepository(session).state(member.id, for_update=True)
    if state is None or state.override_level_id is None:
        raise NotFound("This member has no tier override.")
    before = {"override_level": ladder.by_id(state.override_level_id).code}
    now = utcnow()
    state.override_level_id = state.override_until = state.override_reason = None
    if state.valid_until is None and state.level_id != ladder.base.id:
        state.valid_until = now
        state.review_at = _review_at(ladder, now)
    audit.record(
        session,
        actor=actor,
        action="tier.override_lifted",
        entity_type="member",
        entity_id=member.id,
        brand_id=member.brand_id,
        before=before,
        after={"override_level": None},
    )
    emit(
        session,
        type="tier.override_lifted",
        brand_id=member.brand_id,
        aggregate_type="member",
        aggregate_id=member.id,
        payload={"member_id": member.id, **before},
    )
    return state


def set_rfm_score(session: Session, *, actor: Principal, member_id: int, score: Decimal | None) -> MemberTier:
    """Store the RFM score given from outside and evaluate the member with it."""
    member = require_member(session, member_id)
    ladder = require_ladder(session, member.brand_id)
    now = utcnow()
    state = _ensure_state(session, actor=actor, ladder=ladder, member=member, now=now)
    before = {"rfm_score": None if state.rfm_score is None else str(state.rfm_score)}
    state.rfm_score = score
    audit.record(
        session,
        actor=actor,
        action="tier.rfm_score_set",
        entity_type="member",
        entity_id=member.id,
        brand_id=member.brand_id,
        before=before,
        after={"rfm_score": None if score is None else str(score)},
    )
    emit(
        session,
        type="tier.rfm_score_set",
        brand_id=member.brand_id,
        aggregate_type="member",
        aggregate_id=member.id,
        payload={"member_id": member.id, "rfm_score": None if score is None else str(score)},
    )
    evaluated = evaluate_member(session, actor=actor, member_id=member.id, reason="rfm_score", ladder=ladder)
    return evaluated or state

"""Consents per purpose and channel, and verifications (real name, student, occupation).

Consent history is append-only: giving and withdrawing both add a row with time, source and
evidence, and nothing is ever edited, so the state at any past moment can be shown. Recording the
state a member is already in adds nothing (retries and repeated form posts are harmless).

The rule for ``channel = "all"``: for a purpose and a concrete channel, the newest row whose channel
is either that channel or ``all`` decides. So an explicit channel row wins over an older ``all`` row,
and a newer ``all`` row (e.g. "withdraw everything") overrides every older channel row. With no row at
all, nothing is allowed (opt-in). ``consent_allows`` applies this rule for campaigns.

Verifications keep what was checked (document type, last four characters, who checked, a reference,
expiry), never the document number itself.

Every verb writes an audit row and an outbox event in the caller's transaction and never commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, get_args

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from huiyuan.audit import service as audit
from huiyuan.kit.clock import utcnow
from huiyuan.kit.errors import Conflict, NotFound, ValidationFailed, field_error
from huiyuan.kit.scope import Principal
from huiyuan.members.consent_schemas import (
    ConsentChannel,
    ConsentOut,
    ConsentPurpose,
    ConsentsOut,
    VerificationEvidence,
    VerificationKind,
    VerificationOut,
    VerificationsOut,
    VerificationStatus,
)
from huiyuan.members.models import Consent, Member, Verification
from huiyuan.members.repository import MemberRepository
from huiyuan.outbox.service import emit

PURPOSES: tuple[str, ...] = get_args(ConsentPurpose)
ALL = "all"
CHANNELS: tuple[str, ...] = tuple(c for c in get_args(ConsentChannel) if c != ALL)
KINDS: tuple[str, ...] = get_args(VerificationKind)
STATUSES: tuple[str, ...] = get_args(VerificationStatus)


class ConsentRepository:
    """Queries on consent and verification rows (tenancy applies through the session)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def history(self, member_id: int, purpose: str | None = None) -> list[Consent]:
        """Newest first. Order of recording decides (not the ``at`` clock), so skew cannot reorder."""
        stmt = select(Consent).where(Consent.member_id == member_id)
        if purpose is not None:
            stmt = stmt.where(Consent.purpose == purpose)
        return list(self.session.scalars(stmt.order_by(Consent.id.desc())))

    def verifications(self, member_id: int) -> list[Verification]:
        stmt = select(Verification).where(Verification.member_id == member_id)
        return list(self.session.scalars(stmt.order_by(Verification.id.desc())))


def _member(session: Session, member_id: int, *, lock: bool) -> Member:
    repo = MemberRepository(session)
    member = repo.get_for_update(member_id) if lock else repo.get(member_id)
    if member is None:
        raise NotFound(f"Member {member_id} was not found.")
    return member


def effective(rows: Sequence[Consent], purpose: str, channel: str) -> bool:
    """Whether ``rows`` (newest first) allow ``purpose`` on one concrete ``channel``."""
    for row in rows:
        if row.purpose == purpose and row.channel in (channel, ALL):
            return row.granted
    return False


def effective_map(rows: Sequence[Consent]) -> dict[str, dict[str, bool]]:
    """purpose → channel → allowed, for every purpose and concrete channel."""
    return {p: {c: effective(rows, p, c) for c in CHANNELS} for p in PURPOSES}


def current_consents(session: Session, member_id: int) -> list[Consent]:
    """The newest row per (purpose, channel), ``all`` rows included; see the module for the rule."""
    seen: dict[tuple[str, str], Consent] = {}
    for row in ConsentRepository(session).history(member_id):
        seen.setdefault((row.purpose, row.channel), row)
    return sorted(seen.values(), key=lambda r: (PURPOSES.index(r.purpose), r.channel))


def consent_allows(session: Session, member_id: int, purpose: str, channel: str) -> bool:
    """Whether the member may be contacted/processed for ``purpose`` on ``channel`` now.

    ``channel="all"`` asks whether every channel is allowed. Closed or erased members allow nothing.
    """
    member = MemberRepository(session).get(member_id)
    if member is None or member.status == "closed" or member.erased_at is not None:
        return False
    rows = ConsentRepository(session).history(member_id, purpose)
    channels = CHANNELS if channel == ALL else (channel,)
    return all(effective(rows, purpose, c) for c in channels)


def _check_choice(field: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValidationFailed(
            f"Unknown {field}.",
            errors=[field_error(field, "must be one of: " + ", ".join(allowed), "invalid")],
        )


def record_consent(
    session: Session,
    *,
    actor: Principal,
    member_id: int,
    purpose: str,
    channel: str,
    granted: bool,
    source: str,
    evidence: dict[str, Any] | None = None,
) -> Consent | None:
    """Give or withdraw consent; returns the new row, or ``None`` when the state was already so."""
    _check_choice("purpose", purpose, PURPOSES)
    _check_choice("channel", channel, (*CHANNELS, ALL))
    member = _member(session, member_id, lock=True)
    if granted and (member.status == "closed" or member.erased_at is not None):
        raise Conflict("A closed member cannot give consent; withdrawing is always possible.")
    rows = ConsentRepository(session).history(member_id, purpose)
    covered = CHANNELS if channel == ALL else (channel,)
    before = {c: effective(rows, purpose, c) for c in covered}
    if all(v == granted for v in before.values()):
        return None
    row = Consent(
        brand_id=member.brand_id,
        member_id=member_id,
        purpose=purpose,
        channel=channel,
        granted=granted,
        at=utcnow(),
        source=source,
        evidence=dict(evidence or {}),
    )
    session.add(row)
    session.flush()
    after = {c: effective([row, *rows], purpose, c) for c in covered}
    audit.record(
        session,
        actor=actor,
        action="consent.granted" if granted else "consent.withdrawn",
        entity_type="member",
        entity_id=member_id,
        brand_id=member.brand_id,
        before={f"consent.{purpose}.{c}": v for c, v in before.items()},
        after={f"consent.{purpose}.{c}": v for c, v in after.items()},
        note=source,
    )
    emit(
        session,
        type="consent.changed",
        brand_id=member.brand_id,
        aggregate_type="member",
        aggregate_id=member_id,
        payload={
            "member_id": member_id,
            "consent_id": row.id,
            "purpose": purpose,
            "channel": channel,
            "granted": granted,
            "source": source,
            "at": row.at.isoformat(),
            "effective": {c: effective([row, *rows], purpose, c) for c in CHANNELS},
        },
    )
    return row


def _consent_out(row: Consent) -> ConsentOut:
    return ConsentOut(
        id=row.id,
        purpose=row.purpose,
        channel=row.channel,
        granted=row.granted,
        at=row.at,
        source=row.source,
        evidence=dict(row.evidence or {}),
    )


def consents_of(session: Session, member_id: int, *, changed: bool | None = None) -> ConsentsOut:
    """Current consents, their per-channel meaning and the history of a member in the caller's scope."""
    _member(session, member_id, lock=False)
    history = ConsentRepository(session).history(member_id)
    return ConsentsOut(
        member_id=member_id,
        effective=effective_map(history),
        current=[_consent_out(r) for r in current_consents(session, member_id)],
        history=[_consent_out(r) for r in history],
        changed=changed,
    )


def _evidence_errors(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        field_error(".".join(["evidence", *(str(p) for p in e["loc"])]), e["msg"], e["type"])
        for e in exc.errors()
    ]


def record_verification(
    session: Session,
    *,
    actor: Principal,
    member_id: int,
    kind: str,
    status: str,
    evidence: dict[str, Any],
) -> Verification:
    """Record a verification result; the same result as the newest of its kind returns that row."""
    _check_choice("kind", kind, KINDS)
    _check_choice("status", status, STATUSES)
    try:
        checked = VerificationEvidence.model_validate(evidence)
    except ValidationError as exc:
        raise ValidationFailed("The verification evidence is not valid.", errors=_evidence_errors(exc))
    stored = checked.model_dump(mode="json", exclude_none=True)
    member = _member(session, member_id, lock=True)
    repo = ConsentRepository(session)
    latest = next((v for v in repo.verifications(member_id) if v.kind == kind), None)
    if latest is not None and latest.status == status and latest.evidence == stored:
        return latest
    row = Verification(
        brand_id=member.brand_id,
        member_id=member_id,
        kind=kind,
        status=status,
        evidence=stored,
        at=utcnow(),
        by=actor.label,
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="member.verified",
        entity_type="member",
        entity_id=member_id,
        brand_id=member.brand_id,
        before={f"verification.{kind}": latest.status if latest else None},
        after={f"verification.{kind}": status},
    )
    emit(
        session,
        type="member.verified",
        brand_id=member.brand_id,
        aggregate_type="member",
        aggregate_id=member_id,
        payload={
            "member_id": member_id,
            "verification_id": row.id,
            "kind": kind,
            "status": status,
            "document_type": stored["document_type"],
            "expires_on": stored.get("expires_on"),
            "at": row.at.isoformat(),
        },
    )
    return row


def _verification_out(row: Verification) -> VerificationOut:
    return VerificationOut(
        id=row.id, kind=row.kind, status=row.status, evidence=dict(row.evidence or {}), at=row.at, by=row.by
    )


def verifications_of(session: Session, member_id: int) -> VerificationsOut:
    """Every verification of a member in the caller's scope, and the newest per kind."""
    _member(session, member_id, lock=False)
    rows = ConsentRepository(session).verifications(member_id)
    current: dict[str, VerificationOut] = {}
    for row in rows:
        current.setdefault(row.kind, _verification_out(row))
    return VerificationsOut(member_id=member_id, current=current, items=[_verification_out(r) for r in rows])

"""Member-facing access: exchanging a brand system's authenticated end user for a short-lived member
token, and the verbs a member may perform on their own record.

A member principal (``kind="member"``) carries the brand scope of its token, so the session's
tenancy filter already confines it to its brand; this module confines it to its own row by never
taking a member id from the request. Must not grant anything a staff route grants.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from huiyuan.audit import service as audit
from huiyuan.auth.service import issue_member_token
from huiyuan.kit import pii
from huiyuan.kit.errors import Conflict, NotFound, Unauthenticated
from huiyuan.kit.scope import Principal
from huiyuan.members import consent, identity
from huiyuan.members import service as members
from huiyuan.members.consent_schemas import ConsentIn, ConsentsOut
from huiyuan.members.models import Member
from huiyuan.members.repository import MemberRepository
from huiyuan.members.schemas import MemberUpdate
from huiyuan.selfservice.schemas import MemberTokenRequest, MeOut, MeUpdate

TOKEN_STATUSES = ("active", "prospect")
SELF_SERVICE_SOURCE = "self_service"


class MemberNotActive(Conflict):
    code = "member-not-active"
    title = "The member cannot sign in"


@dataclass(frozen=True)
class IssuedMemberToken:
    token: str
    expires_in: int
    member_id: int


def _find_member(session: Session, brand_id: int, data: MemberTokenRequest) -> Member | None:
    repo = MemberRepository(session)
    if data.member_id is not None:
        return repo.get(data.member_id)
    if data.member_number is not None:
        return repo.by_number(brand_id, data.member_number)
    assert data.identifier is not None
    owner = repo.identifier_owner(brand_id, data.identifier.type, data.identifier.value)
    return repo.get(owner.member_id) if owner is not None else None


def issue_token(session: Session, *, actor: Principal, data: MemberTokenRequest) -> IssuedMemberToken:
    """A member token for a member of the actor's brand who is active or a prospect."""
    brand_id = actor.scope.require_brand()
    member = _find_member(session, brand_id, data)
    if member is None:
        raise NotFound("No such member in this brand.")
    if member.status not in TOKEN_STATUSES:
        raise MemberNotActive(f"A {member.status} member cannot sign in.")
    token, ttl = issue_member_token(brand_id=member.brand_id, member_id=member.id)
    # Who let whom act as a member is security-relevant, so each exchange is on record.
    audit.record(
        session,
        actor=actor,
        action="member.token_issued",
        entity_type="member",
        entity_id=member.id,
        brand_id=member.brand_id,
    )
    return IssuedMemberToken(token=token, expires_in=ttl, member_id=member.id)


def current_member(session: Session, principal: Principal) -> Member:
    """The member a member token names; a closed or vanished membership ends the token's use."""
    if principal.kind != "member" or principal.member_id is None:
        raise Unauthenticated("A member token is required.")
    member = MemberRepository(session).get(principal.member_id)
    if member is None or member.status == "closed":
        raise Unauthenticated("The membership is closed.")
    return member


def me_out(member: Member) -> MeOut:
    """The member's own record with their PII unmasked."""
    return MeOut(
        member_number=member.member_number,
        status=member.status,
        name=member.name,
        gender=member.gender,
        birthday=member.birthday,
        phone=pii.decrypt(member.phone_enc) if member.phone_enc else None,
        email=pii.decrypt(member.email_enc) if member.email_enc else None,
        province=member.province,
        city=member.city,
        interests=list(member.interests or []),
        enrolled_at=member.enrolled_at,
    )


def update_me(session: Session, *, actor: Principal, data: MeUpdate) -> Member:
    """Let a member change their own profile fields (audited with the member as actor)."""
    member = current_member(session, actor)
    sent = data.model_dump(exclude_unset=True)
    return members.update_member(session, actor=actor, member_id=member.id, data=MemberUpdate(**sent))


def my_qr(session: Session, *, actor: Principal) -> identity.MemberQr:
    """A fresh member code for the signed-in member."""
    return identity.issue_member_qr(current_member(session, actor))


def my_consents(session: Session, *, actor: Principal) -> ConsentsOut:
    """The member's consents in force, their meaning per channel, and the history."""
    return consent.consents_of(session, current_member(session, actor).id)


def change_my_consent(session: Session, *, actor: Principal, data: ConsentIn) -> ConsentsOut:
    """Give or withdraw one of the member's own consents (a repeat of the current state adds nothing)."""
    member = current_member(session, actor)
    row = consent.record_consent(
        session,
        actor=actor,
        member_id=member.id,
        purpose=data.purpose,
        channel=data.channel,
        granted=data.granted,
        source=data.source or SELF_SERVICE_SOURCE,
        evidence=data.evidence,
    )
    return consent.consents_of(session, member.id, changed=row is not None)

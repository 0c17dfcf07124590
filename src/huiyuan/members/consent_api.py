"""HTTP routes for a member's consents and verifications: thin — authenticate, call the verbs of
``members.consent``, shape the response. Another brand's member is a 404 (tenancy filter)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter

from huiyuan.auth.deps import require
from huiyuan.kit.scope import Principal
from huiyuan.kit.web import SessionDep
from huiyuan.members import consent
from huiyuan.members.consent_schemas import (
    ConsentIn,
    ConsentsOut,
    VerificationIn,
    VerificationOut,
    VerificationsOut,
)

router = APIRouter(prefix="/api/v1/members/{member_id}", tags=["consents"])

Reader = Annotated[Principal, require("members:read")]
Writer = Annotated[Principal, require("members:write")]


@router.get("/consents", response_model=ConsentsOut, summary="Consents in force and their history")
def get_consents(member_id: int, session: SessionDep, actor: Reader) -> ConsentsOut:
    return consent.consents_of(session, member_id)


@router.post(
    "/consents",
    response_model=ConsentsOut,
    summary="Give or withdraw consent",
    description="Recording the state already in force adds nothing (`changed: false`).",
)
def change_consent(member_id: int, data: ConsentIn, session: SessionDep, actor: Writer) -> ConsentsOut:
    row = consent.record_consent(
        session,
        actor=actor,
        member_id=member_id,
        purpose=data.purpose,
        channel=data.channel,
        granted=data.granted,
        source=data.source or f"api:{actor.name}",
        evidence=data.evidence,
    )
    return consent.consents_of(session, member_id, changed=row is not None)


@router.get("/verifications", response_model=VerificationsOut, summary="Verification history")
def get_verifications(member_id: int, session: SessionDep, actor: Reader) -> VerificationsOut:
    return consent.verifications_of(session, member_id)


@router.post(
    "/verifications", response_model=VerificationOut, status_code=201, summary="Record a verification result"
)
def record_verification(
    member_id: int, data: VerificationIn, session: SessionDep, actor: Writer
) -> VerificationOut:
    row = consent.record_verification(
        session,
        actor=actor,
        member_id=member_id,
        kind=data.kind,
        status=data.status,
        evidence=data.evidence.model_dump(mode="json", exclude_none=True),
    )
    return VerificationOut(
        id=row.id, kind=row.kind, status=row.status, evidence=dict(row.evidence), at=row.at, by=row.by
    )

"""HTTP routes of member tiers: thin — authenticate, call one service verb, shape the response."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query, Response

from huiyuan.auth.deps import require
from huiyuan.kit.pagination import Page, check_limit, cursor_page, decode_cursor
from huiyuan.kit.scope import Principal
from huiyuan.kit.web import SessionDep
from huiyuan.settings import get_settings
from huiyuan.tiers import configuration, distribution, reads, service, views
from huiyuan.tiers.schemas import (
    DistributionOut,
    LevelIn,
    LevelOut,
    LevelUpdate,
    MemberTierOut,
    OverrideIn,
    ProgramIn,
    ProgramOut,
    RfmScoreIn,
    TierChangeOut,
)

router = APIRouter(prefix="/api/v1", tags=["tiers"])

Reader = Annotated[Principal, require("tiers:read")]
Writer = Annotated[Principal, require("tiers:write")]


# -- program and levels ----------------------------------------------------------------------------


@router.get("/tiers/program", response_model=ProgramOut, summary="Get the tier program and its levels")
def get_program(session: SessionDep, actor: Reader) -> ProgramOut:
    return views.program_out(*configuration.get_program(session, actor=actor))


@router.put("/tiers/program", response_model=ProgramOut, summary="Configure the tier program")
def configure_program(data: ProgramIn, session: SessionDep, actor: Writer) -> ProgramOut:
    configuration.configure_program(session, actor=actor, data=data)
    return views.program_out(*configuration.get_program(session, actor=actor))


@router.get("/tiers/levels", response_model=list[LevelOut], summary="List the tier levels by rank")
def list_levels(session: SessionDep, actor: Reader) -> list[LevelOut]:
    return [views.level_out(lv) for lv in configuration.list_levels(session, actor=actor)]


@router.post("/tiers/levels", response_model=LevelOut, status_code=201, summary="Add a tier level")
def create_level(data: LevelIn, session: SessionDep, actor: Writer) -> LevelOut:
    return views.level_out(configuration.create_level(session, actor=actor, data=data))


@router.get("/tiers/levels/{level_id}", response_model=LevelOut, summary="Get a tier level")
def get_level(level_id: int, session: SessionDep, actor: Reader) -> LevelOut:
    return views.level_out(configuration.get_level(session, level_id))


@router.patch("/tiers/levels/{level_id}", response_model=LevelOut, summary="Update a tier level")
def update_level(level_id: int, data: LevelUpdate, session: SessionDep, actor: Writer) -> LevelOut:
    return views.level_out(configuration.update_level(session, actor=actor, level_id=level_id, data=data))


@router.get(
    "/tiers/distribution",
    response_model=DistributionOut,
    summary="Members per level over time (daily snapshots)",
)
def get_distribution(
    session: SessionDep,
    actor: Reader,
    from_: Annotated[date | None, Query(alias="from", description="First day (default: 90 days ago)")] = None,
    to: Annotated[
        date | None, Query(description="Last day (default: today in the brand's time zone)")
    ] = None,
) -> DistributionOut:
    return views.distribution_out(distribution.distribution(session, actor=actor, start=from_, end=to))


# -- members ---------------------------------------------------------------------------------------


@router.get(
    "/members/{member_id}/tier",
    response_model=MemberTierOut,
    summary="A member's level, validity and progress to the next level",
)
def get_member_tier(member_id: int, session: SessionDep, actor: Reader) -> MemberTierOut:
    return views.member_tier_out(reads.member_tier(session, member_id))


@router.get(
    "/members/{member_id}/tier/history",
    response_model=Page[TierChangeOut],
    summary="A member's tier changes, newest first",
)
def get_member_tier_history(
    member_id: int, session: SessionDep, actor: Reader, cursor: str | None = None, limit: int = 50
) -> Page[TierChangeOut]:
    limit = check_limit(limit, get_settings().max_page_size)
    rows, codes = reads.tier_history(session, member_id, before_id=decode_cursor(cursor), limit=limit + 1)
    return cursor_page(rows, limit, lambda shown: [views.change_out(c, codes) for c in shown])


@router.post(
    "/members/{member_id}/tier/override",
    response_model=MemberTierOut,
    summary="Set a member's level by hand (a floor until its end)",
)
def override_member_tier(
    member_id: int, data: OverrideIn, session: SessionDep, actor: Writer
) -> MemberTierOut:
    service.override_tier(
        session,
        actor=actor,
        member_id=member_id,
        level_code=data.level_code,
        reason=data.reason,
        until=data.until,
    )
    return views.member_tier_out(reads.member_tier(session, member_id))


@router.delete("/members/{member_id}/tier/override", status_code=204, summary="Lift a member's tier override")
def lift_member_tier_override(member_id: int, session: SessionDep, actor: Writer) -> Response:
    service.lift_override(session, actor=actor, member_id=member_id)
    return Response(status_code=204)


@router.put(
    "/members/{member_id}/tier/rfm-score",
    response_model=MemberTierOut,
    summary="Store the member's RFM score (computed elsewhere) and re-evaluate the level",
)
def set_member_rfm_score(
    member_id: int, data: RfmScoreIn, session: SessionDep, actor: Writer
) -> MemberTierOut:
    service.set_rfm_score(session, actor=actor, member_id=member_id, score=data.rfm_score)
    return views.member_tier_out(reads.member_tier(session, member_id))

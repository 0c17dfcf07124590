"""Member-facing points: ``/api/v1/me/points`` with a member token (see ``huiyuan.selfservice.api``).

The member is always the token's own; no route takes a member id. Entries and lots are the
member-facing shapes (no operator names, funders or unit values).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from huiyuan.kit.pagination import Page, check_limit, cursor_page, decode_cursor
from huiyuan.kit.web import SessionDep
from huiyuan.points import reads
from huiyuan.points.schemas import EntryKind, EntryOut, LotOut, LotState, PointsSummaryOut
from huiyuan.selfservice.api import CurrentMemberDep
from huiyuan.settings import get_settings

router = APIRouter(prefix="/api/v1/me/points", tags=["me"])


@router.get("", response_model=PointsSummaryOut, summary="My points per point type")
def my_points(session: SessionDep, member: CurrentMemberDep) -> PointsSummaryOut:
    return reads.member_summary(session, member.id)


@router.get("/lots", response_model=Page[LotOut], summary="My lots and when they expire, newest first")
def my_lots(
    session: SessionDep,
    member: CurrentMemberDep,
    state: LotState | None = None,
    point_type: Annotated[str | None, Query(max_length=32)] = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[Any]:
    limit = check_limit(limit, get_settings().max_page_size)
    page = reads.list_lots(
        session,
        member.id,
        state=state,
        point_type=point_type,
        before_id=decode_cursor(cursor),
        limit=limit + 1,
    )
    return cursor_page(
        page.rows, limit, lambda shown: [reads.lot_out(lot, page.codes, staff=False) for lot in shown]
    )


@router.get("/entries", response_model=Page[EntryOut], summary="My points history, newest first")
def my_entries(
    session: SessionDep,
    member: CurrentMemberDep,
    point_type: Annotated[str | None, Query(max_length=32)] = None,
    kind: EntryKind | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[Any]:
    limit = check_limit(limit, get_settings().max_page_size)
    page = reads.list_entries(
        session, member.id, point_type=point_type, kind=kind, before_id=decode_cursor(cursor), limit=limit + 1
    )
    return cursor_page(
        page.rows, limit, lambda shown: [reads.entry_out(e, page.codes, staff=False) for e in shown]
    )

"""HTTP routes of OneID: thin — permission, one service call, response model.

No route carries an id in its path: OneIDs, links, conflicts and proposals are named in the query
or the body, so every route answers only from the caller's brand (the tenancy filter and explicit
brand checks in ``identity.service``). Identifier values are masked unless the caller holds
``members:pii``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, File, Query, Request, Response, UploadFile
from fastapi.responses import JSONResponse

from huiyuan.auth.deps import require
from huiyuan.identity import mapping_import, service
from huiyuan.identity.jobs import MATCH, RECOMPUTE, SYNC_MEMBERS
from huiyuan.identity.repository import IdentityGraphRepository
from huiyuan.identity.schemas import (
    TYPE_CODE,
    ChangeFeed,
    ChangeOut,
    ConflictOut,
    ConflictPage,
    ConflictResolve,
    JobStarted,
    LinkIn,
    LinkResultOut,
    MergeIn,
    MergeOut,
    OneIdOut,
    ProposalDecision,
    ProposalOut,
    ProposalPage,
    ResolveBatchIn,
    ResolveBatchOut,
    SettingsIn,
    SettingsOut,
    UnlinkIn,
    UnlinkOut,
)
from huiyuan.jobs.service import enqueue
from huiyuan.kit import idempotency
from huiyuan.kit.idempotency import IdempotencyKey
from huiyuan.kit.pagination import check_limit, decode_cursor, encode_cursor
from huiyuan.kit.scope import Principal
from huiyuan.kit.web import SessionDep, problem_response

router = APIRouter(prefix="/api/v1/oneid", tags=["oneid"])

Reader = Annotated[Principal, require("identity:read")]
Writer = Annotated[Principal, require("identity:write")]
CONFLICT_409: dict[int | str, dict[str, Any]] = {
    409: {"description": "oneid-conflict: refused by a limit or a member clash, recorded as a conflict"}
}


@router.get("/resolve", response_model=OneIdOut, summary="Resolve one identifier to its OneID")
def resolve(
    session: SessionDep,
    actor: Reader,
    type: Annotated[str, Query(pattern=TYPE_CODE, description="Identifier type, e.g. phone")],
    value: Annotated[str, Query(min_length=1, max_length=200)],
    include_links: bool = False,
) -> OneIdOut:
    return service.resolve(session, actor=actor, type_=type, value=value, include_links=include_links)


@router.get("/persons", response_model=OneIdOut, summary="A OneID with its identifiers and golden record")
def person(
    session: SessionDep, actor: Reader, oneid: Annotated[int, Query(ge=1)], include_links: bool = False
) -> OneIdOut:
    return service.get_person(session, actor=actor, oneid=oneid, include_links=include_links)


@router.post("/resolve/batch", response_model=ResolveBatchOut, summary="Resolve up to 10,000 identifiers")
def resolve_batch(data: ResolveBatchIn, session: SessionDep, actor: Reader) -> ResolveBatchOut:
    return service.resolve_batch(session, actor=actor, data=data)


@router.get("/changes", response_model=ChangeFeed, summary="Merges and splits since a cursor")
def changes(
    session: SessionDep,
    actor: Reader,
    cursor: Annotated[
        str | None, Query(description="The cursor of the previous page; empty: from the start")
    ] = None,
    limit: int = 100,
) -> ChangeFeed:
    return service.change_feed(session, actor=actor, cursor=cursor, limit=check_limit(limit, 1000))


@router.get("/history", response_model=list[ChangeOut], summary="Every merge and split of one OneID")
def history(session: SessionDep, actor: Reader, oneid: Annotated[int, Query(ge=1)]) -> list[ChangeOut]:
    return service.history(session, actor=actor, oneid=oneid)


@router.post(
    "/links",
    response_model=LinkResultOut,
    status_code=201,
    summary="Link two identifiers by hand",
    responses=CONFLICT_409,
)
def link(data: LinkIn, request: Request, session: SessionDep, actor: Writer) -> Any:
    result = service.link_manually(session, actor=actor, data=data)
    if result.status == "conflict":
        # Answered without raising, so the request's transaction commits the recorded conflict.
        error = service.LinkConflict(
            f"The link was refused ({result.reason}) and recorded as conflict {result.conflict_id}.",
            conflict_id=result.conflict_id,
            reason=result.reason,
        )
        return problem_response(request, error)
    return LinkResultOut(status=result.status, oneid=result.oneid, link_id=result.link_id)


MERGE_OPERATION = "oneid.merge"


@router.post(
    "/merges",
    response_model=MergeOut,
    status_code=201,
    summary="Merge two people by hand (by identifier or OneID), with a reason",
    responses={
        **CONFLICT_409,
        404: {"description": "not-found: no such identifier or OneID in this brand"},
        422: {"description": "validation-failed: a side names neither or both, or the reason is empty"},
    },
)
def merge(
    data: MergeIn,
    request: Request,
    response: Response,
    session: SessionDep,
    actor: Writer,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Links the two people with a manual link (source ``manual``, rule ``manual-merge``, the caller
    as its creator) through the per-type limits; a merge the limits forbid is recorded as a conflict
    and answered 409. A retry with the same ``Idempotency-Key`` gets the first answer."""
    payload = data.model_dump(mode="json")
    if hit := idempotency.replay(
        session, actor=actor, key=idempotency_key, operation=MERGE_OPERATION, payload=payload
    ):
        if hit.status_code >= 400:
            return JSONResponse(hit.body, status_code=hit.status_code, media_type="application/problem+json")
        response.status_code = hit.status_code
        return hit.body
    result, before = service.merge_manually(session, actor=actor, data=data)
    if result.status == "conflict":
        error = service.LinkConflict(
            f"The merge was refused ({result.reason}) and recorded as conflict {result.conflict_id}.",
            conflict_id=result.conflict_id,
            reason=result.reason,
        )
        answer: Response = problem_response(request, error)
        body = json.loads(bytes(answer.body))
        status = answer.status_code
    else:
        out = MergeOut(status=result.status, oneid=result.oneid, link_id=result.link_id, oneids=before)
        body, status = out.model_dump(mode="json"), 201
        answer = JSONResponse(body, status_code=status)
    idempotency.remember(
        session,
        actor=actor,
        key=idempotency_key,
        operation=MERGE_OPERATION,
        payload=payload,
        status_code=status,
        body=body,
        resource=("oneid", result.oneid) if result.oneid is not None else None,
    )
    return answer


@router.post("/links/remove", response_model=UnlinkOut, summary="Remove a link (un-merge), with a reason")
def unlink(data: UnlinkIn, session: SessionDep, actor: Writer) -> UnlinkOut:
    removed, splits = service.unlink(session, actor=actor, link_id=data.link_id, reason=data.reason)
    return UnlinkOut(removed=removed, splits=[{"oneid": s, "parts": parts} for s, parts in splits])


@router.get("/conflicts", response_model=ConflictPage, summary="Refused links and over-limit OneIDs")
def conflicts(
    session: SessionDep,
    actor: Reader,
    status: Annotated[str | None, Query(pattern="^(open|accepted|dismissed)$")] = "open",
    cursor: str | None = None,
    limit: int = 50,
) -> ConflictPage:
    actor.scope.require_brand()
    limit = check_limit(limit, 500)
    rows = IdentityGraphRepository(session).conflicts(
        status=status, after_id=decode_cursor(cursor), limit=limit
    )
    shown = rows[:limit]
    return ConflictPage(
        items=[ConflictOut.model_validate(r) for r in shown],
        next_cursor=encode_cursor(shown[-1].id) if len(rows) > limit else None,
        limit=limit,
    )


@router.post("/conflicts/resolve", response_model=ConflictOut, summary="Accept or dismiss a conflict")
def resolve_conflict(data: ConflictResolve, session: SessionDep, actor: Writer) -> ConflictOut:
    return ConflictOut.model_validate(service.resolve_conflict(session, actor=actor, data=data))


@router.get("/settings", response_model=SettingsOut, summary="Identifier types, limits, survivorship")
def get_settings(session: SessionDep, actor: Reader) -> SettingsOut:
    return service.get_settings(session, actor=actor)


@router.put("/settings", response_model=SettingsOut, summary="Change identifier types, limits, survivorship")
def put_settings(data: SettingsIn, session: SessionDep, actor: Writer) -> SettingsOut:
    return service.update_settings(session, actor=actor, data=data)


def _started(run: Any) -> JobStarted:
    return JobStarted(job_id=run.id, kind=run.kind, status=run.status)


@router.post("/recompute", response_model=JobStarted, status_code=202, summary="Recompute every OneID (job)")
def start_recompute(session: SessionDep, actor: Writer) -> JobStarted:
    actor.scope.require_brand()
    return _started(enqueue(session, actor=actor, kind=RECOMPUTE))


@router.post(
    "/sync-members", response_model=JobStarted, status_code=202, summary="Link every member record (job)"
)
def start_sync_members(session: SessionDep, actor: Writer) -> JobStarted:
    actor.scope.require_brand()
    return _started(enqueue(session, actor=actor, kind=SYNC_MEMBERS))


@router.post("/match", response_model=JobStarted, status_code=202, summary="Probabilistic matching (job)")
def start_match(session: SessionDep, actor: Writer) -> JobStarted:
    actor.scope.require_brand()
    return _started(enqueue(session, actor=actor, kind=MATCH))


@router.post(
    "/imports/mappings",
    response_model=JobStarted,
    status_code=202,
    summary="Import platform ID mappings (CSV: left_type, left_value, right_type, right_value …)",
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "example": {
                        "file": "left_type,left_value,right_type,right_value,confidence,rule\n"
                        "member_number,LX00001234,platform_id,tmall:2209981234,1,order-address\n"
                        "phone,13800138000,platform_id,jd:jd_5f3a2b,0.9,phone-match\n"
                    }
                }
            }
        }
    },
)
def import_mappings(
    session: SessionDep,
    actor: Writer,
    file: Annotated[UploadFile, File(description="UTF-8 CSV with a header")],
) -> JobStarted:
    return _started(
        mapping_import.submit(
            session, actor=actor, stream=file.file, filename=file.filename or "mappings.csv"
        )
    )


@router.get("/proposals", response_model=ProposalPage, summary="Probabilistic matches waiting for review")
def proposals(
    session: SessionDep,
    actor: Reader,
    status: Annotated[str | None, Query(pattern="^(pending|accepted|rejected|conflict)$")] = "pending",
    cursor: str | None = None,
    limit: int = 50,
) -> ProposalPage:
    actor.scope.require_brand()
    limit = check_limit(limit, 500)
    rows = IdentityGraphRepository(session).proposals(
        status=status, after_id=decode_cursor(cursor), limit=limit
    )
    shown = rows[:limit]
    return ProposalPage(
        items=[ProposalOut.model_validate(r) for r in shown],
        next_cursor=encode_cursor(shown[-1].id) if len(rows) > limit else None,
        limit=limit,
    )


@router.post("/proposals/decide", response_model=ProposalOut, summary="Accept (link) or reject a proposal")
def decide(data: ProposalDecision, session: SessionDep, actor: Writer) -> ProposalOut:
    proposal = service.decide_proposal(session, actor=actor, proposal_id=data.proposal_id, accept=data.accept)
    return ProposalOut.model_validate(proposal)

"""HTTP routes for data-subject requests (export, erasure): thin — both need ``members:pii``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from huiyuan.auth.deps import require
from huiyuan.kit.scope import Principal
from huiyuan.kit.web import SessionDep, get_db
from huiyuan.members import privacy
from huiyuan.members.privacy_schemas import EraseRequest, ErasureOut

router = APIRouter(prefix="/api/v1/members", tags=["privacy"])

PiiHolder = Annotated[Principal, require("members:pii")]
EXPORT_EXAMPLE = {
    "format": privacy.EXPORT_FORMAT,
    "exported_at": "2026-05-01T08:00:00Z",
    "member": {"id": 42, "member_number": "AL00000042", "name": "王小明", "phone": "13800138000"},
    "identifiers": [{"id": 1, "type": "phone", "value": "13800138000", "source": "profile"}],
    "cards": [],
    "consents": [],
    "verifications": [],
    "audit": [{"id": 9, "action": "member.enrolled", "actor_kind": "api_key", "changes": {}}],
}


@router.get(
    "/{member_id}/export",
    summary="Export everything about a member (data-subject request)",
    response_class=JSONResponse,
    responses={200: {"content": {"application/json": {"example": EXPORT_EXAMPLE}}}},
)
def export_member(member_id: int, request: Request, session: SessionDep, actor: PiiHolder) -> JSONResponse:
    doc = privacy.export_member(session, actor=actor, member_id=member_id)
    # This request reads only; the audit row goes into a short write of its own (as API-key use is
    # recorded), because a read transaction that starts writing can fail on SQLite under load.
    with get_db(request).unit_of_work(actor.scope) as s:
        privacy.record_export(s, actor=actor, member_id=member_id)
    filename = f"member-{doc['member']['member_number']}.json"
    return JSONResponse(
        doc,
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )


@router.post("/{member_id}/erase", response_model=ErasureOut, summary="Erase a member's personal data")
def erase_member(member_id: int, data: EraseRequest, session: SessionDep, actor: PiiHolder) -> ErasureOut:
    done = privacy.erase_member(session, actor=actor, member_id=member_id, reason=data.reason)
    return ErasureOut(
        member_id=done.member_id,
        member_number=done.member_number,
        status=done.status,
        erased_at=done.erased_at,
    )

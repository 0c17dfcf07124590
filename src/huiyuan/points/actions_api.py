"""HTTP routes for points earned by actions and for clearing reports.

* ``POST /api/v1/members/{member_id}/points/actions`` — a member did something (check-in, review,
  game, task, referral …): the brand's action rules decide what it earns (``earning.earn_for_action``);
  the idempotency key makes a retried call earn once.
* ``GET /api/v1/points/clearing`` — the settlement of a period between the parties that fund points
  and the stores where they were spent (``clearing.settle``), as JSON, CSV or XLSX.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from huiyuan.auth.deps import require
from huiyuan.kit import tables
from huiyuan.kit.idempotency import IdempotencyKey
from huiyuan.kit.scope import Principal
from huiyuan.kit.web import SessionDep
from huiyuan.points import clearing, earning, service
from huiyuan.points.schemas import LedgerOperationOut

router = APIRouter(prefix="/api/v1", tags=["points"])

Reader = Annotated[Principal, require("points:read")]
Writer = Annotated[Principal, require("points:write")]


class ActionIn(BaseModel):
    """A member's action that earn rules with an ``action`` trigger may reward."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "idempotency_key": "checkin-42-20260315",
                    "action": "check_in",
                    "occurred_at": "2026-03-15T01:20:00Z",
                    "properties": {"channel": "mini_program"},
                }
            ]
        },
    )
    idempotency_key: str | None = Field(default=None, min_length=4, max_length=180)
    action: str = Field(pattern=r"^[a-z][a-z0-9_.]{1,63}$")
    occurred_at: datetime | None = Field(default=None, description="When it happened; default now")
    properties: dict[str, Any] = Field(default_factory=dict)


class ActionOut(BaseModel):
    action: str
    grants: list[LedgerOperationOut]


@router.post(
    "/members/{member_id}/points/actions",
    response_model=ActionOut,
    status_code=201,
    summary="Record a member's action and earn what the action rules give",
    responses={200: {"description": "A retry under the same key: what the first call earned"}},
)
def record_action(
    member_id: int,
    data: ActionIn,
    response: Response,
    session: SessionDep,
    actor: Writer,
    idempotency_key: IdempotencyKey = None,
) -> ActionOut:
    key = service.operation_key(data.idempotency_key, idempotency_key)
    occurred = data.occurred_at
    if occurred is not None and occurred.tzinfo is None:
        occurred = occurred.replace(tzinfo=UTC)
    results = earning.earn_for_action(
        session,
        actor=actor,
        member_id=member_id,
        action=data.action,
        key=service.KEY_PREFIX + key,
        occurred_at=occurred,
        properties=data.properties,
    )
    if results and all(r.replayed for r in results):
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return ActionOut(action=data.action, grants=[service.operation_out(r) for r in results])


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


@router.get(
    "/points/clearing",
    summary="Settle a period between funders and redeeming stores (JSON, CSV or XLSX)",
    responses={
        200: {
            "description": "The settlement; `format=csv` or `format=xlsx` downloads a file",
            "content": {
                "text/csv": {},
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {},
            },
        }
    },
)
def clearing_report(
    session: SessionDep,
    actor: Reader,
    start: Annotated[datetime, Query(alias="from", description="Start of the period (included)")],
    end: Annotated[datetime, Query(alias="to", description="End of the period (excluded)")],
    format: Literal["json", "csv", "xlsx"] = "json",
    point_type: Annotated[list[str] | None, Query(max_length=20)] = None,
) -> Any:
    brand_id = actor.scope.require_brand()
    settlement = clearing.settle(session, brand_id=brand_id, start=start, end=end, point_types=point_type)
    name = f"clearing-{start.date().isoformat()}-{end.date().isoformat()}"
    if format != "json":
        return tables.download(clearing.sections(settlement), name, format)
    body = {f.name: _plain(getattr(settlement, f.name)) for f in dataclasses.fields(settlement)}
    body["flows"] = [_plain(dataclasses.asdict(x)) for x in settlement.flows]
    body["unilateral"] = [_plain(dataclasses.asdict(x)) for x in settlement.unilateral]
    body["pairs"] = [_plain(dataclasses.asdict(x)) for x in settlement.pairs]
    body["positions"] = [_plain(dataclasses.asdict(x)) for x in settlement.positions]
    body["funders"] = [_plain(dataclasses.asdict(x)) for x in settlement.funders]
    body["consumed_points"] = settlement.consumed_points
    body["consumed_value"] = _plain(settlement.consumed_value)
    return body

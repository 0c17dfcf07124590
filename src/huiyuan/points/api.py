"""HTTP routes of points for operators and other systems: thin — authenticate, call one service verb,
shape the response.

Configuration under ``/api/v1/points/types`` and ``/api/v1/points/rules``; a member's points under
``/api/v1/members/{member_id}/points``; checkout under ``/api/v1/points/checkout``; brand totals under
``/api/v1/points/liability`` and ``/api/v1/points/expiring``. Ledger writes take an idempotency key
(body ``idempotency_key`` or the ``Idempotency-Key`` header): the first call answers 201, a retry
with the same request answers the same body with 200 and ``Idempotent-Replayed: true``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from sqlalchemy.orm import Session

from huiyuan.auth.deps import require
from huiyuan.kit.idempotency import IdempotencyKey
from huiyuan.kit.pagination import Page, check_limit, cursor_page, decode_cursor
from huiyuan.kit.scope import Principal
from huiyuan.kit.web import SessionDep
from huiyuan.points import config, reads, service
from huiyuan.points.ledger import LedgerResult
from huiyuan.points.schemas import (
    AdjustIn,
    EarnRuleIn,
    EarnRuleOut,
    EarnRuleStatusIn,
    EarnRuleUpdate,
    EntryKind,
    ExpiringOut,
    FreezeIn,
    GrantIn,
    LedgerOperationOut,
    LiabilityOut,
    LotState,
    PointsSummaryOut,
    PointTypeIn,
    PointTypeOut,
    PointTypeUpdate,
    QuoteIn,
    QuoteOut,
    ReservationOut,
    ReserveIn,
    RuleStatus,
    StaffEntryOut,
    StaffLotOut,
    TransferIn,
)
from huiyuan.settings import get_settings

router = APIRouter(prefix="/api/v1", tags=["points"])

Reader = Annotated[Principal, require("points:read")]
Writer = Annotated[Principal, require("points:write")]
Adjuster = Annotated[Principal, require("points:adjust")]

WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "A retry under the same idempotency key: the first result, unchanged"},
    404: {"description": "No such member in this brand"},
    409: {"description": "Not enough points (`insufficient-points`) or wrong lot state (`conflict`)"},
    422: {
        "description": "Invalid fields, a missing idempotency key, the key reused with another request "
        "(`idempotency-key-reused`), or the point type does not allow it (`points-not-allowed`)"
    },
}
SETTLE_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such reservation in this brand"},
    409: {
        "description": "The reservation was already settled the other way or timed out (`reservation-closed`)"
    },
}


def _answer(response: Response, result: LedgerResult, *, created: int = 201) -> None:
    response.status_code = 200 if result.replayed else created
    if result.replayed:
        response.headers["Idempotent-Replayed"] = "true"


# -- point types -----------------------------------------------------------------------------------


@router.get("/points/types", response_model=list[PointTypeOut], summary="List point types")
def list_point_types(session: SessionDep, actor: Reader) -> list[PointTypeOut]:
    return [config.point_type_out(pt) for pt in config.list_point_types(session)]


@router.post("/points/types", response_model=PointTypeOut, status_code=201, summary="Add a point type")
def create_point_type(data: PointTypeIn, session: SessionDep, actor: Writer) -> PointTypeOut:
    return config.point_type_out(config.create_point_type(session, actor=actor, data=data))


@router.get("/points/types/{code}", response_model=PointTypeOut, summary="Get a point type")
def get_point_type(code: str, session: SessionDep, actor: Reader) -> PointTypeOut:
    return config.point_type_out(config.get_point_type(session, actor=actor, code=code))


@router.patch("/points/types/{code}", response_model=PointTypeOut, summary="Update a point type")
def update_point_type(code: str, data: PointTypeUpdate, session: SessionDep, actor: Writer) -> PointTypeOut:
    return config.point_type_out(config.update_point_type(session, actor=actor, code=code, data=data))


# -- earn rules ------------------------------------------------------------------------------------


@router.get("/points/rules", response_model=list[EarnRuleOut], summary="List earn rules")
def list_rules(
    session: SessionDep,
    actor: Reader,
    status: RuleStatus | None = None,
    trigger: Annotated[str | None, Query(max_length=64, description='"order" or an action name')] = None,
    point_type: Annotated[str | None, Query(max_length=32)] = None,
) -> list[EarnRuleOut]:
    rules = config.list_rules(session, status=status, trigger=trigger, point_type=point_type)
    return [config.rule_out(r) for r in rules]


@router.post("/points/rules", response_model=EarnRuleOut, status_code=201, summary="Add an earn rule")
def create_rule(data: EarnRuleIn, session: SessionDep, actor: Writer) -> EarnRuleOut:
    return config.rule_out(config.create_rule(session, actor=actor, data=data))


@router.get("/points/rules/{rule_id}", response_model=EarnRuleOut, summary="Get an earn rule")
def get_rule(rule_id: int, session: SessionDep, actor: Reader) -> EarnRuleOut:
    return config.rule_out(config.get_rule(session, rule_id))


@router.patch("/points/rules/{rule_id}", response_model=EarnRuleOut, summary="Update an earn rule")
def update_rule(rule_id: int, data: EarnRuleUpdate, session: SessionDep, actor: Writer) -> EarnRuleOut:
    return config.rule_out(config.update_rule(session, actor=actor, rule_id=rule_id, data=data))


@router.post(
    "/points/rules/{rule_id}/status",
    response_model=EarnRuleOut,
    summary="Pause, resume or retire an earn rule",
    responses={409: {"description": "The rule is retired"}},
)
def change_rule_status(
    rule_id: int, data: EarnRuleStatusIn, session: SessionDep, actor: Writer
) -> EarnRuleOut:
    rule = config.change_rule_status(
        session, actor=actor, rule_id=rule_id, status=data.status, reason=data.reason
    )
    return config.rule_out(rule)


# -- a member's points -----------------------------------------------------------------------------


@router.get("/members/{member_id}/points", response_model=PointsSummaryOut, summary="A member's points")
def member_points(member_id: int, session: SessionDep, actor: Reader) -> PointsSummaryOut:
    return reads.member_summary(session, member_id)


@router.get(
    "/members/{member_id}/points/entries",
    response_model=Page[StaffEntryOut],
    summary="A member's ledger entries, newest first",
)
def member_entries(
    member_id: int,
    session: SessionDep,
    actor: Reader,
    point_type: Annotated[str | None, Query(max_length=32)] = None,
    kind: EntryKind | None = None,
    occurred_from: Annotated[datetime | None, Query(alias="from")] = None,
    occurred_to: Annotated[datetime | None, Query(alias="to")] = None,
    source_type: Annotated[str | None, Query(max_length=24)] = None,
    source_id: Annotated[str | None, Query(max_length=64)] = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[Any]:
    limit = check_limit(limit, get_settings().max_page_size)
    page = reads.list_entries(
        session,
        member_id,
        point_type=point_type,
        kind=kind,
        occurred_from=occurred_from,
        occurred_to=occurred_to,
        source_type=source_type,
        source_id=source_id,
        before_id=decode_cursor(cursor),
        limit=limit + 1,
    )
    return cursor_page(
        page.rows, limit, lambda shown: [reads.entry_out(e, page.codes, staff=True) for e in shown]
    )


@router.get(
    "/members/{member_id}/points/lots",
    response_model=Page[StaffLotOut],
    summary="A member's lots with their expiry, newest first",
)
def member_lots(
    member_id: int,
    session: SessionDep,
    actor: Reader,
    state: LotState | None = None,
    point_type: Annotated[str | None, Query(max_length=32)] = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[Any]:
    limit = check_limit(limit, get_settings().max_page_size)
    page = reads.list_lots(
        session,
        member_id,
        state=state,
        point_type=point_type,
        before_id=decode_cursor(cursor),
        limit=limit + 1,
    )
    return cursor_page(
        page.rows, limit, lambda shown: [reads.lot_out(lot, page.codes, staff=True) for lot in shown]
    )


@router.get(
    "/members/{member_id}/points/expiring",
    response_model=ExpiringOut,
    summary="A member's points expiring in the next days",
)
def member_expiring(
    member_id: int, session: SessionDep, actor: Reader, days: Annotated[int, Query(ge=1, le=366)] = 30
) -> ExpiringOut:
    return reads.expiring(session, actor=actor, days=days, member_id=member_id)


@router.post(
    "/members/{member_id}/points/grant",
    response_model=LedgerOperationOut,
    status_code=201,
    summary="Grant points by hand (a new lot, active at once)",
    responses=WRITE_RESPONSES,
)
def grant_points(
    member_id: int,
    data: GrantIn,
    response: Response,
    session: SessionDep,
    actor: Writer,
    idempotency_key: IdempotencyKey = None,
) -> LedgerOperationOut:
    result = service.grant(
        session,
        actor=actor,
        member_id=member_id,
        key=service.operation_key(data.idempotency_key, idempotency_key),
        point_type=data.point_type,
        amount=data.amount,
        reason=data.reason,
        funded_by=data.funded_by,
        store=data.store,
    )
    _answer(response, result)
    return service.operation_out(result)


@router.post(
    "/members/{member_id}/points/adjust",
    response_model=LedgerOperationOut,
    status_code=201,
    summary="Correct a member's points (±) with a reason",
    responses=WRITE_RESPONSES,
)
def adjust_points(
    member_id: int,
    data: AdjustIn,
    response: Response,
    session: SessionDep,
    actor: Adjuster,
    idempotency_key: IdempotencyKey = None,
) -> LedgerOperationOut:
    result = service.adjust(
        session,
        actor=actor,
        member_id=member_id,
        key=service.operation_key(data.idempotency_key, idempotency_key),
        point_type=data.point_type,
        amount=data.amount,
        reason=data.reason,
    )
    _answer(response, result)
    return service.operation_out(result)


def _freeze(
    member_id: int,
    data: FreezeIn,
    response: Response,
    session: Session,
    actor: Principal,
    key: str | None,
    unfreeze: bool,
) -> LedgerOperationOut:
    result = service.freeze(
        session,
        actor=actor,
        member_id=member_id,
        key=service.operation_key(data.idempotency_key, key),
        point_type=data.point_type,
        reason=data.reason,
        lot_ids=data.lot_ids,
        unfreeze=unfreeze,
    )
    _answer(response, result)
    return service.operation_out(result)


@router.post(
    "/members/{member_id}/points/freeze",
    response_model=LedgerOperationOut,
    status_code=201,
    summary="Freeze some or all of a member's lots",
    responses=WRITE_RESPONSES,
)
def freeze_points(
    member_id: int,
    data: FreezeIn,
    response: Response,
    session: SessionDep,
    actor: Adjuster,
    idempotency_key: IdempotencyKey = None,
) -> LedgerOperationOut:
    return _freeze(member_id, data, response, session, actor, idempotency_key, unfreeze=False)


@router.post(
    "/members/{member_id}/points/unfreeze",
    response_model=LedgerOperationOut,
    status_code=201,
    summary="Unfreeze some or all of a member's frozen lots",
    responses=WRITE_RESPONSES,
)
def unfreeze_points(
    member_id: int,
    data: FreezeIn,
    response: Response,
    session: SessionDep,
    actor: Adjuster,
    idempotency_key: IdempotencyKey = None,
) -> LedgerOperationOut:
    return _freeze(member_id, data, response, session, actor, idempotency_key, unfreeze=True)


@router.post(
    "/members/{member_id}/points/transfer",
    response_model=LedgerOperationOut,
    status_code=201,
    summary="Move available points to another member of the brand",
    responses=WRITE_RESPONSES,
)
def transfer_points(
    member_id: int,
    data: TransferIn,
    response: Response,
    session: SessionDep,
    actor: Writer,
    idempotency_key: IdempotencyKey = None,
) -> LedgerOperationOut:
    result = service.transfer(
        session,
        actor=actor,
        member_id=member_id,
        key=service.operation_key(data.idempotency_key, idempotency_key),
        to_member_id=data.to_member_id,
        point_type=data.point_type,
        amount=data.amount,
        reason=data.reason,
    )
    _answer(response, result)
    return service.operation_out(result)


# -- checkout --------------------------------------------------------------------------------------


@router.post(
    "/points/checkout/quote",
    response_model=QuoteOut,
    summary="How many points a member may pay a cart with",
    responses={404: {"description": "No such member in this brand"}},
)
def checkout_quote(data: QuoteIn, session: SessionDep, actor: Reader) -> QuoteOut:
    return service.quote(session, actor=actor, data=data)


@router.post(
    "/points/checkout/reserve",
    response_model=ReservationOut,
    status_code=201,
    summary="Hold points for a checkout",
    responses=WRITE_RESPONSES,
)
def checkout_reserve(
    data: ReserveIn,
    response: Response,
    session: SessionDep,
    actor: Writer,
    idempotency_key: IdempotencyKey = None,
) -> ReservationOut:
    key = service.operation_key(data.idempotency_key, idempotency_key)
    result = service.reserve(session, actor=actor, data=data, key=key)
    _answer(response, result)
    return service.reservation_out(result, key)


@router.post(
    "/points/checkout/{reservation_key}/confirm",
    response_model=ReservationOut,
    summary="Spend a held reservation (the order was paid); repeating returns the first result",
    responses=SETTLE_RESPONSES,
)
def checkout_confirm(
    reservation_key: str, response: Response, session: SessionDep, actor: Writer
) -> ReservationOut:
    result = service.settle_reservation(session, actor=actor, reservation_key=reservation_key, confirm=True)
    _answer(response, result, created=200)
    return service.reservation_out(result, reservation_key)


@router.post(
    "/points/checkout/{reservation_key}/release",
    response_model=ReservationOut,
    summary="Give a held reservation's points back; repeating returns the first result",
    responses=SETTLE_RESPONSES,
)
def checkout_release(
    reservation_key: str, response: Response, session: SessionDep, actor: Writer
) -> ReservationOut:
    result = service.settle_reservation(session, actor=actor, reservation_key=reservation_key, confirm=False)
    _answer(response, result, created=200)
    return service.reservation_out(result, reservation_key)


# -- brand totals ----------------------------------------------------------------------------------


@router.get("/points/liability", response_model=LiabilityOut, summary="Outstanding points at fair value")
def points_liability(session: SessionDep, actor: Reader) -> LiabilityOut:
    return reads.liability(session)


@router.get(
    "/points/expiring", response_model=ExpiringOut, summary="Points expiring in the next days, per day"
)
def points_expiring(
    session: SessionDep, actor: Reader, days: Annotated[int, Query(ge=1, le=366)] = 30
) -> ExpiringOut:
    return reads.expiring(session, actor=actor, days=days)

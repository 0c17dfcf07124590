"""HTTP routes of shared point programmes (联盟积分): thin — authenticate, call one service verb, shape
the response.

* The platform (``brands:manage``, no brand chosen) creates programmes and lets brands join or leave:
  ``/api/v1/points/programs`` and ``/api/v1/points/programs/{code}/brands``. A brand outside a
  programme gets 404 on every route of it, writes included; a brand in it gets 403 on platform writes.
* A brand of the programme, with its own API key, links its members and earns, spends and refunds
  for them: ``/api/v1/points/programs/{code}/members/{member_id}/…`` (``member_id`` is always the
  brand's own member). Writes take an idempotency key (body ``idempotency_key`` or the
  ``Idempotency-Key`` header), namespaced per brand: the first call answers 201, a retry 200 with
  ``Idempotent-Replayed: true``.
* Checkout holds for a linked member at the calling brand:
  ``/api/v1/points/programs/{code}/checkout/quote``, ``…/checkout/reserve`` and
  ``…/checkout/{reservation_key}/confirm`` or ``/release`` (the reservation key is the brand's own:
  another brand's reservation is not found).
* ``/api/v1/points/programs/{code}/clearing``: net positions between the programme's brands for a
  period, as JSON, CSV or XLSX (the platform and the programme's brands).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response

from huiyuan.auth.deps import require
from huiyuan.kit import tables
from huiyuan.kit.idempotency import IdempotencyKey
from huiyuan.kit.scope import Principal
from huiyuan.kit.web import SessionDep
from huiyuan.points import clearing, program_admin, program_checkout, program_clearing, programs
from huiyuan.points import service as points
from huiyuan.points.program_models import PointProgramLink
from huiyuan.points.program_schemas import (
    LinkIn,
    LinkOut,
    ParticipationIn,
    ParticipationOut,
    ParticipationUpdate,
    ProgramEarnIn,
    ProgramIn,
    ProgramOperationOut,
    ProgramOut,
    ProgramPointsOut,
    ProgramQuoteIn,
    ProgramQuoteOut,
    ProgramRefundIn,
    ProgramReservationOut,
    ProgramReserveIn,
    ProgramSpendIn,
    ProgramUpdate,
)
from huiyuan.tenancy.models import Brand

router = APIRouter(prefix="/api/v1", tags=["point programmes"])

Platform = Annotated[Principal, require("brands:manage")]
Reader = Annotated[Principal, require("points:read")]
Writer = Annotated[Principal, require("points:write")]

BASE = "/points/programs"
ADMIN_RESPONSES: dict[int | str, dict[str, Any]] = {
    403: {"description": "Not a platform principal with `brands:manage`"},
    404: {"description": "No such programme"},
    409: {
        "description": "Already exists or already in the programme (`conflict`), "
        "or the programme is closed (`program-inactive`)"
    },
    422: {
        "description": "Invalid fields, an unknown brand or point type, or a point type that cannot be spent"
    },
}
WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "A retry under the same idempotency key: the first result, unchanged"},
    404: {"description": "No such programme for this brand, or no such member in this brand"},
    409: {
        "description": "Not enough points (`insufficient-points`), the member is not linked "
        "(`member-not-linked`), or the programme or participation does not allow it (`program-inactive`)"
    },
    422: {
        "description": "Invalid fields, a missing idempotency key, or the key reused with another request "
        "(`idempotency-key-reused`)"
    },
}


def _answer(response: Response, result: programs.ProgramResult) -> ProgramOperationOut:
    response.status_code = 200 if result.replayed else 201
    if result.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return programs.operation_out(result)


# -- programmes (platform) ------------------------------------------------------------------------


@router.post(
    BASE,
    response_model=ProgramOut,
    status_code=201,
    summary="Create a shared programme",
    responses=ADMIN_RESPONSES,
)
def create_program(data: ProgramIn, session: SessionDep, actor: Platform) -> ProgramOut:
    program = program_admin.create_program(session, actor=actor, data=data)
    return program_admin.program_out(session, program)


@router.get(BASE, response_model=list[ProgramOut], summary="List the programmes the caller may see")
def list_programs(session: SessionDep, actor: Reader) -> list[ProgramOut]:
    return [program_admin.program_out(session, p) for p in program_admin.list_programs(session, actor=actor)]


@router.get(
    BASE + "/{code}",
    response_model=ProgramOut,
    summary="Get a programme",
    responses={404: {"description": "No such programme, or the brand is not in it"}},
)
def get_program(code: str, session: SessionDep, actor: Reader) -> ProgramOut:
    return program_admin.program_out(session, program_admin.get_program(session, actor=actor, code=code))


@router.patch(
    BASE + "/{code}", response_model=ProgramOut, summary="Rename, pause or close", responses=ADMIN_RESPONSES
)
def update_program(code: str, data: ProgramUpdate, session: SessionDep, actor: Reader) -> ProgramOut:
    program = program_admin.update_program(session, actor=actor, code=code, data=data)
    return program_admin.program_out(session, program)


def _participation(session: SessionDep, p: Any) -> ParticipationOut:
    brand = session.get(Brand, p.brand_id)
    assert brand is not None
    return program_admin.participation_out(p, brand)


@router.post(
    BASE + "/{code}/brands",
    response_model=ParticipationOut,
    status_code=201,
    summary="Let a brand take part",
    responses=ADMIN_RESPONSES,
)
def add_brand(code: str, data: ParticipationIn, session: SessionDep, actor: Reader) -> ParticipationOut:
    return _participation(session, program_admin.add_brand(session, actor=actor, code=code, data=data))


@router.patch(
    BASE + "/{code}/brands/{brand_code}",
    response_model=ParticipationOut,
    summary="Change a brand's earn rate, or let it leave",
    responses=ADMIN_RESPONSES,
)
def update_participation(
    code: str, brand_code: str, data: ParticipationUpdate, session: SessionDep, actor: Reader
) -> ParticipationOut:
    found = program_admin.update_participation(
        session, actor=actor, code=code, brand_code=brand_code, data=data
    )
    return _participation(session, found)


# -- members (a brand of the programme) -----------------------------------------------------------


def _link_out(code: str, link: PointProgramLink) -> LinkOut:
    return LinkOut(
        id=link.id,
        program=code,
        member_id=link.member_id,
        matched_by=link.matched_by,
        created_at=link.created_at,
    )


@router.post(
    BASE + "/{code}/links",
    response_model=LinkOut,
    status_code=201,
    summary="Link a member to the programme account (by phone)",
    responses={
        200: {"description": "The member was linked already: that link"},
        404: {"description": "No such programme for this brand, or no such member"},
        409: {"description": "Another member of the brand holds that programme account, or inactive"},
        422: {"description": "The member has no phone or is closed"},
    },
)
def link_member(code: str, data: LinkIn, response: Response, session: SessionDep, actor: Writer) -> LinkOut:
    link, created = programs.link_member(session, actor=actor, code=code, member_id=data.member_id)
    response.status_code = 201 if created else 200
    return _link_out(code, link)


@router.get(
    BASE + "/{code}/links/{member_id}",
    response_model=LinkOut,
    summary="A member's link to the programme",
    responses={404: {"description": "Not linked, or no such programme or member for this brand"}},
)
def get_link(code: str, member_id: int, session: SessionDep, actor: Reader) -> LinkOut:
    return _link_out(code, programs.get_link(session, actor=actor, code=code, member_id=member_id))


@router.get(
    BASE + "/{code}/members/{member_id}/points",
    response_model=ProgramPointsOut,
    summary="A linked member's programme balance and this brand's own lines",
    responses={
        404: {"description": "No such programme or member for this brand"},
        409: {"description": "Not linked"},
    },
)
def member_points(code: str, member_id: int, session: SessionDep, actor: Reader) -> ProgramPointsOut:
    return programs.member_points(session, actor=actor, code=code, member_id=member_id)


@router.post(
    BASE + "/{code}/members/{member_id}/earn",
    response_model=ProgramOperationOut,
    status_code=201,
    summary="Grant programme points funded by this brand",
    responses=WRITE_RESPONSES,
)
def earn(
    code: str,
    member_id: int,
    data: ProgramEarnIn,
    response: Response,
    session: SessionDep,
    actor: Writer,
    idempotency_key: IdempotencyKey = None,
) -> ProgramOperationOut:
    result = programs.earn(
        session,
        actor=actor,
        code=code,
        member_id=member_id,
        key=points.operation_key(data.idempotency_key, idempotency_key),
        amount=data.points,
        paid_amount=data.paid_amount,
        order_ref=data.order_ref,
        store=data.store,
        reason=data.reason,
    )
    return _answer(response, result)


@router.post(
    BASE + "/{code}/members/{member_id}/spend",
    response_model=ProgramOperationOut,
    status_code=201,
    summary="Spend programme points at this brand",
    responses=WRITE_RESPONSES,
)
def spend(
    code: str,
    member_id: int,
    data: ProgramSpendIn,
    response: Response,
    session: SessionDep,
    actor: Writer,
    idempotency_key: IdempotencyKey = None,
) -> ProgramOperationOut:
    result = programs.spend(
        session,
        actor=actor,
        code=code,
        member_id=member_id,
        key=points.operation_key(data.idempotency_key, idempotency_key),
        amount=data.points,
        order_ref=data.order_ref,
        store=data.store,
        reason=data.reason,
    )
    return _answer(response, result)


@router.post(
    BASE + "/{code}/members/{member_id}/refund",
    response_model=ProgramOperationOut,
    status_code=201,
    summary="Give back points of one of this brand's spends",
    responses=WRITE_RESPONSES,
)
def refund(
    code: str,
    member_id: int,
    data: ProgramRefundIn,
    response: Response,
    session: SessionDep,
    actor: Writer,
    idempotency_key: IdempotencyKey = None,
) -> ProgramOperationOut:
    result = programs.refund(
        session,
        actor=actor,
        code=code,
        member_id=member_id,
        key=points.operation_key(data.idempotency_key, idempotency_key),
        spend_key=data.spend_key,
        amount=data.points,
        reason=data.reason,
    )
    return _answer(response, result)


# -- checkout holds -------------------------------------------------------------------------------

SETTLE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Repeated: the first result, unchanged (`Idempotent-Replayed: true`)"},
    404: {"description": "No such programme for this brand, or no reservation of this brand under that key"},
    409: {
        "description": "The reservation was settled the other way or timed out (`reservation-closed`), "
        "or the participation does not allow it (`program-inactive`)"
    },
}


def _held(
    response: Response, result: programs.ProgramResult, key: str, *, created: int = 201
) -> ProgramReservationOut:
    # Like the brand checkout: a reserve answers 201, a confirm or release (a state change) 200.
    response.status_code = 200 if result.replayed else created
    if result.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return program_checkout.reservation_out(result, key)


@router.post(
    BASE + "/{code}/checkout/quote",
    response_model=ProgramQuoteOut,
    summary="How many programme points a linked member may pay a cart with here",
    responses={
        404: {"description": "No such programme or member for this brand"},
        409: {"description": "Not linked (`member-not-linked`) or inactive (`program-inactive`)"},
        422: {"description": "Invalid fields"},
    },
)
def checkout_quote(code: str, data: ProgramQuoteIn, session: SessionDep, actor: Reader) -> ProgramQuoteOut:
    return program_checkout.quote(
        session,
        actor=actor,
        code=code,
        member_id=data.member_id,
        cart_amount=data.cart_amount,
        max_points=data.max_points,
    )


@router.post(
    BASE + "/{code}/checkout/reserve",
    response_model=ProgramReservationOut,
    status_code=201,
    summary="Hold a linked member's programme points for a checkout at this brand",
    responses=WRITE_RESPONSES,
)
def checkout_reserve(
    code: str,
    data: ProgramReserveIn,
    response: Response,
    session: SessionDep,
    actor: Writer,
    idempotency_key: IdempotencyKey = None,
) -> ProgramReservationOut:
    key = points.operation_key(data.idempotency_key, idempotency_key)
    result = program_checkout.reserve(
        session,
        actor=actor,
        code=code,
        member_id=data.member_id,
        key=key,
        amount=data.points,
        order_ref=data.order_ref,
        store=data.store,
        ttl_minutes=data.ttl_minutes,
    )
    return _held(response, result, key)


@router.post(
    BASE + "/{code}/checkout/{reservation_key}/confirm",
    response_model=ProgramReservationOut,
    summary="Spend one of this brand's held reservations (the order was paid)",
    responses=SETTLE_RESPONSES,
)
def checkout_confirm(
    code: str, reservation_key: str, response: Response, session: SessionDep, actor: Writer
) -> ProgramReservationOut:
    result = program_checkout.settle(
        session, actor=actor, code=code, reservation_key=reservation_key, confirm=True
    )
    return _held(response, result, reservation_key, created=200)


@router.post(
    BASE + "/{code}/checkout/{reservation_key}/release",
    response_model=ProgramReservationOut,
    summary="Give one of this brand's held reservations back",
    responses=SETTLE_RESPONSES,
)
def checkout_release(
    code: str, reservation_key: str, response: Response, session: SessionDep, actor: Writer
) -> ProgramReservationOut:
    result = program_checkout.settle(
        session, actor=actor, code=code, reservation_key=reservation_key, confirm=False
    )
    return _held(response, result, reservation_key, created=200)


# -- clearing -------------------------------------------------------------------------------------


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
    BASE + "/{code}/clearing",
    summary="Net positions between the programme's brands for a period (JSON, CSV or XLSX)",
    responses={
        200: {
            "description": "The settlement (parties `brand:<id>`); "
            "`format=csv` or `format=xlsx` downloads a file",
            "content": {"text/csv": {}, tables.XLSX_MEDIA_TYPE: {}},
        },
        404: {"description": "No such programme, or the brand never took part"},
        422: {"description": "The period (`from`, `to`: both required) is not valid"},
    },
)
def clearing_report(
    code: str,
    session: SessionDep,
    actor: Reader,
    start: Annotated[
        datetime | None, Query(alias="from", description="Start of the period (included)")
    ] = None,
    end: Annotated[datetime | None, Query(alias="to", description="End of the period (excluded)")] = None,
    format: Literal["json", "csv", "xlsx"] = "json",
) -> Any:
    # The period is checked after the programme, so a brand outside it gets 404 whatever it sends.
    settlement = program_clearing.settle(session, actor=actor, code=code, start=start, end=end)
    if format != "json":
        name = f"program-{code}-clearing-{settlement.start.date()}-{settlement.end.date()}"
        return tables.download(clearing.sections(settlement), name, format)
    body = {f.name: _plain(getattr(settlement, f.name)) for f in dataclasses.fields(settlement)}
    for name in ("flows", "unilateral", "pairs", "positions", "funders"):
        body[name] = [_plain(dataclasses.asdict(x)) for x in getattr(settlement, name)]
    body["consumed_points"] = settlement.consumed_points
    body["consumed_value"] = _plain(settlement.consumed_value)
    return body

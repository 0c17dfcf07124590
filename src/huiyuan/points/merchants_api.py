"""HTTP routes of the brand's merchant registry, under ``/api/v1/points/merchants``: thin —
authenticate, call one verb of ``points.merchants``, shape the response.

Guarded like the rest of the points configuration: ``points:read`` to read, ``points:write`` to
register or change. Registering is idempotent on the code: the first call answers 201, a repeat of
the same body answers the merchant with 200 and ``Idempotent-Replayed: true``, the same code with
another body is a 409 problem with an error on ``code``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Response

from huiyuan.auth.deps import require
from huiyuan.kit.pagination import Page, check_limit, cursor_page, decode_cursor
from huiyuan.kit.scope import Principal
from huiyuan.kit.web import SessionDep
from huiyuan.points import merchants
from huiyuan.points.merchants import MerchantIn, MerchantOut, MerchantStatus, MerchantUpdate
from huiyuan.settings import get_settings

router = APIRouter(prefix="/api/v1", tags=["points"])

Reader = Annotated[Principal, require("points:read")]
Writer = Annotated[Principal, require("points:write")]


@router.get("/points/merchants", response_model=Page[MerchantOut], summary="List merchants, oldest first")
def list_merchants(
    session: SessionDep,
    actor: Reader,
    status: MerchantStatus | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[Any]:
    limit = check_limit(limit, get_settings().max_page_size)
    rows = merchants.list_merchants(session, status=status, after_id=decode_cursor(cursor), limit=limit + 1)
    return cursor_page(rows, limit, lambda shown: [merchants.merchant_out(m) for m in shown])


@router.post(
    "/points/merchants",
    response_model=MerchantOut,
    status_code=201,
    summary="Register a merchant that funds points",
    responses={
        200: {"description": "The same code and fields again: the merchant already registered"},
        409: {"description": "The code is registered with other fields"},
        422: {"description": "Invalid fields"},
    },
)
def create_merchant(data: MerchantIn, response: Response, session: SessionDep, actor: Writer) -> MerchantOut:
    result = merchants.create_merchant(session, actor=actor, data=data)
    if result.replayed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return merchants.merchant_out(result.merchant)


@router.get(
    "/points/merchants/{code}",
    response_model=MerchantOut,
    summary="Get a merchant",
    responses={404: {"description": "No such merchant in this brand"}},
)
def get_merchant(code: str, session: SessionDep, actor: Reader) -> MerchantOut:
    return merchants.merchant_out(merchants.get_merchant(session, actor=actor, code=code))


@router.patch(
    "/points/merchants/{code}",
    response_model=MerchantOut,
    summary="Update a merchant's name, contact or status",
    responses={
        404: {"description": "No such merchant in this brand"},
        422: {"description": "Invalid fields"},
    },
)
def update_merchant(code: str, data: MerchantUpdate, session: SessionDep, actor: Writer) -> MerchantOut:
    return merchants.merchant_out(merchants.update_merchant(session, actor=actor, code=code, data=data))

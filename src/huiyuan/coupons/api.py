"""HTTP routes of coupons: thin — authenticate, call one verb, shape the response.

Operators: templates, stock, code import, issue, void, push runs, coupon lookup, settlement and
figures under ``/api/v1/coupons``. Checkout systems (``coupons:redeem``): ``/coupons/evaluate``,
``/coupons/locks`` and a lock's ``redeem`` / ``release`` / ``return``. Writes that create something
take an idempotency key (body ``idempotency_key`` or the ``Idempotency-Key`` header): the first
call answers 201, a retry with the same request 200 with ``Idempotent-Replayed: true``.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Query, Response, UploadFile

from huiyuan.auth.deps import require
from huiyuan.coupons import checkout, issuing, push, reports, templates
from huiyuan.coupons.schemas import (
    CodeImportOut,
    CouponEventOut,
    CouponOut,
    CouponStatus,
    EvaluateIn,
    IssueIn,
    IssueRunOut,
    LockIn,
    LockOut,
    PushIn,
    RedeemIn,
    RefundPurchaseIn,
    ReleaseIn,
    RestockIn,
    TemplateIn,
    TemplateOut,
    TemplateStatus,
    TemplateUpdate,
)
from huiyuan.kit import tables
from huiyuan.kit.errors import ValidationFailed, field_error
from huiyuan.kit.idempotency import IdempotencyKey
from huiyuan.kit.pagination import Page, check_limit, cursor_page, decode_cursor
from huiyuan.kit.scope import Principal
from huiyuan.kit.web import SessionDep
from huiyuan.points.service import operation_key
from huiyuan.settings import get_settings

router = APIRouter(prefix="/api/v1")

Reader = Annotated[Principal, require("coupons:read")]
Writer = Annotated[Principal, require("coupons:write")]
Checkout = Annotated[Principal, require("coupons:redeem")]
TAGS: list[str | Enum] = ["coupons"]
CHECKOUT_TAGS: list[str | Enum] = ["coupons checkout"]

TEMPLATE_404: dict[int | str, dict[str, Any]] = {404: {"description": "No such template in this brand"}}
ISSUE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "A retry under the same idempotency key: the coupon issued the first time"},
    404: {"description": "No such member or template in this brand"},
    409: {
        "description": "Out of stock (`coupon-out-of-stock`), budget spent (`coupon-budget-exhausted`), over "
        "a limit (`coupon-limit-reached`), not issuable now (`coupon-not-issuable`), not enough points "
        "(`insufficient-points`) or the member is closed or frozen (`member-not-active`)"
    },
    422: {"description": "Invalid fields, a missing idempotency key or one reused with another request"},
}
LOCK_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Done already (same key or same state): the lock as it stands"},
    404: {"description": "No such lock, member or coupon in this brand"},
    409: {
        "description": "A coupon is no longer available (`coupon-unavailable`) or the lock is in another "
        "state (`coupon-lock-closed`)"
    },
    422: {
        "description": "A coupon does not apply (`coupon-not-applicable`) or the combination is not allowed "
        "(`coupon-combination-not-allowed`)"
    },
}


def _answer(response: Response, replayed: bool, created: int) -> None:
    response.status_code = 200 if replayed else created
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"


# -- templates --------------------------------------------------------------------------------------


@router.get(
    "/coupons/templates", response_model=Page[TemplateOut], tags=TAGS, summary="List coupon templates"
)
def list_templates(
    session: SessionDep,
    actor: Reader,
    status: TemplateStatus | None = None,
    claimable: bool | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[Any]:
    limit = check_limit(limit, get_settings().max_page_size)
    rows = templates.list_templates(
        session, status=status, claimable=claimable, after_id=decode_cursor(cursor), limit=limit + 1
    )
    return cursor_page(rows, limit, lambda shown: templates.template_outs(session, shown))


@router.post(
    "/coupons/templates",
    response_model=TemplateOut,
    status_code=201,
    tags=TAGS,
    summary="Create a coupon template",
    responses={409: {"description": "The code is taken"}, 422: {"description": "Invalid fields"}},
)
def create_template(data: TemplateIn, session: SessionDep, actor: Writer) -> TemplateOut:
    return templates.template_out(session, templates.create_template(session, actor=actor, data=data))


@router.get(
    "/coupons/templates/{template_id}",
    response_model=TemplateOut,
    tags=TAGS,
    summary="Get a template",
    responses=TEMPLATE_404,
)
def get_template(template_id: int, session: SessionDep, actor: Reader) -> TemplateOut:
    return templates.template_out(session, templates.get_template(session, template_id))


@router.patch(
    "/coupons/templates/{template_id}",
    response_model=TemplateOut,
    tags=TAGS,
    summary="Update a template's name, limits, claim window, prices or status (its rules are fixed)",
    responses=TEMPLATE_404,
)
def update_template(
    template_id: int, data: TemplateUpdate, session: SessionDep, actor: Writer
) -> TemplateOut:
    return templates.template_out(
        session, templates.update_template(session, actor=actor, template_id=template_id, data=data)
    )


@router.post(
    "/coupons/templates/{template_id}/stock",
    response_model=TemplateOut,
    tags=TAGS,
    summary="Add or take away stock or budget (recorded in the stock ledger)",
    responses={**TEMPLATE_404, 409: {"description": "Not that much stock or budget left"}},
)
def restock(template_id: int, data: RestockIn, session: SessionDep, actor: Writer) -> TemplateOut:
    return templates.template_out(
        session, templates.restock(session, actor=actor, template_id=template_id, data=data)
    )


@router.post(
    "/coupons/templates/{template_id}/codes",
    response_model=CodeImportOut,
    tags=TAGS,
    summary="Import third-party codes (CSV: one per row or a `code` column)",
    responses={
        **TEMPLATE_404,
        422: {"description": "The template generates its own codes, or the file is empty"},
    },
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "example": {"file": "code\nLX50-4K7P-9QWM\nLX50-6T2C-3HXD\nLX50-8B5R-7JNE\n"}
                }
            }
        }
    },
)
async def import_codes(
    template_id: int, session: SessionDep, actor: Writer, file: Annotated[UploadFile, File()]
) -> CodeImportOut:
    raw = await file.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValidationFailed(
            "The file is not UTF-8 text.", errors=[field_error("file", "not UTF-8", "encoding")]
        )
    return templates.import_codes(session, actor=actor, template_id=template_id, text=text)


# -- issue ------------------------------------------------------------------------------------------


@router.post(
    "/coupons/issue",
    response_model=CouponOut,
    status_code=201,
    tags=TAGS,
    summary="Issue a coupon to a member (campaigns, operators)",
    responses=ISSUE_RESPONSES,
)
def issue(
    data: IssueIn,
    response: Response,
    session: SessionDep,
    actor: Writer,
    idempotency_key: IdempotencyKey = None,
) -> CouponOut:
    key = operation_key(data.idempotency_key, idempotency_key, max_length=150)
    result = issuing.issue(
        session,
        actor=actor,
        template_id=data.template_id,
        member_id=data.member_id,
        key=f"{data.channel}:{key}",
        channel=data.channel,
        reference=data.reference,
    )
    _answer(response, result.replayed, 201)
    return issuing.coupon_outs(session, [result.coupon])[0]


@router.post(
    "/coupons/templates/{template_id}/push",
    response_model=IssueRunOut,
    status_code=202,
    tags=TAGS,
    summary="Issue to many members in the background (ids or a member filter)",
    responses={**TEMPLATE_404, 422: {"description": "No targets, or an invalid filter"}},
)
def push_issue(template_id: int, data: PushIn, session: SessionDep, actor: Writer) -> IssueRunOut:
    run = push.start_push(
        session,
        actor=actor,
        template_id=template_id,
        member_ids=data.member_ids,
        member_filter=data.member_filter,
        reference=data.reference,
    )
    return push.run_out(session, run)


@router.post(
    "/coupons/templates/{template_id}/push/file",
    response_model=IssueRunOut,
    status_code=202,
    tags=TAGS,
    summary="Issue to the members of a CSV (member ids or member numbers) in the background",
    responses={**TEMPLATE_404, 422: {"description": "Empty file or unknown members"}},
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "example": {"file": "member_number\nLX00001234\nLX00001235\nLX00002017\n"}
                }
            }
        }
    },
)
async def push_issue_file(
    template_id: int,
    session: SessionDep,
    actor: Writer,
    file: Annotated[UploadFile, File()],
    reference: str | None = None,
) -> IssueRunOut:
    templates.get_template(session, template_id)  # another brand's template: 404 before the file is read
    text = (await file.read()).decode("utf-8-sig", errors="replace")
    ids = push.parse_targets_csv(session, text)
    run = push.start_push(
        session, actor=actor, template_id=template_id, member_ids=ids, member_filter=None, reference=reference
    )
    return push.run_out(session, run)


@router.get(
    "/coupons/push/{run_id}",
    response_model=IssueRunOut,
    tags=TAGS,
    summary="A push run and its result report",
)
def get_push(run_id: int, session: SessionDep, actor: Reader) -> IssueRunOut:
    return push.run_out(session, push.get_run(session, run_id))


# -- reports ----------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


Start = Annotated[
    datetime, Query(alias="from", description="Start of the period (included), with a time zone")
]
End = Annotated[datetime, Query(alias="to", description="End of the period (excluded), with a time zone")]


@router.get(
    "/coupons/settlement",
    tags=TAGS,
    summary="Who pays for the period's coupon discounts, per store, funder and period (JSON, CSV, XLSX)",
    responses={
        200: {
            "content": {
                "text/csv": {},
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {},
            }
        }
    },
)
def settlement(
    session: SessionDep,
    actor: Reader,
    start: Start,
    end: End,
    period: Literal["day", "month", "all"] = "month",
    format: Literal["json", "csv", "xlsx"] = "json",
) -> Any:
    s = reports.settle(session, brand_id=actor.scope.require_brand(), start=start, end=end, period=period)
    name = f"coupon-settlement-{start.date().isoformat()}-{end.date().isoformat()}"
    if format in ("csv", "xlsx"):
        return tables.download(reports.settlement_sections(s), name, format)
    return _plain(dataclasses.asdict(s))


@router.get(
    "/coupons/stats",
    tags=TAGS,
    summary="Issued, used, expired, usage rate, cost and coupon sales per template, store or channel",
)
def stats(
    session: SessionDep,
    actor: Reader,
    start: Start,
    end: End,
    by: Literal["template", "store", "channel"] = "template",
) -> list[dict[str, Any]]:
    rows = reports.stats(session, brand_id=actor.scope.require_brand(), start=start, end=end, by=by)
    return [_plain(dataclasses.asdict(r)) for r in rows]


# -- checkout ---------------------------------------------------------------------------------------


@router.post(
    "/coupons/evaluate",
    tags=CHECKOUT_TAGS,
    summary="Which of a member's coupons apply to a cart, and the best combination",
)
def evaluate(data: EvaluateIn, session: SessionDep, actor: Checkout) -> dict[str, Any]:
    result = checkout.evaluate(
        session, brand_id=actor.scope.require_brand(), member_id=data.member_id, data=data.cart
    )
    return checkout.evaluation_json(result)


@router.post(
    "/coupons/locks",
    response_model=LockOut,
    status_code=201,
    tags=CHECKOUT_TAGS,
    summary="Lock coupons for an order (the chosen ones, or the best combination)",
    responses=LOCK_RESPONSES,
)
def lock(
    data: LockIn,
    response: Response,
    session: SessionDep,
    actor: Checkout,
    idempotency_key: IdempotencyKey = None,
) -> LockOut:
    result = checkout.lock(
        session,
        actor=actor,
        member_id=data.member_id,
        order_ref=data.order_ref,
        data=data.cart,
        coupon_ids=data.coupon_ids,
        ttl_minutes=data.ttl_minutes,
        key=operation_key(data.idempotency_key, idempotency_key),
    )
    _answer(response, result.replayed, 201)
    return checkout.lock_out(session, result.lock)


@router.get(
    "/coupons/locks/{lock_id}",
    response_model=LockOut,
    tags=CHECKOUT_TAGS,
    summary="Get a coupon lock",
    responses={404: {"description": "No such lock"}},
)
def get_lock(lock_id: int, session: SessionDep, actor: Reader) -> LockOut:
    return checkout.lock_out(session, checkout.get_lock(session, lock_id))


@router.post(
    "/coupons/locks/{lock_id}/redeem",
    response_model=LockOut,
    tags=CHECKOUT_TAGS,
    summary="The order was paid: use the locked coupons",
    responses=LOCK_RESPONSES,
)
def redeem(lock_id: int, data: RedeemIn, response: Response, session: SessionDep, actor: Checkout) -> LockOut:
    result = checkout.redeem(session, actor=actor, lock_id=lock_id, payment_reference=data.payment_reference)
    _answer(response, result.replayed, 200)
    return checkout.lock_out(session, result.lock)


@router.post(
    "/coupons/locks/{lock_id}/release",
    response_model=LockOut,
    tags=CHECKOUT_TAGS,
    summary="The order was cancelled: give the coupons back",
    responses=LOCK_RESPONSES,
)
def release(
    lock_id: int, data: ReleaseIn, response: Response, session: SessionDep, actor: Checkout
) -> LockOut:
    result = checkout.release(session, actor=actor, lock_id=lock_id, reason=data.reason)
    _answer(response, result.replayed, 200)
    return checkout.lock_out(session, result.lock)


@router.post(
    "/coupons/locks/{lock_id}/return",
    response_model=LockOut,
    tags=CHECKOUT_TAGS,
    summary="The order was fully refunded: reverse the cost and give back coupons still valid",
    responses=LOCK_RESPONSES,
)
def return_lock(
    lock_id: int, data: ReleaseIn, response: Response, session: SessionDep, actor: Checkout
) -> LockOut:
    result = checkout.return_lock(session, actor=actor, lock_id=lock_id, reason=data.reason)
    _answer(response, result.replayed, 200)
    return checkout.lock_out(session, result.lock)


# -- coupons ----------------------------------------------------------------------------------------


@router.get(
    "/coupons",
    response_model=Page[CouponOut],
    tags=TAGS,
    summary="Look up coupons (by code, member, template, status), newest first",
)
def list_coupons(
    session: SessionDep,
    actor: Reader,
    code: Annotated[str | None, Query(max_length=80)] = None,
    member_id: int | None = None,
    template_id: int | None = None,
    status: CouponStatus | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[Any]:
    limit = check_limit(limit, get_settings().max_page_size)
    rows = issuing.list_coupons(
        session,
        member_id=member_id,
        template_id=template_id,
        status=status,
        code=code,
        after_id=decode_cursor(cursor),
        limit=limit + 1,
    )
    return cursor_page(rows, limit, lambda shown: issuing.coupon_outs(session, shown))


@router.get(
    "/coupons/{coupon_id}",
    response_model=CouponOut,
    tags=TAGS,
    summary="Get a coupon",
    responses={404: {"description": "No such coupon"}},
)
def get_coupon(coupon_id: int, session: SessionDep, actor: Reader) -> CouponOut:
    return issuing.coupon_outs(session, [issuing.get_coupon(session, coupon_id)])[0]


@router.get(
    "/coupons/{coupon_id}/events",
    response_model=list[CouponEventOut],
    tags=TAGS,
    summary="A coupon's life: issued, locked, redeemed …",
)
def coupon_events(coupon_id: int, session: SessionDep, actor: Reader) -> list[CouponEventOut]:
    issuing.get_coupon(session, coupon_id)
    return [
        CouponEventOut.model_validate(e, from_attributes=True)
        for e in issuing.coupon_events(session, coupon_id)
    ]


@router.post(
    "/coupons/{coupon_id}/void",
    response_model=CouponOut,
    tags=TAGS,
    summary="Void an unused coupon (stock and budget come back)",
    responses={
        404: {"description": "No such coupon"},
        409: {"description": "The coupon was used or is locked"},
    },
)
def void_coupon(coupon_id: int, data: RefundPurchaseIn, session: SessionDep, actor: Writer) -> CouponOut:
    return issuing.coupon_outs(
        session, [issuing.void(session, actor=actor, coupon_id=coupon_id, reason=data.reason)]
    )[0]


@router.post(
    "/coupons/{coupon_id}/refund",
    response_model=CouponOut,
    tags=TAGS,
    summary="Refund a bought coupon that was not used (it is voided)",
    responses={404: {"description": "No such coupon"}, 409: {"description": "Not bought, or already used"}},
)
def refund_purchase(coupon_id: int, data: RefundPurchaseIn, session: SessionDep, actor: Writer) -> CouponOut:
    coupon = issuing.refund_purchase(session, actor=actor, coupon_id=coupon_id, reason=data.reason)
    return issuing.coupon_outs(session, [coupon])[0]

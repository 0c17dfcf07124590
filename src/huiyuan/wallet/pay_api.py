"""HTTP routes that move wallet money, for POS, e-commerce and other systems: top-ups, payments
(one step, or reserve then confirm / release) and refunds of both.

Every write takes an idempotency key (body ``idempotency_key`` or the ``Idempotency-Key`` header):
the first call answers 201, a retry with the same request answers the same body with 200 and
``Idempotent-Replayed: true``, the same key with another request is ``idempotency-key-reused``.
A wrong PIN fails the request but still counts towards the PIN lockout (``counting_pin_failures``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Response
from sqlalchemy.orm import Session

from huiyuan.auth.deps import require
from huiyuan.kit.db import begin_write
from huiyuan.kit.idempotency import IdempotencyKey
from huiyuan.kit.scope import Principal
from huiyuan.kit.web import SessionDep
from huiyuan.points.service import operation_key
from huiyuan.wallet import accounts, payments, refunds
from huiyuan.wallet.api import READ, WRITE
from huiyuan.wallet.core import PinIncorrect, WalletResult
from huiyuan.wallet.schemas import PayIn, PaymentOut, RefundIn, RefundOut, ReserveIn, TopUpIn, TopUpOut

router = APIRouter(prefix="/api/v1/wallet", tags=["wallet"])
T = TypeVar("T")

Reader = Annotated[Principal, require(READ)]
Writer = Annotated[Principal, require(WRITE)]

WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "A retry under the same idempotency key: the first result, unchanged"},
    403: {"description": "The wallet's PIN is missing (`pin-required`) or wrong (`pin-incorrect`)"},
    404: {"description": "No such member, wallet, payment or top-up in this brand"},
    409: {
        "description": "Not enough money (`insufficient-balance`), wallet locked or closed (`wallet-locked`, "
        "`wallet-closed`), over its limit (`wallet-balance-limit`), held payments (`wallet-holds-open`), "
        "re-bound since (`wallet-rebound`), nothing left to refund (`nothing-refundable`), no PIN set "
        "(`pin-not-set`), a hold already settled or timed out (`reservation-closed`)"
    },
    422: {
        "description": "Invalid fields, a missing idempotency key or the key reused with another request "
        "(`idempotency-key-reused`)"
    },
    423: {"description": "Too many wrong PINs: the PIN is locked for a while (`pin-locked`, `Retry-After`)"},
}


def _answer(response: Response, result: WalletResult, *, created: int = 201) -> dict[str, Any]:
    response.status_code = 200 if result.replayed else created
    if result.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return result.data


def counting_pin_failures(session: Session, actor: Principal, call: Callable[[], T]) -> T:
    """Run a write that may check a PIN. A wrong PIN rolls the write back like any failure, but the
    attempt must still count: it is recorded in a transaction of its own before the error is sent."""
    try:
        return call()
    except PinIncorrect as exc:
        session.rollback()
        begin_write(session)
        accounts.record_pin_failure(session, actor=actor, account_id=exc.account_id)
        session.commit()
        raise


# -- top-ups --------------------------------------------------------------------------------------


@router.post(
    "/top-ups",
    response_model=TopUpOut,
    status_code=201,
    summary="Top up a member's wallet (opens it on the first top-up)",
    responses=WRITE_RESPONSES,
)
def top_up(
    data: TopUpIn,
    response: Response,
    session: SessionDep,
    actor: Writer,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    key = operation_key(data.idempotency_key, idempotency_key)
    return _answer(response, payments.top_up(session, actor=actor, data=data, key=key))


@router.get("/top-ups/{key}", response_model=TopUpOut, summary="A top-up as it stands now")
def get_top_up(key: str, session: SessionDep, actor: Reader) -> TopUpOut:
    return payments.get_topup(session, actor=actor, key=key)


@router.post(
    "/top-ups/{key}/refunds",
    response_model=RefundOut,
    status_code=201,
    summary="Refund unspent principal of a top-up in cash, clawing back its bonus in proportion",
    responses=WRITE_RESPONSES,
)
def refund_top_up(
    key: str,
    data: RefundIn,
    response: Response,
    session: SessionDep,
    actor: Writer,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    refund_key = operation_key(data.idempotency_key, idempotency_key)
    return _answer(
        response, refunds.refund_topup(session, actor=actor, topup_key=key, data=data, key=refund_key)
    )


# -- payments -------------------------------------------------------------------------------------


@router.post(
    "/payments",
    response_model=PaymentOut,
    status_code=201,
    summary="Pay from a wallet in one step (POS)",
    responses=WRITE_RESPONSES,
)
def pay(
    data: PayIn,
    response: Response,
    session: SessionDep,
    actor: Writer,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    key = operation_key(data.idempotency_key, idempotency_key)
    result = counting_pin_failures(
        session, actor, lambda: payments.pay(session, actor=actor, data=data, key=key, hold=False)
    )
    return _answer(response, result)


@router.post(
    "/payments/reserve",
    response_model=PaymentOut,
    status_code=201,
    summary="Hold wallet money for a checkout; confirm or release it under the same key",
    responses=WRITE_RESPONSES,
)
def reserve(
    data: ReserveIn,
    response: Response,
    session: SessionDep,
    actor: Writer,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    key = operation_key(data.idempotency_key, idempotency_key)
    result = counting_pin_failures(
        session, actor, lambda: payments.pay(session, actor=actor, data=data, key=key, hold=True)
    )
    return _answer(response, result)


@router.get("/payments/{key}", response_model=PaymentOut, summary="A payment as it stands now")
def get_payment(key: str, session: SessionDep, actor: Reader) -> PaymentOut:
    return payments.get_payment(session, actor=actor, key=key)


@router.post(
    "/payments/{key}/confirm",
    response_model=PaymentOut,
    summary="Confirm a held payment (the order was paid); repeating returns the first result",
    responses=WRITE_RESPONSES,
)
def confirm(key: str, response: Response, session: SessionDep, actor: Writer) -> Any:
    return _answer(
        response, payments.settle(session, actor=actor, payment_key=key, confirm=True), created=200
    )


@router.post(
    "/payments/{key}/release",
    response_model=PaymentOut,
    summary="Give a held payment's money back to the wallet; repeating returns the first result",
    responses=WRITE_RESPONSES,
)
def release(key: str, response: Response, session: SessionDep, actor: Writer) -> Any:
    return _answer(
        response, payments.settle(session, actor=actor, payment_key=key, confirm=False), created=200
    )


@router.post(
    "/payments/{key}/refunds",
    response_model=RefundOut,
    status_code=201,
    summary="Refund (part of) a payment into the wallet, principal and bonus in proportion",
    responses=WRITE_RESPONSES,
)
def refund_payment(
    key: str,
    data: RefundIn,
    response: Response,
    session: SessionDep,
    actor: Writer,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    refund_key = operation_key(data.idempotency_key, idempotency_key)
    return _answer(
        response, refunds.refund_payment(session, actor=actor, payment_key=key, data=data, key=refund_key)
    )

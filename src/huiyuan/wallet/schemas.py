"""Request and response shapes of the wallet API.

Money leaves and arrives as ``Decimal`` yuan with two places (``"100.00"``); the wallet keeps it in
integer fen. Per-field rules live here, so pydantic answers 422 with field errors.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from huiyuan.points.schemas import IdempotencyKeyField, OrderRef, Reason, StoreCode

SpendOrder = Literal["principal_first", "bonus_first"]
AccountStatus = Literal["open", "locked", "closed"]
RuleStatus = Literal["active", "paused", "retired"]
TypeStatus = Literal["active", "retired"]
BonusKind = Literal["fixed", "percent"]
VerificationMethod = Literal["id_document", "sms_code", "original_card", "in_store", "other"]

MAX_YUAN = Decimal("1000000.00")


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


UTCTime = Annotated[AwareDatetime, AfterValidator(_utc)]
WalletCode = Annotated[
    str, Field(min_length=1, max_length=28, pattern=r"^[a-z0-9][a-z0-9_-]*$", examples=["giftcard"])
]
RuleCode = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$")]
Channel = Annotated[str, Field(min_length=1, max_length=24, pattern=r"^[a-z0-9_-]+$", examples=["store"])]
Yuan = Annotated[Decimal, Field(gt=0, le=MAX_YUAN, max_digits=9, decimal_places=2, examples=["100.00"])]
YuanOrZero = Annotated[Decimal, Field(ge=0, le=MAX_YUAN, max_digits=9, decimal_places=2)]
Pin = Annotated[str, Field(pattern=r"^[0-9]{6}$", description="Six digits", examples=["135790"])]

_FORBID = ConfigDict(extra="forbid", str_strip_whitespace=True)


# -- wallet types ---------------------------------------------------------------------------------


class WalletTypeIn(BaseModel):
    """A kind of stored value. It gets two ledger point types, ``w.<code>.p`` (principal) and
    ``w.<code>.b`` (bonus), one unit per fen."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [
                {
                    "code": "giftcard",
                    "name": "品牌礼品卡",
                    "spend_order": "principal_first",
                    "bonus_expiry_days": 365,
                    "require_pin": True,
                    "max_balance": "5000.00",
                }
            ]
        },
    )
    code: WalletCode
    name: str = Field(min_length=1, max_length=80)
    spend_order: SpendOrder = "principal_first"
    bonus_expiry_days: int | None = Field(
        default=None, ge=1, le=3650, description="None: bonus never expires"
    )
    require_pin: bool = False
    max_balance: Yuan | None = None
    reservation_minutes: int = Field(default=15, ge=1, le=1440)


class WalletTypeUpdate(BaseModel):
    """Partial update; lots already granted keep their expiry."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={"examples": [{"spend_order": "bonus_first"}, {"status": "retired"}]},
    )
    name: str | None = Field(default=None, min_length=1, max_length=80)
    spend_order: SpendOrder | None = None
    bonus_expiry_days: int | None = Field(default=None, ge=1, le=3650)
    require_pin: bool | None = None
    max_balance: Yuan | None = None
    reservation_minutes: int | None = Field(default=None, ge=1, le=1440)
    status: TypeStatus | None = None


class WalletTypeOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 1,
                    "code": "giftcard",
                    "name": "品牌礼品卡",
                    "status": "active",
                    "spend_order": "principal_first",
                    "principal_point_type": "w.giftcard.p",
                    "bonus_point_type": "w.giftcard.b",
                    "bonus_expiry_days": 365,
                    "require_pin": True,
                    "max_balance": "5000.00",
                    "reservation_minutes": 15,
                    "created_at": "2026-03-01T02:00:00Z",
                }
            ]
        }
    )
    id: int
    code: str
    name: str
    status: str
    spend_order: str
    principal_point_type: str
    bonus_point_type: str
    bonus_expiry_days: int | None
    require_pin: bool
    max_balance: Decimal | None
    reservation_minutes: int
    created_at: datetime


# -- top-up rules ---------------------------------------------------------------------------------

RULE_EXAMPLE: dict[str, Any] = {
    "code": "gold-weekend-10pct",
    "name": "金卡周末充值赠10%",
    "wallet_type": "giftcard",
    "tier_codes": ["gold", "platinum"],
    "channels": ["store", "miniapp"],
    "weekdays": [6, 7],
    "valid_from": "2026-03-01T00:00:00+08:00",
    "valid_to": "2026-04-01T00:00:00+08:00",
    "min_amount": "500.00",
    "bonus_kind": "percent",
    "bonus_percent": "10",
    "bonus_cap": "200.00",
    "priority": 10,
}


class TopUpRuleIn(BaseModel):
    """Bonus for top-ups; of all matching rules the one with the highest priority applies (then the
    larger bonus, then the older rule). Unset conditions match everything."""

    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, json_schema_extra={"examples": [RULE_EXAMPLE]}
    )
    code: RuleCode
    name: str = Field(min_length=1, max_length=120)
    wallet_type: WalletCode
    tier_codes: list[Annotated[str, Field(min_length=1, max_length=40)]] | None = Field(
        default=None, max_length=20
    )
    channels: list[Channel] | None = Field(default=None, max_length=20)
    weekdays: list[Annotated[int, Field(ge=1, le=7)]] | None = Field(
        default=None, max_length=7, description="ISO weekdays, 1 = Monday, in the brand's timezone"
    )
    valid_from: UTCTime | None = None
    valid_to: UTCTime | None = None
    min_amount: YuanOrZero = Decimal("0")
    bonus_kind: BonusKind
    bonus_fixed: YuanOrZero | None = Field(default=None, description="For bonus_kind fixed")
    bonus_percent: Decimal | None = Field(
        default=None, gt=0, le=100, max_digits=5, decimal_places=2, description="For bonus_kind percent"
    )
    bonus_cap: Yuan | None = None
    priority: int = Field(default=0, ge=-1000, le=1000)


class TopUpRuleUpdate(BaseModel):
    """Partial update; send ``valid_to: null`` to clear an end. Retired rules cannot change."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={"examples": [{"status": "paused"}, {"bonus_cap": "300.00", "priority": 20}]},
    )
    name: str | None = Field(default=None, min_length=1, max_length=120)
    tier_codes: list[Annotated[str, Field(min_length=1, max_length=40)]] | None = Field(
        default=None, max_length=20
    )
    channels: list[Channel] | None = Field(default=None, max_length=20)
    weekdays: list[Annotated[int, Field(ge=1, le=7)]] | None = Field(default=None, max_length=7)
    valid_from: UTCTime | None = None
    valid_to: UTCTime | None = None
    min_amount: YuanOrZero | None = None
    bonus_kind: BonusKind | None = None
    bonus_fixed: YuanOrZero | None = None
    bonus_percent: Decimal | None = Field(default=None, gt=0, le=100, max_digits=5, decimal_places=2)
    bonus_cap: Yuan | None = None
    priority: int | None = Field(default=None, ge=-1000, le=1000)
    status: RuleStatus | None = None


class TopUpRuleOut(BaseModel):
    id: int
    code: str
    name: str
    wallet_type: str
    status: str
    priority: int
    tier_codes: list[str] | None
    channels: list[str] | None
    weekdays: list[int] | None
    valid_from: datetime | None
    valid_to: datetime | None
    min_amount: Decimal
    bonus_kind: str
    bonus_fixed: Decimal
    bonus_percent: Decimal
    bonus_cap: Decimal | None
    granted_total: Decimal
    created_at: datetime
    updated_at: datetime


# -- accounts -------------------------------------------------------------------------------------


class BalanceOut(BaseModel):
    principal: Decimal = Field(description="Money the member paid in, spendable now")
    bonus: Decimal = Field(description="Bonus from top-up rules, spendable now")
    held: Decimal = Field(description="Held by open payments (reserved, not yet confirmed)")
    total: Decimal = Field(description="principal + bonus + held")


class WalletAccountOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 7,
                    "wallet_type": "giftcard",
                    "member_id": 42,
                    "status": "open",
                    "status_reason": None,
                    "has_pin": True,
                    "pin_locked_until": None,
                    "balance": {"principal": "400.00", "bonus": "50.00", "held": "0.00", "total": "450.00"},
                    "opened_at": "2026-03-01T02:00:00Z",
                    "closed_at": None,
                }
            ]
        }
    )
    id: int
    wallet_type: str
    member_id: int
    status: str
    status_reason: str | None
    has_pin: bool
    pin_locked_until: datetime | None
    balance: BalanceOut
    opened_at: datetime
    closed_at: datetime | None


class OpenAccountIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"member_id": 42, "wallet_type": "giftcard"}]}
    )
    member_id: int
    wallet_type: WalletCode


class StatusChangeIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, json_schema_extra={"examples": [{"reason": "卡片挂失"}]}
    )
    reason: Reason


class UnlockIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={"examples": [{"reason": "本人到店核验"}]},
    )
    reason: str | None = Field(default=None, max_length=200)


class VerificationIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    method: VerificationMethod
    reference: str = Field(min_length=1, max_length=120, description="Where the evidence is filed")


class RebindIn(BaseModel):
    """Move the wallet (both sub-ledgers, every lot with its history) to another member."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [
                {
                    "to_member_id": 43,
                    "verification": {"method": "id_document", "reference": "工单 2026-0312-07"},
                    "reason": "会员更换手机号后重新注册",
                }
            ]
        },
    )
    to_member_id: int
    verification: VerificationIn
    reason: Reason


class BindingOut(BaseModel):
    id: int
    member_id: int
    bound_at: datetime
    unbound_at: datetime | None
    verification_method: str | None
    verification_ref: str | None
    reason: str | None
    actor: str


# -- money in and out ------------------------------------------------------------------------------


class _Keyed(BaseModel):
    model_config = _FORBID
    idempotency_key: IdempotencyKeyField | None = None


class TopUpIn(_Keyed):
    """Money paid in (the payment itself happened elsewhere: ``payment_ref`` names it)."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [
                {
                    "idempotency_key": "tu-20260301-0001",
                    "member_id": 42,
                    "wallet_type": "giftcard",
                    "amount": "500.00",
                    "channel": "store",
                    "store": "sh-001",
                    "payment_ref": "WX4200001234",
                }
            ]
        },
    )
    member_id: int
    wallet_type: WalletCode
    amount: Yuan
    channel: Channel
    store: StoreCode | None = None
    payment_ref: str = Field(min_length=1, max_length=64)


class TopUpOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 11,
                    "key": "tu-20260301-0001",
                    "wallet_account_id": 7,
                    "member_id": 42,
                    "wallet_type": "giftcard",
                    "amount": "500.00",
                    "bonus": "50.00",
                    "rule_id": 3,
                    "channel": "store",
                    "store": "sh-001",
                    "payment_ref": "WX4200001234",
                    "state": "completed",
                    "principal_refunded": "0.00",
                    "cash_refunded": "0.00",
                    "balance": {"principal": "500.00", "bonus": "50.00", "held": "0.00", "total": "550.00"},
                    "created_at": "2026-03-01T02:00:00Z",
                }
            ]
        }
    )
    id: int
    key: str
    wallet_account_id: int
    member_id: int
    wallet_type: str
    amount: Decimal
    bonus: Decimal
    rule_id: int | None
    channel: str
    store: str | None
    payment_ref: str
    state: str
    principal_refunded: Decimal
    cash_refunded: Decimal
    balance: BalanceOut | None = None
    created_at: datetime


class PayIn(_Keyed):
    """Pay from a wallet. ``pin`` is needed when the wallet type requires it or the wallet has one."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [
                {
                    "idempotency_key": "pay-SO20260301001",
                    "member_id": 42,
                    "wallet_type": "giftcard",
                    "amount": "128.00",
                    "order_ref": "SO20260301001",
                    "store": "sh-002",
                    "pin": "135790",
                }
            ]
        },
    )
    member_id: int
    wallet_type: WalletCode
    amount: Yuan
    order_ref: OrderRef | None = None
    store: StoreCode | None = None
    pin: Pin | None = None


class ReserveIn(PayIn):
    ttl_minutes: int | None = Field(default=None, ge=1, le=1440, description="Default: the wallet type's")


class PaymentOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 21,
                    "key": "pay-SO20260301001",
                    "wallet_account_id": 7,
                    "member_id": 42,
                    "amount": "128.00",
                    "principal_amount": "128.00",
                    "bonus_amount": "0.00",
                    "order_ref": "SO20260301001",
                    "store": "sh-002",
                    "state": "confirmed",
                    "refunded_principal": "0.00",
                    "refunded_bonus": "0.00",
                    "expires_at": None,
                    "balance": {"principal": "372.00", "bonus": "50.00", "held": "0.00", "total": "422.00"},
                    "created_at": "2026-03-01T03:00:00Z",
                    "settled_at": "2026-03-01T03:00:00Z",
                }
            ]
        }
    )
    id: int
    key: str
    wallet_account_id: int
    member_id: int
    amount: Decimal
    principal_amount: Decimal
    bonus_amount: Decimal
    order_ref: str | None
    store: str | None
    state: str
    refunded_principal: Decimal
    refunded_bonus: Decimal
    expires_at: datetime | None
    balance: BalanceOut | None = None
    created_at: datetime
    settled_at: datetime | None


class RefundIn(_Keyed):
    """Refund part or all of a payment (back into the wallet) or of a top-up (out, in cash).
    Without ``amount``: everything still refundable."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [{"idempotency_key": "rf-SO20260301001-1", "amount": "28.00", "reason": "部分退货"}]
        },
    )
    amount: Yuan | None = None
    reason: Reason
    store: StoreCode | None = Field(default=None, description="Default: the store of what is refunded")


class RefundOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 5,
                    "key": "rf-tu-0001",
                    "kind": "topup",
                    "wallet_account_id": 7,
                    "payment_id": None,
                    "topup_id": 11,
                    "amount": "300.00",
                    "principal": "300.00",
                    "bonus": "20.00",
                    "bonus_forgiven": "0.00",
                    "bonus_charged": "10.00",
                    "cash_refund": "290.00",
                    "store": "sh-001",
                    "reason": "客户申请退卡",
                    "balance": {"principal": "0.00", "bonus": "0.00", "held": "0.00", "total": "0.00"},
                    "created_at": "2026-03-05T02:00:00Z",
                }
            ]
        }
    )
    id: int
    key: str
    kind: str
    wallet_account_id: int
    payment_id: int | None
    topup_id: int | None
    amount: Decimal = Field(description="Payment: money restored to the wallet; top-up: principal taken back")
    principal: Decimal
    bonus: Decimal = Field(description="Payment: bonus restored; top-up: bonus taken back from its lot")
    bonus_forgiven: Decimal = Field(description="Top-up: claw-back not owed because the bonus expired unused")
    bonus_charged: Decimal = Field(description="Top-up: claw-back of bonus already spent, kept from the cash")
    cash_refund: Decimal = Field(description="Top-up: cash to pay back (principal − bonus_charged)")
    store: str | None
    reason: str
    balance: BalanceOut | None = None
    created_at: datetime


# -- statements and settlement ----------------------------------------------------------------------


class StatementLineOut(BaseModel):
    id: int = Field(description="The ledger entry id")
    occurred_at: datetime
    sub_ledger: Literal["principal", "bonus"]
    kind: str = Field(description="Ledger entry kind: earn, spend, reserve, confirm, release, restore …")
    amount: Decimal = Field(description="Change of the spendable balance of the sub-ledger")
    held: Decimal = Field(description="Change of the held amount")
    activity: str = Field(description="top_up, payment, refund, rebind, expiry")
    topup_id: int | None = None
    payment_id: int | None = None
    refund_id: int | None = None
    order_ref: str | None = None
    store: str | None = None


class StatementOut(BaseModel):
    wallet_account_id: int
    balance: BalanceOut
    items: list[StatementLineOut]
    next_cursor: str | None
    limit: int


class SettlementLineOut(BaseModel):
    store: str | None = Field(description="Store code; null: online or no store")
    topped_up: Decimal
    bonus_granted: Decimal
    topup_refunded: Decimal = Field(description="Principal taken back by top-up refunds")
    cash_refunded: Decimal = Field(description="Cash paid back by top-up refunds")
    bonus_clawed: Decimal
    spent_principal: Decimal
    spent_bonus: Decimal
    refunded_principal: Decimal = Field(description="Principal given back by payment refunds")
    refunded_bonus: Decimal
    cash_in: Decimal = Field(description="topped_up − cash_refunded")
    redeemed: Decimal = Field(description="spent_principal − refunded_principal")
    net: Decimal = Field(description="cash_in − redeemed; positive: the store owes the pool")
    bonus_redeemed: Decimal = Field(description="spent_bonus − refunded_bonus (brand-funded)")


class SettlementOut(BaseModel):
    start: datetime
    end: datetime
    wallet_types: list[str]
    lines: list[SettlementLineOut]
    total: SettlementLineOut
    bonus_expired: Decimal


class PinIn(BaseModel):
    """Set the wallet's PIN, or change it: ``current_pin`` is then required."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"pin": "246810", "current_pin": "135790"}]}
    )
    pin: Pin
    current_pin: Pin | None = None

"""Stored value (储值) as rows: wallet types, members' wallet accounts and who they were bound to,
top-up rules, top-ups, payments, refunds and the idempotent operations that group them.

The money itself is not here. Every wallet type owns two point types of kind ``"wallet"`` on the
points ledger (``huiyuan.points.ledger``), one unit = one fen: the *principal* sub-ledger (money the
member paid) and the *bonus* sub-ledger (what top-up rules gave on top). Balances, lots, holds and
their invariants are the ledger's; these rows say what each ledger operation meant to the wallet
(which top-up, which payment, which refund) and keep what the ledger has no place for (account
status, PIN, bindings, rules). Amounts on these rows are integer fen, like the ledger's units.

No business rules here (see ``huiyuan.wallet``).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from huiyuan.kit.clock import utcnow
from huiyuan.kit.db import Base, BrandOwned, TimestampMixin
from huiyuan.kit.types import IdType, JSONType, UTCDateTime

SPEND_ORDERS = ("principal_first", "bonus_first")
ACCOUNT_STATUSES = ("open", "locked", "closed")
PAYMENT_STATES = ("held", "confirmed", "released", "refunded", "partially_refunded")
TOPUP_STATES = ("completed", "partially_refunded", "refunded")
RULE_STATUSES = ("active", "paused", "retired")
VERIFICATION_METHODS = ("id_document", "sms_code", "original_card", "in_store", "other")


class WalletType(TimestampMixin, BrandOwned, Base):
    """A kind of stored value a brand sells (品牌礼品卡, 商场卡 …) and its two ledger point types."""

    __tablename__ = "wallet_types"
    __table_args__ = (UniqueConstraint("brand_id", "code"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    code: Mapped[str] = mapped_column(String(28), nullable=False)
    name: Mapped[str] = mapped_column(String(80), nullable=False)
    status: Mapped[str] = mapped_column(String(16), default="active", nullable=False)
    spend_order: Mapped[str] = mapped_column(String(16), default="principal_first", nullable=False)
    principal_point_type_id: Mapped[int] = mapped_column(IdType, ForeignKey("point_types.id"), nullable=False)
    bonus_point_type_id: Mapped[int] = mapped_column(IdType, ForeignKey("point_types.id"), nullable=False)
    # Bonus lots expire this many local days after the top-up (end of day); None: never.
    bonus_expiry_days: Mapped[int | None] = mapped_column(Integer)
    # Every payment needs the account's PIN (accounts without one cannot pay until they set it).
    require_pin: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    # Most a wallet may hold (principal + bonus + held), in fen; None: no limit.
    max_balance: Mapped[int | None] = mapped_column(BigInteger)
    reservation_minutes: Mapped[int] = mapped_column(Integer, default=15, nullable=False)


class WalletAccount(TimestampMixin, BrandOwned, Base):
    """One member's wallet of one type. Its money is on the ledger accounts of the member's two
    point types; ``member_id`` changes only by a re-bind (history in ``wallet_bindings``)."""

    __tablename__ = "wallet_accounts"
    __table_args__ = (UniqueConstraint("member_id", "wallet_type_id"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    wallet_type_id: Mapped[int] = mapped_column(IdType, ForeignKey("wallet_types.id"), nullable=False)
    member_id: Mapped[int] = mapped_column(IdType, ForeignKey("members.id"), nullable=False, index=True)
    status: Mapped[str] = mapped_column(String(16), default="open", nullable=False)
    status_reason: Mapped[str | None] = mapped_column(String(200))
    # ``scrypt$n$r$p$salt$hash`` (base64 parts); None: no PIN set.
    pin_hash: Mapped[str | None] = mapped_column(String(200))
    pin_failed_attempts: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    pin_locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WalletBinding(BrandOwned, Base):
    """A period in which a wallet account belonged to a member.

    The member's two ledger accounts hold the wallet's money for that period; the ledger entries of
    the binding are those of these accounts with ``after_entry_id < id <= until_entry_id`` (no upper
    bound while the binding is current), so a statement never mixes in another wallet's history.
    """

    __tablename__ = "wallet_bindings"
    __table_args__ = (Index("ix_wallet_bindings_account", "wallet_account_id", "id"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    wallet_account_id: Mapped[int] = mapped_column(IdType, ForeignKey("wallet_accounts.id"), nullable=False)
    member_id: Mapped[int] = mapped_column(IdType, ForeignKey("members.id"), nullable=False, index=True)
    principal_account_id: Mapped[int] = mapped_column(IdType, ForeignKey("point_accounts.id"), nullable=False)
    bonus_account_id: Mapped[int] = mapped_column(IdType, ForeignKey("point_accounts.id"), nullable=False)
    after_entry_id: Mapped[int] = mapped_column(BigInteger, default=0, nullable=False)
    until_entry_id: Mapped[int | None] = mapped_column(BigInteger)
    bound_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    unbound_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # How the operator verified the re-bind (None for the binding made when the account opened).
    verification_method: Mapped[str | None] = mapped_column(String(24))
    verification_ref: Mapped[str | None] = mapped_column(String(120))
    reason: Mapped[str | None] = mapped_column(String(200))
    actor: Mapped[str] = mapped_column(String(120), nullable=False)


class WalletTopUpRule(TimestampMixin, BrandOwned, Base):
    """Bonus for a top-up: who, where, when and how much (see ``wallet.rules``)."""

    __tablename__ = "wallet_topup_rules"
    __table_args__ = (
        UniqueConstraint("brand_id", "code"),
        Index("ix_wallet_topup_rules_type", "wallet_type_id", "status"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    wallet_type_id: Mapped[int] = mapped_column(IdType, ForeignKey("wallet_types.id"), nullable=False)
    code: Mapped[str] = mapped_column(String(40), nullable=False)
    name: Mapped[str] = mapped_column(String(120), nullable=False)
    status: Mapped[str] = mapped_column(String(16), default="active", nullable=False)
    priority: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    tier_codes: Mapped[list[str] | None] = mapped_column(JSONType)
    channels: Mapped[list[str] | None] = mapped_column(JSONType)
    weekdays: Mapped[list[int] | None] = mapped_column(JSONType)  # ISO 1 (Monday) … 7, local time
    valid_from: Mapped[datetime | None] = mapped_column(UTCDateTime)
    valid_to: Mapped[datetime | None] = mapped_column(UTCDateTime)
    min_amount: Mapped[int] = mapped_column(BigInteger, default=0, nullable=False)
    bonus_kind: Mapped[str] = mapped_column(String(16), nullable=False)  # fixed, percent
    bonus_fixed: Mapped[int] = mapped_column(BigInteger, default=0, nullable=False)
    bonus_percent: Mapped[Decimal] = mapped_column(Numeric(6, 2), default=Decimal(0), nullable=False)
    bonus_cap: Mapped[int | None] = mapped_column(BigInteger)
    granted_total: Mapped[int] = mapped_column(BigInteger, default=0, nullable=False)


class WalletOperation(BrandOwned, Base):
    """One wallet write under its idempotency key: a retry with the same request gets ``result``
    back and writes nothing; the same key with another request is refused."""

    __tablename__ = "wallet_operations"
    __table_args__ = (UniqueConstraint("brand_id", "key"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), nullable=False)
    kind: Mapped[str] = mapped_column(String(24), nullable=False)
    request_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    wallet_account_id: Mapped[int] = mapped_column(IdType, ForeignKey("wallet_accounts.id"), nullable=False)
    result: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    actor: Mapped[str] = mapped_column(String(120), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)


class WalletTopUp(BrandOwned, Base):
    """Money paid into a wallet: a principal lot of ``amount`` and a bonus lot of ``bonus``."""

    __tablename__ = "wallet_topups"
    __table_args__ = (
        UniqueConstraint("brand_id", "key"),
        Index("ix_wallet_topups_account", "wallet_account_id", "id"),
        CheckConstraint("amount > 0 AND bonus >= 0", name="amounts"),
        CheckConstraint("principal_refunded <= amount", name="refunded"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), nullable=False)
    wallet_account_id: Mapped[int] = mapped_column(IdType, ForeignKey("wallet_accounts.id"), nullable=False)
    member_id: Mapped[int] = mapped_column(IdType, ForeignKey("members.id"), nullable=False)
    # The binding it was made under: refunds must land with the same holder.
    binding_id: Mapped[int] = mapped_column(IdType, ForeignKey("wallet_bindings.id"), nullable=False)
    amount: Mapped[int] = mapped_column(BigInteger, nullable=False)
    bonus: Mapped[int] = mapped_column(BigInteger, nullable=False)
    rule_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("wallet_topup_rules.id"))
    channel: Mapped[str] = mapped_column(String(24), nullable=False)
    store_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("stores.id"))
    payment_ref: Mapped[str] = mapped_column(String(64), nullable=False)
    principal_lot_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("point_lots.id"))
    bonus_lot_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("point_lots.id"))
    state: Mapped[str] = mapped_column(String(24), default="completed", nullable=False)
    # Running totals of refunds of this top-up (fen): principal taken back, cash paid out, and how
    # the proportional bonus claw-back was met (taken from the bonus lot, forgiven because the
    # bonus had expired unused, or charged against the cash because it had been spent).
    principal_refunded: Mapped[int] = mapped_column(BigInteger, default=0, nullable=False)
    cash_refunded: Mapped[int] = mapped_column(BigInteger, default=0, nullable=False)
    bonus_reversed: Mapped[int] = mapped_column(BigInteger, default=0, nullable=False)
    bonus_forgiven: Mapped[int] = mapped_column(BigInteger, default=0, nullable=False)
    bonus_charged: Mapped[int] = mapped_column(BigInteger, default=0, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)


class WalletPayment(BrandOwned, Base):
    """A payment from a wallet: held (reserved) then confirmed or released, or paid at once."""

    __tablename__ = "wallet_payments"
    __table_args__ = (
        UniqueConstraint("brand_id", "key"),
        Index("ix_wallet_payments_account", "wallet_account_id", "state"),
        CheckConstraint("amount = principal_amount + bonus_amount", name="parts"),
        CheckConstraint(
            "refunded_principal <= principal_amount AND refunded_bonus <= bonus_amount", name="refunded"
        ),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), nullable=False)
    wallet_account_id: Mapped[int] = mapped_column(IdType, ForeignKey("wallet_accounts.id"), nullable=False)
    member_id: Mapped[int] = mapped_column(IdType, ForeignKey("members.id"), nullable=False)
    binding_id: Mapped[int] = mapped_column(IdType, ForeignKey("wallet_bindings.id"), nullable=False)
    amount: Mapped[int] = mapped_column(BigInteger, nullable=False)
    principal_amount: Mapped[int] = mapped_column(BigInteger, nullable=False)
    bonus_amount: Mapped[int] = mapped_column(BigInteger, nullable=False)
    order_ref: Mapped[str | None] = mapped_column(String(64))
    store_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("stores.id"))
    state: Mapped[str] = mapped_column(String(24), nullable=False)
    # The ledger rows behind each part: the holds while held, then the entries a refund restores.
    principal_reservation_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("point_reservations.id"))
    bonus_reservation_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("point_reservations.id"))
    principal_entry_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("point_entries.id"))
    bonus_entry_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("point_entries.id"))
    refunded_principal: Mapped[int] = mapped_column(BigInteger, default=0, nullable=False)
    refunded_bonus: Mapped[int] = mapped_column(BigInteger, default=0, nullable=False)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WalletRefund(BrandOwned, Base):
    """Money given back: part of a payment (to the wallet) or of a top-up (out of the wallet, in cash)."""

    __tablename__ = "wallet_refunds"
    __table_args__ = (
        UniqueConstraint("brand_id", "key"),
        Index("ix_wallet_refunds_payment", "payment_id"),
        Index("ix_wallet_refunds_topup", "topup_id"),
        Index("ix_wallet_refunds_brand_time", "brand_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)  # payment, topup
    wallet_account_id: Mapped[int] = mapped_column(IdType, ForeignKey("wallet_accounts.id"), nullable=False)
    payment_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("wallet_payments.id"))
    topup_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("wallet_topups.id"))
    amount: Mapped[int] = mapped_column(BigInteger, nullable=False)  # restored, or principal taken back
    principal: Mapped[int] = mapped_column(BigInteger, nullable=False)
    bonus: Mapped[int] = mapped_column(BigInteger, nullable=False)  # restored, or taken from the bonus lot
    bonus_forgiven: Mapped[int] = mapped_column(BigInteger, default=0, nullable=False)
    bonus_charged: Mapped[int] = mapped_column(BigInteger, default=0, nullable=False)
    cash_refund: Mapped[int] = mapped_column(BigInteger, default=0, nullable=False)  # top-ups only
    store_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("stores.id"))
    reason: Mapped[str] = mapped_column(String(200), nullable=False)
    actor: Mapped[str] = mapped_column(String(120), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)

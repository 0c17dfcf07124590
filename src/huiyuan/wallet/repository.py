"""Every query the wallet reads with: wallet types and rules, accounts (and their locks), top-ups,
payments and refunds, the ledger figures of a wallet's two sub-ledgers and its statement lines.

Tenancy is applied by the session's scope (``kit.db``); explicit ``brand_id`` conditions only say
which brand a write path works for. Ledger rows are read here, never written: every change of
money goes through ``huiyuan.points.ledger``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, String, and_, cast, func, or_, select
from sqlalchemy.orm import Session, aliased

from huiyuan.members.models import Member
from huiyuan.points.models import PointAccount, PointEntry, PointEntryLot, PointLot, PointType
from huiyuan.tenancy.models import Store
from huiyuan.wallet.models import (
    WalletAccount,
    WalletBinding,
    WalletOperation,
    WalletPayment,
    WalletRefund,
    WalletTopUp,
    WalletTopUpRule,
    WalletType,
)


@dataclass
class AccountFilter:
    member_id: int | None = None
    wallet_type_id: int | None = None
    status: str | None = None


class WalletRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    # -- look-ups ----------------------------------------------------------------------------------

    def member(self, member_id: int) -> Member | None:
        return self.session.scalars(select(Member).where(Member.id == member_id)).one_or_none()

    def store_by_code(self, brand_id: int, code: str) -> Store | None:
        stmt = select(Store).where(Store.brand_id == brand_id, Store.code == code)
        return self.session.scalars(stmt).one_or_none()

    def stores(self, ids: Collection[int]) -> dict[int, Store]:
        if not ids:
            return {}
        return {s.id: s for s in self.session.scalars(select(Store).where(Store.id.in_(list(ids))))}

    # -- configuration -----------------------------------------------------------------------------

    def types(self) -> list[WalletType]:
        return list(self.session.scalars(select(WalletType).order_by(WalletType.id)))

    def type_by_code(self, brand_id: int | None, code: str, *, for_update: bool = False) -> WalletType | None:
        stmt = select(WalletType).where(WalletType.code == code)
        if brand_id is not None:
            stmt = stmt.where(WalletType.brand_id == brand_id)
        if for_update:
            stmt = stmt.with_for_update()
        return self.session.scalars(stmt.order_by(WalletType.id).limit(1)).first()

    def type(self, type_id: int) -> WalletType | None:
        return self.session.scalars(select(WalletType).where(WalletType.id == type_id)).one_or_none()

    def types_by_id(self, ids: Collection[int]) -> dict[int, WalletType]:
        if not ids:
            return {}
        stmt = select(WalletType).where(WalletType.id.in_(list(ids)))
        return {t.id: t for t in self.session.scalars(stmt)}

    def point_type_taken(self, brand_id: int, code: str) -> bool:
        stmt = select(PointType.id).where(PointType.brand_id == brand_id, PointType.code == code)
        return self.session.scalar(stmt) is not None

    def rules(self, *, wallet_type_id: int | None = None, status: str | None = None) -> list[WalletTopUpRule]:
        stmt = select(WalletTopUpRule)
        if wallet_type_id is not None:
            stmt = stmt.where(WalletTopUpRule.wallet_type_id == wallet_type_id)
        if status is not None:
            stmt = stmt.where(WalletTopUpRule.status == status)
        order = (WalletTopUpRule.priority.desc(), WalletTopUpRule.id)
        return list(self.session.scalars(stmt.order_by(*order)))

    def rule(self, rule_id: int, *, for_update: bool = False) -> WalletTopUpRule | None:
        stmt = select(WalletTopUpRule).where(WalletTopUpRule.id == rule_id)
        if for_update:
            stmt = stmt.with_for_update()
        return self.session.scalars(stmt).one_or_none()

    def rule_by_code(self, brand_id: int, code: str) -> WalletTopUpRule | None:
        stmt = select(WalletTopUpRule).where(
            WalletTopUpRule.brand_id == brand_id, WalletTopUpRule.code == code
        )
        return self.session.scalars(stmt).one_or_none()

    # -- accounts ----------------------------------------------------------------------------------

    def account(self, account_id: int, *, for_update: bool = False) -> WalletAccount | None:
        stmt = select(WalletAccount).where(WalletAccount.id == account_id)
        if for_update:
            # Fresh from the database: the row may have changed while this transaction waited.
            stmt = stmt.with_for_update().execution_options(populate_existing=True)
        return self.session.scalars(stmt).one_or_none()

    def account_of(
        self, member_id: int, wallet_type_id: int, *, for_update: bool = False
    ) -> WalletAccount | None:
        stmt = select(WalletAccount).where(
            WalletAccount.member_id == member_id, WalletAccount.wallet_type_id == wallet_type_id
        )
        if for_update:
            stmt = stmt.with_for_update().execution_options(populate_existing=True)
        return self.session.scalars(stmt).one_or_none()

    def accounts(self, f: AccountFilter, *, before_id: int | None, limit: int) -> list[WalletAccount]:
        stmt = select(WalletAccount)
        if f.member_id is not None:
            stmt = stmt.where(WalletAccount.member_id == f.member_id)
        if f.wallet_type_id is not None:
            stmt = stmt.where(WalletAccount.wallet_type_id == f.wallet_type_id)
        if f.status:
            stmt = stmt.where(WalletAccount.status == f.status)
        if before_id is not None:
            stmt = stmt.where(WalletAccount.id < before_id)
        return list(self.session.scalars(stmt.order_by(WalletAccount.id.desc()).limit(limit)))

    def member_accounts(self, member_id: int) -> list[WalletAccount]:
        stmt = select(WalletAccount).where(WalletAccount.member_id == member_id).order_by(WalletAccount.id)
        return list(self.session.scalars(stmt))

    def bindings(self, account_id: int) -> list[WalletBinding]:
        stmt = (
            select(WalletBinding)
            .where(WalletBinding.wallet_account_id == account_id)
            .order_by(WalletBinding.id)
        )
        return list(self.session.scalars(stmt))

    def current_binding(self, account_id: int) -> WalletBinding | None:
        stmt = select(WalletBinding).where(
            WalletBinding.wallet_account_id == account_id, WalletBinding.unbound_at.is_(None)
        )
        return self.session.scalars(stmt).one_or_none()

    def current_binding_before(self, account_id: int, newer_id: int) -> WalletBinding | None:
        """The binding that was current before ``newer_id`` was added (a re-bind in progress)."""
        stmt = select(WalletBinding).where(
            WalletBinding.wallet_account_id == account_id,
            WalletBinding.unbound_at.is_(None),
            WalletBinding.id != newer_id,
        )
        return self.session.scalars(stmt).one_or_none()

    # -- the ledger underneath -----------------------------------------------------------------------

    def lock_point_accounts(
        self, member_ids: Sequence[int], point_type_ids: Sequence[int]
    ) -> list[PointAccount]:
        stmt = (
            select(PointAccount)
            .where(
                PointAccount.member_id.in_(list(member_ids)),
                PointAccount.point_type_id.in_(list(point_type_ids)),
            )
            .order_by(PointAccount.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return list(self.session.scalars(stmt))

    def member_point_accounts(
        self, member_ids: Collection[int], types: Collection[int]
    ) -> list[PointAccount]:
        if not member_ids or not types:
            return []
        stmt = select(PointAccount).where(
            PointAccount.member_id.in_(list(member_ids)), PointAccount.point_type_id.in_(list(types))
        )
        return list(self.session.scalars(stmt))

    def spendable(self, point_account_ids: Collection[int], *, now: datetime) -> dict[int, int]:
        """What a draw could take now, per ledger account: active lots not past their expiry."""
        if not point_account_ids:
            return {}
        stmt = (
            select(PointLot.account_id, func.coalesce(func.sum(PointLot.remaining), 0))
            .where(
                PointLot.account_id.in_(list(point_account_ids)),
                PointLot.state == "active",
                PointLot.remaining > 0,
                or_(PointLot.expires_at.is_(None), PointLot.expires_at > now),
            )
            .group_by(PointLot.account_id)
        )
        found = {int(a): int(n) for a, n in self.session.execute(stmt)}
        return {i: found.get(i, 0) for i in point_account_ids}

    def last_entry_id(self, point_account_ids: Collection[int]) -> int:
        stmt = select(func.max(PointEntry.id)).where(PointEntry.account_id.in_(list(point_account_ids)))
        return int(self.session.scalar(stmt) or 0)

    def lot(self, lot_id: int) -> PointLot | None:
        return self.session.get(PointLot, lot_id, populate_existing=True)

    def expired_from_lot(self, lot_id: int) -> int:
        """Units the ``expire`` entries took out of a lot (give-backs to an expired lot included)."""
        stmt = (
            select(func.coalesce(func.sum(PointEntryLot.amount), 0))
            .join(PointEntry, PointEntry.id == PointEntryLot.entry_id)
            .where(PointEntryLot.lot_id == lot_id, PointEntry.kind == "expire")
        )
        return -int(self.session.scalar(stmt) or 0)

    # -- top-ups, payments, refunds --------------------------------------------------------------

    def topup_by_key(self, brand_id: int, key: str) -> WalletTopUp | None:
        stmt = select(WalletTopUp).where(WalletTopUp.brand_id == brand_id, WalletTopUp.key == key)
        return self.session.scalars(stmt).one_or_none()

    def payment_by_key(self, brand_id: int, key: str) -> WalletPayment | None:
        stmt = select(WalletPayment).where(WalletPayment.brand_id == brand_id, WalletPayment.key == key)
        return self.session.scalars(stmt).one_or_none()

    def refresh(self, row: object) -> None:
        self.session.refresh(row)

    def timed_out_payments(self, account_id: int, now: datetime) -> list[WalletPayment]:
        stmt = select(WalletPayment).where(
            WalletPayment.wallet_account_id == account_id,
            WalletPayment.state == "held",
            WalletPayment.expires_at <= now,
        )
        return list(self.session.scalars(stmt.order_by(WalletPayment.id)))

    def operation(self, brand_id: int, key: str) -> WalletOperation | None:
        stmt = select(WalletOperation).where(WalletOperation.brand_id == brand_id, WalletOperation.key == key)
        return self.session.scalars(stmt).one_or_none()

    def topups(self, ids: Collection[int]) -> dict[int, WalletTopUp]:
        if not ids:
            return {}
        return {
            t.id: t for t in self.session.scalars(select(WalletTopUp).where(WalletTopUp.id.in_(list(ids))))
        }

    def payments(self, ids: Collection[int]) -> dict[int, WalletPayment]:
        if not ids:
            return {}
        stmt = select(WalletPayment).where(WalletPayment.id.in_(list(ids)))
        return {p.id: p for p in self.session.scalars(stmt)}

    def payments_by_reservation(self, reservation_ids: Collection[int]) -> dict[int, WalletPayment]:
        if not reservation_ids:
            return {}
        ids = list(reservation_ids)
        stmt = select(WalletPayment).where(
            or_(WalletPayment.principal_reservation_id.in_(ids), WalletPayment.bonus_reservation_id.in_(ids))
        )
        out: dict[int, WalletPayment] = {}
        for p in self.session.scalars(stmt):
            for rid in (p.principal_reservation_id, p.bonus_reservation_id):
                if rid is not None:
                    out[rid] = p
        return out

    def refunds(self, ids: Collection[int]) -> dict[int, WalletRefund]:
        if not ids:
            return {}
        return {
            r.id: r for r in self.session.scalars(select(WalletRefund).where(WalletRefund.id.in_(list(ids))))
        }

    # -- statements --------------------------------------------------------------------------------

    def statement_entries(
        self,
        bindings: Sequence[WalletBinding],
        *,
        before_id: int | None,
        limit: int,
        kinds: Collection[str] | None = None,
        point_type_id: int | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[PointEntry]:
        """The ledger lines of the given bindings, newest first (keyset on entry id); optionally only
        entries of these kinds, of one sub-ledger's point type, or in ``[start, end)``."""
        if not bindings:
            return []
        stmt = select(PointEntry).where(or_(*(_of_binding(b) for b in bindings)))
        if before_id is not None:
            stmt = stmt.where(PointEntry.id < before_id)
        if kinds is not None:
            stmt = stmt.where(PointEntry.kind.in_(list(kinds)))
        if point_type_id is not None:
            stmt = stmt.where(PointEntry.point_type_id == point_type_id)
        if start is not None:
            stmt = stmt.where(PointEntry.occurred_at >= start)
        if end is not None:
            stmt = stmt.where(PointEntry.occurred_at < end)
        return list(self.session.scalars(stmt.order_by(PointEntry.id.desc()).limit(limit)))

    # -- settlement --------------------------------------------------------------------------------

    def settlement_entries(
        self, point_type_ids: Collection[int], start: datetime, end: datetime
    ) -> list[tuple[int, str, int | None, int, int]]:
        """``(point_type_id, kind, store_id, Σ amount, Σ d_reserved)`` of the entries of the wallet
        sub-ledgers in ``[start, end)`` that move money in or out for good. Refund entries count at
        the store of their refund row, every other entry at its own store."""
        if not point_type_ids:
            return []
        refund = aliased(WalletRefund)
        store = func.coalesce(refund.store_id, PointEntry.store_id)
        stmt = (
            select(
                PointEntry.point_type_id,
                PointEntry.kind,
                store,
                func.coalesce(func.sum(PointEntry.amount), 0),
                func.coalesce(func.sum(PointEntry.d_reserved), 0),
            )
            .outerjoin(
                refund,
                and_(
                    PointEntry.source_type == "wallet_refund",
                    cast(refund.id, String) == PointEntry.source_id,
                ),
            )
            .where(
                PointEntry.point_type_id.in_(list(point_type_ids)),
                PointEntry.occurred_at >= start,
                PointEntry.occurred_at < end,
                PointEntry.kind.in_(("earn", "spend", "confirm", "restore", "reverse", "expire")),
            )
            .group_by(PointEntry.point_type_id, PointEntry.kind, store)
        )
        return [
            (int(pt), str(kind), int(s) if s is not None else None, int(n), int(r))
            for pt, kind, s, n, r in self.session.execute(stmt)
        ]

    def topup_refunds_booked(
        self, point_type_ids: Collection[int], start: datetime, end: datetime
    ) -> list[WalletRefund]:
        """Top-up refunds whose ledger entries fall in ``[start, end)`` (so the cash figures of a
        period follow the same clock as its ledger figures)."""
        if not point_type_ids:
            return []
        booked = select(PointEntry.source_id).where(
            PointEntry.point_type_id.in_(list(point_type_ids)),
            PointEntry.kind == "reverse",
            PointEntry.source_type == "wallet_refund",
            PointEntry.occurred_at >= start,
            PointEntry.occurred_at < end,
        )
        stmt = select(WalletRefund).where(
            WalletRefund.kind == "topup", cast(WalletRefund.id, String).in_(booked)
        )
        return list(self.session.scalars(stmt.order_by(WalletRefund.id)))


def _of_binding(b: WalletBinding) -> ColumnElement[bool]:
    cond = and_(
        PointEntry.account_id.in_((b.principal_account_id, b.bonus_account_id)),
        PointEntry.id > b.after_entry_id,
    )
    if b.until_entry_id is not None:
        cond = and_(cond, PointEntry.id <= b.until_entry_id)
    return cond

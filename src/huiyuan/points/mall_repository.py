"""Every query on the points mall's tables: gifts, stock entries, third-party codes and redemptions.

Tenancy comes from the session's scope. Nothing here writes or decides; the verbs that do live in
``points.mall``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from huiyuan.points.mall_models import MallGift, MallGiftCode, MallRedemption, MallStockEntry
from huiyuan.points.models import PointType

OPEN_STATUSES = ("awaiting_payment", "completed")


class MallRepository:
    """Every query on gifts, stock entries, codes and redemptions (tenancy comes from the session)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def gift(self, gift_id: int, *, for_update: bool = False) -> MallGift | None:
        stmt = select(MallGift).where(MallGift.id == gift_id)
        if for_update:
            stmt = stmt.with_for_update().execution_options(populate_existing=True)
        return self.session.scalars(stmt).one_or_none()

    def gift_by_code(self, brand_id: int, code: str) -> MallGift | None:
        return self.session.scalars(
            select(MallGift).where(MallGift.brand_id == brand_id, MallGift.code == code)
        ).one_or_none()

    def gifts(
        self, *, status: str | None, kind: str | None, after_id: int | None, limit: int
    ) -> list[MallGift]:
        stmt = select(MallGift).order_by(MallGift.id).limit(limit)
        if status:
            stmt = stmt.where(MallGift.status == status)
        if kind:
            stmt = stmt.where(MallGift.kind == kind)
        if after_id is not None:
            stmt = stmt.where(MallGift.id > after_id)
        return list(self.session.scalars(stmt))

    def gifts_on_sale(self, now: datetime, *, after_id: int | None, limit: int) -> list[MallGift]:
        stmt = (
            select(MallGift)
            .where(
                MallGift.status == "active",
                (MallGift.sale_from.is_(None)) | (MallGift.sale_from <= now),
                (MallGift.sale_to.is_(None)) | (MallGift.sale_to > now),
            )
            .order_by(MallGift.id)
            .limit(limit)
        )
        if after_id is not None:
            stmt = stmt.where(MallGift.id > after_id)
        return list(self.session.scalars(stmt))

    def point_type_codes(self, ids: set[int]) -> dict[int, str]:
        if not ids:
            return {}
        rows = self.session.execute(select(PointType.id, PointType.code).where(PointType.id.in_(ids)))
        return {pid: code for pid, code in rows}

    def redemption(self, redemption_id: int) -> MallRedemption | None:
        return self.session.get(MallRedemption, redemption_id)

    def redemption_by_key(self, brand_id: int, key: str) -> MallRedemption | None:
        return self.session.scalars(
            select(MallRedemption)
            .where(MallRedemption.brand_id == brand_id, MallRedemption.key == key)
            .execution_options(populate_existing=True)
        ).one_or_none()

    def member_redemptions(
        self, member_id: int, *, before_id: int | None, limit: int
    ) -> list[MallRedemption]:
        stmt = (
            select(MallRedemption)
            .where(MallRedemption.member_id == member_id)
            .order_by(MallRedemption.id.desc())
            .limit(limit)
        )
        if before_id is not None:
            stmt = stmt.where(MallRedemption.id < before_id)
        return list(self.session.scalars(stmt))

    def redeemed_units(self, gift_id: int, member_id: int, *, on_day: date | None = None) -> int:
        stmt = select(func.coalesce(func.sum(MallRedemption.quantity), 0)).where(
            MallRedemption.gift_id == gift_id,
            MallRedemption.member_id == member_id,
            MallRedemption.status.in_(OPEN_STATUSES),
        )
        if on_day is not None:
            stmt = stmt.where(MallRedemption.local_day == on_day)
        return int(self.session.scalar(stmt) or 0)

    def overdue(self, now: datetime, *, gift_id: int | None = None, limit: int = 200) -> list[MallRedemption]:
        stmt = (
            select(MallRedemption)
            .where(MallRedemption.status == "awaiting_payment", MallRedemption.pay_by <= now)
            .order_by(MallRedemption.id)
            .limit(limit)
            .execution_options(populate_existing=True)
        )
        if gift_id is not None:
            stmt = stmt.where(MallRedemption.gift_id == gift_id)
        return list(self.session.scalars(stmt))

    def available_codes(self, gift_id: int, count: int) -> list[MallGiftCode]:
        return list(
            self.session.scalars(
                select(MallGiftCode)
                .where(MallGiftCode.gift_id == gift_id, MallGiftCode.status == "available")
                .order_by(MallGiftCode.id)
                .limit(count)
            )
        )

    def codes_of(self, redemption_ids: Sequence[int], *, status: str = "assigned") -> dict[int, list[str]]:
        out: dict[int, list[str]] = {rid: [] for rid in redemption_ids}
        if not redemption_ids:
            return out
        rows = self.session.execute(
            select(MallGiftCode.redemption_id, MallGiftCode.code)
            .where(MallGiftCode.redemption_id.in_(redemption_ids), MallGiftCode.status == status)
            .order_by(MallGiftCode.id)
        )
        for rid, code in rows:
            if rid is not None:
                out[rid].append(code)
        return out

    def existing_codes(self, gift_id: int, codes: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(codes), 500):
            chunk = codes[start : start + 500]
            found.update(
                self.session.scalars(
                    select(MallGiftCode.code).where(
                        MallGiftCode.gift_id == gift_id, MallGiftCode.code.in_(chunk)
                    )
                )
            )
        return found

    def stock_totals(self, gift_id: int) -> dict[str, int]:
        """Σ of the gift's stock entries and its codes by status (what the cache must match)."""
        entries = self.session.scalar(
            select(func.coalesce(func.sum(MallStockEntry.quantity), 0)).where(
                MallStockEntry.gift_id == gift_id
            )
        )
        codes = self.session.execute(
            select(MallGiftCode.status, func.count())
            .where(MallGiftCode.gift_id == gift_id)
            .group_by(MallGiftCode.status)
        ).all()
        return {"entries": int(entries or 0), **{f"codes_{status}": int(n) for status, n in codes}}

"""Every query of benefit cards. Tenancy is applied by the session's scope (``kit.db``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from huiyuan.benefits.card_models import BenefitCardIssue, BenefitCardProduct, MemberBenefitCard
from huiyuan.benefits.models import MemberBenefit


class CardRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    # -- products ----------------------------------------------------------------------------------

    def product(self, product_id: int) -> BenefitCardProduct | None:
        stmt = select(BenefitCardProduct).where(BenefitCardProduct.id == product_id)
        return self.session.scalars(stmt).one_or_none()

    def product_by_code(self, brand_id: int, code: str) -> BenefitCardProduct | None:
        stmt = select(BenefitCardProduct).where(
            BenefitCardProduct.brand_id == brand_id, BenefitCardProduct.code == code
        )
        return self.session.scalars(stmt).one_or_none()

    def products(
        self, *, status: str | None = None, after_id: int | None = None, limit: int = 50
    ) -> list[BenefitCardProduct]:
        stmt = select(BenefitCardProduct).order_by(BenefitCardProduct.id).limit(limit)
        if status is not None:
            stmt = stmt.where(BenefitCardProduct.status == status)
        if after_id is not None:
            stmt = stmt.where(BenefitCardProduct.id > after_id)
        return list(self.session.scalars(stmt))

    def on_sale(self, now: datetime) -> list[BenefitCardProduct]:
        stmt = (
            select(BenefitCardProduct)
            .where(
                BenefitCardProduct.status == "active",
                or_(BenefitCardProduct.sale_from.is_(None), BenefitCardProduct.sale_from <= now),
                or_(BenefitCardProduct.sale_to.is_(None), BenefitCardProduct.sale_to > now),
            )
            .order_by(BenefitCardProduct.id)
            .limit(200)
        )
        return list(self.session.scalars(stmt))

    # -- cards -------------------------------------------------------------------------------------

    def card(self, card_id: int, *, for_update: bool = False) -> MemberBenefitCard | None:
        stmt = select(MemberBenefitCard).where(MemberBenefitCard.id == card_id)
        if for_update:
            stmt = stmt.with_for_update().execution_options(populate_existing=True)
        return self.session.scalars(stmt).one_or_none()

    def by_payment_reference(self, brand_id: int, reference: str) -> MemberBenefitCard | None:
        stmt = select(MemberBenefitCard).where(
            MemberBenefitCard.brand_id == brand_id, MemberBenefitCard.payment_reference == reference
        )
        return self.session.scalars(stmt).one_or_none()

    def by_refund_reference(self, brand_id: int, reference: str) -> MemberBenefitCard | None:
        stmt = select(MemberBenefitCard).where(
            MemberBenefitCard.brand_id == brand_id, MemberBenefitCard.refund_reference == reference
        )
        return self.session.scalars(stmt).one_or_none()

    def held(self, member_id: int, product_id: int) -> int:
        """The member's cards of a product that were not refunded."""
        stmt = select(func.count()).where(
            MemberBenefitCard.member_id == member_id,
            MemberBenefitCard.product_id == product_id,
            MemberBenefitCard.status != "refunded",
        )
        return int(self.session.scalar(stmt.select_from(MemberBenefitCard)) or 0)

    def sold_counts(self, product_ids: list[int]) -> dict[int, dict[str, int]]:
        """Per product, its cards sold by status (pending, active, expired, refunded)."""
        if not product_ids:
            return {}
        stmt = (
            select(MemberBenefitCard.product_id, MemberBenefitCard.status, func.count())
            .where(MemberBenefitCard.product_id.in_(product_ids))
            .group_by(MemberBenefitCard.product_id, MemberBenefitCard.status)
        )
        out: dict[int, dict[str, int]] = {}
        for product_id, status, n in self.session.execute(stmt):
            out.setdefault(int(product_id), {})[str(status)] = int(n)
        return out

    def member_cards(self, member_id: int) -> list[MemberBenefitCard]:
        stmt = (
            select(MemberBenefitCard)
            .where(MemberBenefitCard.member_id == member_id)
            .order_by(MemberBenefitCard.id.desc())
            .limit(200)
        )
        return list(self.session.scalars(stmt))

    def covering(self, member_id: int, at: datetime) -> list[MemberBenefitCard]:
        stmt = (
            select(MemberBenefitCard)
            .where(
                MemberBenefitCard.member_id == member_id,
                MemberBenefitCard.status == "active",
                MemberBenefitCard.activated_at <= at,
                MemberBenefitCard.expires_at > at,
            )
            .order_by(MemberBenefitCard.id)
        )
        return list(self.session.scalars(stmt))

    def covering_span(
        self, member_ids: list[int], since: datetime, until: datetime
    ) -> list[MemberBenefitCard]:
        """Active cards of these members whose term overlaps [since, until]."""
        if not member_ids:
            return []
        stmt = (
            select(MemberBenefitCard)
            .where(
                MemberBenefitCard.member_id.in_(member_ids),
                MemberBenefitCard.status == "active",
                MemberBenefitCard.activated_at <= until,
                MemberBenefitCard.expires_at > since,
            )
            .order_by(MemberBenefitCard.id)
        )
        return list(self.session.scalars(stmt))

    def due_ids(self, now: datetime, *, after_id: int, limit: int) -> list[int]:
        """Active cards with a period to issue or a term that has ended by ``now``, by id."""
        stmt = (
            select(MemberBenefitCard.id)
            .where(
                MemberBenefitCard.status == "active",
                MemberBenefitCard.next_due_at <= now,
                MemberBenefitCard.id > after_id,
            )
            .order_by(MemberBenefitCard.id)
            .limit(limit)
        )
        return list(self.session.scalars(stmt))

    def count_due(self, now: datetime, *, after_id: int) -> int:
        stmt = select(func.count()).where(
            MemberBenefitCard.status == "active",
            MemberBenefitCard.next_due_at <= now,
            MemberBenefitCard.id > after_id,
        )
        return int(self.session.scalar(stmt.select_from(MemberBenefitCard)) or 0)

    # -- issues ------------------------------------------------------------------------------------

    def issues(self, card_id: int) -> list[BenefitCardIssue]:
        stmt = (
            select(BenefitCardIssue)
            .where(BenefitCardIssue.card_id == card_id)
            .order_by(BenefitCardIssue.line, BenefitCardIssue.period)
        )
        return list(self.session.scalars(stmt))

    def next_periods(self, card_id: int) -> dict[int, int]:
        """Per line, the first period not issued yet."""
        stmt = (
            select(BenefitCardIssue.line, func.max(BenefitCardIssue.period))
            .where(BenefitCardIssue.card_id == card_id)
            .group_by(BenefitCardIssue.line)
        )
        return {int(line): int(period) + 1 for line, period in self.session.execute(stmt)}

    def entitlements(self, ids: set[int]) -> dict[int, MemberBenefit]:
        if not ids:
            return {}
        stmt = (
            select(MemberBenefit)
            .where(MemberBenefit.id.in_(sorted(ids)))
            .execution_options(populate_existing=True)
        )
        return {mb.id: mb for mb in self.session.scalars(stmt)}

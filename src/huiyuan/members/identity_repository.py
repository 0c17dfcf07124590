"""Queries on member identifiers and physical cards. Tenancy is applied by the session's scope
(``kit.db``); this module says what a query means, never which brand it may see."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from huiyuan.members.models import MemberCard, MemberIdentifier


class IdentityRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def identifier(self, member_id: int, identifier_id: int) -> MemberIdentifier | None:
        stmt = select(MemberIdentifier).where(
            MemberIdentifier.id == identifier_id, MemberIdentifier.member_id == member_id
        )
        return self.session.scalars(stmt).one_or_none()

    def identifier_by_bidx(self, member_id: int, type_: str, bidx: str) -> MemberIdentifier | None:
        stmt = select(MemberIdentifier).where(
            MemberIdentifier.member_id == member_id,
            MemberIdentifier.type == type_,
            MemberIdentifier.value_bidx == bidx,
        )
        return self.session.scalars(stmt).one_or_none()

    def card(self, member_id: int, card_id: int, *, for_update: bool = False) -> MemberCard | None:
        stmt = select(MemberCard).where(MemberCard.id == card_id, MemberCard.member_id == member_id)
        if for_update:
            stmt = stmt.with_for_update()
        return self.session.scalars(stmt).one_or_none()

    def card_by_number(self, brand_id: int, card_number: str) -> MemberCard | None:
        stmt = select(MemberCard).where(
            MemberCard.brand_id == brand_id, MemberCard.card_number == card_number
        )
        return self.session.scalars(stmt).one_or_none()

    def replacement_of(self, card_id: int) -> MemberCard | None:
        stmt = select(MemberCard).where(MemberCard.replaces_card_id == card_id)
        return self.session.scalars(stmt).first()

    def cards(self, member_id: int) -> list[MemberCard]:
        stmt = select(MemberCard).where(MemberCard.member_id == member_id).order_by(MemberCard.id)
        return list(self.session.scalars(stmt))

    def active_cards(self, member_id: int) -> list[MemberCard]:
        stmt = (
            select(MemberCard)
            .where(MemberCard.member_id == member_id, MemberCard.status == "active")
            .order_by(MemberCard.id)
        )
        return list(self.session.scalars(stmt))

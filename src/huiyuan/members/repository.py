"""Every query on members. Tenancy is applied by the session's scope (``kit.db``); this module adds
only what a query means, never which brand it may see."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from huiyuan.kit import pii
from huiyuan.members.models import CustomFieldDefinition, Member, MemberIdentifier


@dataclass
class MemberFilter:
    status: str | None = None
    enroll_channel: str | None = None
    q: str | None = None  # name prefix or member number
    phone: str | None = None
    email: str | None = None
    identifier_type: str | None = None
    identifier_value: str | None = None
    enrolled_from: datetime | None = None
    enrolled_to: datetime | None = None
    brand_id: int | None = None
    custom: dict[str, Any] = field(default_factory=dict)


class MemberRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, member_id: int) -> Member | None:
        return self.session.scalars(select(Member).where(Member.id == member_id)).one_or_none()

    def get_for_update(self, member_id: int) -> Member | None:
        stmt = select(Member).where(Member.id == member_id).with_for_update()
        return self.session.scalars(stmt).one_or_none()

    def by_number(self, brand_id: int, member_number: str) -> Member | None:
        stmt = select(Member).where(Member.brand_id == brand_id, Member.member_number == member_number)
        return self.session.scalars(stmt).one_or_none()

    def identifier_owner(self, brand_id: int, type_: str, value: str) -> MemberIdentifier | None:
        stmt = select(MemberIdentifier).where(
            MemberIdentifier.brand_id == brand_id,
            MemberIdentifier.type == type_,
            MemberIdentifier.value_bidx == pii.blind_index(type_, value),
        )
        return self.session.scalars(stmt).one_or_none()

    def identifiers(self, member_ids: Sequence[int]) -> dict[int, list[MemberIdentifier]]:
        out: dict[int, list[MemberIdentifier]] = {mid: [] for mid in member_ids}
        if not member_ids:
            return out
        stmt = (
            select(MemberIdentifier)
            .where(MemberIdentifier.member_id.in_(member_ids))
            .order_by(MemberIdentifier.id)
        )
        for ident in self.session.scalars(stmt):
            out.setdefault(ident.member_id, []).append(ident)
        return out

    def next_member_seq(self, brand_id: int) -> int:
        count = self.session.scalar(
            select(func.count()).select_from(Member).where(Member.brand_id == brand_id)
        )
        return int(count or 0) + 1

    def custom_definitions(
        self, brand_id: int, *, include_retired: bool = False
    ) -> list[CustomFieldDefinition]:
        stmt = select(CustomFieldDefinition).where(CustomFieldDefinition.brand_id == brand_id)
        if not include_retired:
            stmt = stmt.where(CustomFieldDefinition.status == "active")
        return list(
            self.session.scalars(stmt.order_by(CustomFieldDefinition.position, CustomFieldDefinition.id))
        )

    def _conditions(self, f: MemberFilter) -> list[ColumnElement[bool]]:
        cond: list[ColumnElement[bool]] = []
        if f.brand_id is not None:
            cond.append(Member.brand_id == f.brand_id)
        if f.status:
            cond.append(Member.status == f.status)
        if f.enroll_channel:
            cond.append(Member.enroll_channel == f.enroll_channel)
        if f.q:
            cond.append((Member.name.startswith(f.q)) | (Member.member_number == f.q))
        if f.phone:
            cond.append(Member.phone_bidx == pii.blind_index("phone", f.phone))
        if f.email:
            cond.append(Member.email_bidx == pii.blind_index("email", f.email))
        if f.identifier_type and f.identifier_value:
            sub = select(MemberIdentifier.member_id).where(
                MemberIdentifier.type == f.identifier_type,
                MemberIdentifier.value_bidx == pii.blind_index(f.identifier_type, f.identifier_value),
            )
            cond.append(Member.id.in_(sub))
        elif f.identifier_value:
            # Any identifier type: a blind index is per type, so look the value up under each.
            from huiyuan.members.models import IDENTIFIER_TYPES

            bidxs = [pii.blind_index(t, f.identifier_value) for t in IDENTIFIER_TYPES]
            sub = select(MemberIdentifier.member_id).where(MemberIdentifier.value_bidx.in_(bidxs))
            cond.append(Member.id.in_(sub))
        if f.enrolled_from:
            cond.append(Member.enrolled_at >= f.enrolled_from)
        if f.enrolled_to:
            cond.append(Member.enrolled_at < f.enrolled_to)
        for key, value in f.custom.items():
            cond.append(custom_equals(key, value))
        return cond

    def list(self, f: MemberFilter, *, after_id: int | None, limit: int) -> list[Member]:
        stmt = select(Member).where(*self._conditions(f))
        if after_id is not None:
            stmt = stmt.where(Member.id > after_id)
        return list(self.session.scalars(stmt.order_by(Member.id).limit(limit)))

    def count(self, f: MemberFilter) -> int:
        stmt = select(func.count()).select_from(Member).where(*self._conditions(f))
        return int(self.session.scalar(stmt) or 0)


def custom_equals(key: str, value: Any) -> ColumnElement[bool]:
    """Equality on a custom field stored in the JSON column; works on SQLite and PostgreSQL."""
    element = Member.custom[key]
    if isinstance(value, bool):
        return element.as_boolean() == value
    if isinstance(value, int):
        return element.as_integer() == value
    if isinstance(value, float):
        return element.as_float() == value
    return element.as_string() == str(value)

"""Every query on members. Tenancy is applied by the session's scope (``kit.db``); this module adds
only what a query means, never which brand it may see."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, ColumnElement, Numeric, and_, cast, func, literal, select, update
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from huiyuan.kit import pii
from huiyuan.members.models import CustomFieldDefinition, Member, MemberIdentifier
from huiyuan.tenancy.models import Brand


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

    def identifier_owners(self, brand_id: int, pairs: Sequence[tuple[str, str]]) -> dict[str, int]:
        """``{type: member_id}`` for those of the given (type, value) pairs that a member holds."""
        if not pairs:
            return {}
        # A blind index is keyed by type, so one index value can only ever match its own type.
        by_bidx = {pii.blind_index(t, v): t for t, v in pairs}
        stmt = select(MemberIdentifier.value_bidx, MemberIdentifier.member_id).where(
            MemberIdentifier.brand_id == brand_id, MemberIdentifier.value_bidx.in_(list(by_bidx))
        )
        return {by_bidx[bidx]: member_id for bidx, member_id in self.session.execute(stmt)}

    def next_member_number(self, brand: Brand) -> str:
        """The brand's next free member number (a counter on the brand row, skipping imported ones)."""
        while True:
            stmt = (
                update(Brand)
                .where(Brand.id == brand.id)
                .values(member_seq=Brand.member_seq + 1)
                .returning(Brand.member_seq)
            )
            seq = self.session.execute(stmt, execution_options={"synchronize_session": False}).scalar_one()
            number = f"{brand.member_number_prefix}{seq:08d}"
            if self.by_number(brand.id, number) is None:
                return number

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
            cond.append(custom_condition(key, value))
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


@dataclass(frozen=True)
class CustomCondition:
    """One typed test on a custom field, built by ``custom_fields.parse_filters`` from the brand's
    definition: ``op`` is eq, gte, lte or has; ``kind`` is the field type; ``value`` is already in the
    stored form (int, bool, canonical decimal/date/datetime string, str, or a list for multi-enum eq)."""

    key: str
    op: str
    kind: str
    value: Any


class _JsonArrayHas(FunctionElement[bool]):
    """``value`` is an element of the JSON array at ``custom -> key`` (SQLite ``json_each``, PG ``@>``)."""

    type = Boolean()
    inherit_cache = True
    name = "json_array_has"


class _JsonArrayLength(FunctionElement[int]):
    type = BigInteger()
    inherit_cache = True
    name = "json_array_length_at"


def _json_path(key: str) -> str:
    return '$."' + key.replace('"', "") + '"'


@compiles(_JsonArrayHas, "sqlite")
def _has_sqlite(element: _JsonArrayHas, compiler: SQLCompiler, **kw: Any) -> str:
    column, path, _key, value = (compiler.process(c, **kw) for c in element.clauses)
    return f"EXISTS (SELECT 1 FROM json_each({column}, {path}) AS je WHERE je.value = {value})"


@compiles(_JsonArrayHas, "postgresql")
def _has_pg(element: _JsonArrayHas, compiler: SQLCompiler, **kw: Any) -> str:
    column, _path, key, value = (compiler.process(c, **kw) for c in element.clauses)
    return f"(({column} -> CAST({key} AS TEXT)) @> jsonb_build_array(CAST({value} AS TEXT)))"


@compiles(_JsonArrayLength, "sqlite")
def _len_sqlite(element: _JsonArrayLength, compiler: SQLCompiler, **kw: Any) -> str:
    column, path, _key = (compiler.process(c, **kw) for c in element.clauses)
    return f"json_array_length({column}, {path})"


@compiles(_JsonArrayLength, "postgresql")
def _len_pg(element: _JsonArrayLength, compiler: SQLCompiler, **kw: Any) -> str:
    column, _path, key = (compiler.process(c, **kw) for c in element.clauses)
    # jsonb_array_length fails on non-arrays; CASE keeps a stray scalar from aborting the query.
    return (
        f"(CASE WHEN jsonb_typeof({column} -> CAST({key} AS TEXT)) = 'array' "
        f"THEN jsonb_array_length({column} -> CAST({key} AS TEXT)) END)"
    )


def _array_has(key: str, value: str) -> ColumnElement[bool]:
    return _JsonArrayHas(Member.custom, literal(_json_path(key)), literal(key), literal(value))  # type: ignore[return-value]


def _array_length(key: str) -> ColumnElement[int]:
    return _JsonArrayLength(Member.custom, literal(_json_path(key)), literal(key))  # type: ignore[return-value]


def _compare(left: ColumnElement[Any], op: str, right: Any) -> ColumnElement[bool]:
    if op == "gte":
        return left >= right
    if op == "lte":
        return left <= right
    return left == right


def custom_condition(key: str, value: Any) -> ColumnElement[bool]:
    """A typed condition on a custom field; untyped values fall back to ``custom_equals``."""
    if not isinstance(value, CustomCondition):
        return custom_equals(key, value)
    c = value
    text = Member.custom[c.key].as_string()
    if c.kind == "integer":
        return _compare(cast(text, BigInteger), c.op, int(c.value))
    if c.kind == "decimal":
        if c.op == "eq":  # canonical strings compare exactly, with no float rounding on SQLite
            return text == c.value
        return _compare(cast(text, Numeric), c.op, cast(literal(str(c.value)), Numeric))
    if c.kind == "boolean":
        return Member.custom[c.key].as_boolean() == bool(c.value)
    if c.kind == "multi_enum":
        if c.op == "has":
            return _array_has(c.key, str(c.value))
        items = list(c.value)
        return and_(*(_array_has(c.key, v) for v in items), _array_length(c.key) == len(items))
    # string, text, enum, date, datetime: stored as strings whose order is the value's order
    return _compare(text, c.op, str(c.value))

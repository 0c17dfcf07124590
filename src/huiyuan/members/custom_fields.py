"""Custom-field values: typing and validation on every member write, the uniqueness index of
``unique`` fields, and ``?custom.<key>`` list filters.

Values live in the member's JSON column in a stored form chosen so that the database can compare
them: integers and booleans as JSON scalars, decimals as canonical strings ("12.5"), dates as ISO
dates, datetimes as UTC ISO strings (same offset everywhere, so text order is time order), enums as
strings, multi-enums as lists in the order of the definition's options.

Definitions themselves (create, change, retire) are ``members.field_definitions``. This module must not
commit, and must not know about HTTP.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from huiyuan.kit.errors import Conflict, ValidationFailed, field_error
from huiyuan.kit.scope import Principal
from huiyuan.members.models import CustomFieldDefinition, CustomFieldUniqueValue, Member
from huiyuan.members.repository import CustomCondition

FIELD_TYPES = ("string", "text", "integer", "decimal", "boolean", "date", "datetime", "enum", "multi_enum")
MAX_LENGTH = {"string": 255, "text": 10_000}
UNIQUE_TYPES = ("string", "integer", "decimal", "date", "datetime")
RANGE_TYPES = ("integer", "decimal", "date", "datetime")
LENGTH_TYPES = ("string", "text")
OPTION_TYPES = ("enum", "multi_enum")
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
MAX_DECIMAL_DIGITS = 28
_INT_TEXT = re.compile(r"^[+-]?\d{1,19}$")
FILTER_OPS = ("eq", "gte", "lte", "has")


class InvalidValue(Exception):
    """A value that does not fit its field; ``code`` becomes the field error's code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


_DEFS_CACHE = "custom_field_definitions"


@event.listens_for(Session, "before_flush")
def _forget_cached_definitions(session: Session, _ctx: Any, _instances: Any) -> None:
    touched = (*session.new, *session.dirty, *session.deleted)
    if any(isinstance(obj, CustomFieldDefinition) for obj in touched):
        session.info.pop(_DEFS_CACHE, None)


@event.listens_for(Session, "after_transaction_end")
def _forget_cached_definitions_at_end(session: Session, transaction: Any) -> None:
    if transaction.parent is None:  # savepoints (one per imported row) keep the cache
        session.info.pop(_DEFS_CACHE, None)


class CustomFieldRepository:
    """Queries on definitions and unique-value rows (tenancy applies through the session)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def definitions(self, brand_id: int, *, include_retired: bool = True) -> list[CustomFieldDefinition]:
        # Cached for the transaction: every member write validates against the definitions, and an
        # import writes thousands of members per transaction. Any flush of a definition clears it.
        cache: dict[tuple[int, bool], list[CustomFieldDefinition]] = self.session.info.setdefault(
            _DEFS_CACHE, {}
        )
        if (brand_id, include_retired) not in cache:
            stmt = select(CustomFieldDefinition).where(CustomFieldDefinition.brand_id == brand_id)
            if not include_retired:
                stmt = stmt.where(CustomFieldDefinition.status == "active")
            order = (CustomFieldDefinition.position, CustomFieldDefinition.id)
            cache[(brand_id, include_retired)] = list(self.session.scalars(stmt.order_by(*order)))
        return list(cache[(brand_id, include_retired)])

    def definition(self, brand_id: int, key: str) -> CustomFieldDefinition | None:
        stmt = select(CustomFieldDefinition).where(
            CustomFieldDefinition.brand_id == brand_id, CustomFieldDefinition.key == key
        )
        return self.session.scalars(stmt).one_or_none()

    def unique_rows(self, member_id: int) -> list[CustomFieldUniqueValue]:
        stmt = select(CustomFieldUniqueValue).where(CustomFieldUniqueValue.member_id == member_id)
        return list(self.session.scalars(stmt))

    def unique_owner(self, brand_id: int, key: str, value: str) -> CustomFieldUniqueValue | None:
        stmt = select(CustomFieldUniqueValue).where(
            CustomFieldUniqueValue.brand_id == brand_id,
            CustomFieldUniqueValue.field_key == key,
            CustomFieldUniqueValue.value == value,
        )
        return self.session.scalars(stmt).one_or_none()


# --- typing -------------------------------------------------------------------------------------


def canonical_decimal(value: Decimal) -> str:
    """``Decimal("12.50")`` → ``"12.5"``, ``Decimal("1E+2")`` → ``"100"``, ``-0`` → ``"0"``."""
    if value == 0:
        return "0"
    return format(value.normalize(), "f")


def canonical_datetime(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def _integer(raw: Any) -> int:
    if isinstance(raw, bool):
        raise InvalidValue("invalid-type", "must be an integer, not a boolean")
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, float) and raw.is_integer():
        value = int(raw)
    elif isinstance(raw, str) and _INT_TEXT.match(raw.strip()):
        value = int(raw.strip())
    else:
        raise InvalidValue("invalid-type", "must be an integer")
    if not INT_MIN <= value <= INT_MAX:
        raise InvalidValue("out-of-range", "must fit in 64 bits")
    return value


def _decimal(raw: Any) -> Decimal:
    if isinstance(raw, bool):
        raise InvalidValue("invalid-type", "must be a decimal number, not a boolean")
    try:
        if isinstance(raw, int):
            value = Decimal(raw)
        elif isinstance(raw, float):
            value = Decimal(repr(raw))  # repr keeps 0.1 as 0.1 rather than its binary expansion
        elif isinstance(raw, str):
            value = Decimal(raw.strip())
        elif isinstance(raw, Decimal):
            value = raw
        else:
            raise InvalidValue("invalid-type", "must be a decimal number or a string of one")
    except InvalidOperation:
        raise InvalidValue("invalid-type", "must be a decimal number")
    if not value.is_finite():
        raise InvalidValue("invalid-type", "must be a finite number")
    if len(value.normalize().as_tuple().digits) > MAX_DECIMAL_DIGITS:
        raise InvalidValue("out-of-range", f"at most {MAX_DECIMAL_DIGITS} significant digits")
    return value


def _boolean(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in ("true", "false"):
        return raw.strip().lower() == "true"
    raise InvalidValue("invalid-type", "must be true or false")


def _date(raw: Any) -> date:
    if isinstance(raw, date) and not isinstance(raw, datetime):
        return raw
    if isinstance(raw, str):
        try:
            return date.fromisoformat(raw.strip())
        except ValueError:
            pass
    raise InvalidValue("invalid-type", "must be an ISO date (YYYY-MM-DD)")


def _datetime(raw: Any) -> datetime:
    value: datetime | None = raw if isinstance(raw, datetime) else None
    if isinstance(raw, str):
        try:
            value = datetime.fromisoformat(raw.strip())
        except ValueError:
            value = None
    if value is None:
        raise InvalidValue("invalid-type", "must be an ISO date-time with a time zone")
    if value.tzinfo is None:
        raise InvalidValue("invalid-type", "must carry a time zone (e.g. +08:00 or Z)")
    return value


def parse_bound(kind: str, raw: Any) -> int | Decimal | date | datetime:
    """A min/max bound in its Python form (lengths are integers for string/text)."""
    if kind in LENGTH_TYPES or kind == "integer":
        return _integer(raw)
    if kind == "decimal":
        return _decimal(raw)
    if kind == "date":
        return _date(raw)
    if kind == "datetime":
        return _datetime(raw)
    raise InvalidValue("not-applicable", f"{kind} fields take no range")


def store_bound(kind: str, value: int | Decimal | date | datetime) -> str:
    """The bound as kept in the definition's string column."""
    if isinstance(value, Decimal):
        return canonical_decimal(value)
    if isinstance(value, datetime):
        return canonical_datetime(value)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


@lru_cache(maxsize=256)
def compiled_pattern(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _options_value(defn: CustomFieldDefinition, raw: Any) -> Any:
    options = list(defn.options or [])
    if defn.type == "enum":
        if not isinstance(raw, str):
            raise InvalidValue("invalid-type", "must be one of the options (a string)")
        if raw not in options:
            raise InvalidValue("not-an-option", "must be one of: " + ", ".join(options))
        return raw
    if not isinstance(raw, list | tuple) or not all(isinstance(v, str) for v in raw):
        raise InvalidValue("invalid-type", "must be a list of options")
    unknown = [v for v in raw if v not in options]
    if unknown:
        raise InvalidValue("not-an-option", "not among the options: " + ", ".join(unknown))
    if len(set(raw)) != len(raw):
        raise InvalidValue("duplicate-option", "an option appears twice")
    chosen = set(raw)
    return [o for o in options if o in chosen]


def parse_typed(defn: CustomFieldDefinition, raw: Any) -> Any:
    """``raw`` converted to the field's stored form, checking the type (and options) only."""
    kind = defn.type
    if kind == "integer":
        return _integer(raw)
    if kind == "decimal":
        return canonical_decimal(_decimal(raw))
    if kind == "boolean":
        return _boolean(raw)
    if kind == "date":
        return _date(raw).isoformat()
    if kind == "datetime":
        return canonical_datetime(_datetime(raw))
    if kind in OPTION_TYPES:
        return _options_value(defn, raw)
    if not isinstance(raw, str):
        raise InvalidValue("invalid-type", "must be a string")
    return raw


def check_constraints(defn: CustomFieldDefinition, value: Any) -> None:
    """Range, length and pattern checks on a value already in stored form."""
    kind = defn.type
    if kind in LENGTH_TYPES:
        cap = MAX_LENGTH[kind]
        lo = int(defn.min_value) if defn.min_value is not None else None
        hi = int(defn.max_value) if defn.max_value is not None else cap
        if lo is not None and len(value) < lo:
            raise InvalidValue("too-short", f"must be at least {lo} characters")
        if len(value) > min(hi, cap):
            raise InvalidValue("too-long", f"must be at most {min(hi, cap)} characters")
        if defn.pattern and not compiled_pattern(defn.pattern).fullmatch(value):
            raise InvalidValue("pattern-mismatch", f"must match {defn.pattern}")
        return
    if kind not in RANGE_TYPES:
        return
    comparable: Any = {
        "integer": lambda v: v,
        "decimal": Decimal,
        "date": date.fromisoformat,
        "datetime": datetime.fromisoformat,
    }[kind](value)
    if defn.min_value is not None and comparable < parse_bound(kind, defn.min_value):
        raise InvalidValue("out-of-range", f"must be at least {defn.min_value}")
    if defn.max_value is not None and comparable > parse_bound(kind, defn.max_value):
        raise InvalidValue("out-of-range", f"must be at most {defn.max_value}")


def coerce_value(defn: CustomFieldDefinition, raw: Any) -> Any:
    """A complete check of one value: type, options, range, length, pattern → stored form."""
    value = parse_typed(defn, raw)
    check_constraints(defn, value)
    return value


def _is_empty(defn: CustomFieldDefinition, value: Any) -> bool:
    return value is None or (defn.type in ("string", "text", "multi_enum") and len(value) == 0)


# --- validation on member writes ----------------------------------------------------------------


def validate_values(
    session: Session,
    brand_id: int,
    values: dict[str, Any],
    *,
    existing: dict[str, Any],
    member: Member | None = None,
    creating: bool,
) -> dict[str, Any]:
    """Check ``values`` against the brand's definitions and return the member's new custom dict.

    On create, defaults fill absent fields and required fields must end up with a value. On update,
    ``None`` removes a value (refused for required fields). Retired fields are read-only: sending the
    value they already hold is accepted as a no-op. Every problem is reported at once.
    """
    defs = {d.key: d for d in CustomFieldRepository(session).definitions(brand_id)}
    merged = dict(existing)
    errors: list[dict[str, Any]] = []
    for key, raw in values.items():
        name = f"custom.{key}"
        defn = defs.get(key)
        if defn is None:
            errors.append(field_error(name, "no such custom field", "unknown-field"))
            continue
        if defn.status != "active":
            if raw != existing.get(key):
                errors.append(field_error(name, "this field is retired and read-only", "retired-field"))
            continue
        if raw is None:
            if defn.required and not creating:
                errors.append(field_error(name, "this field is required", "required"))
            merged.pop(key, None)
            continue
        try:
            merged[key] = coerce_value(defn, raw)
        except InvalidValue as exc:
            errors.append(field_error(name, exc.message, exc.code))
            continue
        if defn.required and _is_empty(defn, merged[key]):
            errors.append(field_error(name, "this field is required", "required"))
    if creating:
        for key, defn in defs.items():
            sent_value = values.get(key) is not None  # sent: already checked above, right or wrong
            if defn.status != "active" or key in merged or sent_value:
                continue
            if defn.default is not None:
                merged[key] = defn.default
            elif defn.required:
                errors.append(field_error(f"custom.{key}", "this field is required", "required"))
    if errors:
        raise ValidationFailed("Some custom field values are not valid.", errors=errors)
    return merged


def unique_text(value: Any) -> str:
    """The text kept in the uniqueness index; stored forms are canonical already."""
    return value if isinstance(value, str) else str(value)


def sync_unique_values(session: Session, member: Member) -> None:
    """Keep the member's rows in the uniqueness index in step with its values; a value another
    member holds is a 409, also when two writers race (the table's unique constraint decides)."""
    repo = CustomFieldRepository(session)
    unique_defs = [d for d in repo.definitions(member.brand_id) if d.unique]
    if not unique_defs:
        return
    if member.id is None:
        session.flush()
    rows = {r.field_key: r for r in repo.unique_rows(member.id)}
    wanted: dict[str, str] = {}
    for defn in unique_defs:
        value = (member.custom or {}).get(defn.key)
        if value is not None and value != "":
            wanted[defn.key] = unique_text(value)
    errors = []
    for key, text in wanted.items():
        owner = repo.unique_owner(member.brand_id, key, text)
        if owner is not None and owner.member_id != member.id:
            errors.append(field_error(f"custom.{key}", "another member has this value", "not-unique"))
    if errors:
        raise Conflict("A unique custom field value is already taken.", errors=errors)
    for key, stale in rows.items():
        if key not in wanted:
            session.delete(stale)
    for key, text in wanted.items():
        row = rows.get(key)
        if row is None:
            session.add(
                CustomFieldUniqueValue(
                    brand_id=member.brand_id, field_key=key, value=text, member_id=member.id
                )
            )
        elif row.value != text:
            row.value = text
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise Conflict(
            "A unique custom field value was taken concurrently.",
            errors=[
                field_error(f"custom.{k}", "another member has this value", "not-unique") for k in wanted
            ],
        )


# --- list filters -------------------------------------------------------------------------------


def _filter_ops(kind: str) -> Sequence[str]:
    if kind in RANGE_TYPES:
        return ("eq", "gte", "lte")
    if kind == "multi_enum":
        return ("eq", "has")
    return ("eq",)


def _filter_value(defn: CustomFieldDefinition, op: str, raw: str) -> Any:
    if defn.type == "multi_enum":
        if op == "has":
            return _options_value(defn, [raw])[0]
        return _options_value(defn, list(dict.fromkeys(p.strip() for p in raw.split(",") if p.strip())))
    return parse_typed(defn, raw)


def parse_filters(session: Session, actor: Principal, raw: dict[str, str]) -> dict[str, Any]:
    """``{"shoe_size__gte": "40"}`` → typed ``CustomCondition``s using the brand's definitions.

    Operators: ``key=v`` (equality; for multi-enum ``a,b`` means exactly those options),
    ``key__gte`` / ``key__lte`` (integer, decimal, date, datetime), ``key__has`` (multi-enum).
    Retired fields can still be filtered on: their values are kept.
    """
    if not raw:
        return {}
    brand_id = actor.scope.require_brand()
    defs = {d.key: d for d in CustomFieldRepository(session).definitions(brand_id)}
    out: dict[str, Any] = {}
    errors = []
    for name, text in raw.items():
        # Keys may hold "__" themselves, so only a known operator suffix is split off.
        key, sep, op = name.rpartition("__")
        if not sep or op not in FILTER_OPS:
            key, op = name, "eq"
        field = f"custom.{name}"
        defn = defs.get(key)
        if defn is None:
            errors.append(field_error(field, "no such custom field", "unknown-field"))
            continue
        if op not in _filter_ops(defn.type):
            allowed = ", ".join(_filter_ops(defn.type))
            errors.append(
                field_error(
                    field, f"{defn.type} fields can be filtered with: {allowed}", "unsupported-operator"
                )
            )
            continue
        try:
            value = _filter_value(defn, op, text)
        except InvalidValue as exc:
            errors.append(field_error(field, exc.message, exc.code))
            continue
        out[name] = CustomCondition(key=key, op=op, kind=defn.type, value=value)
    if errors:
        raise ValidationFailed("Some custom field filters are not valid.", errors=errors)
    return out

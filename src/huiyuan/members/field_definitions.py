"""Business verbs on custom-field definitions: define, change, retire, reactivate, list.

A definition is data, not schema: adding one needs no migration, and a retired one keeps its values
(read-only, still filterable). What may change later is limited so that values already written stay
valid: the type, ``unique``, the pattern and the ranges are fixed at creation; options may only grow.
Each verb writes an audit row and a ``custom_field.*`` outbox event and never commits.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from huiyuan.audit import service as audit
from huiyuan.kit.errors import Conflict, NotFound, ValidationFailed, field_error
from huiyuan.kit.scope import Principal
from huiyuan.members.custom_field_schemas import (
    CustomFieldCreate,
    CustomFieldOut,
    CustomFieldUpdate,
    FieldLabels,
)
from huiyuan.members.custom_fields import (
    LENGTH_TYPES,
    MAX_LENGTH,
    OPTION_TYPES,
    RANGE_TYPES,
    UNIQUE_TYPES,
    CustomFieldRepository,
    InvalidValue,
    coerce_value,
    parse_bound,
    store_bound,
)
from huiyuan.members.models import CustomFieldDefinition
from huiyuan.outbox.service import emit

MAX_OPTION_LENGTH = 100


def snapshot(defn: CustomFieldDefinition) -> dict[str, Any]:
    """The definition as plain data, for audit rows and events."""
    return {
        "key": defn.key,
        "label_zh": defn.label_zh,
        "label_en": defn.label_en,
        "type": defn.type,
        "required": defn.required,
        "unique": defn.unique,
        "default": defn.default,
        "pattern": defn.pattern,
        "min": defn.min_value,
        "max": defn.max_value,
        "options": list(defn.options or []),
        "position": defn.position,
        "status": defn.status,
    }


def _bound_out(defn: CustomFieldDefinition, stored: str | None) -> int | str | None:
    if stored is None:
        return None
    return int(stored) if defn.type in LENGTH_TYPES or defn.type == "integer" else stored


def to_out(defn: CustomFieldDefinition) -> CustomFieldOut:
    """Response model of a definition; bounds typed as the API takes them."""
    return CustomFieldOut(
        key=defn.key,
        labels=FieldLabels(zh=defn.label_zh, en=defn.label_en),
        type=defn.type,
        required=defn.required,
        unique=defn.unique,
        default=defn.default,
        pattern=defn.pattern,
        min=_bound_out(defn, defn.min_value),
        max=_bound_out(defn, defn.max_value),
        options=list(defn.options or []),
        position=defn.position,
        status=defn.status,
        created_at=defn.created_at,
        updated_at=defn.updated_at,
    )


def _check_options(kind: str, options: list[str], errors: list[dict[str, Any]]) -> list[str]:
    cleaned = [o.strip() for o in options]
    if kind not in OPTION_TYPES:
        if cleaned:
            errors.append(field_error("options", f"{kind} fields take no options", "not-applicable"))
        return []
    if not cleaned:
        errors.append(field_error("options", "enum fields need at least one option", "required"))
    if any(not o or len(o) > MAX_OPTION_LENGTH for o in cleaned):
        errors.append(field_error("options", f"options are 1 to {MAX_OPTION_LENGTH} characters", "invalid"))
    if len(set(cleaned)) != len(cleaned):
        errors.append(field_error("options", "an option appears twice", "duplicate-option"))
    if kind == "multi_enum" and any("," in o for o in cleaned):
        # "a,b" in a filter means two options, so an option must not hold a comma.
        errors.append(field_error("options", "multi-enum options cannot contain a comma", "invalid"))
    return cleaned


def _check_default(defn: CustomFieldDefinition, raw: Any, errors: list[dict[str, Any]]) -> Any:
    if raw is None:
        return None
    if defn.unique:
        errors.append(field_error("default", "a unique field cannot have a default", "not-applicable"))
        return None
    try:
        return coerce_value(defn, raw)
    except InvalidValue as exc:
        errors.append(field_error("default", exc.message, exc.code))
        return None


def _check_bounds(data: CustomFieldCreate, errors: list[dict[str, Any]]) -> tuple[str | None, str | None]:
    kind = data.type
    if data.min is None and data.max is None:
        return None, None
    if kind not in RANGE_TYPES and kind not in LENGTH_TYPES:
        errors.append(field_error("min", f"{kind} fields take no range", "not-applicable"))
        return None, None
    parsed: dict[str, Any] = {}
    for name in ("min", "max"):
        raw = getattr(data, name)
        if raw is None:
            continue
        try:
            parsed[name] = parse_bound(kind, raw)
        except InvalidValue as exc:
            errors.append(field_error(name, exc.message, exc.code))
            continue
        if kind in LENGTH_TYPES and not 0 <= parsed[name] <= MAX_LENGTH[kind]:
            errors.append(field_error(name, f"lengths are 0 to {MAX_LENGTH[kind]}", "out-of-range"))
    lo, hi = parsed.get("min"), parsed.get("max")
    if lo is not None and hi is not None and lo > hi:
        errors.append(field_error("max", "must not be below min", "out-of-range"))
    return (
        store_bound(kind, lo) if lo is not None else None,
        store_bound(kind, hi) if hi is not None else None,
    )


def _emit(session: Session, defn: CustomFieldDefinition, type_: str, change: str) -> None:
    emit(
        session,
        type=type_,
        brand_id=defn.brand_id,
        aggregate_type="custom_field",
        aggregate_id=defn.key,
        payload={"change": change, **snapshot(defn)},
    )


def _audit(
    session: Session,
    actor: Principal,
    defn: CustomFieldDefinition,
    action: str,
    before: dict[str, Any] | None,
) -> None:
    audit.record(
        session,
        actor=actor,
        action=action,
        entity_type="custom_field",
        entity_id=defn.id,
        brand_id=defn.brand_id,
        before=before,
        after=snapshot(defn),
    )


def list_fields(session: Session, *, actor: Principal, include_retired: bool) -> list[CustomFieldDefinition]:
    """The brand's definitions in display order."""
    brand_id = actor.scope.require_brand()
    return CustomFieldRepository(session).definitions(brand_id, include_retired=include_retired)


def get_field(session: Session, *, actor: Principal, key: str) -> CustomFieldDefinition:
    """One definition of the caller's brand, or 404."""
    defn = CustomFieldRepository(session).definition(actor.scope.require_brand(), key)
    if defn is None:
        raise NotFound(f"Custom field '{key}' was not found.")
    return defn


def define_field(session: Session, *, actor: Principal, data: CustomFieldCreate) -> CustomFieldDefinition:
    """Create a definition; repeating the same definition returns the first one (idempotent)."""
    brand_id = actor.scope.require_brand()
    errors: list[dict[str, Any]] = []
    options = _check_options(data.type, data.options, errors)
    if data.unique and data.type not in UNIQUE_TYPES:
        errors.append(field_error("unique", f"{data.type} fields cannot be unique", "not-applicable"))
    pattern = data.pattern or None
    if pattern is not None:
        if data.type not in LENGTH_TYPES:
            errors.append(
                field_error("pattern", "only string and text fields take a pattern", "not-applicable")
            )
        else:
            try:
                re.compile(pattern)
            except re.error as exc:
                errors.append(
                    field_error("pattern", f"not a valid regular expression: {exc}", "invalid-pattern")
                )
    min_value, max_value = _check_bounds(data, errors)
    defn = CustomFieldDefinition(
        brand_id=brand_id,
        key=data.key,
        label_zh=data.labels.zh,
        label_en=data.labels.en,
        type=data.type,
        required=data.required,
        unique=data.unique,
        pattern=pattern,
        min_value=min_value,
        max_value=max_value,
        options=options,
        position=data.position,
        status="active",
    )
    if not errors:  # a default can only be checked against a sound definition
        defn.default = _check_default(defn, data.default, errors)
    if errors:
        raise ValidationFailed("The custom field definition is not valid.", errors=errors)

    repo = CustomFieldRepository(session)
    existing = repo.definition(brand_id, data.key)
    if existing is not None:
        mine = {**snapshot(defn), "status": "active"}
        if snapshot(existing) == mine:
            return existing
        raise Conflict(
            f"Custom field '{data.key}' already exists.",
            errors=[field_error("key", "already defined in this brand", "taken")],
        )
    session.add(defn)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise Conflict(
            f"Custom field '{data.key}' was defined concurrently.",
            errors=[field_error("key", "already defined in this brand", "taken")],
        )
    _audit(session, actor, defn, "custom_field.defined", None)
    _emit(session, defn, "custom_field.defined", "created")
    return defn


def update_field(
    session: Session, *, actor: Principal, key: str, data: CustomFieldUpdate
) -> CustomFieldDefinition:
    """Change labels, position, required, default, or add options; a no-op change writes nothing."""
    defn = get_field(session, actor=actor, key=key)
    before = snapshot(defn)
    sent = data.model_fields_set
    errors: list[dict[str, Any]] = []
    if data.type is not None and data.type != defn.type:
        errors.append(field_error("type", "the type cannot change after creation", "immutable"))
    if data.labels is not None:
        defn.label_zh = data.labels.zh or defn.label_zh
        defn.label_en = data.labels.en or defn.label_en
    if data.position is not None:
        defn.position = data.position
    if data.required is not None:
        defn.required = data.required
    if data.options is not None:
        options = _check_options(defn.type, data.options, errors)
        removed = [o for o in defn.options or [] if o not in options]
        if removed:
            errors.append(
                field_error("options", "options can only be added: " + ", ".join(removed), "option-removed")
            )
        elif not errors:
            # Existing options keep their place so stored multi-enum lists stay in option order.
            defn.options = list(defn.options or []) + [o for o in options if o not in (defn.options or [])]
    if "default" in sent and not errors:
        defn.default = _check_default(defn, data.default, errors)
    if errors:
        raise ValidationFailed("The change to the custom field is not valid.", errors=errors)
    if snapshot(defn) == before:
        return defn
    session.flush()
    _audit(session, actor, defn, "custom_field.updated", before)
    _emit(session, defn, "custom_field.defined", "updated")
    return defn


def retire_field(session: Session, *, actor: Principal, key: str) -> CustomFieldDefinition:
    """Make a field read-only and hide it from forms; its values stay. Idempotent."""
    defn = get_field(session, actor=actor, key=key)
    if defn.status == "retired":
        return defn
    before = snapshot(defn)
    defn.status = "retired"
    session.flush()
    _audit(session, actor, defn, "custom_field.retired", before)
    _emit(session, defn, "custom_field.retired", "retired")
    return defn


def reactivate_field(session: Session, *, actor: Principal, key: str) -> CustomFieldDefinition:
    """Make a retired field writable again. Idempotent."""
    defn = get_field(session, actor=actor, key=key)
    if defn.status == "active":
        return defn
    before = snapshot(defn)
    defn.status = "active"
    session.flush()
    _audit(session, actor, defn, "custom_field.reactivated", before)
    _emit(session, defn, "custom_field.defined", "reactivated")
    return defn

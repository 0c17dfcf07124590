"""Custom fields without limit (A3): per-brand definitions added and retired at run time, values kept
in the member's JSON column and validated on every write.

PROVISIONAL: the validation below only accepts keys that have an active definition. Full typing
(string, text, integer, decimal, boolean, date, datetime, enum, multi-enum; required, unique, default,
pattern/range) is being completed in this module.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from huiyuan.kit.errors import ValidationFailed, field_error
from huiyuan.members.models import Member
from huiyuan.members.repository import MemberRepository


def validate_values(
    session: Session,
    brand_id: int,
    values: dict[str, Any],
    *,
    existing: dict[str, Any],
    member: Member,
    creating: bool,
) -> dict[str, Any]:
    defs = {d.key: d for d in MemberRepository(session).custom_definitions(brand_id)}
    errors = [
        field_error(f"custom.{k}", "no such custom field", "unknown-field") for k in values if k not in defs
    ]
    if errors:
        raise ValidationFailed("Unknown custom field(s).", errors=errors)
    merged = dict(existing)
    merged.update(values)
    return merged


def sync_unique_values(session: Session, member: Member) -> None:
    return None


def parse_filters(session: Session, actor: object, raw: dict[str, str]) -> dict[str, Any]:
    return dict(raw)

"""The ``benefit`` kind of ``benefits.registry``: tiers, paid plans, benefit cards and campaigns grant
catalogue benefits with ``{"kind": "benefit", "benefit": "PARK-2H", "quantity": 1, "valid_days": 30}``.

The grant is ``entitlements.grant_benefit``, keyed by the caller's key, so a repeated grant has no
further effect. Whether the code names a benefit of the brand is only known at grant time (the
registry validates shapes without a database); a missing or paused benefit raises there and the
caller's transaction decides what happens (a tier event or a card issue is retried).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from huiyuan.benefits import entitlements
from huiyuan.benefits.registry import register
from huiyuan.kit.scope import Principal

FIELDS = {"benefit", "quantity", "valid_days"}


def _whole(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def validate(params: dict[str, Any]) -> None:
    unknown = set(params) - FIELDS
    if unknown:
        raise ValueError(f"unknown fields: {', '.join(sorted(unknown))}")
    code = params.get("benefit")
    if not isinstance(code, str) or not 1 <= len(code) <= 40:
        raise ValueError("benefit: the code of a catalogue benefit is required")
    if not _whole(params.get("quantity", 1), 1, 1000):
        raise ValueError("quantity: a whole number from 1 to 1000")
    if params.get("valid_days") is not None and not _whole(params["valid_days"], 1, 3660):
        raise ValueError("valid_days: a whole number of days from 1 to 3660")


def grant(
    session: Session,
    *,
    actor: Principal,
    member_id: int,
    params: dict[str, Any],
    source_type: str,
    source_id: str,
    key: str,
) -> dict[str, Any]:
    result = entitlements.grant_benefit(
        session,
        actor=actor,
        member_id=member_id,
        code=params["benefit"],
        quantity=params.get("quantity", 1),
        valid_days=params.get("valid_days"),
        source_type=source_type,
        source_id=source_id,
        key=key,
    )
    return result.for_registry()


register("benefit", validate=validate, grant=grant)

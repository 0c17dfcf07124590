"""The ``points`` benefit kind: a grant of points of one type (upgrade gifts, plan benefits).

``{"kind": "points", "point_type": "points", "amount": 500, "funded_by": "brand"}`` becomes one lot
through ``ledger.earn``, keyed by the caller's benefit key so a repeated grant earns once. Many
grants at once (``benefits.grant_many``: the upgrade gifts of a batch of tier evaluations) go
through ``bulk_grants.earn_many``, which writes the same rows set-based.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from huiyuan.benefits.registry import BenefitGrant, register
from huiyuan.kit.scope import Principal
from huiyuan.points import bulk_grants, ledger


def _validate(params: dict[str, Any]) -> None:
    unknown = set(params) - {"point_type", "amount", "funded_by", "reason"}
    if unknown:
        raise ValueError(f"unknown fields: {', '.join(sorted(unknown))}")
    if not isinstance(params.get("point_type"), str) or not params["point_type"]:
        raise ValueError("point_type: the code of a point type is required")
    amount = params.get("amount")
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise ValueError("amount: a positive whole number of points is required")
    funded_by = params.get("funded_by", "brand")
    if not isinstance(funded_by, str) or not 1 <= len(funded_by) <= 40:
        raise ValueError("funded_by: a party code of 1–40 characters")


def _earn_of(
    member_id: int, params: dict[str, Any], *, source_type: str, source_id: str, key: str
) -> bulk_grants.PointsGrant:
    return bulk_grants.PointsGrant(
        member_id=member_id,
        point_type=params["point_type"],
        amount=params["amount"],
        key=f"benefit:{key}",
        source_type=source_type[:24],
        source_id=source_id[:64],
        reason=params.get("reason") or f"{source_type} benefit",
        funded_by=params.get("funded_by", "brand"),
        pending_days=0,
    )


def _result(result: ledger.LedgerResult) -> dict[str, Any]:
    return {
        "kind": "points",
        "operation_id": result.operation_id,
        "lots": result.lots,
        "amount": result.amount,
    }


def _grant(
    session: Session,
    *,
    actor: Principal,
    member_id: int,
    params: dict[str, Any],
    source_type: str,
    source_id: str,
    key: str,
) -> dict[str, Any]:
    g = _earn_of(member_id, params, source_type=source_type, source_id=source_id, key=key)
    result = ledger.earn(
        session,
        actor=actor,
        member_id=g.member_id,
        point_type=g.point_type,
        amount=g.amount,
        key=g.key,
        source_type=g.source_type,
        source_id=g.source_id,
        reason=g.reason,
        funded_by=g.funded_by,
        pending_days=g.pending_days,
    )
    return _result(result)


def _grant_many(
    session: Session, *, actor: Principal, grants: Sequence[BenefitGrant]
) -> list[dict[str, Any]]:
    earns = [
        _earn_of(
            g.member_id,
            {k: v for k, v in g.benefit.items() if k != "kind"},
            source_type=g.source_type,
            source_id=g.source_id,
            key=g.key,
        )
        for g in grants
    ]
    return [_result(r) for r in bulk_grants.earn_many(session, actor=actor, grants=earns)]


register("points", validate=_validate, grant=_grant, grant_many=_grant_many)

"""The one extension point through which tiers, paid plans (and later benefit cards and campaigns)
grant benefits to a member.

A benefit is data: ``{"kind": "points", "point_type": "points", "amount": 500}``. Each kind has one
*grantor*, registered by the domain that owns the balance it touches (points register ``points``;
the coupons domain will register ``coupon`` and services). Tiers and paid plans never import those
domains: they call ``grant`` here, so dependencies keep pointing one way.

Contract of a grantor:

* ``validate(params)`` raises ``ValueError`` with a readable message when the benefit is malformed;
  configuration endpoints call ``validate_benefit`` before storing a benefit.
* ``grant(session, *, actor, member_id, params, source_type, source_id, key)`` applies the benefit in
  the caller's transaction, never commits, and is idempotent on ``key``: a second call with the same
  key has no further effect and returns the first result.

This module must not import domain services (they import it).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.orm import Session

from huiyuan.kit.errors import ValidationFailed, field_error
from huiyuan.kit.scope import Principal

# Modules whose import registers grantors; add a line when a domain offers a benefit kind.
GRANTOR_MODULES: tuple[str, ...] = (
    "huiyuan.points.benefits",
    "huiyuan.coupons.benefits",
    "huiyuan.benefits.grantor",
)


class GrantFunction(Protocol):
    def __call__(
        self,
        session: Session,
        *,
        actor: Principal,
        member_id: int,
        params: dict[str, Any],
        source_type: str,
        source_id: str,
        key: str,
    ) -> dict[str, Any]: ...


@dataclass(frozen=True)
class BenefitGrant:
    """One grant of ``grant_many``: what ``grant`` takes for one member."""

    member_id: int
    benefit: dict[str, Any]
    source_type: str
    source_id: str
    key: str


class GrantManyFunction(Protocol):
    def __call__(
        self, session: Session, *, actor: Principal, grants: Sequence[BenefitGrant]
    ) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class Grantor:
    kind: str
    validate: Callable[[dict[str, Any]], None]
    grant: GrantFunction
    # Optional: grants of this kind for many members at once, writing what ``grant`` one by one
    # would write, in order; results in the order given.
    grant_many: GrantManyFunction | None = None


_grantors: dict[str, Grantor] = {}
_loaded = False


def register(
    kind: str,
    *,
    validate: Callable[[dict[str, Any]], None],
    grant: GrantFunction,
    grant_many: GrantManyFunction | None = None,
) -> None:
    """Declare the grantor of a benefit kind (one per kind)."""
    _grantors[kind] = Grantor(kind=kind, validate=validate, grant=grant, grant_many=grant_many)


def _load() -> None:
    global _loaded
    if _loaded:
        return
    for name in GRANTOR_MODULES:
        importlib.import_module(name)
    _loaded = True


def kinds() -> list[str]:
    """The benefit kinds that can be granted in this installation."""
    _load()
    return sorted(_grantors)


def validate_benefit(benefit: dict[str, Any], *, field: str = "benefits") -> None:
    """Check one benefit spec; raises ``ValidationFailed`` naming ``field``."""
    _load()
    kind = benefit.get("kind")
    grantor = _grantors.get(kind) if isinstance(kind, str) else None
    if grantor is None:
        raise ValidationFailed(
            "Unknown benefit kind.",
            errors=[field_error(f"{field}.kind", f"one of {', '.join(kinds())}", "unknown-benefit-kind")],
        )
    params = {k: v for k, v in benefit.items() if k != "kind"}
    try:
        grantor.validate(params)
    except ValueError as exc:
        raise ValidationFailed("Invalid benefit.", errors=[field_error(field, str(exc), "invalid-benefit")])


def grant(
    session: Session,
    *,
    actor: Principal,
    member_id: int,
    benefit: dict[str, Any],
    source_type: str,
    source_id: str,
    key: str,
) -> dict[str, Any]:
    """Grant one benefit to a member, idempotently on ``key``; returns the grantor's result."""
    validate_benefit(benefit)
    grantor = _grantors[benefit["kind"]]
    params = {k: v for k, v in benefit.items() if k != "kind"}
    return grantor.grant(
        session,
        actor=actor,
        member_id=member_id,
        params=params,
        source_type=source_type,
        source_id=source_id,
        key=key,
    )


def grant_many(session: Session, *, actor: Principal, grants: Sequence[BenefitGrant]) -> list[dict[str, Any]]:
    """``grant`` for each of ``grants`` (a batch of members), in order within each kind; a kind whose
    grantor takes a batch at once writes the same as one by one. Results in ``grants`` order."""
    for g in grants:
        validate_benefit(g.benefit)
    by_kind: dict[str, list[int]] = {}
    for i, g in enumerate(grants):
        by_kind.setdefault(g.benefit["kind"], []).append(i)
    results: list[dict[str, Any]] = [{} for _ in grants]
    for kind, indexes in by_kind.items():
        grantor = _grantors[kind]
        if grantor.grant_many is not None:
            done = grantor.grant_many(session, actor=actor, grants=[grants[i] for i in indexes])
            for i, result in zip(indexes, done, strict=True):
                results[i] = result
            continue
        for i in indexes:
            g = grants[i]
            results[i] = grantor.grant(
                session,
                actor=actor,
                member_id=g.member_id,
                params={k: v for k, v in g.benefit.items() if k != "kind"},
                source_type=g.source_type,
                source_id=g.source_id,
                key=g.key,
            )
    return results

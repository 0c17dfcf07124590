"""Fixtures of the paid-membership tests: a frozen clock, a benefit kind of their own, the plans.

The ``test_benefit`` grantor writes an audit row per grant (entity id = the grant key) and looks it
up first, so it is transactional and idempotent like a real grantor, without another domain's
ledger. The real grantor modules are not loaded while it is registered.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from huiyuan.audit import service as audit
from huiyuan.audit.models import AuditEntry
from huiyuan.benefits import registry
from huiyuan.kit.clock import FrozenClock, get_clock, set_clock
from huiyuan.kit.scope import Principal

START = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
def clock() -> Iterator[FrozenClock]:
    previous = get_clock()
    frozen = FrozenClock(START)
    set_clock(frozen)
    yield frozen
    set_clock(previous)


def _validate(params: dict[str, Any]) -> None:
    amount = params.get("amount")
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise ValueError("amount must be a positive integer")
    if set(params) - {"amount"}:
        raise ValueError("only amount may be given")


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
    first = session.scalars(
        select(AuditEntry).where(AuditEntry.entity_type == "test_benefit", AuditEntry.entity_id == key)
    ).one_or_none()
    if first is not None:
        return {"grant_id": first.id}
    entry = audit.record(
        session,
        actor=actor,
        action="test_benefit.granted",
        entity_type="test_benefit",
        entity_id=key,
        brand_id=actor.scope.require_brand(),
        after={"member_id": member_id, "amount": params["amount"], "source": f"{source_type}:{source_id}"},
    )
    session.flush()
    return {"grant_id": entry.id}


@pytest.fixture(autouse=True)
def test_benefit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_loaded", True)
    monkeypatch.setattr(registry, "_grantors", {})
    registry.register("test_benefit", validate=_validate, grant=_grant)


def granted_keys(session: Session) -> list[str]:
    """Every key granted so far, in grant order."""
    stmt = (
        select(AuditEntry.entity_id).where(AuditEntry.entity_type == "test_benefit").order_by(AuditEntry.id)
    )
    return list(session.scalars(stmt))

"""Idempotency keys for retried writes that have no natural key (``Idempotency-Key`` header).

A write endpoint asks ``replay`` first: if the same principal already sent this key, the first
response is returned (same status, same body); the same key with a different body is a 422
``idempotency-key-reused``. After the write, ``remember`` stores the response in the same
transaction, so a rolled-back write leaves no record and may be retried. Two concurrent requests
with one key meet at the unique constraint; the loser gets a 409 and retries into the replay.

Stored responses may carry personal data, so they are encrypted like any PII (``kit.pii``), kept
for ``Settings.idempotency_ttl_hours`` only, and linked to the resource they created so that a
domain's erasure can ``forget`` them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import Header
from sqlalchemy import Index, String, Text, UniqueConstraint, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from huiyuan.kit import pii
from huiyuan.kit.clock import utcnow
from huiyuan.kit.db import Base, BrandOptional
from huiyuan.kit.errors import Conflict, IdempotencyMismatch
from huiyuan.kit.scope import Principal
from huiyuan.kit.types import IdType, UTCDateTime
from huiyuan.settings import get_settings

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=8,
        max_length=200,
        description="Send the same key when retrying a write; the first result is returned",
    ),
]


class IdempotencyRecord(BrandOptional, Base):
    __tablename__ = "idempotency_keys"
    __table_args__ = (
        UniqueConstraint("principal", "key"),
        Index("ix_idempotency_keys_resource", "resource_type", "resource_id"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    principal: Mapped[str] = mapped_column(String(80), nullable=False)
    key: Mapped[str] = mapped_column(String(200), nullable=False)
    operation: Mapped[str] = mapped_column(String(80), nullable=False)
    request_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    status_code: Mapped[int] = mapped_column(nullable=False)
    response_enc: Mapped[str] = mapped_column(Text, nullable=False)
    resource_type: Mapped[str | None] = mapped_column(String(40))
    resource_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False, index=True)


@dataclass
class Replay:
    status_code: int
    body: Any


def _principal_key(actor: Principal) -> str:
    return f"{actor.kind}:{actor.id}"


def request_hash(operation: str, payload: Any) -> str:
    canonical = json.dumps(
        {"op": operation, "body": payload}, sort_keys=True, default=str, ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def replay(
    session: Session, *, actor: Principal, key: str | None, operation: str, payload: Any
) -> Replay | None:
    """The stored response for this key, if the same request was already handled."""
    if not key:
        return None
    stmt = select(IdempotencyRecord).where(
        IdempotencyRecord.principal == _principal_key(actor), IdempotencyRecord.key == key
    )
    record = session.scalars(stmt).one_or_none()
    if record is None or record.created_at < _horizon():
        return None
    if record.operation != operation or record.request_hash != request_hash(operation, payload):
        raise IdempotencyMismatch("This Idempotency-Key was already used for a different request.")
    return Replay(status_code=record.status_code, body=json.loads(pii.decrypt(record.response_enc)))


def _horizon() -> datetime:
    return utcnow() - timedelta(hours=get_settings().idempotency_ttl_hours)


def remember(
    session: Session,
    *,
    actor: Principal,
    key: str | None,
    operation: str,
    payload: Any,
    status_code: int,
    body: Any,
    resource: tuple[str, object] | None = None,
) -> None:
    """Store the response of a handled write under its key, in the write's own transaction."""
    if not key:
        return
    principal = _principal_key(actor)
    # Expired keys of this principal go first, so a key may be reused after the retention window.
    session.execute(
        delete(IdempotencyRecord).where(
            IdempotencyRecord.principal == principal, IdempotencyRecord.created_at < _horizon()
        )
    )
    record = IdempotencyRecord(
        brand_id=actor.scope.brand_id,
        principal=principal,
        key=key,
        operation=operation,
        request_hash=request_hash(operation, payload),
        status_code=status_code,
        response_enc=pii.encrypt(json.dumps(body, default=str, ensure_ascii=False)),
        resource_type=resource[0] if resource else None,
        resource_id=str(resource[1]) if resource else None,
    )
    try:
        with session.begin_nested():
            session.add(record)
    except IntegrityError:
        raise Conflict("A request with this Idempotency-Key is being handled; retry shortly.")


def forget(session: Session, *, resource_type: str, resource_id: object) -> None:
    """Drop stored responses about one resource (used when a member is erased)."""
    session.execute(
        delete(IdempotencyRecord).where(
            IdempotencyRecord.resource_type == resource_type,
            IdempotencyRecord.resource_id == str(resource_id),
        )
    )

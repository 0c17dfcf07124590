"""Idempotency keys for retried writes that have no natural key (``Idempotency-Key`` header).

A write endpoint asks ``replay`` first: if the same principal already sent this key, the first
response is returned (same status, same body); the same key with a different body is a 422
``idempotency-key-reused``. After the write, ``remember`` stores the response in the same
transaction, so a rolled-back write leaves no record and may be retried. Two concurrent requests
with one key meet at the unique constraint; the loser gets a 409 and retries into the replay.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import Header
from sqlalchemy import String, UniqueConstraint, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from huiyuan.kit.clock import utcnow
from huiyuan.kit.db import Base, BrandOptional
from huiyuan.kit.errors import Conflict, IdempotencyMismatch
from huiyuan.kit.scope import Principal
from huiyuan.kit.types import IdType, JSONType, UTCDateTime

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
    __table_args__ = (UniqueConstraint("principal", "key"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    principal: Mapped[str] = mapped_column(String(80), nullable=False)
    key: Mapped[str] = mapped_column(String(200), nullable=False)
    operation: Mapped[str] = mapped_column(String(80), nullable=False)
    request_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    status_code: Mapped[int] = mapped_column(nullable=False)
    response: Mapped[Any] = mapped_column(JSONType, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)


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
    if record is None:
        return None
    if record.operation != operation or record.request_hash != request_hash(operation, payload):
        raise IdempotencyMismatch("This Idempotency-Key was already used for a different request.")
    return Replay(status_code=record.status_code, body=record.response)


def remember(
    session: Session,
    *,
    actor: Principal,
    key: str | None,
    operation: str,
    payload: Any,
    status_code: int,
    body: Any,
) -> None:
    """Store the response of a handled write under its key, in the write's own transaction."""
    if not key:
        return
    record = IdempotencyRecord(
        brand_id=actor.scope.brand_id,
        principal=_principal_key(actor),
        key=key,
        operation=operation,
        request_hash=request_hash(operation, payload),
        status_code=status_code,
        response=body,
    )
    try:
        with session.begin_nested():
            session.add(record)
    except IntegrityError:
        raise Conflict("A request with this Idempotency-Key is being handled; retry shortly.")

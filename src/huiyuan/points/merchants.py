"""The brand's merchant registry (商户): who ``merchant:<code>`` is when a lot names it as funder.

Owns: the request and response shapes, the repository and the verbs — create (idempotent on the
code: the same code with the same fields answers the merchant already there, another body is a
conflict on ``code``), list, get by code and update (name, contact, status; audited). Clearing reads
the registry to name merchant parties (``clearing._party_names``); a code missing from the registry
still clears, shown by its key. Like every verb, nothing here commits.

Tenancy is the session's scope (``kit.db``); an explicit ``brand_id`` in a query only says which
brand a write or a clearing works for (the actor's brand, the settled brand), as in
``points.repository``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from huiyuan.audit import service as audit
from huiyuan.kit.errors import Conflict, NotFound, field_error
from huiyuan.kit.scope import Principal
from huiyuan.points.merchant_models import Merchant

# The code part of ``merchant:<code>`` in ``funded_by`` (``points.schemas.FundedBy``).
CODE_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,30}$"
FUNDER_PREFIX = "merchant:"

MerchantCode = Annotated[
    str,
    Field(
        min_length=1,
        max_length=31,
        pattern=CODE_PATTERN,
        description="Lower-case code; lots funded by the merchant name it as `merchant:<code>`",
        examples=["mall-plaza"],
    ),
]
MerchantName = Annotated[str, Field(min_length=1, max_length=100, examples=["中心广场购物中心"])]
Contact = Annotated[str, Field(min_length=1, max_length=200, examples=["王经理 021-5555 0101"])]
MerchantStatus = Literal["active", "inactive"]


# -- shapes -----------------------------------------------------------------------------------------


class MerchantIn(BaseModel):
    """A merchant that funds points. Sending the same code and fields again answers the merchant
    already registered (200); the same code with other fields is a conflict."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [
                {"code": "mall-plaza", "name": "中心广场购物中心", "contact": "王经理 021-5555 0101"},
                {"code": "mall-mixc", "name": "万象城", "status": "inactive"},
            ]
        },
    )
    code: MerchantCode
    name: MerchantName
    contact: Contact | None = None
    status: MerchantStatus = "active"


class MerchantUpdate(BaseModel):
    """Partial update: only the fields sent change; ``contact: null`` clears the contact."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [{"name": "中心广场购物中心（东区）"}, {"status": "inactive"}, {"contact": None}]
        },
    )
    name: MerchantName | None = None
    contact: Contact | None = None
    status: MerchantStatus | None = None


class MerchantOut(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": 1,
                    "code": "mall-plaza",
                    "name": "中心广场购物中心",
                    "contact": "王经理 021-5555 0101",
                    "status": "active",
                    "funded_by": "merchant:mall-plaza",
                    "created_at": "2026-03-01T02:00:00Z",
                    "updated_at": "2026-03-01T02:00:00Z",
                }
            ]
        },
    )
    id: int
    code: str
    name: str
    contact: str | None
    status: str
    funded_by: str = Field(description="The `funded_by` value of lots this merchant pays for")
    created_at: datetime
    updated_at: datetime


def merchant_out(merchant: Merchant) -> MerchantOut:
    return MerchantOut(
        id=merchant.id,
        code=merchant.code,
        name=merchant.name,
        contact=merchant.contact,
        status=merchant.status,
        funded_by=FUNDER_PREFIX + merchant.code,
        created_at=merchant.created_at,
        updated_at=merchant.updated_at,
    )


# -- repository ------------------------------------------------------------------------------------


class MerchantRepository:
    """Merchants of the brands the session's scope sees."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def by_code(self, code: str, *, brand_id: int | None, for_update: bool = False) -> Merchant | None:
        # ``brand_id`` only says which brand a write works for (a session without a scope sees all).
        stmt = select(Merchant).where(Merchant.code == code)
        if brand_id is not None:
            stmt = stmt.where(Merchant.brand_id == brand_id)
        stmt = stmt.order_by(Merchant.id).limit(1)
        if for_update:
            stmt = stmt.with_for_update()
        return self.session.scalars(stmt).first()

    def page(self, *, status: str | None, after_id: int | None, limit: int) -> list[Merchant]:
        stmt = select(Merchant)
        if status:
            stmt = stmt.where(Merchant.status == status)
        if after_id is not None:
            stmt = stmt.where(Merchant.id > after_id)
        return list(self.session.scalars(stmt.order_by(Merchant.id).limit(limit)))

    def names(self, brand_id: int, codes: Collection[str]) -> dict[str, tuple[str, str]]:
        """``merchant:<code>`` → (name, code) for the codes registered at the brand."""
        if not codes:
            return {}
        stmt = select(Merchant.code, Merchant.name).where(
            Merchant.brand_id == brand_id, Merchant.code.in_(list(codes))
        )
        return {FUNDER_PREFIX + code: (name, code) for code, name in self.session.execute(stmt)}


# -- verbs ------------------------------------------------------------------------------------------


def _snapshot(merchant: Merchant) -> dict[str, Any]:
    return {
        "code": merchant.code,
        "name": merchant.name,
        "contact": merchant.contact,
        "status": merchant.status,
    }


def _same(merchant: Merchant, data: MerchantIn) -> bool:
    return (merchant.name, merchant.contact, merchant.status) == (data.name, data.contact, data.status)


def _taken(merchant: Merchant) -> Conflict:
    return Conflict(
        f"Merchant '{merchant.code}' exists with other fields.",
        errors=[field_error("code", "already in use with other fields", "taken")],
        existing_merchant_id=merchant.id,
    )


@dataclass(frozen=True)
class CreateResult:
    merchant: Merchant
    replayed: bool


def create_merchant(session: Session, *, actor: Principal, data: MerchantIn) -> CreateResult:
    """Register a merchant at the actor's brand; a repeat of the same request answers the first."""
    brand_id = actor.scope.require_brand()
    repo = MerchantRepository(session)
    existing = repo.by_code(data.code, brand_id=brand_id)
    if existing is not None:
        if _same(existing, data):
            return CreateResult(existing, replayed=True)
        raise _taken(existing)
    merchant = Merchant(
        brand_id=brand_id, code=data.code, name=data.name, contact=data.contact, status=data.status
    )
    try:
        # A concurrent request may register the same code first: the unique key decides.
        with session.begin_nested():
            session.add(merchant)
            session.flush()
    except IntegrityError:
        existing = repo.by_code(data.code, brand_id=brand_id)
        if existing is None:
            raise
        if _same(existing, data):
            return CreateResult(existing, replayed=True)
        raise _taken(existing) from None
    audit.record(
        session,
        actor=actor,
        action="merchant.created",
        entity_type="merchant",
        entity_id=merchant.id,
        brand_id=brand_id,
        after=_snapshot(merchant),
    )
    return CreateResult(merchant, replayed=False)


def list_merchants(
    session: Session, *, status: str | None, after_id: int | None, limit: int
) -> list[Merchant]:
    """Merchants in the caller's scope, oldest first, after the cursor."""
    return MerchantRepository(session).page(status=status, after_id=after_id, limit=limit)


def get_merchant(session: Session, *, actor: Principal, code: str) -> Merchant:
    """The merchant with this code in the caller's brand, or 404."""
    merchant = MerchantRepository(session).by_code(code, brand_id=actor.scope.brand_id)
    if merchant is None:
        raise NotFound(f"Merchant '{code}' was not found.")
    return merchant


def update_merchant(session: Session, *, actor: Principal, code: str, data: MerchantUpdate) -> Merchant:
    """Change a merchant's name, contact or status; only the fields sent change. Audited."""
    brand_id = actor.scope.require_brand()
    merchant = MerchantRepository(session).by_code(code, brand_id=brand_id, for_update=True)
    if merchant is None:
        raise NotFound(f"Merchant '{code}' was not found.")
    before = _snapshot(merchant)
    sent = data.model_dump(exclude_unset=True)
    for name in ("name", "status"):
        if sent.get(name) is not None:
            setattr(merchant, name, sent[name])
    if "contact" in sent:
        merchant.contact = sent["contact"]
    after = _snapshot(merchant)
    if after == before:
        return merchant
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="merchant.updated",
        entity_type="merchant",
        entity_id=merchant.id,
        brand_id=merchant.brand_id,
        before=before,
        after=after,
    )
    return merchant

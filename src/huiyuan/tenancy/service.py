"""Business verbs for brands and stores."""

from __future__ import annotations

from sqlalchemy.orm import Session

from huiyuan.audit import service as audit
from huiyuan.kit.errors import Conflict, NotFound, PermissionDenied, field_error
from huiyuan.kit.scope import Principal
from huiyuan.tenancy.models import Brand, Store
from huiyuan.tenancy.repository import TenancyRepository


def create_brand(
    session: Session,
    *,
    actor: Principal,
    code: str,
    name: str,
    member_number_prefix: str = "M",
    timezone: str = "Asia/Shanghai",
) -> Brand:
    """Add a brand (platform principals only)."""
    if not actor.scope.is_platform_wide:
        raise PermissionDenied("Only the platform can create brands.")
    actor.require("brands:manage")
    if TenancyRepository(session).brand_by_code(code) is not None:
        raise Conflict(f"Brand '{code}' exists.", errors=[field_error("code", "already in use", "taken")])
    brand = Brand(code=code, name=name, member_number_prefix=member_number_prefix, timezone=timezone)
    session.add(brand)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="brand.created",
        entity_type="brand",
        entity_id=brand.id,
        brand_id=None,
        after={"code": code, "name": name},
    )
    return brand


def create_store(
    session: Session,
    *,
    actor: Principal,
    code: str,
    name: str,
    city: str | None = None,
    province: str | None = None,
    kind: str = "store",
) -> Store:
    """Add a store to the actor's brand."""
    brand_id = actor.scope.require_brand()
    if TenancyRepository(session).store_by_code(brand_id, code) is not None:
        raise Conflict(f"Store '{code}' exists.", errors=[field_error("code", "already in use", "taken")])
    store = Store(brand_id=brand_id, code=code, name=name, city=city, province=province, kind=kind)
    session.add(store)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="store.created",
        entity_type="store",
        entity_id=store.id,
        brand_id=brand_id,
        after={"code": code, "name": name, "city": city},
    )
    return store


def get_store(session: Session, store_id: int) -> Store:
    """The store with this id in the caller's scope, or 404."""
    store = TenancyRepository(session).store(store_id)
    if store is None:
        raise NotFound(f"Store {store_id} was not found.")
    return store

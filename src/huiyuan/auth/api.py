"""HTTP routes for API keys, console users and the audit log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter

from huiyuan.audit import repository as audit_repo
from huiyuan.auth import service
from huiyuan.auth.deps import require
from huiyuan.auth.models import ApiKey, ConsoleUser
from huiyuan.auth.schemas import ApiKeyCreate, ApiKeyIssued, ApiKeyOut, AuditOut, UserCreate, UserOut
from huiyuan.kit.pagination import Page, check_limit, cursor_page, decode_cursor
from huiyuan.kit.scope import Principal
from huiyuan.kit.web import SessionDep
from huiyuan.settings import get_settings

router = APIRouter(prefix="/api/v1", tags=["access"])

KeyAdmin = Annotated[Principal, require("keys:manage")]
UserAdmin = Annotated[Principal, require("users:manage")]
AuditReader = Annotated[Principal, require("audit:read")]


def _key_out(key: ApiKey) -> ApiKeyOut:
    return ApiKeyOut.model_validate(key, from_attributes=True)


def _target_brand(actor: Principal, platform: bool) -> int | None:
    return None if platform else actor.scope.require_brand()


@router.get("/api-keys", response_model=list[ApiKeyOut], summary="List API keys (never their secrets)")
def list_keys(session: SessionDep, actor: KeyAdmin) -> list[ApiKeyOut]:
    return [_key_out(k) for k in service.list_api_keys(session)]


@router.post("/api-keys", response_model=ApiKeyIssued, status_code=201, summary="Issue an API key")
def create_key(data: ApiKeyCreate, session: SessionDep, actor: KeyAdmin) -> ApiKeyIssued:
    issued = service.create_api_key(
        session,
        actor=actor,
        name=data.name,
        scopes=data.scopes,
        rate_limit=data.rate_limit,
        brand_id=_target_brand(actor, data.platform),
    )
    return ApiKeyIssued(**_key_out(issued.key).model_dump(), secret=issued.secret)


@router.post("/api-keys/{key_id}/revoke", response_model=ApiKeyOut, summary="Revoke an API key")
def revoke_key(key_id: int, session: SessionDep, actor: KeyAdmin) -> ApiKeyOut:
    return _key_out(service.revoke_api_key(session, actor=actor, key_id=key_id))


def _user_out(user: ConsoleUser) -> UserOut:
    return UserOut.model_validate(user, from_attributes=True)


@router.get("/users", response_model=list[UserOut], summary="List console users")
def list_users(session: SessionDep, actor: UserAdmin) -> list[UserOut]:
    return [_user_out(u) for u in service.list_users(session)]


@router.post("/users", response_model=UserOut, status_code=201, summary="Create a console user")
def create_user(data: UserCreate, session: SessionDep, actor: UserAdmin) -> UserOut:
    user = service.create_user(
        session,
        actor=actor,
        username=data.username,
        password=data.password,
        role=data.role,
        brand_id=_target_brand(actor, data.platform),
        display_name=data.display_name,
        locale=data.locale,
    )
    return _user_out(user)


@router.get("/audit", response_model=Page[AuditOut], summary="Read the audit log (newest first)")
def audit_log(
    session: SessionDep,
    actor: AuditReader,
    entity_type: str | None = None,
    entity_id: str | None = None,
    action: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[AuditOut]:
    limit = check_limit(limit, get_settings().max_page_size)
    rows = audit_repo.entries(
        session,
        entity_type=entity_type,
        entity_id=entity_id,
        action=action,
        after_id=decode_cursor(cursor),
        limit=limit + 1,
    )
    return cursor_page(
        rows, limit, lambda shown: [AuditOut.model_validate(r, from_attributes=True) for r in shown]
    )

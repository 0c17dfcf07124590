"""Resolving the principal of a request, once, and attaching its scope to the request's session.

Order: ``Authorization: Bearer`` (API key ``hy_…`` or member token ``hym_…``), else the console
session cookie (with CSRF check on unsafe methods). A platform principal may narrow itself to one
brand with ``X-Huiyuan-Brand: <code>``. API keys are rate limited per key (429 + ``Retry-After``).
"""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache
from typing import Annotated

from fastapi import Depends, Request
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from huiyuan.auth import service
from huiyuan.kit.clock import utcnow
from huiyuan.kit.db import set_scope
from huiyuan.kit.errors import CsrfFailed, NotFound, PermissionDenied, RateLimited, Unauthenticated
from huiyuan.kit.scope import Principal
from huiyuan.kit.web import SessionDep, get_db
from huiyuan.settings import get_settings
from huiyuan.tenancy.repository import TenancyRepository

SESSION_COOKIE = "hy_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
TOUCH_EVERY = timedelta(seconds=60)


@lru_cache
def _limiter(storage_uri: str) -> MovingWindowRateLimiter:
    return MovingWindowRateLimiter(storage_from_string(storage_uri))


def rate_limiter() -> MovingWindowRateLimiter:
    return _limiter(get_settings().rate_limit_storage)


def check_rate(bucket: str, limit_expr: str) -> None:
    """Count one hit against ``bucket``; raise 429 with ``Retry-After`` when over ``limit_expr``."""
    limiter = rate_limiter()
    item = parse(limit_expr)
    if not limiter.hit(item, bucket):
        reset_at, _remaining = limiter.get_window_stats(item, bucket)
        retry = max(1, int(reset_at - utcnow().timestamp()) + 1)
        raise RateLimited(f"Rate limit {limit_expr} exceeded.", headers={"Retry-After": str(retry)})


def _narrow_to_brand(request: Request, session: SessionDep, principal: Principal) -> Principal:
    code = request.headers.get("x-huiyuan-brand")
    if not code:
        return principal
    if not principal.scope.is_platform_wide:
        brand = TenancyRepository(session).brand(principal.scope.require_brand())
        if brand.code != code:
            raise NotFound("No such brand.")
        return principal
    brand_row = TenancyRepository(session).brand_by_code(code)
    if brand_row is None:
        raise NotFound("No such brand.")
    return principal.for_brand(brand_row.id)


def get_principal(request: Request, session: SessionDep) -> Principal:
    settings = get_settings()
    auth = request.headers.get("authorization", "")
    principal: Principal
    if auth:
        scheme, _, credential = auth.partition(" ")
        if scheme.lower() != "bearer" or not credential:
            raise Unauthenticated("Use 'Authorization: Bearer <key>'.")
        credential = credential.strip()
        if credential.startswith("hym_"):
            principal = service.member_principal(credential)
        else:
            key = service.authenticate_key(session, credential)
            check_rate(f"key:{key.prefix}", key.rate_limit or settings.api_rate_limit)
            now = utcnow()
            # Last use is kept to the minute: writing it on every request would add a statement
            # to every write and turn every read into a write.
            if key.last_used_at is None or now - key.last_used_at > TOUCH_EVERY:
                if request.method not in SAFE_METHODS:
                    service.touch_key(session, key.id, now)
                else:
                    with get_db(request).unit_of_work() as s:
                        service.touch_key(s, key.id, now)
            principal = service.key_principal(key)
    else:
        token = request.cookies.get(SESSION_COOKIE)
        resolved = service.resolve_session(session, token) if token else None
        if resolved is None:
            raise Unauthenticated("Sign in or send an API key.")
        record, user = resolved
        if request.method not in SAFE_METHODS:
            sent = request.headers.get(CSRF_HEADER) or getattr(request.state, "csrf_form_token", None)
            if not sent or sent != record.csrf_token:
                raise CsrfFailed()
        principal = service.user_principal(user, record.active_brand_id)
        request.state.console_session = record
    principal = _narrow_to_brand(request, session, principal)
    set_scope(session, principal.scope)
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require(permission: str):  # type: ignore[no-untyped-def]
    """Dependency factory: the principal, after checking one permission."""

    def dep(principal: PrincipalDep) -> Principal:
        principal.require(permission)
        return principal

    return Depends(dep)


def require_member(principal: PrincipalDep) -> Principal:
    if principal.kind != "member" or principal.member_id is None:
        raise PermissionDenied("This route is for member tokens.")
    return principal


MemberPrincipalDep = Annotated[Principal, Depends(require_member)]

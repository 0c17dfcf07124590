"""Resolving the principal of a request, once, and attaching its scope to the request's session.

Order: ``Authorization: Bearer`` (API key ``hy_…`` or member token ``hym_…``), else the console
session cookie (with CSRF check on unsafe methods). A platform principal may narrow itself to one
brand with ``X-Huiyuan-Brand: <code>``. API keys are rate limited per key (429 + ``Retry-After``).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from datetime import timedelta
from functools import lru_cache
from typing import Annotated

from fastapi import Depends, Request
from limits import RateLimitItem, parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from starlette.concurrency import run_in_threadpool

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


class MovingWindow:
    """An exact moving-window limiter kept in this process, for ``memory://`` storage: a bucket
    admits a hit while fewer than ``amount`` hits fell in the last ``seconds``.

    It stands in for ``limits``' memory storage, which starts a timer thread every 10 ms to expire
    entries (under load, about one new thread per request: a tenth of the server's CPU per API
    request). Shared storages (``redis://`` …) go through ``limits`` as before."""

    SWEEP_EVERY = 10_000  # hits between passes that drop idle buckets

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, deque[float]]] = {}
        self._lock = threading.Lock()
        self._hits = 0

    @property
    def storage(self) -> MovingWindow:
        """Itself: ``rate_limiter().storage.reset()`` clears the counts, as with ``limits``."""
        return self

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()

    def hit(self, bucket: str, amount: int, seconds: float) -> float | None:
        """Count a hit and return ``None``, or refuse it and return the seconds until one is free."""
        now = time.monotonic()
        with self._lock:
            found = self._buckets.get(bucket)
            if found is None:
                found = self._buckets[bucket] = (seconds, deque())
            hits = found[1]
            horizon = now - seconds
            while hits and hits[0] <= horizon:
                hits.popleft()
            if len(hits) >= amount:
                return hits[-amount] + seconds - now
            hits.append(now)
            self._hits += 1
            if self._hits % self.SWEEP_EVERY == 0:
                for key, (window, times) in list(self._buckets.items()):
                    if not times or times[-1] <= now - window:
                        del self._buckets[key]
            return None


_memory_window = MovingWindow()


@lru_cache
def _limiter(storage_uri: str) -> MovingWindowRateLimiter:
    return MovingWindowRateLimiter(storage_from_string(storage_uri))


def rate_limiter() -> MovingWindow | MovingWindowRateLimiter:
    """The limiter ``check_rate`` counts with (its ``storage.reset()`` clears every count)."""
    storage = get_settings().rate_limit_storage
    return _memory_window if storage.startswith("memory://") else _limiter(storage)


@lru_cache(maxsize=256)
def _parsed_limit(limit_expr: str) -> RateLimitItem:
    return parse(limit_expr)


def check_rate(bucket: str, limit_expr: str) -> None:
    """Count one hit against ``bucket``; raise 429 with ``Retry-After`` when over ``limit_expr``.

    ``memory://`` counts in this process only: with ``huiyuan serve --workers N`` each process admits
    its 1/N share (rounded up), so together they stay within the limit, as the event sources do
    (``events.sources``). A shared storage (``redis://`` …) counts for all processes."""
    item = _parsed_limit(limit_expr)
    settings = get_settings()
    if settings.rate_limit_storage.startswith("memory://"):
        share = -(-item.amount // settings.serve_workers)
        wait = _memory_window.hit(bucket, share, item.get_expiry())
        if wait is None:
            return
        retry = max(1, int(wait) + 1)
    else:
        limiter = _limiter(settings.rate_limit_storage)
        if limiter.hit(item, bucket):
            return
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
                    service.touch_key(session, key, now)
                else:
                    with get_db(request).unit_of_work() as s:
                        service.touch_key(s, key, now)
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


def _key_principal_at_once(request: Request, session: SessionDep) -> Principal | None:
    """``get_principal`` for the common API request, when it needs no I/O: an API key this process
    checked moments ago, its last use recorded within ``TOUCH_EVERY``, the in-process rate limiter,
    no brand to look up. ``None`` when any of that does not hold."""
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or "x-huiyuan-brand" in request.headers:
        return None
    settings = get_settings()
    if not settings.rate_limit_storage.startswith("memory://"):
        return None
    key = service.cached_key(session, credential.strip())
    if key is None or key.last_used_at is None or utcnow() - key.last_used_at > TOUCH_EVERY:
        return None
    check_rate(f"key:{key.prefix}", key.rate_limit or settings.api_rate_limit)
    principal = service.key_principal(key)
    set_scope(session, principal.scope)
    request.state.principal = principal
    return principal


async def principal_of_request(request: Request, session: SessionDep) -> Principal:
    """The request's principal (``get_principal``); an API request whose key was checked moments
    ago is resolved on the event loop, sparing it a trip to the thread pool."""
    principal = _key_principal_at_once(request, session)
    if principal is not None:
        return principal
    return await run_in_threadpool(get_principal, request, session)


PrincipalDep = Annotated[Principal, Depends(principal_of_request)]


def require(permission: str):  # type: ignore[no-untyped-def]
    """Dependency factory: the principal, after checking one permission."""

    # Async: a check without I/O needs no trip to the thread pool.
    async def dep(principal: PrincipalDep) -> Principal:
        principal.require(permission)
        return principal

    return Depends(dep)


def require_member(principal: PrincipalDep) -> Principal:
    if principal.kind != "member" or principal.member_id is None:
        raise PermissionDenied("This route is for member tokens.")
    return principal


MemberPrincipalDep = Annotated[Principal, Depends(require_member)]

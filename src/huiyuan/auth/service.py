"""Business verbs for access: console users and sessions, API keys, member tokens.

API key secrets are 32 random bytes; a plain SHA-256 of such a secret cannot be brute-forced, so we
store that (fast to check on every request) rather than a slow password hash. Console passwords get
argon2id. Member tokens are signed and short-lived (itsdangerous), checked without a database row.

A live key, once checked, is remembered by this process for ``KEY_CACHE_SECONDS`` (what a request
needs of it, with its hash: the secret is still compared on every request), so a busy client's
requests do not each read the key. Revoking a key forgets it at once in the process that revoked it;
other processes (``huiyuan serve --workers N``) refuse it within ``KEY_CACHE_SECONDS``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import weakref
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import event, select, update
from sqlalchemy.orm import Session

from huiyuan.audit import service as audit
from huiyuan.auth.models import ApiKey, ConsoleSession, ConsoleUser
from huiyuan.auth.permissions import PLATFORM_ROLES, ROLES, validate_scopes
from huiyuan.kit.clock import utcnow
from huiyuan.kit.errors import (
    Conflict,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    ValidationFailed,
    field_error,
)
from huiyuan.kit.scope import Principal, Scope
from huiyuan.settings import get_settings

_hasher = PasswordHasher()
KEY_PREFIX = "hy"


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


# -- console users ---------------------------------------------------------------------------------


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def create_user(
    session: Session,
    *,
    actor: Principal,
    username: str,
    password: str,
    role: str,
    brand_id: int | None,
    display_name: str | None = None,
    locale: str = "zh",
) -> ConsoleUser:
    """Add a console user with a role; brand users may only be created inside their brand."""
    actor.require("users:manage")
    if role not in ROLES:
        raise ValidationFailed("Unknown role.", errors=[field_error("role", f"one of {sorted(ROLES)}")])
    if brand_id is None and role not in PLATFORM_ROLES:
        raise ValidationFailed("This role needs a brand.", errors=[field_error("brand_id", "required")])
    if actor.scope.brand_id is not None and brand_id != actor.scope.brand_id:
        raise PermissionDenied("Users can only be created in your own brand.")
    if role == "platform_admin" and not actor.scope.is_platform_wide:
        raise PermissionDenied("Only the platform can create platform administrators.")
    if len(password) < 8:
        raise ValidationFailed(
            "Password too short.", errors=[field_error("password", "at least 8 characters")]
        )
    if session.scalars(select(ConsoleUser).where(ConsoleUser.username == username)).first() is not None:
        raise Conflict("Username taken.", errors=[field_error("username", "already in use", "taken")])
    user = ConsoleUser(
        brand_id=brand_id,
        username=username,
        display_name=display_name or username,
        password_hash=hash_password(password),
        role=role,
        locale=locale,
    )
    session.add(user)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="user.created",
        entity_type="console_user",
        entity_id=user.id,
        brand_id=brand_id,
        after={"username": username, "role": role},
    )
    return user


def list_users(session: Session) -> list[ConsoleUser]:
    """Console users in the caller's scope (platform users are invisible to brand scopes)."""
    return list(session.scalars(select(ConsoleUser).order_by(ConsoleUser.id)))


def user_principal(user: ConsoleUser, active_brand_id: int | None = None) -> Principal:
    perms = ROLES.get(user.role, frozenset())
    if user.brand_id is None:
        return Principal(
            kind="user",
            id=user.id,
            name=user.username,
            role=user.role,
            permissions=perms,
            scope=Scope(brand_id=active_brand_id, platform=True),
        )
    return Principal(
        kind="user",
        id=user.id,
        name=user.username,
        role=user.role,
        permissions=perms,
        scope=Scope(brand_id=user.brand_id),
    )


def check_password(session: Session, username: str, password: str) -> ConsoleUser:
    """The active user with these credentials, or ``Unauthenticated`` (same answer for both failures)."""
    user = session.scalars(select(ConsoleUser).where(ConsoleUser.username == username)).first()
    if user is None or not user.active:
        _hasher.hash(password)  # spend the same time as a real check
        raise Unauthenticated("Wrong username or password.")
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        raise Unauthenticated("Wrong username or password.")
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.last_login_at = utcnow()
    return user


@dataclass
class NewSession:
    token: str
    csrf_token: str
    record: ConsoleSession


def open_session(session: Session, user: ConsoleUser) -> NewSession:
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(24)
    now = utcnow()
    record = ConsoleSession(
        token_hash=_sha256(token),
        user_id=user.id,
        csrf_token=csrf,
        created_at=now,
        expires_at=now + timedelta(seconds=get_settings().session_max_age_seconds),
    )
    session.add(record)
    session.flush()
    return NewSession(token=token, csrf_token=csrf, record=record)


def resolve_session(session: Session, token: str) -> tuple[ConsoleSession, ConsoleUser] | None:
    record = session.scalars(
        select(ConsoleSession).where(ConsoleSession.token_hash == _sha256(token))
    ).first()
    if record is None or record.revoked_at is not None or record.expires_at <= utcnow():
        return None
    user = session.get(ConsoleUser, record.user_id)
    if user is None or not user.active:
        return None
    return record, user


def close_session(session: Session, token: str) -> None:
    session.execute(
        update(ConsoleSession).where(ConsoleSession.token_hash == _sha256(token)).values(revoked_at=utcnow())
    )


def switch_brand(
    session: Session, *, actor: Principal, console_session_id: int, brand_id: int | None
) -> ConsoleSession:
    """Point a platform user's console session at one brand, or back to every brand (``None``)."""
    record = session.get(ConsoleSession, console_session_id)
    if actor.kind != "user" or not actor.scope.platform or record is None or record.user_id != actor.id:
        raise PermissionDenied("Only platform users switch brands.")
    if brand_id is not None:
        from huiyuan.tenancy.models import Brand

        if session.get(Brand, brand_id) is None:
            raise NotFound("No such brand.")
    record.active_brand_id = brand_id
    return record


# -- API keys --------------------------------------------------------------------------------------


@dataclass
class IssuedKey:
    key: ApiKey
    secret: str  # shown once


def create_api_key(
    session: Session,
    *,
    actor: Principal,
    name: str,
    scopes: list[str],
    brand_id: int | None,
    rate_limit: str | None = None,
) -> IssuedKey:
    """Issue a key; the plaintext is returned once and only its hash is stored."""
    actor.require("keys:manage")
    scopes = validate_scopes(scopes)
    if brand_id is None and not actor.scope.is_platform_wide:
        raise PermissionDenied("Only the platform can issue platform keys.")
    if actor.scope.brand_id is not None and brand_id != actor.scope.brand_id:
        raise PermissionDenied("Keys can only be issued for your own brand.")
    if "*" in scopes and brand_id is not None:
        raise ValidationFailed("'*' is for platform keys.", errors=[field_error("scopes", "not allowed")])
    prefix = secrets.token_hex(4)
    secret = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey(
        brand_id=brand_id,
        name=name,
        prefix=prefix,
        key_hash=_sha256(secret),
        scopes=scopes,
        rate_limit=rate_limit,
        created_by=actor.label,
    )
    session.add(key)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="api_key.created",
        entity_type="api_key",
        entity_id=key.id,
        brand_id=brand_id,
        after={"name": name, "scopes": scopes, "prefix": prefix},
    )
    return IssuedKey(key=key, secret=secret)


def revoke_api_key(session: Session, *, actor: Principal, key_id: int) -> ApiKey:
    """Revoke a key (idempotent)."""
    actor.require("keys:manage")
    key = session.scalars(select(ApiKey).where(ApiKey.id == key_id)).one_or_none()
    if key is None:
        raise NotFound("No such API key.")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        # Forgotten now and again once the revocation is committed: a request that reads the key
        # in between still sees it live and may cache it again.
        forget_key(key.prefix)
        prefix = key.prefix
        event.listen(session, "after_commit", lambda _s: forget_key(prefix), once=True)
        audit.record(
            session,
            actor=actor,
            action="api_key.revoked",
            entity_type="api_key",
            entity_id=key.id,
            brand_id=key.brand_id,
            before={"revoked": False},
            after={"revoked": True},
        )
    return key


def list_api_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.id)))


KEY_CACHE_SECONDS = 5.0


@dataclass
class LiveKey:
    """What a request needs of a live API key: a snapshot of its row, kept for ``KEY_CACHE_SECONDS``."""

    id: int
    prefix: str
    key_hash: str
    name: str
    scopes: frozenset[str]
    brand_id: int | None
    rate_limit: str | None
    last_used_at: datetime | None  # as this process last wrote or read it
    checked_at: float = field(default=0.0, compare=False)  # time.monotonic() of the read


# One cache per connection pool (an engine and its writer share one): a test database or a second
# ``Database`` on another file never sees another's keys.
_live_keys: weakref.WeakKeyDictionary[Any, dict[str, LiveKey]] = weakref.WeakKeyDictionary()


def _cache_of(session: Session) -> dict[str, LiveKey]:
    bind = session.get_bind()
    pool = bind.engine.pool  # a Connection's engine, or the engine itself
    cache = _live_keys.get(pool)
    if cache is None:
        cache = _live_keys[pool] = {}
    return cache


def forget_key(prefix: str) -> None:
    """Drop a key from every cache of this process (revoked, or changed)."""
    for cache in list(_live_keys.values()):
        cache.pop(prefix, None)


def cached_key(session: Session, secret: str) -> LiveKey | None:
    """The live key for this secret if this process checked it less than ``KEY_CACHE_SECONDS`` ago
    (the secret is compared again), else ``None``: then ``authenticate_key`` decides. No I/O."""
    parts = secret.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX:
        return None
    live = _cache_of(session).get(parts[1])
    if live is None or time.monotonic() - live.checked_at > KEY_CACHE_SECONDS:
        return None
    return live if hmac.compare_digest(live.key_hash, _sha256(secret)) else None


def authenticate_key(session: Session, secret: str) -> LiveKey:
    """The live key for this secret, or ``Unauthenticated``. Looks up by prefix (in this process's
    cache while it is fresh, else in the database), compares hashes."""
    parts = secret.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX:
        raise Unauthenticated("The API key is not valid.")
    prefix, digest = parts[1], _sha256(secret)
    cache = _cache_of(session)
    live = cache.get(prefix)
    if live is None or time.monotonic() - live.checked_at > KEY_CACHE_SECONDS:
        key = session.scalars(select(ApiKey).where(ApiKey.prefix == prefix)).first()
        if key is None or key.revoked_at is not None:
            cache.pop(prefix, None)
            raise Unauthenticated("The API key is not valid.")
        live = LiveKey(
            id=key.id,
            prefix=key.prefix,
            key_hash=key.key_hash,
            name=key.name,
            scopes=frozenset(key.scopes),
            brand_id=key.brand_id,
            rate_limit=key.rate_limit,
            last_used_at=key.last_used_at,
            checked_at=time.monotonic(),
        )
        if len(cache) > 10_000:  # many distinct keys: start over rather than grow without bound
            cache.clear()
        cache[prefix] = live
    if not hmac.compare_digest(live.key_hash, digest):
        raise Unauthenticated("The API key is not valid.")
    return live


def key_principal(key: LiveKey) -> Principal:
    return Principal(
        kind="api_key",
        id=key.id,
        name=key.name,
        permissions=key.scopes,
        scope=Scope(brand_id=key.brand_id, platform=key.brand_id is None),
    )


def touch_key(session: Session, key: LiveKey, now: datetime) -> None:
    """Record use (in the request's write, or a short write of its own for a read request)."""
    session.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now))
    key.last_used_at = now


# -- member tokens ---------------------------------------------------------------------------------


def _member_serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(get_settings().secret_key, salt="member-token")


def issue_member_token(*, brand_id: int, member_id: int) -> tuple[str, int]:
    ttl = get_settings().member_token_ttl_seconds
    return "hym_" + _member_serializer().dumps({"b": brand_id, "m": member_id}), ttl


def member_principal(token: str) -> Principal:
    try:
        data = _member_serializer().loads(
            token.removeprefix("hym_"), max_age=get_settings().member_token_ttl_seconds
        )
    except SignatureExpired:
        raise Unauthenticated("The member token has expired.")
    except BadSignature:
        raise Unauthenticated("The member token is not valid.")
    return Principal(
        kind="member",
        id=int(data["m"]),
        name=f"member:{data['m']}",
        member_id=int(data["m"]),
        scope=Scope(brand_id=int(data["b"])),
        permissions=frozenset({"me"}),
    )

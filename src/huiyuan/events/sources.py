"""Event sources and their write keys: create, change, revoke, and recognise a key on a request.

A write key (``hyw_`` + 32 random characters) identifies a source, not a person with rights: it sits
in web pages and apps, can only add events to its own source, and is stored like an API key — a
SHA-256 of a 190-bit secret, compared by lookup of the hash — so a database leak does not hand
it out. Each source has its own rate limit, counted in messages (a batch of 500 costs 500) with the
``limits`` sliding-window counter on the same storage as the API keys' limits. With several server
processes and the in-process ``memory://`` storage, each process admits its share of the limit.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from limits import RateLimitItem, parse
from limits.storage import storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter
from sqlalchemy.orm import Session

from huiyuan.audit import service as audit
from huiyuan.events import repository
from huiyuan.events.models import DEDUP_KEYS, SOURCE_KINDS, EventSource
from huiyuan.kit.clock import utcnow
from huiyuan.kit.errors import AppError, NotFound, RateLimited, Unauthenticated, ValidationFailed, field_error
from huiyuan.kit.scope import Principal
from huiyuan.settings import get_settings

KEY_PREFIX = "hyw_"
DEFAULT_RATE_LIMIT = "5000/second"


class SourceDisabled(AppError):
    status = 403
    code = "source-disabled"
    title = "This source is disabled"


@dataclass(frozen=True)
class IssuedSource:
    source: EventSource
    write_key: str  # shown once


@dataclass(frozen=True)
class SourceInfo:
    """What ingestion needs about a source and its brand, read in one query per request."""

    id: int
    brand_id: int
    key_hash: str
    status: str
    rate_limit: str | None
    last_event_at: datetime | None
    violation_mode: str
    unplanned_policy: str
    plan_token: str
    dedup: str = "message_id"


def hash_key(write_key: str) -> str:
    return hashlib.sha256(write_key.encode()).hexdigest()


def _check_rate_limit(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        parse(value)
    except ValueError:
        raise ValidationFailed(
            "Not a rate limit.", errors=[field_error("rate_limit", "e.g. 2000/second or 100000/minute")]
        )
    return value


def _check_dedup(value: str) -> str:
    if value not in DEDUP_KEYS:
        raise ValidationFailed(
            "Unknown de-duplication key.", errors=[field_error("dedup", f"one of {', '.join(DEDUP_KEYS)}")]
        )
    return value


def create_source(
    session: Session,
    *,
    actor: Principal,
    name: str,
    kind: str,
    rate_limit: str | None = None,
    dedup: str = "message_id",
) -> IssuedSource:
    """Add a source to the actor's brand; its write key is returned once, only its hash is kept."""
    actor.require("events:write")
    brand_id = actor.scope.require_brand()
    if kind not in SOURCE_KINDS:
        raise ValidationFailed(
            "Unknown kind.", errors=[field_error("kind", f"one of {', '.join(SOURCE_KINDS)}")]
        )
    _check_dedup(dedup)
    write_key = KEY_PREFIX + secrets.token_urlsafe(24)
    source = EventSource(
        brand_id=brand_id,
        name=name,
        kind=kind,
        key_prefix=write_key[:12],
        key_hash=hash_key(write_key),
        rate_limit=_check_rate_limit(rate_limit),
        status="active",
        dedup=dedup,
        created_by=actor.label,
    )
    session.add(source)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="event_source.created",
        entity_type="event_source",
        entity_id=source.id,
        brand_id=brand_id,
        after={
            "name": name,
            "kind": kind,
            "rate_limit": rate_limit,
            "dedup": dedup,
            "key_prefix": source.key_prefix,
        },
    )
    return IssuedSource(source, write_key)


def get_source(session: Session, source_id: int) -> EventSource:
    """A source of the caller's brand (404 for another brand's)."""
    source = repository.source_by_id(session, source_id)
    if source is None:
        raise NotFound("No such event source.")
    return source


def list_sources(session: Session) -> list[EventSource]:
    return repository.sources(session)


def _audited(source: EventSource) -> dict[str, str | None]:
    """What a change of a source records before and after."""
    return {
        "name": source.name,
        "rate_limit": source.rate_limit,
        "status": source.status,
        "dedup": source.dedup,
    }


def update_source(
    session: Session,
    *,
    actor: Principal,
    source_id: int,
    name: str | None = None,
    rate_limit: str | None = None,
    clear_rate_limit: bool = False,
    status: str | None = None,
    dedup: str | None = None,
) -> EventSource:
    """Rename a source, change its rate limit or its de-duplication key, or disable/enable it (a
    revoked source stays revoked). A new key applies to messages received from then on."""
    actor.require("events:write")
    source = get_source(session, source_id)
    forget_sources()
    before = _audited(source)
    if status is not None:
        if status not in ("active", "disabled"):
            raise ValidationFailed("Unknown status.", errors=[field_error("status", "active or disabled")])
        if source.status == "revoked":
            raise ValidationFailed("A revoked source cannot be enabled again; create a new one.")
        source.status = status
    if name is not None:
        source.name = name
    if dedup is not None:
        source.dedup = _check_dedup(dedup)
    if clear_rate_limit:
        source.rate_limit = None
    elif rate_limit is not None:
        source.rate_limit = _check_rate_limit(rate_limit)
    audit.record(
        session,
        actor=actor,
        action="event_source.updated",
        entity_type="event_source",
        entity_id=source.id,
        brand_id=source.brand_id,
        before=before,
        after=_audited(source),
    )
    return source


def revoke_source(session: Session, *, actor: Principal, source_id: int) -> EventSource:
    """Revoke a source's write key for good (idempotent); its events stay."""
    actor.require("events:write")
    source = get_source(session, source_id)
    forget_sources()
    if source.status != "revoked":
        audit.record(
            session,
            actor=actor,
            action="event_source.revoked",
            entity_type="event_source",
            entity_id=source.id,
            brand_id=source.brand_id,
            before={"status": source.status},
            after={"status": "revoked"},
        )
        source.status = "revoked"
        source.revoked_at = utcnow()
    return source


def _info(row: tuple[object, ...] | None) -> SourceInfo | None:
    if row is None:
        return None
    sid, brand_id, key_hash, status, rate, last, mode, policy, token, dedup = row
    return SourceInfo(
        id=int(sid),  # type: ignore[call-overload]
        brand_id=int(brand_id),  # type: ignore[call-overload]
        key_hash=str(key_hash),
        status=str(status),
        rate_limit=rate,  # type: ignore[arg-type]
        last_event_at=last,  # type: ignore[arg-type]
        violation_mode=str(mode or "flag"),
        unplanned_policy=str(policy or "allow"),
        plan_token=str(token or ""),
        dedup=str(dedup),
    )


def _usable(info: SourceInfo | None) -> SourceInfo:
    if info is None or info.status == "revoked":
        raise Unauthenticated(
            "The write key is not valid.", headers={"WWW-Authenticate": 'Basic realm="huiyuan"'}
        )
    if info.status != "active":
        raise SourceDisabled("This source is disabled; its events are not accepted.")
    return info


def authenticate(session: Session, write_key: str | None) -> SourceInfo:
    """The active source of this write key, or 401 ``unauthenticated`` (403 when disabled)."""
    if not write_key:
        raise Unauthenticated(
            "Send the write key as HTTP Basic user name or as 'writeKey' in the body.",
            headers={"WWW-Authenticate": 'Basic realm="huiyuan"'},
        )
    return _usable(_info(repository.source_info_row(session, key_hash=hash_key(write_key))))


# Recently authenticated sources of this process: the tracking API would otherwise spend a read
# transaction per request on the same row. Any change of a source, the plan or the settings made in
# this process empties it; other processes see a change within ``SOURCE_CACHE_SECONDS``.
SOURCE_CACHE_SECONDS = 1.0
_recent: dict[str, tuple[float, SourceInfo]] = {}


def recent_source(write_key: str | None) -> SourceInfo | None:
    """The source of this write key if it was authenticated in the last second."""
    if not write_key:
        return None
    hit = _recent.get(hash_key(write_key))
    if hit is None or hit[0] < time.monotonic():
        return None
    return hit[1]


def remember_source(source: SourceInfo) -> None:
    if len(_recent) > 10_000:
        _recent.clear()
    _recent[source.key_hash] = (time.monotonic() + SOURCE_CACHE_SECONDS, source)


def forget_sources() -> None:
    """Called by every change of a source, a plan or settings."""
    _recent.clear()


def source_for_system(session: Session, source_id: int) -> SourceInfo:
    """A source of the caller's brand (tenancy-filtered), for the server-side endpoint."""
    row = repository.source_info_row(session, source_id=source_id)
    if row is None:
        raise NotFound("No such event source.")
    return _usable(_info(row))


@lru_cache(maxsize=256)
def _rate(expression: str, processes: int = 1) -> RateLimitItem:
    item = parse(expression)
    if processes <= 1:
        return item
    return type(item)(math.ceil(item.amount / processes), item.multiples, item.namespace)


def _processes_counting_apart() -> int:
    """How many server processes keep their own counts: ``memory://`` lives in one process, so with
    ``huiyuan serve --workers N`` each admits 1/N of a limit and together they never exceed it (a
    shared storage such as ``redis://`` counts for all and needs no share)."""
    settings = get_settings()
    return settings.serve_workers if settings.rate_limit_storage.startswith("memory://") else 1


@lru_cache
def _limiter(storage_uri: str) -> SlidingWindowCounterRateLimiter:
    return SlidingWindowCounterRateLimiter(storage_from_string(storage_uri))


def limiter() -> SlidingWindowCounterRateLimiter:
    return _limiter(get_settings().rate_limit_storage)


def check_rate(source: SourceInfo, messages: int) -> None:
    """Count ``messages`` against the source's limit; 429 with ``Retry-After`` when over it.

    A request is counted whole or not at all, so a refused batch can be resent as it is.
    """
    if messages <= 0:
        return
    expression = source.rate_limit or DEFAULT_RATE_LIMIT
    item = _rate(expression, _processes_counting_apart())
    bucket = "events:" + source.key_hash[:24]  # the hash, not the id: ids repeat across databases
    if messages > item.amount:
        raise RateLimited(
            f"{messages} messages in one request exceed this source's whole limit ({expression}"
            + (f", {item.amount} per server process" if item.amount != _rate(expression).amount else "")
            + ").",
            headers={"Retry-After": str(item.get_expiry())},
        )
    rate = limiter()
    if not rate.hit(item, bucket, cost=messages):
        reset_at, _remaining = rate.get_window_stats(item, bucket)
        # ``limits`` counts in wall-clock time, not in the injected clock.
        retry = max(1, math.ceil(reset_at - time.time()))
        raise RateLimited(
            f"This source is limited to {expression}.",
            headers={"Retry-After": str(min(retry, item.get_expiry()))},
        )

"""Every query of the events domain except the bulk writes (``events.store``). Tenancy is applied by
the session's scope (all models here are ``BrandOwned``); queries that run without a scope — the
ingestion path — name the brand themselves."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import ColumnElement, Integer, cast, func, or_, select
from sqlalchemy.orm import Session

from huiyuan.events.models import (
    Event,
    EventDefinition,
    EventSettings,
    EventSource,
    EventViolationStat,
    QuarantinedEvent,
    UnplannedEvent,
)


def sources(session: Session) -> list[EventSource]:
    return list(session.scalars(select(EventSource).order_by(EventSource.id)))


def source_by_id(session: Session, source_id: int) -> EventSource | None:
    return session.scalars(select(EventSource).where(EventSource.id == source_id)).one_or_none()


def source_info_row(
    session: Session, *, key_hash: str | None = None, source_id: int | None = None
) -> tuple[Any, ...] | None:
    """One source by key hash or id with its brand's settings: (id, brand_id, key_hash, status,
    rate_limit, last_event_at, violation_mode, unplanned_policy, plan_token), in one query."""
    stmt = select(
        EventSource.id,
        EventSource.brand_id,
        EventSource.key_hash,
        EventSource.status,
        EventSource.rate_limit,
        EventSource.last_event_at,
        EventSettings.violation_mode,
        EventSettings.unplanned_policy,
        EventSettings.plan_token,
    ).outerjoin(EventSettings, EventSettings.brand_id == EventSource.brand_id)
    if key_hash is not None:
        stmt = stmt.where(EventSource.key_hash == key_hash)
    if source_id is not None:
        stmt = stmt.where(EventSource.id == source_id)
    row = session.execute(stmt).first()
    return tuple(row) if row is not None else None


def settings_row(session: Session, brand_id: int) -> EventSettings | None:
    return session.scalars(select(EventSettings).where(EventSettings.brand_id == brand_id)).one_or_none()


def definitions_of_brand(session: Session, brand_id: int) -> list[EventDefinition]:
    """Every version of every definition of one brand, oldest version first."""
    stmt = (
        select(EventDefinition)
        .where(EventDefinition.brand_id == brand_id)
        .order_by(EventDefinition.kind, EventDefinition.name, EventDefinition.version)
    )
    return list(session.scalars(stmt))


def current_definitions(session: Session, *, kind: str | None = None, status: str | None = None) -> list[Any]:
    """The newest version of each planned event, by kind and name."""
    newest = (
        select(
            EventDefinition.brand_id,
            EventDefinition.kind,
            EventDefinition.name,
            func.max(EventDefinition.version).label("version"),
        )
        .group_by(EventDefinition.brand_id, EventDefinition.kind, EventDefinition.name)
        .subquery()
    )
    stmt = select(EventDefinition).join(
        newest,
        (newest.c.brand_id == EventDefinition.brand_id)
        & (newest.c.kind == EventDefinition.kind)
        & (newest.c.name == EventDefinition.name)
        & (newest.c.version == EventDefinition.version),
    )
    if kind:
        stmt = stmt.where(EventDefinition.kind == kind)
    if status:
        stmt = stmt.where(EventDefinition.status == status)
    return list(session.scalars(stmt.order_by(EventDefinition.kind, EventDefinition.name)))


def definition_by_id(session: Session, definition_id: int) -> EventDefinition | None:
    return session.scalars(select(EventDefinition).where(EventDefinition.id == definition_id)).one_or_none()


def versions(session: Session, *, kind: str, name: str) -> list[EventDefinition]:
    stmt = (
        select(EventDefinition)
        .where(EventDefinition.kind == kind, EventDefinition.name == name)
        .order_by(EventDefinition.version.desc())
    )
    return list(session.scalars(stmt))


def newest_version(session: Session, *, brand_id: int, kind: str, name: str) -> EventDefinition | None:
    stmt = (
        select(EventDefinition)
        .where(
            EventDefinition.brand_id == brand_id, EventDefinition.kind == kind, EventDefinition.name == name
        )
        .order_by(EventDefinition.version.desc())
        .limit(1)
    )
    return session.scalars(stmt).first()


def unplanned(
    session: Session, *, status: str | None, after_id: int | None, limit: int
) -> list[UnplannedEvent]:
    stmt = select(UnplannedEvent)
    if status:
        stmt = stmt.where(UnplannedEvent.status == status)
    if after_id is not None:
        stmt = stmt.where(UnplannedEvent.id > after_id)
    return list(session.scalars(stmt.order_by(UnplannedEvent.id).limit(limit)))


def unplanned_by_id(session: Session, unplanned_id: int) -> UnplannedEvent | None:
    return session.scalars(select(UnplannedEvent).where(UnplannedEvent.id == unplanned_id)).one_or_none()


def events(
    session: Session,
    *,
    type: str | None = None,
    event: str | None = None,
    user_id: str | None = None,
    anonymous_id: str | None = None,
    source_id: int | None = None,
    flagged: bool = False,
    before_id: int | None = None,
    limit: int = 50,
) -> list[Event]:
    """The main stream, newest first; ``before_id`` continues below the last id seen."""
    stmt = select(Event)
    if type:
        stmt = stmt.where(Event.type == type)
    if event:
        stmt = stmt.where(Event.event == event)
    if user_id:
        stmt = stmt.where(Event.user_id == user_id)
    if anonymous_id:
        stmt = stmt.where(Event.anonymous_id == anonymous_id)
    if source_id is not None:
        stmt = stmt.where(Event.source_id == source_id)
    if flagged:
        stmt = stmt.where(Event.violations.is_not(None))
    if before_id is not None:
        stmt = stmt.where(Event.id < before_id)
    return list(session.scalars(stmt.order_by(Event.id.desc()).limit(limit)))


def person_events(
    session: Session,
    *,
    user_ids: list[str],
    anonymous_ids: list[str],
    before_id: int | None = None,
    limit: int = 50,
) -> list[Event]:
    """Newest first: events signed in as any of ``user_ids``, and anonymous events (no user id) of any of
    ``anonymous_ids`` — each part served by its partial index."""
    who: list[ColumnElement[bool]] = []
    if user_ids:
        who.append(Event.user_id.in_(user_ids))
    if anonymous_ids:
        who.append(Event.user_id.is_(None) & Event.anonymous_id.in_(anonymous_ids))
    if not who:
        return []
    stmt = select(Event).where(or_(*who))
    if before_id is not None:
        stmt = stmt.where(Event.id < before_id)
    return list(session.scalars(stmt.order_by(Event.id.desc()).limit(limit)))


def quarantined(
    session: Session, *, event: str | None, before_id: int | None, limit: int
) -> list[QuarantinedEvent]:
    stmt = select(QuarantinedEvent)
    if event:
        stmt = stmt.where(QuarantinedEvent.event == event)
    if before_id is not None:
        stmt = stmt.where(QuarantinedEvent.id < before_id)
    return list(session.scalars(stmt.order_by(QuarantinedEvent.id.desc()).limit(limit)))


def quarantined_for_release(
    session: Session, *, ids: list[int] | None, event: str | None, limit: int
) -> list[QuarantinedEvent]:
    stmt = select(QuarantinedEvent)
    if ids:
        stmt = stmt.where(QuarantinedEvent.id.in_(ids))
    if event:
        stmt = stmt.where(QuarantinedEvent.event == event)
    return list(session.scalars(stmt.order_by(QuarantinedEvent.id).limit(limit)))


def violation_stats(session: Session, *, since: date) -> list[Any]:
    """Violations per event, property and rule since a day (sums over days)."""
    stmt = (
        select(
            EventViolationStat.kind,
            EventViolationStat.event,
            EventViolationStat.property,
            EventViolationStat.rule,
            func.sum(EventViolationStat.count).label("count"),
            func.sum(EventViolationStat.quarantined).label("quarantined"),
            func.max(EventViolationStat.last_seen_at).label("last_seen_at"),
        )
        .where(EventViolationStat.day >= since)
        .group_by(
            EventViolationStat.kind,
            EventViolationStat.event,
            EventViolationStat.property,
            EventViolationStat.rule,
        )
        .order_by(func.sum(EventViolationStat.count).desc(), EventViolationStat.event)
    )
    return list(session.execute(stmt).all())


def identity_rows(session: Session, *, after_id: int, limit: int) -> list[Any]:
    """Rows that can link identifiers, in id order after a cursor: identify and alias calls, and any
    other message that carries a user id beside an anonymous id, or external ids."""
    stmt = (
        select(
            Event.id,
            Event.brand_id,
            Event.source_id,
            Event.type,
            Event.event,
            Event.user_id,
            Event.anonymous_id,
            Event.previous_id,
            Event.external_ids,
            Event.traits,
            Event.timestamp,
            Event.received_at,
        )
        .where(
            Event.id > after_id,
            Event.type.in_(("identify", "alias"))
            | (Event.user_id.is_not(None) & Event.anonymous_id.is_not(None))
            | Event.external_ids.is_not(None),
        )
        .order_by(Event.id)
        .limit(limit)
    )
    return list(session.execute(stmt).all())


def events_per_minute(session: Session, *, since: datetime, scan_limit: int) -> list[tuple[int, int]]:
    """``(minute since the epoch, events received)`` since ``since``, oldest first, counted over the
    newest ``scan_limit`` events at most: the store has no time index, so the count walks the primary
    key backwards and stops there (of a busier hour, only its latest part is counted)."""
    recent = select(Event.received_at.label("at")).order_by(Event.id.desc()).limit(scan_limit).subquery()
    if session.get_bind().dialect.name == "postgresql":
        minute: ColumnElement[Any] = func.floor(func.extract("epoch", recent.c.at) / 60)
    else:
        minute = cast(func.strftime("%s", recent.c.at), Integer) // 60
    # Group over a subquery: PostgreSQL binds the minute expression's parameters separately in
    # SELECT and GROUP BY and would not see them as the same expression.
    inner = select(minute.label("minute")).where(recent.c.at >= since).subquery()
    stmt = select(inner.c.minute, func.count()).group_by(inner.c.minute).order_by(inner.c.minute)
    return [(int(m), int(n)) for m, n in session.execute(stmt)]

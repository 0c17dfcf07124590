"""Every query of the events domain except the bulk writes (``events.store``). Tenancy is applied by
the session's scope (all models here are ``BrandOwned``); queries that run without a scope — the
ingestion path — name the brand themselves.

Person lookups read two parts: ``event_people`` (the person index) up to the brand's cursor, and the
events above the cursor, not indexed yet, by a primary-key range scan (short while the
``events.index_people`` job keeps up). Reading the cursor first and splitting at it makes the union
exact whatever commits in between: indexed rows at or below it exist already, and events are never
deleted.

An event with both a user id and an anonymous id is the profile's under its user id only; the index
files it a second time under ``s:`` + its anonymous id, for the stream's anonymous-id filter alone.
Events indexed before those rows existed get them from a backfill that walks down from the cursor
(``EventPeopleCursor.signed_backfill_id``); until it has passed them, that filter scans them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import ColumnElement, case, false, func, literal, or_, select
from sqlalchemy.orm import Session

from huiyuan.events.models import (
    Event,
    EventDefinition,
    EventMinute,
    EventPeopleCursor,
    EventPerson,
    EventSettings,
    EventSource,
    EventViolationStat,
    QuarantinedEvent,
    UnplannedEvent,
)
from huiyuan.kit.db import scope_of

USER_KEY = "u:"
ANONYMOUS_KEY = "a:"
# An event signed in as a user that also carries an anonymous id, by that anonymous id (the stream's
# key; never one of the profile's, ``person_keys``).
SIGNED_ANONYMOUS_KEY = "s:"


def sources(session: Session) -> list[EventSource]:
    return list(session.scalars(select(EventSource).order_by(EventSource.id)))


def source_by_id(session: Session, source_id: int) -> EventSource | None:
    return session.scalars(select(EventSource).where(EventSource.id == source_id)).one_or_none()


def source_info_row(
    session: Session, *, key_hash: str | None = None, source_id: int | None = None
) -> tuple[Any, ...] | None:
    """One source by key hash or id with its brand's settings: (id, brand_id, key_hash, status,
    rate_limit, last_event_at, violation_mode, unplanned_policy, plan_token, dedup), in one query."""
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
        EventSource.dedup,
    ).outerjoin(EventSettings, EventSettings.brand_id == EventSource.brand_id)
    if key_hash is not None:
        stmt = stmt.where(EventSource.key_hash == key_hash)
    if source_id is not None:
        stmt = stmt.where(EventSource.id == source_id)
    row = session.execute(stmt).first()
    return tuple(row) if row is not None else None


def dedup_keys(session: Session, source_ids: set[int]) -> dict[int, str]:
    """The de-duplication key of each of these sources of the caller's brand."""
    if not source_ids:
        return {}
    rows = session.execute(select(EventSource.id, EventSource.dedup).where(EventSource.id.in_(source_ids)))
    return {int(sid): str(dedup) for sid, dedup in rows}


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
    """The main stream, newest first; ``before_id`` continues below the last id seen.

    Filtered by a user id or an anonymous id (alone or with the other filters), the events come from
    the person index up to its cursor plus the store above it, as ``person_events`` reads them: a user
    id's events sit under ``u:`` + the id, an anonymous id's under ``a:`` (no user id) and ``s:`` (with
    one) + the id, so the filter is one or two index ranges instead of a scan of the store. Events at
    or below the backfill mark (indexed before ``s:`` rows existed) are still scanned for an anonymous
    id, newest first after the indexed ones: the three parts are disjoint id ranges."""
    conds: list[ColumnElement[bool]] = []
    if type:
        conds.append(Event.type == type)
    if event:
        conds.append(Event.event == event)
    if user_id:
        conds.append(Event.user_id == user_id)
    if anonymous_id:
        conds.append(Event.anonymous_id == anonymous_id)
    if source_id is not None:
        conds.append(Event.source_id == source_id)
    if flagged:
        conds.append(Event.violations.is_not(None))
    if before_id is not None:
        conds.append(Event.id < before_id)
    keys: list[str] = []
    if user_id:
        keys = [USER_KEY + user_id]  # with an anonymous id too: its events are all under ``u:``
    elif anonymous_id:
        keys = [ANONYMOUS_KEY + anonymous_id, SIGNED_ANONYMOUS_KEY + anonymous_id]
    upto, backfill = people_index(session) if keys else (0, 0)
    if user_id:
        backfill = 0

    def scan(above: int, through: int | None, count: int) -> list[Event]:
        stmt = select(Event).where(Event.id > above, *conds)
        if through is not None:
            stmt = stmt.where(Event.id <= through)
        return list(session.scalars(stmt.order_by(Event.id.desc()).limit(count)))

    rows = scan(upto, None, limit)
    if upto and len(rows) < limit:
        indexed = (
            select(Event)
            .join(EventPerson, EventPerson.event_id == Event.id)
            .where(
                EventPerson.person_key.in_(keys),
                EventPerson.event_id <= upto,
                EventPerson.event_id > backfill,
                *conds,
            )
            .order_by(EventPerson.event_id.desc())
            .limit(limit - len(rows))
        )
        rows += session.scalars(indexed)
    if backfill and len(rows) < limit:
        rows += scan(0, backfill, limit - len(rows))
    return rows


def person_keys(user_ids: Sequence[str], anonymous_ids: Sequence[str]) -> list[str]:
    """``event_people`` keys of a person: signed-in events by user id, anonymous events by anonymous id."""
    return [USER_KEY + u for u in user_ids] + [ANONYMOUS_KEY + a for a in anonymous_ids]


def person_key_of() -> ColumnElement[Any]:
    """The key of an ``events`` row as SQL (NULL when it has neither id; the spec quarantines those)."""
    return func.coalesce(literal(USER_KEY) + Event.user_id, literal(ANONYMOUS_KEY) + Event.anonymous_id)


def signed_anonymous_key_of() -> ColumnElement[Any]:
    """The ``s:`` key of an ``events`` row as SQL (NULL unless it has both ids)."""
    return case((Event.user_id.is_not(None), literal(SIGNED_ANONYMOUS_KEY) + Event.anonymous_id))


def who(user_ids: Sequence[str], anonymous_ids: Sequence[str]) -> ColumnElement[bool]:
    """Events signed in as any of the user ids, and anonymous events (no user id) of the anonymous
    ids: the rule ``event_people`` indexes, for the not yet indexed tail."""
    parts: list[ColumnElement[bool]] = []
    if user_ids:
        parts.append(Event.user_id.in_(list(user_ids)))
    if anonymous_ids:
        parts.append(Event.user_id.is_(None) & Event.anonymous_id.in_(list(anonymous_ids)))
    return or_(*parts) if parts else false()


def people_cursor(session: Session, brand_id: int | None = None) -> int:
    """The last event id in ``event_people`` for the brand (the session's brand by default); 0 when
    nothing is indexed or the session has no brand scope (then every lookup scans)."""
    return people_index(session, brand_id)[0]


def people_index(session: Session, brand_id: int | None = None) -> tuple[int, int]:
    """``(cursor, backfill mark)`` of the brand's person index (the session's brand by default): every
    event up to the cursor is indexed under its person key, and those above the mark with both ids
    under their ``s:`` key too. ``(0, 0)`` when nothing is indexed or the session has no brand scope."""
    if brand_id is None:
        scope = scope_of(session)
        brand_id = scope.brand_id if scope is not None else None
    if brand_id is None:
        return 0, 0
    stmt = select(
        EventPeopleCursor.event_id,
        # NULL: a cursor from before ``s:`` rows, none of its events has one yet.
        func.coalesce(EventPeopleCursor.signed_backfill_id, EventPeopleCursor.event_id),
    ).where(EventPeopleCursor.brand_id == brand_id)
    row = session.execute(stmt).first()
    if row is None:
        return 0, 0
    return int(row[0]), min(int(row[0]), int(row[1]))


def unindexed_chunk(session: Session, *, brand_id: int, after_id: int, limit: int) -> tuple[int, int]:
    """``(events, last id)`` of the brand's next ``limit`` events after ``after_id`` (a primary-key
    range scan): the next chunk to index; ``(0, after_id)`` when there is none."""
    chunk = (
        select(Event.id)
        .where(Event.brand_id == brand_id, Event.id > after_id)
        .order_by(Event.id)
        .limit(limit)
        .subquery()
    )
    count, last = session.execute(select(func.count(), func.max(chunk.c.id))).one()
    return int(count), int(last) if last is not None else after_id


def indexed_chunk_below(session: Session, *, brand_id: int, through: int, limit: int) -> tuple[int, int]:
    """``(events, lowest id)`` of the brand's ``limit`` newest events at or below ``through`` (the
    primary key backwards): the backfill's next chunk; ``(0, 0)`` when there is none."""
    chunk = (
        select(Event.id)
        .where(Event.brand_id == brand_id, Event.id <= through)
        .order_by(Event.id.desc())
        .limit(limit)
        .subquery()
    )
    count, lowest = session.execute(select(func.count(), func.min(chunk.c.id))).one()
    return int(count), int(lowest) if lowest is not None else 0


def person_events(
    session: Session,
    *,
    user_ids: list[str],
    anonymous_ids: list[str],
    before_id: int | None = None,
    limit: int = 50,
) -> list[Event]:
    """Newest first (by id): events signed in as any of ``user_ids``, and anonymous events (no user
    id) of any of ``anonymous_ids`` — from the person index, and above its cursor from the store."""
    if not user_ids and not anonymous_ids:
        return []
    upto = people_cursor(session)
    tail = select(Event).where(Event.id > upto, who(user_ids, anonymous_ids))
    if before_id is not None:
        tail = tail.where(Event.id < before_id)
    rows = list(session.scalars(tail.order_by(Event.id.desc()).limit(limit)))
    if len(rows) >= limit or upto == 0:
        return rows
    stmt = (
        select(Event)
        .join(EventPerson, EventPerson.event_id == Event.id)
        .where(EventPerson.person_key.in_(person_keys(user_ids, anonymous_ids)), EventPerson.event_id <= upto)
    )
    if before_id is not None:
        stmt = stmt.where(EventPerson.event_id < before_id)
    stmt = stmt.order_by(EventPerson.event_id.desc()).limit(limit - len(rows))
    return rows + list(session.scalars(stmt))


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


def events_per_minute(session: Session, *, since: datetime) -> list[tuple[int, int]]:
    """``(minute since the epoch, events received)`` since ``since``, oldest first (``EventMinute``:
    counted when the events were written, so a busy hour is counted whole without reading the store)."""
    stmt = (
        select(EventMinute.minute, EventMinute.count)
        .where(EventMinute.minute >= int(since.timestamp()) // 60)
        .order_by(EventMinute.minute)
    )
    return [(int(m), int(n)) for m, n in session.execute(stmt)]

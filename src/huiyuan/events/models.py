"""Events as rows: where they come from (sources and write keys), what they should look like (the
tracking plan), and the append-only store itself.

* ``EventSource`` — one sender of a brand (a web site, an app, a server, a POS fleet) with its write
  key, stored as a SHA-256 like API keys (``auth.service``), its own rate limit and a status.
* ``EventSettings`` — per brand: what happens to an event that breaks the plan (``flag`` keeps it in
  the main stream, marked; ``quarantine`` stores it apart) and whether unplanned events count as a
  violation. ``plan_token`` changes with every change of the plan, so compiled plans can be cached
  per process and still never be stale.
* ``EventDefinition`` — one version of one planned event (``track``, ``page`` or ``screen``) with typed
  properties; the highest version of a name is the one events are checked against.
* ``UnplannedEvent`` — a track event name seen without a definition, waiting for approval.
* ``Event`` — the main stream, append-only and built for volume: no foreign keys, and only the indexes
  ingestion can afford (the unique ``(source_id, dedup_ms, message_id)`` that de-duplicates, and the
  few flagged rows); no index on user or anonymous ids. ``QuarantinedEvent`` keeps the message as sent, apart.
* ``EventPerson`` — the person index, apart from the ingestion path: one row per event under the key
  it is looked up by (its user id, or its anonymous id when it has no user id), and a second row
  under its anonymous id for an event with both (for the stream's anonymous-id filter), filled in
  batches by the ``events.index_people`` job; ``EventPeopleCursor`` is how far (event id) each brand
  is indexed.
* ``EventViolationStat`` — counts of violations per day, event, property and rule (for the plan page
  without scanning the store).

No business rules here (see ``events.service``).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from huiyuan.kit.clock import utcnow
from huiyuan.kit.db import Base, BrandOwned, TimestampMixin
from huiyuan.kit.types import IdType, JSONType, UTCDateTime

SOURCE_KINDS = ("web", "app", "server", "pos")
# How a source's resends are known (``EventSource.dedup``): by ``messageId`` alone, or by ``messageId``
# and the client's own ``timestamp`` (``Event.dedup_ms``), which keeps random ids cheap to index.
DEDUP_KEYS = ("message_id", "message_id_and_timestamp")
SOURCE_STATUSES = ("active", "disabled", "revoked")
VIOLATION_MODES = ("flag", "quarantine")
UNPLANNED_POLICIES = ("allow", "violation")
DEFINITION_KINDS = ("track", "page", "screen")
DEFINITION_STATUSES = ("active", "deprecated")
UNPLANNED_STATUSES = ("pending", "approved", "ignored")
MESSAGE_TYPES = ("identify", "track", "page", "screen", "group", "alias")
ID_LENGTH = 200
NAME_LENGTH = 200


class EventSource(TimestampMixin, BrandOwned, Base):
    """A sender of events with its write key (only the hash is kept; the key is shown once)."""

    __tablename__ = "event_sources"

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    name: Mapped[str] = mapped_column(String(120), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    key_prefix: Mapped[str] = mapped_column(String(16), nullable=False)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    # ``limits`` syntax, counted in events (``"2000/second"``); None = the default.
    rate_limit: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="active")
    created_by: Mapped[str | None] = mapped_column(String(200))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Kept to the minute (written with a batch at most once a minute).
    last_event_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # ``DEDUP_KEYS``: ``message_id`` knows a resend by its id whatever its timestamp (a system that
    # sends an order's event again with a new time); ``message_id_and_timestamp`` only when its
    # timestamp is the same too, as the client libraries resend, and then random ids cost no more to
    # store than ids that grow (``Event.dedup_ms``).
    dedup: Mapped[str] = mapped_column(
        String(32), nullable=False, default="message_id", server_default="message_id"
    )


class EventSettings(TimestampMixin, BrandOwned, Base):
    """A brand's handling of plan violations; absent means the defaults (flag, allow)."""

    __tablename__ = "event_settings"
    __table_args__ = (UniqueConstraint("brand_id"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    brand_id: Mapped[int] = mapped_column(IdType, ForeignKey("brands.id"), nullable=False)
    violation_mode: Mapped[str] = mapped_column(String(16), nullable=False, default="flag")
    unplanned_policy: Mapped[str] = mapped_column(String(16), nullable=False, default="allow")
    # A new random token with every change of the brand's plan or settings (cache key).
    plan_token: Mapped[str] = mapped_column(String(32), nullable=False)


class EventDefinition(BrandOwned, Base):
    """One version of a planned event. Versions are never changed; a change is a new version."""

    __tablename__ = "event_definitions"
    __table_args__ = (UniqueConstraint("brand_id", "kind", "name", "version"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    brand_id: Mapped[int] = mapped_column(IdType, ForeignKey("brands.id"), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False, default="track")
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="active")
    description: Mapped[str | None] = mapped_column(Text)
    # ``[{"name", "type", "required", "enum", "description"}]`` (``events.plan.PropertySpec``).
    properties: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, nullable=False)
    allow_additional: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    created_by: Mapped[str | None] = mapped_column(String(200))


class UnplannedEvent(BrandOwned, Base):
    """A track event without a definition; approving it creates one from its sample."""

    __tablename__ = "unplanned_events"
    __table_args__ = (UniqueConstraint("brand_id", "kind", "name"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    brand_id: Mapped[int] = mapped_column(IdType, ForeignKey("brands.id"), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False, default="track")
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="pending")
    # Messages received under this name (resends included).
    count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    # The properties of the first message seen (types inferred from it on approval).
    sample: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    definition_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("event_definitions.id"))


class _StoredEvent:
    """Columns shared by the main stream and the quarantine."""

    id: Mapped[int] = mapped_column(IdType, primary_key=True, sort_order=-3)
    # No foreign keys on the volume tables: the ingestion path sets brand and source from the write
    # key. (``brand_id`` is declared by each table: it overrides ``BrandOwned``'s indexed foreign key.)
    source_id: Mapped[int] = mapped_column(IdType, nullable=False, sort_order=-1)
    message_id: Mapped[str] = mapped_column(String(ID_LENGTH), nullable=False, sort_order=-1)
    type: Mapped[str | None] = mapped_column(String(16), sort_order=-1)
    # The track event's name, or the page/screen name.
    event: Mapped[str | None] = mapped_column(String(NAME_LENGTH), sort_order=-1)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, sort_order=-1)
    violations: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType, sort_order=-1)


class Event(_StoredEvent, BrandOwned, Base):
    """One collected message (identify, track, page, screen, group, alias). Append-only."""

    __tablename__ = "events"
    # Only indexes that ingestion can afford: on SQLite an index on a random key (a user or anonymous
    # id, a client's UUID message id) dirties one more page per row once it outgrows a batch, which
    # made ingestion about twice as slow (docs/events-performance.md). Person lookups are served by
    # ``EventPerson``, filled by a job behind the ingestion path (see ``repository.person_events``).
    #
    # The de-duplication key can lead with the client's own time of the message (``dedup_ms``, by the
    # source's setting): client libraries send random (UUID) message ids, and a unique index on a
    # random key dirties one random page per row (the raw insert of such rows ran 3–4× slower).
    # Messages arrive in about the order of their times, so keys led by it land on the last pages of
    # the index, as ids that grow do. A resend from a library carries its original ``timestamp``, so
    # it meets the same key.
    __table_args__ = (
        UniqueConstraint("source_id", "dedup_ms", "message_id"),
        Index(
            "ix_events_brand_flagged",
            "brand_id",
            "id",
            sqlite_where=text("violations IS NOT NULL"),
            postgresql_where=text("violations IS NOT NULL"),
        ),
    )

    brand_id: Mapped[int] = mapped_column(IdType, nullable=False, sort_order=-2)
    type: Mapped[str] = mapped_column(String(16), nullable=False, sort_order=-1)
    # For a source that de-duplicates by id and timestamp (``EventSource.dedup``): the message's
    # ``timestamp`` as the client sent it (before the clock correction, which moves with every resend's
    # ``sentAt``), in milliseconds since the epoch. 0 for a source that de-duplicates by id alone and for
    # a message without a timestamp (the id alone then de-duplicates, on a random page); the arrival
    # time for a message without an id (it gets a new one, so there is nothing to de-duplicate).
    dedup_ms: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default=text("0"))
    user_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    anonymous_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    previous_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    group_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    # Corrected event time: receivedAt − (sentAt − timestamp) when the client sent both.
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    original_timestamp: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    properties: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    traits: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    context: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # ``context.externalIds`` again, for the identity feed (``events.service.identity_calls``).
    external_ids: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType)
    # The rest of the message: integrations, page/screen category, unknown top-level fields.
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


class QuarantinedEvent(_StoredEvent, BrandOwned, Base):
    """A message kept out of the main stream: it broke the plan (brand in ``quarantine`` mode) or the
    spec (no user to attach it to, unreadable timestamps …). ``message`` is what was sent."""

    __tablename__ = "quarantined_events"
    __table_args__ = (
        UniqueConstraint("source_id", "message_id"),
        Index("ix_quarantined_events_brand_event", "brand_id", "event"),
    )

    brand_id: Mapped[int] = mapped_column(IdType, nullable=False, sort_order=-2)
    message: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)


class EventViolationStat(BrandOwned, Base):
    """Violations per UTC day, event, property and rule (messages received, resends included)."""

    __tablename__ = "event_violation_stats"
    __table_args__ = (UniqueConstraint("brand_id", "day", "kind", "event", "property", "rule"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    brand_id: Mapped[int] = mapped_column(IdType, ForeignKey("brands.id"), nullable=False)
    day: Mapped[date] = mapped_column(Date, nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    event: Mapped[str] = mapped_column(String(NAME_LENGTH), nullable=False)
    # "" when the rule is about the message, not one property.
    property: Mapped[str] = mapped_column(String(NAME_LENGTH), nullable=False)
    rule: Mapped[str] = mapped_column(String(40), nullable=False)
    count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    quarantined: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class EventMinute(BrandOwned, Base):
    """Events received per brand and minute (``received_at`` in whole minutes since the epoch, UTC),
    counted by the writer in the batch's own transaction: the live stream's chart reads the last hour
    from here instead of walking the store. New events only (a resent ``messageId`` adds nothing).
    1,440 rows a brand a day; nothing reads rows older than an hour, and the scheduled person-index
    job (``events.jobs``) deletes those older than ``MINUTES_KEPT``."""

    __tablename__ = "event_minutes"

    brand_id: Mapped[int] = mapped_column(IdType, ForeignKey("brands.id"), primary_key=True)
    minute: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)


class EventPerson(BrandOwned, Base):
    """An event under its person key: ``u:`` + the user id when the event has one, else ``a:`` + the
    anonymous id (the profile's rule: signed-in events by user id, anonymous ones by anonymous id;
    the prefixes keep the two id spaces apart). An event with both ids has a second row under ``s:``
    + its anonymous id, which only the operator's stream reads (filtered by an anonymous id; the
    profile's keys are ``u:`` and ``a:``, ``repository.person_keys``). The primary key serves "a
    person's events newest first by event time" (the profile timeline) as one range per key; no
    rowid on SQLite, so the table is that one b-tree. No foreign keys (a volume table, like ``events``)."""

    __tablename__ = "event_people"
    __table_args__ = {"sqlite_with_rowid": False}

    brand_id: Mapped[int] = mapped_column(IdType, primary_key=True)
    person_key: Mapped[str] = mapped_column(String(ID_LENGTH + 2), primary_key=True)
    # ``events.timestamp`` of the event (the timeline's order).
    at: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    event_id: Mapped[int] = mapped_column(IdType, primary_key=True)


class EventPeopleCursor(BrandOwned, Base):
    """How far a brand's events are in ``event_people``: every event up to ``event_id`` (writers
    commit in id order, ``service.append_lock``, so nothing below it can still appear).

    ``signed_backfill_id``: events at or below it were indexed before events with both ids got their
    second, ``s:`` row and may still lack it; the job's backfill (``store.backfill_people``) walks it
    down to 0. NULL on a row written before the column existed, read as its ``event_id`` (which is why
    the column has no default: adding it to an indexed database needs no data step)."""

    __tablename__ = "event_people_cursors"

    brand_id: Mapped[int] = mapped_column(IdType, ForeignKey("brands.id"), primary_key=True)
    event_id: Mapped[int] = mapped_column(IdType, nullable=False, default=0)
    signed_backfill_id: Mapped[int | None] = mapped_column(IdType)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)

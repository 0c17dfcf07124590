"""Business verbs of events: the tracking plan (definitions, versions, status, settings, approval of
unplanned events), ingestion of a request's messages, the quarantine, and the identity feed.

Plan verbs take ``session, *, actor, …``, write an audit row, never commit, and change the brand's
``plan_token`` so every process's cached compiled plan (``compiled_plan``) is replaced on its next
request. They emit no outbox events: nothing downstream reacts to a plan change.

Ingestion (``ingest``) is different from the other verbs: it owns its two short transactions (a read
of the plan, then one write of the whole request) because a request must be acknowledged only after
its rows are committed, and it emits nothing per event — consumers read the store after a cursor
(``identity_calls``), which costs the hot path nothing.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.orm import Session

from huiyuan.audit import service as audit
from huiyuan.events import repository, store
from huiyuan.events.models import (
    DEFINITION_KINDS,
    UNPLANNED_POLICIES,
    VIOLATION_MODES,
    Event,
    EventDefinition,
    EventSettings,
    QuarantinedEvent,
    UnplannedEvent,
)
from huiyuan.events.plan import EMPTY_PLAN, CompiledPlan, compile_event, infer_properties
from huiyuan.events.sources import SourceInfo, check_rate, forget_sources
from huiyuan.events.spec import Envelope, Preparer
from huiyuan.kit.clock import utcnow
from huiyuan.kit.db import advisory_lock
from huiyuan.kit.errors import Conflict, NotFound, ValidationFailed, field_error
from huiyuan.kit.scope import Principal

TOUCH_SOURCE_EVERY = timedelta(seconds=60)
RELEASE_LIMIT = 10_000


# -- settings and the plan cache -------------------------------------------------------------------


def _settings_for_change(session: Session, brand_id: int) -> EventSettings:
    row = repository.settings_row(session, brand_id)
    if row is None:
        row = EventSettings(brand_id=brand_id, violation_mode="flag", unplanned_policy="allow", plan_token="")
        session.add(row)
    row.plan_token = uuid.uuid4().hex
    forget_sources()
    return row


def event_settings(session: Session, brand_id: int) -> EventSettings:
    """The brand's settings (the defaults, unsaved, when it never changed them)."""
    row = repository.settings_row(session, brand_id)
    return row or EventSettings(
        brand_id=brand_id, violation_mode="flag", unplanned_policy="allow", plan_token=""
    )


def update_settings(
    session: Session,
    *,
    actor: Principal,
    violation_mode: str | None = None,
    unplanned_policy: str | None = None,
) -> EventSettings:
    """Choose what happens to events that break the plan (flag/quarantine) and to unplanned ones."""
    actor.require("events:write")
    brand_id = actor.scope.require_brand()
    if violation_mode is not None and violation_mode not in VIOLATION_MODES:
        raise ValidationFailed("Unknown mode.", errors=[field_error("violation_mode", "flag or quarantine")])
    if unplanned_policy is not None and unplanned_policy not in UNPLANNED_POLICIES:
        raise ValidationFailed(
            "Unknown policy.", errors=[field_error("unplanned_policy", "allow or violation")]
        )
    row = _settings_for_change(session, brand_id)
    before = {"violation_mode": row.violation_mode, "unplanned_policy": row.unplanned_policy}
    row.violation_mode = violation_mode or row.violation_mode
    row.unplanned_policy = unplanned_policy or row.unplanned_policy
    audit.record(
        session,
        actor=actor,
        action="event_settings.updated",
        entity_type="event_settings",
        entity_id=brand_id,
        brand_id=brand_id,
        before=before,
        after={"violation_mode": row.violation_mode, "unplanned_policy": row.unplanned_policy},
    )
    return row


_plans: OrderedDict[tuple[int, str], CompiledPlan] = OrderedDict()
_plans_lock = threading.Lock()
PLAN_CACHE_SIZE = 512


def cached_plan(source: SourceInfo) -> CompiledPlan | None:
    """The compiled plan of the source's brand if this process has it (no database needed)."""
    if not source.plan_token:
        return EMPTY_PLAN
    with _plans_lock:
        return _plans.get((source.brand_id, source.plan_token))


def compiled_plan(session: Session, source: SourceInfo) -> CompiledPlan:
    """The brand's plan ready to check events, cached by its plan token (a random token per change,
    so a cached plan is never another database's or another version's)."""
    if not source.plan_token:
        return EMPTY_PLAN
    key = (source.brand_id, source.plan_token)
    with _plans_lock:
        plan = _plans.get(key)
        if plan is not None:
            _plans.move_to_end(key)
            return plan
    newest: dict[tuple[str, str], EventDefinition] = {}
    for definition in repository.definitions_of_brand(session, source.brand_id):
        newest[(definition.kind, definition.name)] = definition
    plan = CompiledPlan(
        events={
            key: compile_event(
                kind=d.kind,
                name=d.name,
                version=d.version,
                status=d.status,
                allow_additional=d.allow_additional,
                properties=d.properties,
            )
            for key, d in newest.items()
        },
        violation_mode=source.violation_mode,
        unplanned_policy=source.unplanned_policy,
    )
    with _plans_lock:
        _plans[key] = plan
        while len(_plans) > PLAN_CACHE_SIZE:
            _plans.popitem(last=False)
    return plan


# -- definitions ------------------------------------------------------------------------------------


def _definition_row(
    *,
    actor: Principal,
    brand_id: int,
    kind: str,
    name: str,
    version: int,
    properties: list[dict[str, Any]],
    description: str | None,
    allow_additional: bool,
) -> EventDefinition:
    if kind not in DEFINITION_KINDS:
        raise ValidationFailed("Unknown kind.", errors=[field_error("kind", "track, page or screen")])
    names = [p["name"] for p in properties]
    if len(set(names)) != len(names):
        raise ValidationFailed(
            "Property names repeat.", errors=[field_error("properties", "names must be unique")]
        )
    return EventDefinition(
        brand_id=brand_id,
        kind=kind,
        name=name,
        version=version,
        status="active",
        description=description,
        properties=properties,
        allow_additional=allow_additional,
        created_by=actor.label,
    )


def define_event(
    session: Session,
    *,
    actor: Principal,
    name: str,
    kind: str = "track",
    properties: list[dict[str, Any]],
    description: str | None = None,
    allow_additional: bool = True,
) -> EventDefinition:
    """Plan a new event (version 1); a name already planned is a 409 (change it with ``revise_event``)."""
    actor.require("events:write")
    brand_id = actor.scope.require_brand()
    if repository.newest_version(session, brand_id=brand_id, kind=kind, name=name) is not None:
        raise Conflict(f"'{name}' is already in the plan; publish a new version instead.")
    definition = _definition_row(
        actor=actor,
        brand_id=brand_id,
        kind=kind,
        name=name,
        version=1,
        properties=properties,
        description=description,
        allow_additional=allow_additional,
    )
    return _add_definition(session, actor, definition, "event_definition.created")


def revise_event(
    session: Session,
    *,
    actor: Principal,
    name: str,
    kind: str = "track",
    properties: list[dict[str, Any]],
    description: str | None = None,
    allow_additional: bool = True,
) -> EventDefinition:
    """Publish the next version of a planned event; events are checked against the newest version."""
    actor.require("events:write")
    brand_id = actor.scope.require_brand()
    current = repository.newest_version(session, brand_id=brand_id, kind=kind, name=name)
    if current is None:
        raise NotFound(f"'{name}' is not in the plan.")
    definition = _definition_row(
        actor=actor,
        brand_id=brand_id,
        kind=kind,
        name=name,
        version=current.version + 1,
        properties=properties,
        description=description if description is not None else current.description,
        allow_additional=allow_additional,
    )
    return _add_definition(session, actor, definition, "event_definition.revised")


def _add_definition(
    session: Session, actor: Principal, definition: EventDefinition, action: str
) -> EventDefinition:
    session.add(definition)
    _settings_for_change(session, definition.brand_id)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action=action,
        entity_type="event_definition",
        entity_id=definition.id,
        brand_id=definition.brand_id,
        after={
            "kind": definition.kind,
            "name": definition.name,
            "version": definition.version,
            "properties": definition.properties,
            "allow_additional": definition.allow_additional,
        },
    )
    return definition


def set_event_status(
    session: Session, *, actor: Principal, name: str, kind: str, status: str
) -> EventDefinition:
    """Deprecate a planned event (its events are then violations) or make it active again."""
    actor.require("events:write")
    brand_id = actor.scope.require_brand()
    if status not in ("active", "deprecated"):
        raise ValidationFailed("Unknown status.", errors=[field_error("status", "active or deprecated")])
    current = repository.newest_version(session, brand_id=brand_id, kind=kind, name=name)
    if current is None:
        raise NotFound(f"'{name}' is not in the plan.")
    if current.status != status:
        audit.record(
            session,
            actor=actor,
            action="event_definition.status",
            entity_type="event_definition",
            entity_id=current.id,
            brand_id=brand_id,
            before={"status": current.status},
            after={"status": status},
        )
        current.status = status
        _settings_for_change(session, brand_id)
    return current


def approve_unplanned(
    session: Session,
    *,
    actor: Principal,
    unplanned_id: int,
    properties: list[dict[str, Any]] | None = None,
    description: str | None = None,
) -> EventDefinition:
    """Plan an unplanned event: with the given properties, or with those inferred from its sample."""
    actor.require("events:write")
    row = repository.unplanned_by_id(session, unplanned_id)
    if row is None:
        raise NotFound("No such unplanned event.")
    if row.status == "approved" and row.definition_id is not None:
        raise Conflict(f"'{row.name}' is already approved.")
    specs = properties if properties is not None else infer_properties(row.sample)
    definition = define_event(
        session,
        actor=actor,
        name=row.name,
        kind=row.kind,
        properties=specs,
        description=description,
    )
    row.status = "approved"
    row.definition_id = definition.id
    return definition


def ignore_unplanned(session: Session, *, actor: Principal, unplanned_id: int) -> UnplannedEvent:
    """Take an unplanned event off the approval list (it stays accepted; the count keeps growing)."""
    actor.require("events:write")
    row = repository.unplanned_by_id(session, unplanned_id)
    if row is None:
        raise NotFound("No such unplanned event.")
    if row.status == "pending":
        row.status = "ignored"
        audit.record(
            session,
            actor=actor,
            action="unplanned_event.ignored",
            entity_type="unplanned_event",
            entity_id=row.id,
            brand_id=row.brand_id,
            after={"name": row.name},
        )
    return row


# -- ingestion --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IngestResult:
    received: int
    stored: int
    duplicates: int
    flagged: int
    quarantined: int

    def body(self) -> dict[str, Any]:
        return {
            "success": True,
            "received": self.received,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "flagged": self.flagged,
            "quarantined": self.quarantined,
        }


def ingest(
    session: Session,
    *,
    source: SourceInfo,
    env: Envelope,
    plan: CompiledPlan,
    received_at: datetime | None = None,
) -> IngestResult:
    """Check the source's rate, prepare the rows and write them in the caller's (write) transaction,
    which must commit before the request is acknowledged."""
    check_rate(source, len(env.messages))
    at = received_at or utcnow()
    prepared = Preparer(
        brand_id=source.brand_id,
        source_id=source.id,
        plan=plan,
        dialect=store.dialect_of(session),
        received_at=at,
        dedup=source.dedup,
    ).add(env)
    append_lock(session)
    stored, quarantined = store.write(session, brand_id=source.brand_id, prepared=prepared, at=at)
    if source.last_event_at is None or at - source.last_event_at > TOUCH_SOURCE_EVERY:
        store.touch_source(session, source.id, at)
        forget_sources()  # the remembered last_event_at is old now
    return IngestResult(
        received=prepared.received,
        stored=stored,
        duplicates=prepared.received - stored - quarantined,
        flagged=prepared.flagged,
        quarantined=len(prepared.quarantined),
    )


def append_lock(session: Session) -> None:
    """Writers of the store queue here before inserting, so ids are committed in id order and a reader
    after a cursor (``identity_calls``, a warehouse sync) never misses a row committed late with a
    smaller id. PostgreSQL: one transaction-level advisory lock; SQLite: writers are serial already."""
    advisory_lock(session, "events.append")


def release_quarantined(
    session: Session,
    *,
    actor: Principal,
    ids: list[int] | None = None,
    event: str | None = None,
) -> dict[str, int]:
    """Move quarantined events into the main stream, checked against today's plan and flagged if they
    still break it. Messages that break the spec stay (they cannot join the stream)."""
    actor.require("events:write")
    brand_id = actor.scope.require_brand()
    if not ids and not event:
        raise ValidationFailed("Name the events to release.", errors=[field_error("ids", "ids or event")])
    rows = repository.quarantined_for_release(session, ids=ids, event=event, limit=RELEASE_LIMIT)
    settings = event_settings(session, brand_id)
    # The brand's own settings compile the (shared, cached) plan; this release then flags.
    brand_plan = compiled_plan(
        session,
        SourceInfo(
            id=0,
            brand_id=brand_id,
            key_hash="",
            status="active",
            rate_limit=None,
            last_event_at=None,
            violation_mode=settings.violation_mode,
            unplanned_policy=settings.unplanned_policy,
            plan_token=settings.plan_token,
        ),
    )
    plan = dataclasses.replace(brand_plan, violation_mode="flag")
    dialect = store.dialect_of(session)
    released: list[int] = []
    kept = 0
    dedup = repository.dedup_keys(session, {row.source_id for row in rows})
    if rows:
        append_lock(session)
    for row in rows:
        message = {**row.message, "messageId": row.message_id}
        prepared = Preparer(
            brand_id=brand_id,
            source_id=row.source_id,
            plan=plan,
            dialect=dialect,
            received_at=row.received_at,
            dedup=dedup.get(row.source_id, "message_id"),
        ).add(Envelope([message]))
        if prepared.quarantined:
            kept += 1
            continue
        store.insert_events(session, prepared.events)
        released.append(row.id)
    if released:
        session.execute(delete(QuarantinedEvent).where(QuarantinedEvent.id.in_(released)))
        audit.record(
            session,
            actor=actor,
            action="quarantine.released",
            entity_type="quarantined_events",
            entity_id=event or ",".join(map(str, released[:20])),
            brand_id=brand_id,
            after={"released": len(released), "kept": kept},
        )
    return {"released": len(released), "kept": kept}


def person_events(
    session: Session,
    *,
    user_ids: list[str],
    anonymous_ids: list[str],
    before_id: int | None = None,
    limit: int = 50,
) -> list[Event]:
    """One person's events, newest first, by the user ids and anonymous ids OneID knows for them
    (for the profile's timeline); ``before_id`` continues below the last id seen."""
    return repository.person_events(
        session, user_ids=user_ids, anonymous_ids=anonymous_ids, before_id=before_id, limit=limit
    )


# -- identity feed (for OneID) -----------------------------------------------------------------------


@dataclass(frozen=True)
class IdentityCall:
    """One message that can link identifiers. ``id`` is the cursor: pass the last one back."""

    id: int
    brand_id: int
    source_id: int
    type: str
    event: str | None
    user_id: str | None
    anonymous_id: str | None
    previous_id: str | None
    external_ids: list[dict[str, Any]]
    traits: dict[str, Any]
    timestamp: datetime
    received_at: datetime


def identity_calls(session: Session, after_id: int = 0, limit: int = 1000) -> list[IdentityCall]:
    """Identify and alias calls, and other messages carrying a userId beside an anonymousId or
    ``context.externalIds``, in store order after ``after_id`` (tenancy by the session's scope)."""
    return [
        IdentityCall(
            id=r.id,
            brand_id=r.brand_id,
            source_id=r.source_id,
            type=r.type,
            event=r.event,
            user_id=r.user_id,
            anonymous_id=r.anonymous_id,
            previous_id=r.previous_id,
            external_ids=r.external_ids or [],
            traits=r.traits or {},
            timestamp=r.timestamp,
            received_at=r.received_at,
        )
        for r in repository.identity_rows(session, after_id=after_id, limit=limit)
    ]

"""OneID background jobs: batch recompute, mapping import, seeding from member records, linking
from collected events, and probabilistic matching. Each acts for the run's brand, reports progress
and is safe to run again. Must not contain linking logic (``identity.linking``, ``identity.ingest``).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from huiyuan.identity import config, mapping_import, recompute
from huiyuan.identity.ingest import IngestStats, as_call, link_identity_calls, sync_member_by_id
from huiyuan.jobs.context import JobContext
from huiyuan.jobs.registry import job, schedule
from huiyuan.members.models import Member

RECOMPUTE = "identity.recompute"
SYNC_MEMBERS = "identity.sync_members"
LINK_EVENTS = "identity.link_events"
MATCH = "identity.match"
MEMBER_CHUNK = 500
EVENT_CHUNK = 1_000
EVENTS_SERVICE = "huiyuan.events.service"

IdentityCalls = Callable[[Session, int, int], Sequence[Any]]


@job(RECOMPUTE)
def run_recompute(ctx: JobContext) -> dict[str, Any]:
    """Recompute the brand's OneIDs from every active link (connected components)."""
    brand_id = ctx.scope.require_brand()
    ctx.progress(0, 1, "recomputing")
    # One write transaction holding the graph lock; progress is written in transactions of its own,
    # which on SQLite would wait for this one, so it is reported around it, not inside.
    with ctx.unit_of_work() as session:
        result = recompute.recompute(session, brand_id=brand_id, actor=ctx.actor.label)
    ctx.progress(1, 1, f"{result['oneids']} OneIDs, {result['changed']} identifiers moved")
    return result


@job(mapping_import.JOB_KIND)
def run_mapping_import(ctx: JobContext) -> dict[str, Any]:
    """Link the rows of an uploaded platform ID mapping CSV."""

    def checkpoint(state: dict[str, Any], session: Session) -> None:
        ctx.checkpoint(state, session=session)

    return mapping_import.run(
        ctx.db,
        actor=ctx.actor,
        path=Path(str(ctx.params["path"])),
        state=ctx.state,
        checkpoint=checkpoint,
        progress=lambda d, t, m: ctx.progress(d, t, m),
    )


@job(SYNC_MEMBERS)
def run_sync_members(ctx: JobContext) -> dict[str, Any]:
    """Bring every member record of the brand into the graph (chunked, resumable)."""
    brand_id = ctx.scope.require_brand()
    after = int(ctx.state.get("after_id", 0))
    done = int(ctx.state.get("done", 0))
    with ctx.unit_of_work(write=False) as session:
        total = int(
            session.scalar(select(func.count()).select_from(Member).where(Member.brand_id == brand_id)) or 0
        )
    while True:
        with ctx.unit_of_work() as session:
            ids = list(
                session.scalars(
                    select(Member.id)
                    .where(Member.brand_id == brand_id, Member.id > after)
                    .order_by(Member.id)
                    .limit(MEMBER_CHUNK)
                )
            )
            if not ids:
                break
            writer = config.writer(session, brand_id, ctx.actor.label)
            for member_id in ids:
                sync_member_by_id(writer, session, member_id)
            after, done = ids[-1], done + len(ids)
            ctx.checkpoint({"after_id": after, "done": done}, session=session)
        ctx.progress(done, total, f"{done} of {total} members")
    return {"members": done}


def events_source() -> IdentityCalls | None:
    """``events.service.identity_calls`` once the events domain is installed, else None."""
    if importlib.util.find_spec("huiyuan.events") is None:
        return None
    try:
        module = importlib.import_module(EVENTS_SERVICE)
    except ModuleNotFoundError:
        return None
    fn = getattr(module, "identity_calls", None)
    return fn if callable(fn) else None


@job(LINK_EVENTS)
def run_link_events(ctx: JobContext) -> dict[str, Any]:
    """Link identify/alias/track calls collected since the brand's cursor (kept in its settings)."""
    source = events_source()
    if source is None:
        return {"skipped": "the events domain is not installed"}
    brand_id = ctx.scope.require_brand()
    totals = IngestStats()
    while True:
        with ctx.unit_of_work() as session:
            row = config.settings_row(session, brand_id)
            calls = list(source(session, row.events_cursor, EVENT_CHUNK))
            if not calls:
                break
            writer = config.writer(session, brand_id, ctx.actor.label)
            stats = link_identity_calls(writer, calls)
            row.events_cursor = max(int(as_call(c).get("id") or 0) for c in calls)
            for key in ("calls", "links", "merged", "conflicts", "refused_values"):
                setattr(totals, key, getattr(totals, key) + getattr(stats, key))
        ctx.progress(totals.calls, None, f"{totals.calls} calls linked")
    return totals.as_dict()


@job(MATCH)
def run_match(ctx: JobContext) -> dict[str, Any]:
    """Probabilistic matching between OneIDs that share no identifier (Splink, DuckDB)."""
    from huiyuan.identity import matching

    brand_id = ctx.scope.require_brand()
    return matching.match_brand(
        ctx.db, brand_id=brand_id, actor=ctx.actor, progress=lambda d, t, m: ctx.progress(d, t, m)
    )


if importlib.util.find_spec("huiyuan.events") is not None:
    schedule(LINK_EVENTS, every_minutes=5)

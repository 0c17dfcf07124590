"""Background work of the events domain: the person index (``event_people``), filled in chunks after
each brand's cursor so that the profile finds a person's events without scanning the store, while
ingestion pays nothing for it. Safe to run again and to stop anywhere: each chunk commits with its
cursor (``store.index_people``), each backfill chunk with its mark (``store.backfill_people``: events
indexed before events with both ids got their ``s:`` row, done once the brand is caught up, so a
database indexed before those rows gets them from the scheduled job without a step of its own).
The same scheduled run deletes the brand's per-minute receive counts older than ``MINUTES_KEPT``
(the live stream's chart reads the last hour; the counts would otherwise grow 1,440 rows a day).
Must not contain query or write logic of its own.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from huiyuan.events import store
from huiyuan.jobs.context import JobContext
from huiyuan.jobs.registry import job, schedule
from huiyuan.kit.clock import utcnow

INDEX_PEOPLE = "events.index_people"
# Events per transaction. The index's keys are random, so a chunk dirties about one page per row
# until it outgrows the index's leaf pages; larger chunks write each page once for many rows
# (measured over 500k events: 2,000 → ~20k events/s, 20,000 → 56–85k events/s), at the price of
# holding SQLite's single writer longer (0.25–0.5 s a chunk), which ``pause_after`` pays back.
INDEX_CHUNK = 20_000
# Per-minute receive counts kept (the stream's chart reads one hour of them).
MINUTES_KEPT = timedelta(days=2)


def pause_after(spent: float) -> float:
    """Seconds to rest after a chunk that took ``spent``: as long again (at most 0.5 s), so the job
    holds the writer at most half the time and a catching-up run leaves ingestion room; measured in
    ``bench/profile.py``."""
    return min(spent, 0.5)


@job(INDEX_PEOPLE)
def run_index_people(ctx: JobContext) -> dict[str, Any]:
    """Index the brand's events collected since its cursor, chunk by chunk; once caught up, give
    events indexed before ``s:`` rows existed theirs (the backfill), chunk by chunk, new events first;
    then drop the brand's per-minute counts older than ``MINUTES_KEPT``."""
    brand_id = ctx.scope.require_brand()
    with ctx.unit_of_work() as session:
        pruned = store.prune_minutes(session, brand_id=brand_id, before=utcnow() - MINUTES_KEPT)
    done = backfilled = 0
    while True:
        started = time.perf_counter()
        with ctx.unit_of_work() as session:
            indexed = store.index_people(session, brand_id=brand_id, limit=INDEX_CHUNK, at=utcnow())
            older = 0
            if not indexed:
                older = store.backfill_people(session, brand_id=brand_id, limit=INDEX_CHUNK, at=utcnow())
        if not indexed and not older:
            break
        done += indexed
        backfilled += older
        ctx.progress(done + backfilled, None, f"{done} events indexed, {backfilled} backfilled")
        time.sleep(pause_after(time.perf_counter() - started))
    return {"events": done, "backfilled": backfilled, "minutes_pruned": pruned}


schedule(INDEX_PEOPLE, every_minutes=1)

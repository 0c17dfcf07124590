"""Writing the event store: a few statements per table per request, inside the caller's transaction.

Rows arrive from ``events.spec.Preparer`` as tuples in column order with JSON already serialised
(orjson) and times already encoded for the database, so they go to the driver as they are, without
SQLAlchemy's per-column processors (which would serialise JSON a second time with the slower
standard library).

On SQLite the rows go in as multi-row ``INSERT … VALUES (…), (…), …`` statements of 256, 100, 64, 16, 4
and 1 rows rather than one executemany: sqlite3 releases the GIL for every step of a statement, and an
executemany steps once per row, so a writer that must win the GIL back from a thread parsing the next
request (up to the 5 ms switch interval each time) crawled — measured: 120k rows/s alone, 17k/s next
to a busy thread, against 145k and 36k for multi-row statements. The fixed sizes keep the prepared
statements few (a 500-row statement takes ~4 ms to prepare; sqlite3 caches them per connection).

``INSERT … ON CONFLICT (source_id, dedup_ms, message_id) DO NOTHING`` (the quarantine: ``(source_id,
message_id)``) makes a resend of an acknowledged message a no-op (exactly once, with the request
acknowledged only after its commit). On PostgreSQL the JSON columns are cast from text
(``%s::jsonb``); a request of ``COPY_FROM`` (64) rows or more goes in by ``COPY`` into a temporary staging
table of the connection (made by the first such request of a transaction that finds none, emptied
after use and at commit), then one ``INSERT … SELECT … ON CONFLICT DO NOTHING``. The counters
(unplanned events, violation stats) are upserts that add to what is there.

The person index (``event_people``) is written here too, off the request path: ``index_people`` copies
the key, time and id of the next chunk of events after the brand's cursor with one
``INSERT … SELECT … ON CONFLICT DO NOTHING`` and moves the cursor in the same transaction, so a chunk
run twice (a crash before the commit, two runs at once) adds nothing twice. An event with both a
user id and an anonymous id gets a second row under its anonymous id (``s:``, for the stream's
anonymous-id filter); ``backfill_people`` gives those rows to events indexed before they existed,
walking down from the cursor in chunks the same way.

Must not decide anything: what goes where is ``spec``'s and ``service``'s business.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from itertools import chain
from typing import Any

from sqlalchemy import Select, Table, case, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from huiyuan.events import repository
from huiyuan.events.models import (
    Event,
    EventMinute,
    EventPeopleCursor,
    EventPerson,
    EventSource,
    EventViolationStat,
    UnplannedEvent,
)
from huiyuan.events.spec import (
    EVENT_COLUMNS,
    JSON_EVENT_COLUMNS,
    JSON_QUARANTINE_COLUMNS,
    QUARANTINE_COLUMNS,
    Prepared,
)

_SQL: dict[tuple[str, str, int], str] = {}
# SQLite page cache while a chunk of the person index is written (KiB).
INDEX_CACHE_KIB = 65_536
# Rows per statement on SQLite (each ≤ 256 × 19 = 4,864 parameters, far below SQLite's limit). 100:
# the batch the Segment and RudderStack libraries flush at, one statement instead of four (write CPU
# per event 14.5 / 17.9 → 11.4 / 15.5 µs in alternating in-process runs, docs/events-performance.md).
CHUNKS = (256, 100, 64, 16, 4, 1)
# PostgreSQL: from this many rows a request's rows go in by ``COPY`` through a staging table (one
# ``INSERT … SELECT``) instead of an executemany of one row a statement. Alternating API runs, two
# pairs each: at 64 and 100 rows COPY took 13–37 % less server CPU per event; at 32 the same; at 10
# more (docs/events-performance.md).
COPY_FROM = 64


def _table(model: type[Any]) -> Table:
    table: Table = model.__table__
    return table


# The de-duplication key of each table (``models``): the main stream's leads with the client's time.
KEYS = {"events": "source_id, dedup_ms, message_id", "quarantined_events": "source_id, message_id"}


def _insert_sql(
    dialect: str, table: str, columns: Sequence[str], json_columns: frozenset[str], rows: int = 1
) -> str:
    key = (dialect, table, rows)
    sql = _SQL.get(key)
    if sql is None:
        if dialect == "sqlite":
            one = "(" + ", ".join("?" for _ in columns) + ")"
            values = ", ".join([one] * rows)
        else:
            values = "(" + ", ".join("%s::jsonb" if c in json_columns else "%s" for c in columns) + ")"
        quoted = ", ".join(f'"{c}"' for c in columns)
        sql = _SQL[key] = (
            f'INSERT INTO "{table}" ({quoted}) VALUES {values} ON CONFLICT ({KEYS[table]}) DO NOTHING'
        )
    return sql


def dialect_of(session: Session) -> str:
    return session.get_bind().dialect.name


def _insert(
    session: Session,
    table: str,
    columns: Sequence[str],
    json_columns: frozenset[str],
    rows: Sequence[tuple[Any, ...]],
) -> int:
    """Insert the rows, skipping those whose key (``KEYS``) is already stored; how many were new."""
    if not rows:
        return 0
    dialect = dialect_of(session)
    connection = session.connection()
    if dialect != "sqlite":
        if len(rows) >= COPY_FROM:
            return _copy_in(connection.connection.driver_connection, table, columns, rows)
        sql = _insert_sql(dialect, table, columns, json_columns)
        return max(0, connection.exec_driver_sql(sql, list(rows)).rowcount)
    stored = start = 0
    left = len(rows)
    for size in CHUNKS:
        while left >= size:
            sql = _insert_sql(dialect, table, columns, json_columns, size)
            params = tuple(chain.from_iterable(rows[start : start + size]))
            stored += max(0, connection.exec_driver_sql(sql, params).rowcount)
            start += size
            left -= size
    return stored


def _copy_in(conn: Any, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> int:
    """PostgreSQL, many rows: ``COPY`` them into the session's staging table, then one
    ``INSERT … SELECT … ON CONFLICT DO NOTHING`` (in COPY order: ids follow the request's messages);
    how many were new. ``conn`` is the psycopg connection of the caller's transaction, so a rollback
    takes the staged rows with it; they are deleted after use, and at the latest at commit."""
    staging = f"{table}_staged"
    quoted = ", ".join(f'"{c}"' for c in columns)
    with conn.cursor() as cur:
        cur.execute(
            f'CREATE TEMPORARY TABLE IF NOT EXISTS "{staging}" ON COMMIT DELETE ROWS'
            f' AS SELECT {quoted} FROM "{table}" WITH NO DATA'
        )
        with cur.copy(f'COPY "{staging}" ({quoted}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row(row)
        cur.execute(
            f'INSERT INTO "{table}" ({quoted}) SELECT {quoted} FROM "{staging}" ORDER BY ctid'
            f" ON CONFLICT ({KEYS[table]}) DO NOTHING"
        )
        stored = max(0, cur.rowcount)
        cur.execute(f'DELETE FROM "{staging}"')
    return int(stored)


def insert_events(session: Session, rows: Sequence[tuple[Any, ...]]) -> int:
    """Append rows (``spec.EVENT_COLUMNS`` order) to the main stream; returns how many were new."""
    return _insert(session, "events", EVENT_COLUMNS, JSON_EVENT_COLUMNS, rows)


def insert_quarantined(session: Session, rows: Sequence[tuple[Any, ...]]) -> int:
    """Store rows (``spec.QUARANTINE_COLUMNS`` order) apart; returns how many were new."""
    return _insert(session, "quarantined_events", QUARANTINE_COLUMNS, JSON_QUARANTINE_COLUMNS, rows)


_UPSERTS: dict[tuple[str, str], Any] = {}


def _upsert(
    session: Session, model: type[Any], keys: list[str], added: list[str], replaced: list[str]
) -> Any:
    """``INSERT … ON CONFLICT (keys) DO UPDATE SET added = added + excluded.added, replaced = excluded…``,
    built once per dialect (building ``excluded`` costs more than running the statement)."""
    dialect = dialect_of(session)
    key = (dialect, model.__tablename__)
    stmt = _UPSERTS.get(key)
    if stmt is None:
        table = _table(model)
        stmt = (sqlite if dialect == "sqlite" else postgresql).insert(table)
        stmt = _UPSERTS[key] = stmt.on_conflict_do_update(
            index_elements=keys,
            set_={
                **{c: table.c[c] + stmt.excluded[c] for c in added},
                **{c: stmt.excluded[c] for c in replaced},
            },
        )
    return stmt


def count_unplanned(session: Session, *, brand_id: int, prepared: Prepared, at: datetime) -> None:
    """Add the request's unplanned event names to the approval list (new names keep their sample)."""
    if not prepared.unplanned:
        return
    stmt = _upsert(session, UnplannedEvent, ["brand_id", "kind", "name"], ["count"], ["last_seen_at"])
    rows = [
        {
            "brand_id": brand_id,
            "kind": kind,
            "name": name,
            "status": "pending",
            "count": count,
            "first_seen_at": at,
            "last_seen_at": at,
            "sample": sample,
        }
        for (kind, name), (count, sample) in sorted(prepared.unplanned.items())
    ]
    session.execute(stmt, rows)


def count_violations(session: Session, *, brand_id: int, prepared: Prepared, at: datetime) -> None:
    """Add the request's violations to the per-day statistics."""
    if not prepared.stats:
        return
    stmt = _upsert(
        session,
        EventViolationStat,
        ["brand_id", "day", "kind", "event", "property", "rule"],
        ["count", "quarantined"],
        ["last_seen_at"],
    )
    rows = [
        {
            "brand_id": brand_id,
            "day": day,
            "kind": kind,
            "event": event,
            "property": prop,
            "rule": rule,
            "count": counts[0],
            "quarantined": counts[1],
            "last_seen_at": at,
        }
        for (day, kind, event, prop, rule), counts in sorted(prepared.stats.items())
    ]
    session.execute(stmt, rows)


_COUNT_RECEIVED = {
    dialect: f'INSERT INTO "event_minutes" ("brand_id", "minute", "count") VALUES ({p}, {p}, {p}) '
    'ON CONFLICT ("brand_id", "minute") DO UPDATE SET "count" = "event_minutes"."count" + excluded."count"'
    for dialect, p in (("sqlite", "?"), ("postgresql", "%s"))
}


def count_received(session: Session, *, brand_id: int, stored: int, at: datetime) -> None:
    """Add the request's new events to its minute (``EventMinute``). Plain SQL: once per request,
    where the Core upsert through the session cost 60–116 µs and this 26–38 (measured)."""
    if not stored:
        return
    sql = _COUNT_RECEIVED[dialect_of(session)]
    session.connection().exec_driver_sql(sql, (brand_id, int(at.timestamp()) // 60, stored))


def prune_minutes(session: Session, *, brand_id: int, before: datetime) -> int:
    """Delete the brand's per-minute counts (``EventMinute``) of minutes before ``before``; how many
    rows went."""
    table = _table(EventMinute)
    result = session.execute(
        table.delete().where(table.c.brand_id == brand_id, table.c.minute < int(before.timestamp()) // 60)
    )
    return max(0, result.rowcount or 0)  # type: ignore[attr-defined]


def touch_source(session: Session, source_id: int, at: datetime) -> None:
    session.execute(update(_table(EventSource)).where(EventSource.id == source_id).values(last_event_at=at))


def write(session: Session, *, brand_id: int, prepared: Prepared, at: datetime) -> tuple[int, int]:
    """Everything one request writes, in the caller's transaction: (new events, new quarantined)."""
    stored = insert_events(session, prepared.events)
    count_received(session, brand_id=brand_id, stored=stored, at=at)
    quarantined = insert_quarantined(session, prepared.quarantined)
    count_unplanned(session, brand_id=brand_id, prepared=prepared, at=at)
    count_violations(session, brand_id=brand_id, prepared=prepared, at=at)
    return stored, quarantined


def index_people(session: Session, *, brand_id: int, limit: int, at: datetime) -> int:
    """Index the brand's next ``limit`` events after its cursor in ``event_people`` (under the person
    key, and an event with both ids under its ``s:`` key too) and move the cursor, in the caller's
    transaction; how many events the chunk held (0: all indexed)."""
    after = repository.people_cursor(session, brand_id)
    count, upto = repository.unindexed_chunk(session, brand_id=brand_id, after_id=after, limit=limit)
    if not count:
        return 0
    dialect = sqlite if dialect_of(session) == "sqlite" else postgresql
    _index_rows(session, _chunk_rows(repository.person_key_of(), brand_id, after, upto))
    _index_rows(session, _chunk_rows(repository.signed_anonymous_key_of(), brand_id, after, upto))
    cursors = _table(EventPeopleCursor)
    # A brand's first chunk: nothing of it was indexed before ``s:`` rows existed (backfill mark 0).
    upsert = dialect.insert(cursors).values(
        brand_id=brand_id, event_id=upto, signed_backfill_id=0, updated_at=at
    )
    # Never backwards: a slower run of the same chunk commits after a faster one.
    newer = upsert.excluded.event_id > cursors.c.event_id
    session.execute(
        upsert.on_conflict_do_update(
            index_elements=["brand_id"],
            set_={
                "event_id": case((newer, upsert.excluded.event_id), else_=cursors.c.event_id),
                # A cursor from before ``s:`` rows: what it had indexed waits for the backfill.
                "signed_backfill_id": func.coalesce(cursors.c.signed_backfill_id, cursors.c.event_id),
                "updated_at": upsert.excluded.updated_at,
            },
        )
    )
    return count


def backfill_people(session: Session, *, brand_id: int, limit: int, at: datetime) -> int:
    """Give the ``limit`` newest events at or below the brand's backfill mark (indexed before ``s:``
    rows existed) their ``s:`` rows and lower the mark below them, in the caller's transaction; how
    many events the chunk held (0: nothing left to backfill). Idempotent like ``index_people``: a
    chunk run twice adds nothing twice, and the mark never goes up."""
    _cursor, mark = repository.people_index(session, brand_id)
    if mark <= 0:
        return 0
    count, lowest = repository.indexed_chunk_below(session, brand_id=brand_id, through=mark, limit=limit)
    if count:
        _index_rows(session, _chunk_rows(repository.signed_anonymous_key_of(), brand_id, lowest - 1, mark))
    # Fewer than ``limit`` events: the chunk reached the brand's first event.
    lowered = lowest - 1 if count == limit else 0
    cursors = _table(EventPeopleCursor)
    current = func.coalesce(cursors.c.signed_backfill_id, cursors.c.event_id)
    session.execute(
        update(cursors)
        .where(cursors.c.brand_id == brand_id)
        .values(signed_backfill_id=case((current > lowered, lowered), else_=current), updated_at=at)
    )
    return count


def _chunk_rows(key: Any, brand_id: int, after: int, upto: int) -> Select[Any]:
    """``(brand_id, key, at, event_id)`` of the brand's events in ``(after, upto]`` that have the key."""
    return select(Event.brand_id, key, Event.timestamp, Event.id).where(
        Event.brand_id == brand_id, Event.id > after, Event.id <= upto, key.is_not(None)
    )


def _index_rows(session: Session, rows: Select[Any]) -> None:
    """``INSERT … SELECT rows … ON CONFLICT DO NOTHING`` into ``event_people``."""
    dialect = sqlite if dialect_of(session) == "sqlite" else postgresql
    insert = (
        dialect.insert(_table(EventPerson))
        .from_select(["brand_id", "person_key", "at", "event_id"], rows)
        .on_conflict_do_nothing()
    )
    if dialect is not sqlite:
        session.execute(insert)
        return
    # A chunk's random keys dirty thousands of index pages; with SQLite's default 2 MB page
    # cache they spill to the WAL mid-transaction and are written again. A larger cache for this
    # statement only (the pooled connection gets its own size back): ~30k → ~35–40k events/s
    # over 1M events (bench/profile.py's chunks, interleaved runs).
    connection = session.connection()
    default = connection.exec_driver_sql("PRAGMA cache_size").scalar()
    connection.exec_driver_sql(f"PRAGMA cache_size = -{INDEX_CACHE_KIB}")
    try:
        session.execute(insert)
    finally:
        connection.exec_driver_sql(f"PRAGMA cache_size = {int(default or -2000)}")

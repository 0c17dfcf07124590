"""Copy the OLTP tables into the DuckDB warehouse, incrementally (``sync``), and say how fresh it is
(``freshness``).

* **Cursors.** Each source has a cursor in ``_sync_state``: the last id copied for append-only
  tables (points entries, events), or the last ``(updated_at, id)`` for rows that change (stores,
  products, identity nodes, members, member tiers, orders, coupon locks). Changed rows replace their
  copy (``INSERT OR REPLACE`` on the primary key); an order's lines and a lock's redeemed coupons are
  replaced with it.
* **Idempotent and resumable.** Rows are streamed from OLTP in one query per source (a thread reads
  and builds the next chunk while DuckDB loads the last) and written in chunks; a chunk's rows and
  its cursor are committed in one DuckDB transaction, so a sync that stops (crash, kill) resumes
  after its last whole chunk, and a second sync finds nothing to copy.
* **Late commits.** A changed row is copied once its ``updated_at`` is ``settle_seconds`` old (points
  entries: their ``created_at``), so a transaction that commits after a later one is not passed by
  the cursor. Events need no wait: their writers commit in id order (``events.service.append_lock``).
* **Identities.** ``dim_member.oneid`` follows the member-number node of the identity graph (merges
  and splits update it). Facts keep the person as of their copy: ``fact_events.person_key`` is the
  OneID of the event's user id or anonymous id (else of the member its user id names), else
  ``member:<id>``, else ``anon:<anonymous id>``; ``rebuild`` resolves every row again.
* **Rebuild.** ``full=True`` builds a new file beside the old one and renames it over it when done;
  a file of an older schema version is rebuilt the same way.
* **One sync at a time** per file (``store.sync_lock``); PII never leaves OLTP.

Reads OLTP through SQLAlchemy Core (``warehouse.sources``); writes DuckDB as Arrow tables.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar

import duckdb
import pyarrow as pa
from sqlalchemy.orm import Session

from huiyuan.kit.clock import utcnow
from huiyuan.kit.db import Database
from huiyuan.kit.scope import SYSTEM
from huiyuan.warehouse import store
from huiyuan.warehouse.schema import DATA_TABLES, SCHEMA_VERSION
from huiyuan.warehouse.sources import MACROS, SOURCE_NAMES, SOURCES, Lookups, Source, columns_of, label_names

CHUNK = 10_000
T = TypeVar("T")
TABLE_NAMES = SOURCE_NAMES  # what ``tables=`` accepts
# Tables filled alongside another source: they share its cursor.
COMPANIONS = {"fact_order_items": "fact_orders"}


class Reporter(Protocol):
    def start(self, phase: str, total: int) -> None: ...
    def advance(self, phase: str, rows: int) -> None: ...
    def finish(self, phase: str) -> None: ...


class _Quiet:
    def start(self, phase: str, total: int) -> None:
        return None

    def advance(self, phase: str, rows: int) -> None:
        return None

    def finish(self, phase: str) -> None:
        return None


@dataclass
class SyncReport:
    """Rows copied per source by one sync (0: it was up to date); ``dim_member.tier`` counts the
    tier changes applied to ``dim_member``, ``fact_orders`` brings ``fact_order_items`` along."""

    copied: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    rebuilt: bool = False
    skipped: str | None = None  # why nothing was done

    @property
    def rows(self) -> int:
        return sum(self.copied.values())


def _wanted(tables: Iterable[str] | None) -> set[str]:
    wanted = set(tables) if tables else set(TABLE_NAMES)
    unknown = sorted(wanted - set(TABLE_NAMES))
    if unknown:
        raise ValueError(f"no warehouse table {', '.join(unknown)} (tables: {', '.join(TABLE_NAMES)})")
    return wanted


def sync(
    db: Database,
    path: str | Path,
    *,
    tables: Iterable[str] | None = None,
    reporter: Reporter | None = None,
    full: bool = False,
    settle_seconds: float = 5.0,
    wait: float = 0.0,
    synced_since: datetime | None = None,
) -> SyncReport:
    """Bring the warehouse at ``path`` up to date with ``db`` (``tables``: only these; ``full``:
    rebuild it from nothing into a new file and swap it in). Raises ``store.SyncInProgress`` when
    another sync holds the file longer than ``wait`` seconds; ``synced_since``: do nothing if a sync
    that started at or after that moment has finished already."""
    wanted = _wanted(tables)
    started, clock = utcnow(), time.perf_counter()
    path = Path(path)
    reporter = reporter or _Quiet()
    report = SyncReport()
    with store.sync_lock(path, wait=wait):
        if not full and not store.is_current(path):
            full = True  # a file of an older schema: build it again
        target = Path(f"{path}.rebuild") if full else path
        if full:
            for leftover in (target, Path(f"{target}.wal")):
                leftover.unlink(missing_ok=True)
        con = store.open_writer(target)
        try:
            if synced_since is not None and not full:
                last = store.last_run_started(con)
                if last is not None and last >= synced_since:
                    report.skipped = f"synced at {last.isoformat()} already"
                    return report
            for statement in MACROS:
                con.execute(statement)
            until = started - timedelta(seconds=settle_seconds)
            with db.unit_of_work(SYSTEM.scope, write=False) as session:
                lookups = Lookups(session)
                con.register("brand_zones", lookups.brand_zones())
                for source in SOURCES:
                    if full or source.table in wanted:
                        report.copied[source.name] = _copy(session, lookups, con, source, until, reporter)
            _fill_dates(con)
            store.log_run(con, started, utcnow(), report.rows, full)
            con.execute("CHECKPOINT")
        finally:
            con.close()
        if full:
            store.replace_file(target, path)
    report.rebuilt = full
    report.seconds = time.perf_counter() - clock
    return report


@dataclass
class _Chunk:
    rows: int
    cursor_ts: datetime | None
    cursor_id: int
    tables: dict[str, pa.Table]


def _chunks(session: Session, lookups: Lookups, source: Source, query: Any, size: int) -> Iterator[_Chunk]:
    """The pending rows of ``source``, streamed in one query, as built chunks."""
    names = label_names(source)
    id_at, ts_at = names.index("id"), names.index("updated_at") if source.mutable else -1
    result = session.execute(query, execution_options={"yield_per": size})
    try:
        for rows in result.partitions(size):
            yield _Chunk(
                rows=len(rows),
                cursor_ts=rows[-1][ts_at] if source.mutable else None,
                cursor_id=int(rows[-1][id_at]),
                tables=source.build(lookups, columns_of(rows, names)),
            )
    finally:
        result.close()


def _ahead(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """``items``, produced by a thread up to ``depth`` ahead of the consumer: reading OLTP and
    building Arrow tables (Python) overlaps DuckDB loading the previous chunk (which releases the
    GIL). The consumer alone writes, so chunks still commit one by one, in order."""
    slots: queue.Queue[tuple[Any, BaseException | None]] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(item: Any, error: BaseException | None = None) -> bool:
        while not stop.is_set():
            try:
                slots.put((item, error), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(done)
        except BaseException as exc:  # handed to the consumer, which raises it
            put(None, exc)

    worker = threading.Thread(target=produce, name="warehouse-read", daemon=True)
    worker.start()
    try:
        while True:
            item, error = slots.get()
            if error is not None:
                raise error
            if item is done:
                return
            yield item
    finally:
        stop.set()
        worker.join()


def _copy(
    session: Session,
    lookups: Lookups,
    con: duckdb.DuckDBPyConnection,
    source: Source,
    until: datetime,
    reporter: Reporter,
) -> int:
    """Copy the rows of ``source`` after its cursor, chunk by chunk; returns how many."""
    cursor_ts, cursor_id = store.read_state(con, source.name)
    reporter.start(source.name, source.count(session, cursor_ts, cursor_id, until))
    query = source.pending(cursor_ts, cursor_id, until)
    names = [(source.name, source.table), *((c, c) for c, o in COMPANIONS.items() if o == source.name)]
    copied = 0
    for chunk in _ahead(_chunks(session, lookups, source, query, CHUNK * source.chunk_scale)):
        cursor_ts, cursor_id = chunk.cursor_ts, chunk.cursor_id
        con.execute("BEGIN TRANSACTION")
        try:
            for name, table in chunk.tables.items():
                con.register(name, table)
            for statement in source.load:
                con.execute(statement)
            for name in chunk.tables:
                con.unregister(name)
            at = utcnow()
            for state, table_name in names:
                store.write_state(con, state, table_name, cursor_ts, cursor_id, at)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        copied += chunk.rows
        reporter.advance(source.name, chunk.rows)
    # Up to date as of now, whether or not anything was copied.
    at = utcnow()
    for state, table_name in names:
        store.write_state(con, state, table_name, cursor_ts, cursor_id, at)
    reporter.finish(source.name)
    return copied


def _fill_dates(con: duckdb.DuckDBPyConnection) -> None:
    """``dim_date`` over every day from the first to the last date key of the data."""
    con.execute(
        """INSERT OR IGNORE INTO dim_date
           SELECT CAST(strftime(d, '%Y%m%d') AS INTEGER), CAST(d AS DATE), year(d), quarter(d), month(d),
                  weekofyear(d), isodow(d), isodow(d) >= 6
           FROM (SELECT strptime(CAST(min(k) AS VARCHAR), '%Y%m%d') AS lo,
                        strptime(CAST(max(k) AS VARCHAR), '%Y%m%d') AS hi
                 FROM (SELECT date_key AS k FROM fact_orders
                       UNION ALL SELECT date_key FROM fact_events
                       UNION ALL SELECT enrolled_date_key FROM dim_member
                       UNION ALL SELECT date_key FROM fact_points
                       UNION ALL SELECT date_key FROM fact_coupon_redemptions)
                 WHERE k IS NOT NULL) span,
                generate_series(span.lo, span.hi, INTERVAL 1 DAY) AS t(d)
           WHERE span.lo IS NOT NULL"""
    )
    state_at = store.naive(utcnow())
    con.execute(
        """INSERT OR REPLACE INTO _sync_state (table_name, cursor, rows, synced_at, cursor_ts, cursor_id)
           SELECT 'dim_date', CAST(max(date_key) AS VARCHAR), count(*), ?, NULL, NULL FROM dim_date""",
        [state_at],
    )


def freshness(path: str | Path, brand_id: int | None = None) -> list[dict[str, Any]]:
    """Per warehouse table: ``rows`` (the brand's, when given), ``cursor`` (the last OLTP id or
    ``updated_at`` copied) and ``synced_at`` (when a sync last brought it up to date); empty when
    there is no warehouse yet."""
    if not Path(path).exists():
        return []
    con = store.open_reader(path)
    try:
        present = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        if "_sync_state" not in present:
            return []
        states = store.states(con)
        out = []
        for name in DATA_TABLES:
            if name not in present:
                continue
            by_brand = brand_id is not None and name != "dim_date"
            where, params = ("WHERE brand_id = ?", [brand_id]) if by_brand else ("", [])
            row = con.execute(f"SELECT count(*) FROM {name} {where}", params).fetchone()
            cursor, _rows, synced_at = states.get(name, (None, None, None))
            out.append(
                {
                    "table": name,
                    "rows": int(row[0]) if row else 0,
                    "cursor": cursor,
                    "synced_at": synced_at.replace(tzinfo=UTC) if synced_at else None,
                }
            )
        return out
    finally:
        con.close()


__all__ = ["CHUNK", "SCHEMA_VERSION", "TABLE_NAMES", "SyncReport", "freshness", "sync"]

"""(j) Profile at scale: a person's behaviour timeline over a store of ~1M events, read by scanning the
store (nothing indexed: the path every lookup took before the person index) and through the person
index (``event_people``), p50/p99 per page of 50; the operator's stream filtered by an anonymous id
(``events.repository.events``) the same two ways; the ``events.index_people`` job's rate in events/s,
and its backfill's (``s:`` rows for events indexed before they existed); and ``/v1/batch`` ingestion
(batches of 500, the real server) alone and while the index job runs beside it, to show that
ingestion does not pay for the index.

The store is written straight to SQLite (rows as the ingestion path stores them), in a day's events
of 20,000 signed-in members (40 % of events; each member also has two anonymous ids from before they
signed in) and anonymous visitors. People are drawn from the members, so each has ~20 signed-in and
~a few anonymous events.

``python -m bench.profile [--events 1000000] [--people 200] [--seconds 10] [--no-ingest]`` runs alone
on a fresh database (``--no-ingest``: the reads and the job only); ``python -m bench.run --only
profile`` runs it in the suite.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import statistics
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from bench.common import emit, server

MEMBERS = 20_000
PAGE = 50
T0 = datetime(2026, 5, 1, tzinfo=UTC)


def _member(n: int) -> tuple[str, list[str]]:
    """A member's user id and the anonymous ids of their devices."""
    return f"LX{n:08d}", [str(uuid.UUID(int=(n << 16) | d)) for d in range(2)]


def fill(path: str, brand_id: int, source_id: int, events: int, *, seed: int = 7) -> float:
    """Write ``events`` rows to the store (one transaction per 10,000); rows/s."""
    from huiyuan.events.spec import EVENT_COLUMNS, sqlite_time

    rng = random.Random(seed)
    props = orjson.dumps({"sku": "LX-TOP-0001-M", "price": 299.0}).decode()
    context = orjson.dumps({"page": {"path": "/p/LX-TOP-0001"}}).decode()
    sql = f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) VALUES ({', '.join('?' for _ in EVENT_COLUMNS)})"
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    started = time.perf_counter()
    received = sqlite_time(T0 + timedelta(days=1))
    for start in range(0, events, 10_000):
        rows = []
        for i in range(start, min(events, start + 10_000)):
            roll = rng.random()
            if roll < 0.4:
                user, anonymous = _member(rng.randrange(MEMBERS))
                user_id: str | None = user
                anonymous_id = rng.choice(anonymous)
            elif roll < 0.5:  # a member before signing in
                user_id, anonymous_id = None, rng.choice(_member(rng.randrange(MEMBERS))[1])
            else:
                user_id, anonymous_id = None, str(uuid.UUID(int=rng.getrandbits(128)))
            at = sqlite_time(T0 + timedelta(seconds=rng.randrange(86_400), microseconds=rng.randrange(10**6)))
            values: dict[str, Any] = {
                "brand_id": brand_id,
                "source_id": source_id,
                "message_id": f"fill{seed}-{i:09d}",
                "dedup_ms": 0,  # no client time: the growing ids de-duplicate
                "type": "track",
                "event": "Product Viewed",
                "user_id": user_id,
                "anonymous_id": anonymous_id,
                "timestamp": at,
                "received_at": received,
                "properties": props,
                "context": context,
            }
            rows.append(tuple(values.get(c) for c in EVENT_COLUMNS))
        con.execute("BEGIN IMMEDIATE")
        con.executemany(sql, rows)
        con.execute("COMMIT")
    elapsed = time.perf_counter() - started
    con.close()
    return events / elapsed


def _timeline_latency(url: str, brand_id: int, people: list[int]) -> tuple[list[float], int]:
    """Seconds per first page of each person's event timeline (as ``profile.service`` reads it), and
    the events the pages held."""
    from huiyuan.kit.db import Database
    from huiyuan.kit.scope import Scope
    from huiyuan.profile.repository import ProfileRepository

    db = Database(url)
    spent = []
    found = 0
    try:
        for n in people:
            user, anonymous = _member(n)
            with db.unit_of_work(Scope(brand_id=brand_id), write=False) as s:
                started = time.perf_counter()
                rows = ProfileRepository(s).events(
                    user_ids=[user], anonymous_ids=anonymous, cursor=None, rank=0, limit=PAGE
                )
                spent.append(time.perf_counter() - started)
                found += len(rows)
    finally:
        db.dispose()
    return spent, found


def _stream_latency(url: str, brand_id: int, people: list[int], *, scan: bool) -> tuple[list[float], int]:
    """Seconds per first page of the operator's stream filtered by one of each person's anonymous ids
    (a device they used signed in and before): through ``events.repository.events``, or when
    ``scan``, as it read the store before the index held ``s:`` rows (the primary key backwards)."""
    from sqlalchemy import select

    from huiyuan.events import repository
    from huiyuan.events.models import Event
    from huiyuan.kit.db import Database
    from huiyuan.kit.scope import Scope

    db = Database(url)
    spent = []
    found = 0
    try:
        for n in people:
            anonymous_id = _member(n)[1][n % 2]
            with db.unit_of_work(Scope(brand_id=brand_id), write=False) as s:
                started = time.perf_counter()
                if scan:
                    stmt = select(Event).where(Event.anonymous_id == anonymous_id)
                    rows = list(s.scalars(stmt.order_by(Event.id.desc()).limit(PAGE)))
                else:
                    rows = repository.events(s, anonymous_id=anonymous_id, limit=PAGE)
                spent.append(time.perf_counter() - started)
                found += len(rows)
    finally:
        db.dispose()
    return spent, found


def _emit_latency(name: str, measured: tuple[list[float], int], **context: Any) -> None:
    spent, found = measured
    ordered = sorted(spent)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    emit(
        name,
        statistics.median(ordered) * 1000,
        "ms p50",
        p99_ms=round(p99 * 1000, 2),
        people=len(spent),
        events_shown=found,
        page=PAGE,
        **context,
    )


def _index_all(url: str, brand_id: int, *, pause: bool = False) -> tuple[int, float]:
    """Run the index job's chunks until nothing is left (with its rests between chunks when
    ``pause``, else back to back); (events, seconds)."""
    from huiyuan.events import store
    from huiyuan.events.jobs import INDEX_CHUNK, pause_after
    from huiyuan.kit.clock import utcnow
    from huiyuan.kit.db import Database
    from huiyuan.kit.scope import Scope

    db = Database(url)
    done = 0
    started = time.perf_counter()
    try:
        while True:
            chunk = time.perf_counter()
            with db.unit_of_work(Scope(brand_id=brand_id)) as s:
                n = store.index_people(s, brand_id=brand_id, limit=INDEX_CHUNK, at=utcnow())
            if not n:
                break
            done += n
            if pause:
                time.sleep(pause_after(time.perf_counter() - chunk))
    finally:
        db.dispose()
    return done, time.perf_counter() - started


def _backfill_all(url: str, brand_id: int) -> tuple[int, int, float]:
    """The index as a database indexed before ``s:`` rows has it (those rows deleted, the cursor's
    mark unknown), then the job's backfill chunks back to back: (events, ``s:`` rows, seconds)."""
    from sqlalchemy import delete, func, select, update

    from huiyuan.events import store
    from huiyuan.events.jobs import INDEX_CHUNK
    from huiyuan.events.models import EventPeopleCursor, EventPerson
    from huiyuan.kit.clock import utcnow
    from huiyuan.kit.db import Database
    from huiyuan.kit.scope import Scope

    signed = EventPerson.person_key.like("s:%")
    db = Database(url)
    done = 0
    try:
        with db.unit_of_work(Scope(brand_id=brand_id)) as s:
            s.execute(delete(EventPerson).where(signed))
            s.execute(update(EventPeopleCursor).values(signed_backfill_id=None))
        started = time.perf_counter()
        while True:
            with db.unit_of_work(Scope(brand_id=brand_id)) as s:
                n = store.backfill_people(s, brand_id=brand_id, limit=INDEX_CHUNK, at=utcnow())
            if not n:
                break
            done += n
        spent = time.perf_counter() - started
        with db.unit_of_work(Scope(brand_id=brand_id), write=False) as s:
            rows = int(s.scalar(select(func.count()).select_from(EventPerson).where(signed)) or 0)
    finally:
        db.dispose()
    return done, rows, spent


def _ingest(url: str, write_key: str, seconds: float, *, beside_index: bool, brand_id: int) -> dict[str, Any]:
    """``/v1/batch`` events/s with batches of 500, optionally with the index job running in a loop."""
    from bench import events as events_bench

    stop = threading.Event()
    indexed = [0]

    def follow() -> None:
        while not stop.is_set():
            n, _ = _index_all(url, brand_id, pause=True)
            indexed[0] += n
            stop.wait(0.2)

    thread = threading.Thread(target=follow, daemon=True) if beside_index else None
    with server(url) as base:
        if thread:
            thread.start()
        try:
            figure = events_bench._api(base, write_key, 500, clients=2, seconds=seconds)
        finally:
            stop.set()
            if thread:
                thread.join()
    figure["indexed_beside"] = indexed[0]
    return figure


def run(url: str, brand_id: int, *, events: int, people: int, seconds: float, ingest: bool = True) -> None:
    """Fill the store, time the timeline and the stream by scan, index, time them again, the
    backfill, and ingestion beside the job."""
    from bench import events as events_bench
    from huiyuan.kit.db import Database

    source_id, write_key = events_bench.make_source(url, brand_id)
    db = Database(url)
    path = db.engine.url.database or ""
    db.dispose()
    rate = fill(path, brand_id, source_id, events)
    emit("profile.fill", rate, "rows/s", events=events, db="sqlite")
    rng = random.Random(11)
    chosen = [rng.randrange(MEMBERS) for _ in range(people)]
    scanned = chosen[: max(5, people // 10)]  # a scan takes long: fewer people
    _emit_latency("profile.timeline.scan", _timeline_latency(url, brand_id, scanned), events=events)
    _emit_latency(
        "profile.stream_anonymous.scan", _stream_latency(url, brand_id, scanned, scan=True), events=events
    )

    done, spent = _index_all(url, brand_id)
    emit(
        "profile.index_job", done / spent if spent else 0.0, "events/s", events=done, seconds=round(spent, 2)
    )
    _emit_latency("profile.timeline.indexed", _timeline_latency(url, brand_id, chosen), events=events)
    _emit_latency(
        "profile.stream_anonymous.indexed", _stream_latency(url, brand_id, chosen, scan=False), events=events
    )

    # A tail not indexed yet (what ingestion added since the job's last run): 20,000 events more.
    fill(path, brand_id, source_id, 20_000, seed=8)
    _emit_latency(
        "profile.timeline.indexed_with_tail",
        _timeline_latency(url, brand_id, chosen),
        events=events + 20_000,
        tail=20_000,
    )
    _emit_latency(
        "profile.stream_anonymous.indexed_with_tail",
        _stream_latency(url, brand_id, chosen, scan=False),
        events=events + 20_000,
        tail=20_000,
    )
    _index_all(url, brand_id)
    done, signed, spent = _backfill_all(url, brand_id)
    emit(
        "profile.index_backfill",
        done / spent if spent else 0.0,
        "events/s",
        events=done,
        signed_rows=signed,
        seconds=round(spent, 2),
    )
    if not ingest:
        return

    alone = _ingest(url, write_key, seconds, beside_index=False, brand_id=brand_id)
    emit("profile.ingest.alone", alone["value"], "events/s", batch=500, p99_ms=alone.get("p99_ms"))
    beside = _ingest(url, write_key, seconds, beside_index=True, brand_id=brand_id)
    emit(
        "profile.ingest.beside_index_job",
        beside["value"],
        "events/s",
        batch=500,
        p99_ms=beside.get("p99_ms"),
        indexed_meanwhile=beside["indexed_beside"],
    )


def _fresh_database() -> tuple[Path, str, int]:
    from huiyuan.kit.db import Database
    from huiyuan.kit.migrate import upgrade
    from huiyuan.kit.scope import SYSTEM
    from huiyuan.tenancy.service import create_brand

    folder = Path(tempfile.mkdtemp(prefix="huiyuan-bench-profile-"))
    url = f"sqlite:///{folder / 'profile.db'}"
    upgrade(url)
    db = Database(url)
    with db.unit_of_work() as s:
        brand_id = create_brand(s, actor=SYSTEM, code="bench", name="Bench", member_number_prefix="BE").id
    db.dispose()
    return folder, url, brand_id


def run_fresh(*, events: int, people: int, seconds: float, ingest: bool = True) -> None:
    """``run`` on a database of its own (the store it fills is large), removed afterwards."""
    folder, url, brand_id = _fresh_database()
    try:
        run(url, brand_id, events=events, people=people, seconds=seconds, ingest=ingest)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--people", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--no-ingest", action="store_true", help="the reads and the job only")
    args = parser.parse_args(argv)
    run_fresh(events=args.events, people=args.people, seconds=args.seconds, ingest=not args.no_ingest)


if __name__ == "__main__":
    os.environ.setdefault("HUIYUAN_LOG_LEVEL", "WARNING")
    main()

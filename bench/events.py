"""(g) Event ingestion: ``POST /v1/batch`` through the real server (``huiyuan serve``, one uvicorn
worker, or ``--workers N`` processes) with batches of 100 and 500 Segment messages, events/s and
p50/p99 per request, against a raw insert baseline in the same run: the very same rows (as the
ingestion path prepares them) inserted with a plain ``sqlite3`` executemany into the same ``events``
table, one transaction per batch. The ratio is API / raw.

Where the time goes: the same requests replayed in-process through each stage (decode = gzip-less
JSON parse and limits, prepare = spec + plan checks + row encoding, write = the executemany and commit),
in µs per event, and with ``--profile`` a cProfile of the in-process path.

``--message-ids uuid`` gives every message a random UUID id, as Segment's and RudderStack's libraries
do, instead of ids that grow within a request (the default, comparable with earlier figures). As with
those libraries, every message is stamped with the time it was made (the current second, in order
within the request). The bench source de-duplicates by id and timestamp (``--dedup``, default
``message_id_and_timestamp``): its key ``(source_id, dedup_ms, message_id)`` then grows with time
whatever the ids. With ``--dedup message_id`` (the product's default for a new source) the key is
``(source_id, 0, message_id)`` and random ids take one random index page per row, on the API and
the raw baseline alike. (Before 2026-12-07 every source had the key ``(source_id, message_id)`` and
the bench's timestamps were random within an hour of a fixed day.)

``--workers N`` serves with ``huiyuan serve --workers N`` (N processes; the clients default to 2 per
process, since a keep-alive connection stays with the process that accepted it).

The load generator runs on the same cores as the server, so each figure carries the CPU both spent
per event (``server_us_per_event``, ``client_us_per_event``). Its clients send with a minimal
keep-alive socket client (``--client raw``, ``bench.common.RawHttp``, the default since 2026-12-07,
later); ``--client httpx`` sends as before, at ~1 ms of CPU a request more.

``--db postgresql+psycopg://user@host:port/maintenance-db`` runs everything on PostgreSQL instead: a
fresh database is created on that server (and dropped afterwards), the server writes there, and the
raw baseline is a plain ``psycopg`` executemany of the same rows with the statement the store uses
(``INSERT … ON CONFLICT (source_id, dedup_ms, message_id) DO NOTHING``, JSON cast from text), one transaction
per batch. The PostgreSQL server shares the machine's cores with everything else.

``python -m bench.events [--seconds 10] [--workers 1] [--clients 2] [--message-ids sequential|uuid]
[--dedup message_id_and_timestamp|message_id] [--profile] [--db URL]`` runs alone on a fresh
database; ``python -m bench.run --only events`` runs it in the suite.
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import gc
import io
import os
import pstats
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import orjson

from bench.common import BENCH_ENV, emit, free_port, hammer, postgresql_database, served_by, server

PAGES = ("/", "/category/knitwear", "/p/LX-TOP-0001", "/search", "/cart", "/member")
EVENTS = ("Product Viewed", "Product Added", "Element Clicked", "Checkout Started", "Order Paid")
MARK = b"RQRQRQRQRQRQRQRQ"  # replaced per request, so every request carries new message ids
# Each message's ``timestamp`` (``YYYY-MM-DDTHH:MM:SS.mmmZ``), filled in per request: like a client
# library, a sender stamps its messages in order as they are made, and a request carries those made
# since its previous one (spread evenly over that time); several senders' times interleave.
STAMP = b"TTTTTTTTTTTTTTTTTTTTTTTT"


def _message(rng: random.Random, i: int, size: int) -> dict[str, Any]:
    """A realistic mobile-web message (~550 bytes): 60 % anonymous, 40 % of a signed-in member."""
    user = f"LX{rng.randrange(1, 5000):08d}" if rng.random() < 0.4 else None
    common: dict[str, Any] = {
        "messageId": f"{MARK.decode()}-{i:04d}",
        "anonymousId": str(uuid.UUID(int=rng.getrandbits(128))),
        "timestamp": STAMP.decode(),
        "context": {
            "library": {"name": "huiyuan.js", "version": "1.0.0"},
            "page": {"path": rng.choice(PAGES), "url": "https://shop.example.com" + rng.choice(PAGES)},
            "userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15",
            "locale": "zh-CN",
        },
    }
    if user:
        common["userId"] = user
    if rng.random() < 0.3:
        return {**common, "type": "page", "name": "商品详情", "properties": {"path": rng.choice(PAGES)}}
    return {
        **common,
        "type": "track",
        "event": rng.choice(EVENTS),
        "properties": {
            "sku": f"LX-TOP-{rng.randrange(1, 400):04d}-M",
            "name": "羊毛开衫",
            "price": round(rng.uniform(50, 900), 2),
            "category": "女装/针织",
            "quantity": rng.randint(1, 3),
        },
    }


def _templates(size: int, count: int = 8) -> list[bytes]:
    rng = random.Random(size)
    return [
        orjson.dumps({"batch": [_message(rng, i, size) for i in range(size)], "sentAt": STAMP.decode()})
        for _ in range(count)
    ]


_SECONDS: dict[int, str] = {}


def _stamp(ms: int) -> str:
    second, milli = divmod(ms, 1000)
    prefix = _SECONDS.get(second)
    if prefix is None:
        prefix = _SECONDS[second] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    return f"{prefix}.{milli:03d}Z"


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def _replayed(size: int, count: int, *, uuid_ids: bool, senders: int, rate: float, tag: str) -> list[bytes]:
    """``count`` bodies as ``senders`` clients taking turns would send them at ``rate`` events/s (a
    clock that moves on by one request's share per request), for the runs without HTTP: their rows
    meet the unique index as the API's do."""
    clock = [float(_wall_ms())]
    step = size / max(rate, 1.0) * 1000

    def now() -> int:
        return int(clock[0])

    makers = [_Bodies(size, uuid_ids=uuid_ids, clock=now) for _ in range(senders)]
    out = []
    for n in range(count):
        clock[0] += step
        out.append(makers[n % senders].body(n // senders, f"{tag}{size:03d}{n:09d}"[-len(MARK) :]))
    return out


ID = b"IDIDIDIDIDIDIDIDIDIDIDIDIDIDIDID"  # a message id in the uuid templates: 32 hex digits per request


class _Bodies:
    """One sender's request bodies from the templates, every message with a new id: the mark replaced
    (ids that grow within a request), or with ``uuid_ids`` a random id per message, like the client
    libraries' UUIDs; and the messages stamped with the times since the sender's previous request
    (``clock``: ms now). The bodies are filled in as bytes between the templates' placeholders (~0.3 µs
    a message of the client's CPU; an ``orjson.dumps`` of the whole body took ~2.9)."""

    def __init__(self, size: int, *, uuid_ids: bool, clock: Callable[[], int] = _wall_ms) -> None:
        self.size = size
        self.uuid_ids = uuid_ids
        self.raw = _templates(size)
        if uuid_ids:
            self.raw = [_with_id_marks(t) for t in self.raw]
        # Each template split at its placeholders: one stamp per message (and sentAt last), and with
        # ``uuid_ids`` an id before each message's stamp.
        self.parts = [t.replace(ID, STAMP).split(STAMP) for t in self.raw]
        self.clock = clock
        self.last: int | None = None

    def _stamps(self) -> list[str]:
        now = self.clock()
        last = self.last if self.last is not None else now - 1000
        self.last = now
        size = self.size
        return [_stamp(last + (now - last) * (i + 1) // size) for i in range(size)]

    def body(self, n: int, tag: str) -> bytes:
        stamps = [*self._stamps()]
        stamps.append(stamps[-1])  # sentAt
        parts = self.parts[n % len(self.parts)]
        filled = [parts[0]]
        if self.uuid_ids:
            ids = os.urandom(16 * self.size).hex().encode()
            fills = []
            for i, stamp in enumerate(stamps[:-1]):
                fills.append(ids[32 * i : 32 * i + 32])
                fills.append(stamp.encode())
            fills.append(stamps[-1].encode())
            for fill, part in zip(fills, parts[1:], strict=True):
                filled.append(fill)
                filled.append(part)
            return b"".join(filled)
        for stamp, part in zip(stamps, parts[1:], strict=True):
            filled.append(stamp.encode())
            filled.append(part)
        return b"".join(filled).replace(MARK, tag.encode())


def _with_id_marks(template: bytes) -> bytes:
    """The template with each message's id replaced by ``ID`` (ids come before stamps in a message)."""
    body = orjson.loads(template)
    for message in body["batch"]:
        message["messageId"] = ID.decode()
    out = orjson.dumps(body)
    marks = re.findall(re.escape(ID) + b"|" + re.escape(STAMP), out)
    assert marks == [ID, STAMP] * len(body["batch"]) + [STAMP], "an id before each stamp, then sentAt"
    return out


def make_source(url: str, brand_id: int, dedup: str = "message_id_and_timestamp") -> tuple[int, str]:
    """A server source of the brand whose rate limit does not cap the benchmark, with the given
    de-duplication key, and a tracking plan for the benchmark's events (so every message is checked,
    none is unplanned); its id and key."""
    from huiyuan.events.service import define_event
    from huiyuan.events.sources import create_source
    from huiyuan.kit.db import Database
    from huiyuan.kit.scope import system_for_brand

    product: list[dict[str, Any]] = [
        {"name": "sku", "type": "string", "required": True},
        {"name": "name", "type": "string"},
        {"name": "price", "type": "number", "required": True},
        {"name": "category", "type": "string"},
        {"name": "quantity", "type": "integer"},
    ]
    db = Database(url)
    actor = system_for_brand(brand_id)
    with db.unit_of_work() as s:
        issued = create_source(
            s, actor=actor, name="bench", kind="server", rate_limit="1000000000/second", dedup=dedup
        )
        for name in EVENTS:
            define_event(s, actor=actor, name=name, properties=product)
        define_event(
            s, actor=actor, name="商品详情", kind="page", properties=[{"name": "path", "type": "string"}]
        )
        source_id = issued.source.id
    db.dispose()
    return source_id, issued.write_key


@contextmanager
def _serving(url: str, workers: int) -> Iterator[str]:
    """``huiyuan serve --no-worker`` on a free port, one process or ``--workers N``; its base URL."""
    if workers == 1:
        with server(url) as base:
            yield base
        return
    import httpx

    port = free_port()
    cmd = [sys.executable, "-m", "huiyuan", "serve", "--no-worker", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--db", url, "--workers", str(workers)]
    proc = subprocess.Popen(cmd, env={**os.environ, **BENCH_ENV}, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/ping", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start (exit code {proc.poll()})")
            time.sleep(0.2)
        time.sleep(2.0)  # every process has built its app, not only the first to answer
        with served_by(base, proc.pid):
            yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def _api(
    base: str,
    write_key: str,
    size: int,
    *,
    clients: int,
    seconds: float,
    uuid_ids: bool = False,
    workers: int = 1,
    db: str = "sqlite",
    dedup: str = "message_id_and_timestamp",
    client: str = "raw",
) -> dict[str, Any]:
    bodies = [_Bodies(size, uuid_ids=uuid_ids) for _ in range(clients)]  # one per client thread
    auth = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
    headers = {"Authorization": auth, "Content-Type": "application/json"}
    run_tag = uuid.uuid4().hex[:4]

    def make(client: int, n: int) -> tuple[str, str, bytes | None]:
        tag = f"{run_tag}{size:03d}{client:02d}{n:07d}"  # as long as MARK
        return "POST", "/v1/batch", bodies[client].body(n, tag)

    r = hammer(base, headers, make, clients=clients, seconds=seconds, raw=client == "raw")
    events = r.requests * size
    figure = emit(
        f"events.api.batch{size}",
        events / r.seconds if r.seconds else 0.0,
        "events/s",
        p50_ms=round(r.percentile(50), 2),
        p99_ms=round(r.percentile(99), 2),
        requests=r.requests,
        errors=r.errors,
        server_us_per_event=round(r.server_cpu_s / events * 1e6, 2) if r.server_cpu_s and events else None,
        client_us_per_event=round(r.client_cpu_s / events * 1e6, 2) if r.client_cpu_s and events else None,
        batch=size,
        bytes_per_request=len(bodies[0].raw[0]),
        clients=clients,
        seconds=round(r.seconds, 1),
        message_ids="uuid" if uuid_ids else "sequential",
        dedup=dedup,
        server=f"huiyuan serve --no-worker --workers {workers}",
        client=client,
        db=db,
    )
    return figure


def _dialect(url: str) -> str:
    return "postgresql" if url.startswith("postgresql") else "sqlite"


def _prepared_rows(
    brand_id: int,
    source_id: int,
    size: int,
    batches: int,
    uuid_ids: bool = False,
    dialect: str = "sqlite",
    dedup: str = "message_id_and_timestamp",
    *,
    senders: int = 2,
    rate: float = 20_000.0,
) -> list[list[tuple[Any, ...]]]:
    from huiyuan.events import spec
    from huiyuan.events.plan import EMPTY_PLAN
    from huiyuan.kit.clock import utcnow

    out = []
    for raw in _replayed(size, batches, uuid_ids=uuid_ids, senders=senders, rate=rate, tag="raw-"):
        parsed, length = spec.decode_body(raw)
        env = spec.envelope(parsed, "batch", body_bytes=length)
        prepared = spec.Preparer(
            brand_id=brand_id,
            source_id=source_id,
            plan=EMPTY_PLAN,
            dialect=dialect,
            received_at=utcnow(),
            dedup=dedup,
        ).add(env)
        out.append(prepared.events)
    return out


def _raw_postgresql(url: str, batches: list[list[tuple[Any, ...]]]) -> float:
    """The same rows with ``psycopg`` alone: the store's own statement, one transaction per batch."""
    import psycopg

    from huiyuan.events.spec import EVENT_COLUMNS, JSON_EVENT_COLUMNS
    from huiyuan.events.store import _insert_sql

    sql = _insert_sql("postgresql", "events", EVENT_COLUMNS, JSON_EVENT_COLUMNS)
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as con:
        started = time.perf_counter()
        for rows in batches:
            with con.transaction(), con.cursor() as cur:
                cur.executemany(sql, rows)
        elapsed = time.perf_counter() - started
    return sum(len(b) for b in batches) / elapsed


def _raw(path: str, batches: list[list[tuple[Any, ...]]], size: int) -> float:
    from huiyuan.events.spec import EVENT_COLUMNS

    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    sql = f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) VALUES ({', '.join('?' for _ in EVENT_COLUMNS)})"
    started = time.perf_counter()
    for rows in batches:
        con.execute("BEGIN IMMEDIATE")
        con.executemany(sql, rows)
        con.execute("COMMIT")
    elapsed = time.perf_counter() - started
    con.close()
    events = sum(len(b) for b in batches)
    return events / elapsed


def _stages(
    url: str,
    write_key: str,
    size: int,
    batches: int,
    profile: bool,
    uuid_ids: bool = False,
    *,
    senders: int = 2,
    rate: float = 20_000.0,
) -> None:
    """The in-process path of ``/v1/batch`` stage by stage, µs per event."""
    from huiyuan.events import collect_api, service, sources, spec, store
    from huiyuan.kit.clock import utcnow
    from huiyuan.kit.db import Database
    from huiyuan.kit.scope import Scope

    db = Database(url)
    db.start_checkpoints()  # as the server process does
    # As ``huiyuan serve`` does once the app is built: the collector's full passes over the imported
    # modules' objects would otherwise count in whichever stage set them off.
    gc.collect()
    gc.freeze()
    bodies = _replayed(size, batches, uuid_ids=uuid_ids, senders=senders, rate=rate, tag="stg")
    spent = {"decode": 0.0, "auth": 0.0, "prepare": 0.0, "write": 0.0}
    profiler = cProfile.Profile() if profile else None
    if profiler:
        profiler.enable()
    for raw in bodies:
        t0 = time.perf_counter()
        body, length = spec.decode_body(raw)
        env = spec.envelope(body, "batch", body_bytes=length)
        t1 = time.perf_counter()
        # As ``collect_api.collect``: the source and plan remembered for a second, else read.
        known = sources.recent_source(write_key)
        plan = service.cached_plan(known) if known is not None else None
        if known is None or plan is None:
            with db.session() as s:
                known = sources.authenticate(s, write_key)
                plan = service.compiled_plan(s, known)
            sources.remember_source(known)
        source = known
        t2 = time.perf_counter()
        at = utcnow()
        prepared = spec.Preparer(
            brand_id=source.brand_id,
            source_id=source.id,
            plan=plan,
            dialect=_dialect(url),
            received_at=at,
            dedup=source.dedup,
        ).add(env)
        t3 = time.perf_counter()
        # As ``collect``: the write transaction (BEGIN IMMEDIATE) begins at the first insert.
        with collect_api.write_when_needed(db, Scope(brand_id=source.brand_id)) as s:
            store.write(s, brand_id=source.brand_id, prepared=prepared, at=at)
        t4 = time.perf_counter()
        for stage, dt in zip(spent, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            spent[stage] += dt
    if profiler:
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(15)
        print(out.getvalue(), flush=True)
    db.dispose()
    gc.unfreeze()
    events = size * len(bodies)
    total = sum(spent.values())
    emit(
        f"events.stages.batch{size}",
        events / total,
        "events/s",
        **{f"{k}_us": round(v / events * 1e6, 2) for k, v in spent.items()},
        note="in-process, no HTTP",
    )


def run(
    url: str,
    brand_id: int,
    *,
    seconds: float,
    clients: int | None = None,
    profile: bool = False,
    message_ids: str = "sequential",
    workers: int = 1,
    dedup: str = "message_id_and_timestamp",
    client: str = "raw",
) -> None:
    """The API figures for batches of 100 and 500, the raw baseline of the same rows, the ratio."""
    from huiyuan.kit.db import Database

    uuid_ids = message_ids == "uuid"
    dialect = _dialect(url)
    source_id, write_key = make_source(url, brand_id, dedup)
    api: dict[int, dict[str, Any]] = {}
    clients = clients or 2 * workers
    with _serving(url, workers) as base:
        for size in (100, 500):
            api[size] = _api(
                base,
                write_key,
                size,
                clients=clients,
                seconds=seconds,
                uuid_ids=uuid_ids,
                workers=workers,
                db=dialect,
                dedup=dedup,
                client=client,
            )
    db = Database(url)
    path = db.engine.url.database or ""
    db.dispose()
    for size in (100, 500):
        batches = max(4, int(api[size]["requests"]) // 4)
        # The same source as the API's rows: the raw rows enter the same part of the unique index.
        # As many senders at the API's rate, so the rows meet the unique index as the API's did.
        rate = float(api[size]["value"])
        rows = _prepared_rows(
            brand_id, source_id, size, batches, uuid_ids, dialect, dedup, senders=clients, rate=rate
        )
        raw_rate = _raw(path, rows, size) if dialect == "sqlite" else _raw_postgresql(url, rows)
        emit(
            f"events.raw.batch{size}",
            raw_rate,
            "events/s",
            batch=size,
            batches=batches,
            message_ids=message_ids,
            dedup=dedup,
            db=dialect,
        )
        emit(
            f"events.ratio.batch{size}",
            float(api[size]["value"]) / raw_rate if raw_rate else 0.0,
            "api/raw",
            batch=size,
            goal="≥ 50k events/s on 2 cores",
            workers=workers,
        )
        _stages(
            url,
            write_key,
            size,
            batches=max(8, 20_000 // size),
            profile=profile and size == 500,
            uuid_ids=uuid_ids,
            senders=clients,
            rate=rate,
        )


def _fresh_database(url: str | None = None) -> tuple[Path, str, int]:
    """A migrated database holding one brand: a SQLite file in a new folder, or ``url`` as given."""
    from huiyuan.kit.db import Database
    from huiyuan.kit.migrate import upgrade
    from huiyuan.kit.scope import SYSTEM
    from huiyuan.tenancy.service import create_brand

    folder = Path(tempfile.mkdtemp(prefix="huiyuan-bench-events-"))
    url = url or f"sqlite:///{folder / 'events.db'}"
    upgrade(url)
    db = Database(url)
    with db.unit_of_work() as s:
        brand_id = create_brand(s, actor=SYSTEM, code="bench", name="Bench", member_number_prefix="BE").id
    db.dispose()
    return folder, url, brand_id


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.events", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=1, help="server processes (huiyuan serve --workers)")
    parser.add_argument("--clients", type=int, default=None, help="client threads (default: 2 per worker)")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the in-process path")
    parser.add_argument(
        "--message-ids",
        choices=("sequential", "uuid"),
        default="sequential",
        help="ids growing within a request, or random UUIDs as the client libraries send",
    )
    parser.add_argument(
        "--dedup",
        choices=("message_id_and_timestamp", "message_id"),
        default="message_id_and_timestamp",
        help="the bench source's de-duplication key (EventSource.dedup)",
    )
    parser.add_argument(
        "--client",
        choices=("raw", "httpx"),
        default="raw",
        help="the load generator's HTTP client: a minimal keep-alive socket client (bench.common.RawHttp) "
        "or httpx (as before 2026-12-07, later: ~1 ms of CPU a request on the same cores)",
    )
    parser.add_argument(
        "--db",
        default=None,
        help="a PostgreSQL server's maintenance database (postgresql+psycopg://user@host:port/postgres): "
        "run on a fresh database there instead of a SQLite file",
    )
    args = parser.parse_args(argv)
    with ExitStack() as stack:
        given = stack.enter_context(postgresql_database(args.db, "events")) if args.db else None
        folder, url, brand_id = _fresh_database(given)
        try:
            run(
                url,
                brand_id,
                seconds=args.seconds,
                clients=args.clients,
                profile=args.profile,
                message_ids=args.message_ids,
                workers=args.workers,
                dedup=args.dedup,
                client=args.client,
            )
        finally:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("HUIYUAN_LOG_LEVEL", "WARNING")
    main()

"""``huiyuan serve --workers 2``: two server processes ingesting side by side, on both databases.

Two clients send batches (each on fresh connections, so both processes take requests) and resend
some acknowledged ones, while a follower reads the events table by id cursor as the warehouse sync
and the identity feed do. Afterwards: every acknowledged message is stored exactly once, each
request's rows hold consecutive ids (writers were serialised across the processes), and the follower
saw every id (no row committed late below its cursor). Only the supervising process runs the
background worker. Rate limits kept in process memory admit each process its share, so two
processes together stay within a source's limit. On SQLite, ingestion writers take turns on a file
lock beside the database, held from before the write transaction until after its commit.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select

from huiyuan.events import collect_api, sources
from huiyuan.events.models import Event
from huiyuan.kit.clock import utcnow
from huiyuan.kit.db import Database
from huiyuan.kit.errors import RateLimited
from huiyuan.settings import reset_settings_cache
from tests.conftest import World
from tests.events.conftest import basic, free_port, make_source

CLIENTS = 2
BATCHES = 15  # per client
BATCH = 100


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    base: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def two_workers(db: Database, tmp_path: Path) -> Iterator[Served]:
    """``huiyuan serve --workers 2`` (with its background worker) on the test database, ready."""
    port = free_port()
    env = {
        **os.environ,
        "HUIYUAN_LOG_LEVEL": "INFO",
        "HUIYUAN_RUN_SCHEDULES": "false",
        "HUIYUAN_OUTBOX_POLL_SECONDS": "0.2",
    }
    cmd = [sys.executable, "-m", "huiyuan", "serve", "--workers", "2", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--db", db.url]
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    served = Served(proc, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + 60
        # Ready when both processes have started (uvicorn logs each), not only the first.
        while served.output().count("Application startup complete") < 2:
            assert proc.poll() is None, served.output()
            assert time.monotonic() < deadline, "the server did not start: " + served.output()
            time.sleep(0.1)
        yield served
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _batch(client: int, n: int) -> dict[str, Any]:
    return {
        "batch": [
            {
                "type": "track",
                "anonymousId": f"device-{client}-{i % 5}",
                "event": "Product Viewed",
                "properties": {"sku": f"SKU-{i}", "price": 12.5},
                "messageId": f"c{client}-b{n:03d}-m{i:03d}",
            }
            for i in range(BATCH)
        ]
    }


@pytest.mark.slow
def test_two_processes_ingest_once_in_commit_order_within_one_limit(
    two_workers: Served, db: Database, world: World
) -> None:
    source_id, key = make_source(db, world.brands[0].id, kind="server", rate_limit="1000000/second")
    acknowledged: dict[str, int] = {}  # batch → stored, from the answers
    resent: list[int] = []  # stored counts of acknowledged batches sent again
    failures: list[str] = []
    done = threading.Event()
    seen: list[int] = []

    def send(client: int) -> None:
        for n in range(BATCHES):
            # A fresh connection each time: the kernel hands it to either process.
            r = httpx.post(
                two_workers.base + "/v1/batch", json=_batch(client, n), headers=basic(key), timeout=30
            )
            if r.status_code != 200:
                failures.append(r.text)
                return
            acknowledged[f"c{client}-b{n:03d}"] = r.json()["stored"]
            if n % 5 == 4:  # the client did not hear the answer: it sends the batch again
                again = httpx.post(
                    two_workers.base + "/v1/batch", json=_batch(client, n), headers=basic(key), timeout=30
                )
                resent.append(again.json()["stored"] if again.status_code == 200 else -1)

    def follow() -> None:
        # As the warehouse sync and the identity feed: everything after the last id seen.
        cursor = 0
        while True:
            finished = done.is_set()
            with db.unit_of_work(write=False) as s:
                ids = list(s.scalars(select(Event.id).where(Event.id > cursor).order_by(Event.id)))
            if ids:
                seen.extend(ids)
                cursor = ids[-1]
            if finished:
                return
            time.sleep(0.005)

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    clients = [threading.Thread(target=send, args=(c,), daemon=True) for c in range(CLIENTS)]
    for t in clients:
        t.start()
    for t in clients:
        t.join(timeout=120)
    done.set()
    follower.join(timeout=30)

    assert not failures, failures[:3]
    assert len(acknowledged) == CLIENTS * BATCHES
    assert resent and all(stored == 0 for stored in resent), resent

    with db.unit_of_work(write=False) as s:
        rows = s.execute(select(Event.id, Event.message_id).where(Event.source_id == source_id)).all()
    per_message = Counter(message_id for _id, message_id in rows)
    assert len(per_message) == CLIENTS * BATCHES * BATCH
    assert set(per_message.values()) == {1}
    assert sum(acknowledged.values()) == len(rows)  # each message stored by exactly one answer
    # One request's rows were written in one serialised transaction: their ids are consecutive.
    ids_of_batch: dict[str, list[int]] = {}
    for id_, message_id in rows:
        ids_of_batch.setdefault(message_id.rsplit("-", 1)[0], []).append(id_)
    assert all(max(ids) - min(ids) + 1 == BATCH for ids in ids_of_batch.values())
    # A row committed after a larger id would have been skipped by the cursor.
    assert sorted(seen) == seen and set(seen) == {id_ for id_, _ in rows}

    output = two_workers.output()
    assert output.count("Application startup complete") == 2
    assert output.count("worker started") == 1, output

    # A limit counted in process memory: each process admits its share, together never more.
    _sid, limited = make_source(db, world.brands[0].id, rate_limit="40/minute")
    statuses: list[int] = []
    for n in range(16):
        body = {
            "batch": [
                {"type": "track", "anonymousId": "a", "event": "E", "messageId": f"r{n}-{i}"}
                for i in range(5)
            ]
        }
        r = httpx.post(two_workers.base + "/v1/batch", json=body, headers=basic(limited), timeout=30)
        statuses.append(r.status_code)
        if r.status_code == 429:
            assert int(r.headers["Retry-After"]) >= 1
    # 20 messages a minute per process: 4 batches of 5 in each, at most 8 together.
    assert 4 <= statuses.count(200) <= 8 and statuses.count(429) == 16 - statuses.count(200)


@pytest.fixture
def serve_workers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("HUIYUAN_SERVE_WORKERS", "2")
    reset_settings_cache()
    yield
    monkeypatch.delenv("HUIYUAN_SERVE_WORKERS")
    reset_settings_cache()


def test_memory_rate_limit_is_shared_out_between_processes(
    serve_workers: None, db: Database, world: World
) -> None:
    if not db.is_sqlite:
        pytest.skip("no database involved")
    _sid, key = make_source(db, world.brands[0].id, rate_limit="10/minute")
    with db.unit_of_work(write=False) as s:
        source = sources.authenticate(s, key)
    sources.check_rate(source, 5)
    with pytest.raises(RateLimited):
        sources.check_rate(source, 1)  # this process's half of 10 is used up
    with pytest.raises(RateLimited, match="5 per server process"):
        sources.check_rate(source, 6)


def test_sqlite_writers_of_all_processes_take_turns_on_a_file_lock(db: Database, world: World) -> None:
    if not db.is_sqlite:
        pytest.skip("PostgreSQL writers queue on the append lock")
    _sid, key = make_source(db, world.brands[0].id, kind="server")

    def send(n: int) -> None:
        body = orjson.dumps(
            {"batch": [{"type": "track", "anonymousId": "a", "event": "E", "messageId": f"t{n}"}]}
        )
        collect_api.collect(
            db,
            raw=body,
            kind="batch",
            authorization=basic(key)["Authorization"],
            content_encoding=None,
            received_at=utcnow(),
        )

    send(0)  # the lock file exists beside the database once a writer has taken its turn
    path = (db.engine.url.database or "") + "-writers.lock"
    # Another process's turn: flock conflicts between separately opened files, as between processes.
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        writer = threading.Thread(target=send, args=(1,), daemon=True)
        writer.start()
        writer.join(timeout=0.5)
        assert writer.is_alive(), "the writer did not wait for the other process's turn"
        fcntl.flock(fd, fcntl.LOCK_UN)
        writer.join(timeout=10)
        assert not writer.is_alive()
        # Released after the commit: taken again at once.
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)
    with db.unit_of_work(write=False) as s:
        assert set(s.scalars(select(Event.message_id))) >= {"t0", "t1"}

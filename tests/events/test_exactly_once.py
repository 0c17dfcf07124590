"""Exactly once across a crash: a real ``huiyuan serve`` process is killed (SIGKILL) while it is inside
the write transaction of a batch, then restarted, and the client resends everything. Acknowledged
batches were all there before the resend (an answer comes only after the commit), the batch cut off
is all or nothing, and after the resend (to huiyuan serving the same database again) every message is
stored exactly once. On both databases:
"inside the transaction" is seen from outside — SQLite's write lock is held, PostgreSQL's append lock
(``events.service.append_lock``) is granted."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import psycopg
import pytest
from sqlalchemy import select

from huiyuan.events.models import Event
from huiyuan.kit.db import Database
from tests.conftest import World
from tests.events.conftest import basic, free_port, make_source

BATCH = 200
BATCHES = 60


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    base: str

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.base + "/ping", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert self.proc.poll() is None and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)


@pytest.fixture
def booting_server(db: Database) -> Iterator[Server]:
    """``huiyuan serve`` on the test database, started first: it boots while the test sets up."""
    port = free_port()
    env = {**os.environ, "HUIYUAN_RUN_WORKER_IN_PROCESS": "false", "HUIYUAN_LOG_LEVEL": "WARNING"}
    cmd = [
        sys.executable,
        "-m",
        "huiyuan",
        "serve",
        "--no-worker",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(
        [*cmd, "--db", db.url], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        yield Server(proc, f"http://127.0.0.1:{port}")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=15)


def inside_write(db: Database) -> bool:
    """Is some other process inside an events write transaction right now?"""
    if db.is_sqlite:
        conn = sqlite3.connect(db.engine.url.database or "", timeout=0, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
            return False
        except sqlite3.OperationalError:
            return True
        finally:
            conn.close()
    conninfo = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ).fetchone()
        return bool(row and row[0])


def body(batch: int) -> dict[str, object]:
    return {
        "batch": [
            {
                "type": "track",
                "anonymousId": f"device-{batch}-{i % 7}",
                "event": "Product Viewed",
                "properties": {"sku": f"SKU-{i}", "price": 99.5, "note": "x" * 200},
                "messageId": f"b{batch:03d}-m{i:04d}",
            }
            for i in range(BATCH)
        ]
    }


def stored_ids(db: Database, source_id: int) -> list[str]:
    with db.unit_of_work(write=False) as s:
        return list(s.scalars(select(Event.message_id).where(Event.source_id == source_id)))


@pytest.mark.slow
def test_kill_mid_batch_and_resend_is_exactly_once(
    booting_server: Server, db: Database, world: World, live_server: str
) -> None:
    source_id, key = make_source(db, world.brands[0].id, kind="server")
    acknowledged: list[int] = []
    cut_off: list[int] = []
    proc, base = booting_server.proc, booting_server.base
    booting_server.wait_ready()

    def send() -> None:
        with httpx.Client(base_url=base, headers=basic(key), timeout=30) as http:
            for n in range(BATCHES):
                try:
                    r = http.post("/v1/batch", json=body(n))
                except httpx.TransportError:
                    cut_off.append(n)
                    return
                assert r.status_code == 200, r.text
                acknowledged.append(n)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    while not acknowledged:
        time.sleep(0.01)
    deadline = time.monotonic() + 30
    while not inside_write(db):
        assert time.monotonic() < deadline and sender.is_alive(), "never caught the server writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=15)
    sender.join(timeout=30)

    assert cut_off, "the batch in flight should have lost its connection"
    per_batch = Counter(m.split("-")[0] for m in stored_ids(db, source_id))
    # Acknowledged means committed; the batch cut off is all or nothing.
    assert all(per_batch[f"b{n:03d}"] == BATCH for n in acknowledged)
    assert per_batch[f"b{cut_off[0]:03d}"] in (0, BATCH)
    assert set(per_batch) <= {f"b{n:03d}" for n in acknowledged + cut_off}

    # The client does not know what landed: it resends everything, including what was acknowledged,
    # to huiyuan back up (here served in this process, on the same database).
    with httpx.Client(base_url=live_server, headers=basic(key), timeout=30) as http:
        resent = acknowledged + cut_off
        for n in resent:
            r = http.post("/v1/batch", json=body(n))
            assert r.status_code == 200, r.text
            assert r.json()["stored"] + r.json()["duplicates"] == BATCH

    ids = stored_ids(db, source_id)
    assert len(ids) == len(set(ids)) == BATCH * len(resent)

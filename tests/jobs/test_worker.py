from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from huiyuan.jobs import service
from huiyuan.jobs.models import JobRun
from huiyuan.jobs.queue import get_queue
from huiyuan.jobs.runner import start_in_process_worker
from huiyuan.kit.db import Database
from huiyuan.kit.scope import SYSTEM
from huiyuan.outbox.models import WebhookDelivery
from huiyuan.settings import Settings
from tests.conftest import World
from tests.factories import enroll
from tests.jobs import test_jobs  # noqa: F401  (registers the test jobs)
from tests.outbox.conftest import Receiver


def _wait_for(predicate: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _status(db: Database, run_id: int) -> str:
    with db.unit_of_work(write=False) as s:
        run = s.get(JobRun, run_id)
        return run.status if run else "missing"


@pytest.fixture
def webhook_sub(
    client: Any, world: World, receiver: Receiver, settings_env: Callable[..., Settings]
) -> dict[str, Any]:
    settings_env(webhook_allow_private_targets=True)
    r = client.post(
        "/api/v1/webhooks",
        json={"url": receiver.url, "event_types": ["member.*"]},
        headers=world.brands[0].headers,
    )
    assert r.status_code == 201
    return dict(r.json())


def test_in_process_worker_delivers_outbox_events_and_runs_jobs(
    client: Any,
    world: World,
    receiver: Receiver,
    webhook_sub: dict[str, Any],
    settings_env: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    settings = settings_env(
        jobs_backend="sqlite",
        jobs_sqlite_path=str(tmp_path / "jobs.db"),
        outbox_poll_seconds=0.1,
        webhook_allow_private_targets=True,
        run_schedules=False,  # only this test's own job run should be counted
    )
    handle = start_in_process_worker(world.db, settings)
    try:
        assert not handle.queue.immediate
        threads = {t.name for t in threading.enumerate()}
        assert "huiyuan-outbox" in threads
        member = enroll(client, world.brands[0].headers, name="端到端")
        assert receiver.arrived.wait(15), "the worker never delivered the webhook"
        assert b'"member.enrolled"' in receiver.requests[0].body
        assert str(member["id"]).encode() in receiver.requests[0].body
        with world.db.unit_of_work() as s:
            run_id = service.enqueue(s, actor=SYSTEM, kind="test.sum", params={"numbers": [4, 5]}).id
        assert _wait_for(lambda: _status(world.db, run_id) == "succeeded"), _status(world.db, run_id)
        snap = handle.snapshot()
        assert snap["worker"]["delivered"] == 1 and snap["jobs"]["succeeded"] == 1
        assert snap["deliveries"] == {"delivered": 1}
    finally:
        handle.stop()
    assert "huiyuan-outbox" not in {t.name for t in threading.enumerate()}
    assert not [t for t in threading.enumerate() if t.name.startswith("Worker-") and t.is_alive()]
    # stopped means stopped: new events wait for the next worker
    enroll(client, world.brands[0].headers, name="之后")
    time.sleep(0.3)
    assert len(receiver.requests) == 1
    with world.db.unit_of_work(write=False) as s:
        assert len(s.scalars(select(WebhookDelivery)).all()) == 1


def _redis_available(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except Exception:
        return False


def test_redis_huey_round_trip(world: World, settings_env: Callable[..., Settings]) -> None:
    url = "redis://127.0.0.1:6379/0"
    if not _redis_available(url):
        pytest.skip("Redis does not answer on redis://127.0.0.1:6379; the Redis backend is untested here")
    settings = settings_env(
        jobs_backend="redis", redis_url=url, jobs_queue_name=f"huiyuan-test-{uuid.uuid4().hex[:8]}"
    )
    queue = get_queue(settings)
    assert type(queue.huey).__name__ == "RedisHuey"
    handle = start_in_process_worker(world.db, settings)
    try:
        with world.db.unit_of_work() as s:
            run_id = service.enqueue(s, actor=SYSTEM, kind="test.sum", params={"numbers": [20, 22]}).id
        assert _wait_for(lambda: _status(world.db, run_id) == "succeeded"), _status(world.db, run_id)
        with world.db.unit_of_work(write=False) as s:
            run = s.get(JobRun, run_id)
            assert run is not None and run.result is not None and run.result["sum"] == 42
    finally:
        handle.stop()
        queue.huey.flush()


def test_jobs_list_cli(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    from huiyuan.cli.common import console
    from huiyuan.cli.main import app

    monkeypatch.setattr(console, "width", 200)  # the console was sized when the CLI was imported

    with world.db.unit_of_work() as s:
        service.enqueue(s, actor=SYSTEM, kind="test.sum", params={"numbers": [1, 2]})
        service.enqueue(s, actor=SYSTEM, kind="test.boom", params={})
    result = CliRunner().invoke(app, ["jobs", "list", "--db", world.db.url], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "test.sum" in result.output and "succeeded" in result.output
    assert "failed" in result.output and "ValueError" in result.output
    assert "2/2 (100%)" in result.output and "1/3 (33%)" in result.output


@pytest.fixture
def worker_process(world: World, tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []

    def start(**env: str) -> subprocess.Popen[str]:
        full = {
            **os.environ,
            **env,
            "HUIYUAN_JOBS_BACKEND": "sqlite",
            "HUIYUAN_JOBS_SQLITE_PATH": str(tmp_path / "q.db"),
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "huiyuan", "worker", "--db", world.db.url],
            env=full,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_worker_command_runs_in_the_foreground_until_interrupted(
    client: Any,
    world: World,
    receiver: Receiver,
    webhook_sub: dict[str, Any],
    worker_process: Callable[..., subprocess.Popen[str]],
) -> None:
    if not world.db.is_sqlite:
        pytest.skip("one database is enough for the process-level check")
    enroll(client, world.brands[0].headers, name="命令行")
    proc = worker_process(
        HUIYUAN_WEBHOOK_ALLOW_PRIVATE_TARGETS="true",
        HUIYUAN_OUTBOX_POLL_SECONDS="0.2",
        HUIYUAN_SECRET_KEY=os.environ["HUIYUAN_SECRET_KEY"],
        # No scheduled jobs: one still running at Ctrl-C is waited for (up to 30 s, the consumer's
        # graceful shutdown), which on a loaded machine outlasted the wait below.
        HUIYUAN_RUN_SCHEDULES="false",
    )
    assert receiver.arrived.wait(30), "the worker process never delivered the webhook"
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "worker started" in out and "worker stopped" in out


def test_sqlite_queue_sits_beside_a_sqlite_database() -> None:
    from huiyuan.jobs.queue import sqlite_queue_path

    assert sqlite_queue_path(Settings(database_url="sqlite:////data/hy.db")) == "/data/hy-jobs.db"
    assert (
        sqlite_queue_path(Settings(database_url="sqlite:////data/hy.db", jobs_sqlite_path="/q.db")) == "/q.db"
    )
    pg = Settings(database_url="postgresql://u@h/d")
    assert sqlite_queue_path(pg) == pg.jobs_sqlite_path


def test_app_lifespan_starts_and_stops_the_worker(
    world: World, receiver: Receiver, settings_env: Callable[..., Settings], tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from huiyuan.app import create_app

    settings = settings_env(
        jobs_backend="sqlite",
        jobs_sqlite_path=str(tmp_path / "app-jobs.db"),
        outbox_poll_seconds=0.1,
        webhook_allow_private_targets=True,
    )
    app = create_app(settings, world.db, start_worker=True)
    with TestClient(app) as c:
        assert "huiyuan-outbox" in {t.name for t in threading.enumerate()}
        h = world.brands[0].headers
        r = c.post("/api/v1/webhooks", json={"url": receiver.url, "event_types": ["member.*"]}, headers=h)
        assert r.status_code == 201
        enroll(c, h, name="生命周期")
        assert receiver.arrived.wait(15), "the in-process worker never delivered the webhook"
    assert "huiyuan-outbox" not in {t.name for t in threading.enumerate()}

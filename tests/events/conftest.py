"""Helpers of the events tests: sources made through the service, tracking-API headers, a live
uvicorn serving the test's app (for the real client libraries), and empty rate-limit buckets."""

from __future__ import annotations

import base64
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from huiyuan.events import sources
from huiyuan.kit.db import Database
from huiyuan.kit.scope import system_for_brand


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> Iterator[None]:
    sources.limiter().storage.reset()
    yield
    sources.limiter().storage.reset()


def make_source(
    db: Database,
    brand_id: int,
    *,
    kind: str = "web",
    rate_limit: str | None = None,
    dedup: str = "message_id",
) -> tuple[int, str]:
    """(source id, write key) of a new source of the brand."""
    with db.unit_of_work() as s:
        issued = sources.create_source(
            s,
            actor=system_for_brand(brand_id),
            name=f"{kind} source",
            kind=kind,
            rate_limit=rate_limit,
            dedup=dedup,
        )
        return issued.source.id, issued.write_key


def basic(write_key: str) -> dict[str, str]:
    """Segment's auth header: HTTP Basic with the write key as user name and no password."""
    return {"Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live_server(app: Any) -> Iterator[str]:
    """The test's app (its database) served by uvicorn in a thread on a free port; its base URL."""
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{config.port}"
    server.should_exit = True
    thread.join(timeout=10)


def wait_for(check: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)

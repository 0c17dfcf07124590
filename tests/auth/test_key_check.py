"""The API key check of every request: a key checked moments ago is not read again, a revoked key is
refused at once in this process (and within ``KEY_CACHE_SECONDS`` when revoked elsewhere), and the
in-process rate limiter counts an exact moving window."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import event, update

from huiyuan.auth import deps, service
from huiyuan.auth.deps import MovingWindow
from huiyuan.auth.models import ApiKey
from huiyuan.kit.clock import utcnow
from huiyuan.kit.errors import RateLimited
from huiyuan.settings import reset_settings_cache
from tests.conftest import World
from tests.factories import make_key


@contextmanager
def key_reads(world: World) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if "FROM api_keys" in statement:
            seen.append(statement)

    event.listen(world.db.engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(world.db.engine, "before_cursor_execute", count)


def test_a_key_checked_moments_ago_is_not_read_again(client, world: World) -> None:
    h = {"Authorization": f"Bearer {make_key(world.db, world.brands[0].id, ['members:read'])}"}
    with key_reads(world) as seen:
        assert client.get("/api/v1/members", headers=h).status_code == 200
        assert len(seen) == 1
        for _ in range(3):
            assert client.get("/api/v1/members", headers=h).status_code == 200
        assert len(seen) == 1
    # The cached key still compares the secret: a wrong one with the same prefix is refused.
    secret = h["Authorization"].removeprefix("Bearer ")
    forged = {"Authorization": f"Bearer {secret[:-2]}xx"}
    assert client.get("/api/v1/members", headers=forged).status_code == 401


def test_a_key_revoked_elsewhere_is_refused_once_the_cache_is_stale(
    client, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = make_key(world.db, world.brands[0].id, ["members:read"], name="elsewhere")
    h = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/members", headers=h).status_code == 200
    with world.db.unit_of_work() as s:  # as another process would: no word to this one's cache
        s.execute(update(ApiKey).where(ApiKey.name == "elsewhere").values(revoked_at=utcnow()))
    assert client.get("/api/v1/members", headers=h).status_code == 200  # still fresh here
    monkeypatch.setattr(service, "KEY_CACHE_SECONDS", 0.0)
    assert client.get("/api/v1/members", headers=h).status_code == 401


def test_moving_window_admits_amount_hits_per_window() -> None:
    window = MovingWindow()
    assert [window.hit("k", 3, 60) for _ in range(3)] == [None, None, None]
    wait = window.hit("k", 3, 60)
    assert wait is not None and 59 < wait <= 60
    assert window.hit("other", 3, 60) is None  # buckets are separate
    window.storage.reset()
    assert window.hit("k", 3, 60) is None
    assert window.hit("short", 1, 0.0) is None and window.hit("short", 1, 0.0) is None  # expired at once


def test_memory_limits_are_shared_out_between_server_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUIYUAN_SERVE_WORKERS", "2")
    reset_settings_cache()
    try:
        deps.check_rate("key:split-test", "5/minute")  # this process's share of 5 is 3
        deps.check_rate("key:split-test", "5/minute")
        deps.check_rate("key:split-test", "5/minute")
        with pytest.raises(RateLimited) as refused:
            deps.check_rate("key:split-test", "5/minute")
        assert int(refused.value.headers["Retry-After"]) >= 1
    finally:
        monkeypatch.delenv("HUIYUAN_SERVE_WORKERS")
        reset_settings_cache()
    deps.check_rate("key:split-test-one", "1/minute")  # one process: the whole limit
    with pytest.raises(RateLimited):
        deps.check_rate("key:split-test-one", "1/minute")

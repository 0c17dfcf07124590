"""Console test helpers: console users made through the auth service, sign-in through the real form,
and the console served by a real uvicorn for the browser tests (one server per test process)."""

from __future__ import annotations

import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from huiyuan.auth import service as auth
from huiyuan.auth.deps import rate_limiter
from huiyuan.kit.db import Database
from huiyuan.kit.scope import SYSTEM

PASSWORD = "correct-horse-battery"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> Iterator[None]:
    # Login throttling counts in process memory; each test starts with empty buckets.
    rate_limiter().storage.reset()
    yield
    rate_limiter().storage.reset()


def make_user(db: Database, username: str, role: str, brand_id: int | None, locale: str = "zh") -> None:
    with db.unit_of_work() as s:
        auth.create_user(
            s, actor=SYSTEM, username=username, password=PASSWORD, role=role, brand_id=brand_id, locale=locale
        )


def csrf_of(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "no csrf_token field on the page"
    return match.group(1)


def login(client: Any, username: str, password: str = PASSWORD, next_url: str = "/console") -> Any:
    page = client.get("/console/login")
    return client.post(
        "/console/login",
        data={"username": username, "password": password, "csrf_token": csrf_of(page.text), "next": next_url},
        follow_redirects=False,
    )


@dataclass
class SignedIn:
    client: Any
    csrf: str

    def post(self, url: str, data: dict[str, Any] | None = None, **kw: Any) -> Any:
        return self.client.post(url, data={"csrf_token": self.csrf, **(data or {})}, **kw)


def signed_in(client: Any, username: str) -> SignedIn:
    r = login(client, username)
    assert r.status_code == 303, r.text
    page = client.get("/console")
    assert page.status_code == 200, page.text
    return SignedIn(client=client, csrf=csrf_of(page.text))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    # Lets fixtures see whether the test body failed (browser tests save a screenshot then).
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)


@contextmanager
def served(app: Any) -> Iterator[str]:
    """``app`` served by uvicorn on a free local port in a thread, for the browser tests: yields its
    base URL and stops the server after."""
    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        uv.should_exit = True
        thread.join(timeout=10)


@dataclass(frozen=True)
class LiveConsole:
    """The app served for the browser tests: its base URL and the database it serves."""

    url: str
    database_url: str


@pytest.fixture(scope="session")
def live_console(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveConsole]:
    """One uvicorn per test process, shared by the browser tests, serving a migrated SQLite file.

    Each test module seeds a brand of its own into it (its own brand code and console users) and
    signs in as that brand's users, so the tenancy scope keeps every module to its own rows."""
    from huiyuan.app import create_app
    from huiyuan.settings import get_settings

    path = tmp_path_factory.mktemp("console-live") / "console.db"
    shutil.copyfile(sqlite_template, path)
    url = f"sqlite:///{path}"
    db = Database(url)
    try:
        with served(create_app(get_settings(), db, start_worker=False)) as base:
            yield LiveConsole(url=base, database_url=url)
    finally:
        db.dispose()


def seed_brands(database_url: str, brand: str, other: str, username: str, password: str) -> tuple[int, int]:
    """Two brands on the shared console's database, ``brand`` with a brand admin ``username``, and
    ``other`` (whose rows must never show); returns their ids."""
    from huiyuan.tenancy import service as tenancy

    db = Database(database_url)
    try:
        with db.unit_of_work() as s:
            mine = tenancy.create_brand(
                s, actor=SYSTEM, code=brand, name="乐享百货", member_number_prefix="LX"
            )
            theirs = tenancy.create_brand(s, actor=SYSTEM, code=other, name="别家", member_number_prefix="BX")
            auth.create_user(
                s, actor=SYSTEM, username=username, password=password, role="brand_admin", brand_id=mine.id
            )
            return mine.id, theirs.id
    finally:
        db.dispose()


@contextmanager
def warehouse_at(path: Path) -> Iterator[None]:
    """The console (the shared one too) reads its warehouse from ``path`` until the block ends: the
    app reads the setting on each request, so a module's warehouse serves only that module's tests."""
    from huiyuan.settings import get_settings

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(get_settings(), "warehouse_path", str(path))
        yield

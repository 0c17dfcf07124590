"""A write that meets another transaction's lock (SQLite still locked after its busy timeout,
PostgreSQL's ``lock_timeout`` or a deadlock) is answered 503 ``database-busy`` with ``Retry-After``,
not 500: nothing of it was kept and every write is idempotent, so the client may simply retry."""

from __future__ import annotations

import sqlite3

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from huiyuan.kit.db import Database, DatabaseBusy, busy_error
from huiyuan.kit.scope import SYSTEM
from huiyuan.kit.web import install_error_handlers
from huiyuan.tenancy import service as tenancy


def _lock_conflict(db: Database) -> DBAPIError:
    """Provoke a real lock conflict on ``db`` and return the error the losing statement raised."""
    with db.unit_of_work() as s:
        brand_id = tenancy.create_brand(s, actor=SYSTEM, code="lk", name="LK").id
    if db.engine.dialect.name == "sqlite":
        holder = sqlite3.connect(db.engine.url.database or "", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another process's write transaction
        impatient = create_engine(db.engine.url, connect_args={"timeout": 0.05})
        try:
            with pytest.raises(DBAPIError) as caught, impatient.begin() as conn:
                conn.execute(text("UPDATE brands SET name = 'x' WHERE id = :id"), {"id": brand_id})
        finally:
            impatient.dispose()
            holder.execute("ROLLBACK")
            holder.close()
        return caught.value
    holder = db.engine.connect()
    try:
        holder.begin()
        holder.execute(text("SELECT id FROM brands WHERE id = :id FOR UPDATE"), {"id": brand_id})
        with pytest.raises(DBAPIError) as caught, db.engine.begin() as conn:
            conn.execute(text("SET LOCAL lock_timeout = '50ms'"))
            conn.execute(text("SELECT id FROM brands WHERE id = :id FOR UPDATE"), {"id": brand_id})
    finally:
        holder.rollback()
        holder.close()
    return caught.value


def test_a_lock_conflict_is_database_busy_with_retry_after(db: Database) -> None:
    exc = _lock_conflict(db)
    busy = busy_error(exc)
    assert isinstance(busy, DatabaseBusy)
    assert busy.status == 503 and busy.headers == {"Retry-After": "1"}

    app = FastAPI()
    install_error_handlers(app)

    @app.post("/write")
    def write() -> None:
        raise exc

    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.post("/write")
    assert r.status_code == 503
    assert r.headers["retry-after"] == "1"
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "database-busy"


def test_other_database_errors_stay_internal_errors(db: Database) -> None:
    with pytest.raises(DBAPIError) as caught, db.engine.connect() as conn:
        conn.execute(text("SELECT * FROM no_such_table"))
    assert busy_error(caught.value) is None
    assert busy_error(IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed"))) is None
    assert busy_error(RuntimeError("database is locked")) is None

    app = FastAPI()
    install_error_handlers(app)

    @app.get("/read")
    def read() -> None:
        raise caught.value

    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.get("/read")
    assert r.status_code == 500 and r.json()["code"] == "internal-error"

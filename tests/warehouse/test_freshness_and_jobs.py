"""Around the sync: the status endpoint and its tenancy, the scheduled job's skipping (a sync
already running, a slot already synced), a file of an older schema rebuilt, readers and the writer
sharing the file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest

from huiyuan.jobs.service import enqueue, get_run
from huiyuan.kit.clock import utcnow
from huiyuan.kit.db import Database
from huiyuan.kit.scope import system_for_brand
from huiyuan.settings import get_settings
from huiyuan.warehouse import connect, freshness, store
from huiyuan.warehouse import sync as wsync
from huiyuan.warehouse.jobs import KIND
from huiyuan.warehouse.schema import DATA_TABLES, SCHEMA_VERSION
from tests.conftest import World
from tests.factories import enroll, make_key


def _members(body: dict[str, Any]) -> int:
    return int(next(t["rows"] for t in body["tables"] if t["table"] == "dim_member"))


def test_status_counts_the_callers_rows(
    client: Any, world: World, db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alpha, beta = world.brands
    for headers in (alpha.headers, alpha.headers, beta.headers):
        enroll(client, headers)
    path = tmp_path / "status.duckdb"
    monkeypatch.setattr(get_settings(), "warehouse_path", str(path))
    assert client.get("/api/v1/warehouse/status", headers=alpha.headers).json()["tables"] == []
    wsync.sync(db, path, settle_seconds=0)

    mine = client.get("/api/v1/warehouse/status", headers=alpha.headers)
    assert mine.status_code == 200, mine.text
    assert [t["table"] for t in mine.json()["tables"]] == list(DATA_TABLES)
    members = next(t for t in mine.json()["tables"] if t["table"] == "dim_member")
    assert members["rows"] == 2 and members["synced_at"] is not None and members["cursor"]
    assert _members(client.get("/api/v1/warehouse/status", headers=beta.headers).json()) == 1
    assert _members(client.get("/api/v1/warehouse/status", headers=world.platform_headers).json()) == 3
    analyst = make_key(db, alpha.id, ["analytics:read"], name="analyst")
    assert (
        client.get("/api/v1/warehouse/status", headers={"Authorization": f"Bearer {analyst}"}).status_code
        == 200
    )
    clerk = make_key(db, alpha.id, ["members:read"], name="clerk")
    assert (
        client.get("/api/v1/warehouse/status", headers={"Authorization": f"Bearer {clerk}"}).status_code
        == 403
    )


def test_the_job_skips_a_running_sync_and_a_synced_slot(
    db: Database, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "job.duckdb"
    monkeypatch.setattr(get_settings(), "warehouse_path", str(path))
    actor = system_for_brand(world.brands[0].id)

    def run(params: dict[str, Any]) -> dict[str, Any]:
        with db.unit_of_work(actor.scope) as s:
            run_id = enqueue(s, actor=actor, kind=KIND, params={**params, "settle_seconds": 0}).id
        with db.unit_of_work(actor.scope, write=False) as s:
            done = get_run(s, run_id)
            assert done.status == "succeeded", done.error
            return dict(done.result or {})

    slot = utcnow().isoformat()
    with store.sync_lock(path):  # another process's sync, say
        assert run({"at": slot}) == {"skipped": "another warehouse sync is running"}
        with pytest.raises(store.SyncInProgress):
            wsync.sync(db, path)
    first = run({"at": slot})
    assert first["rows"] > 0 and first["copied"]["dim_store"] == 2
    # The other brands' runs of the same slot find it done; a later slot syncs again.
    assert run({"at": slot})["skipped"].startswith("synced at")
    assert run({"at": utcnow().isoformat()})["rows"] == 0


def test_a_file_of_an_older_schema_is_rebuilt(db: Database, world: World, tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE fact_orders (brand_id BIGINT, order_id BIGINT PRIMARY KEY)")
    con.execute("CREATE TABLE _sync_state (table_name VARCHAR PRIMARY KEY, cursor_ts TIMESTAMP)")
    con.close()
    report = wsync.sync(db, path, settle_seconds=0)
    assert report.rebuilt and report.copied["dim_store"] == 2
    con = duckdb.connect(str(path), read_only=True)
    version = con.execute("SELECT value FROM _warehouse_meta WHERE key = 'schema_version'").fetchone()
    columns = {c[0] for c in con.execute("DESCRIBE fact_orders").fetchall()}
    con.close()
    assert version == (str(SCHEMA_VERSION),) and {"person_key", "date_key", "amount"} <= columns
    assert wsync.sync(db, path, settle_seconds=0).rebuilt is False


def test_unknown_tables_are_refused(db: Database, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no warehouse table nope"):
        wsync.sync(db, tmp_path / "w.duckdb", tables=["nope"])


def test_readers_and_the_writer_share_the_file(db: Database, world: World, tmp_path: Path) -> None:
    path = tmp_path / "shared.duckdb"
    wsync.sync(db, path, settle_seconds=0)
    # In the process that is writing, readers join its instance instead of waiting.
    writer = store.open_writer(path)
    try:
        assert {r["table"]: r["rows"] for r in freshness(path)}["dim_store"] == 2
        wh = connect(path)
        assert wh.table("dim_store").count().execute() == 2
        wh.disconnect()
    finally:
        writer.close()
    # Another process writing: readers wait, then answer "busy" (the API's 503).
    hold = f"import duckdb, time; c = duckdb.connect({str(path)!r}); print('ok', flush=True); time.sleep(30)"
    holder = subprocess.Popen(
        [sys.executable, "-c", hold],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ok"
        with pytest.raises(store.WarehouseBusy):
            store.open_reader(path, wait=0.3)
    finally:
        holder.kill()
        holder.wait()
    assert {r["table"]: r["rows"] for r in freshness(path)}["dim_store"] == 2

"""The same rows as Ibis tables on DuckDB and on PostgreSQL (a schema of its own, dropped after),
so an analysis can be run on both and its results compared."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import ibis
import pyarrow as pa


@contextmanager
def both(tables: dict[str, pa.Table], pg_url: str) -> Iterator[dict[str, dict[str, Any]]]:
    """``{"duckdb": {name: table}, "postgres": {name: table}}`` for the given Arrow tables;
    ``pg_url`` is a test database (the ``pg_database`` fixture)."""
    duck = ibis.duckdb.connect()
    for name, rows in tables.items():
        duck.create_table(name, rows)
    url = pg_url.replace("postgresql+psycopg://", "postgresql://")
    pg = ibis.connect(url)
    schema = f"t_{uuid.uuid4().hex[:10]}"
    pg.raw_sql(f"CREATE SCHEMA {schema}").close()
    try:
        for name, rows in tables.items():
            pg.create_table(name, rows, database=schema)
        yield {
            "duckdb": {name: duck.table(name) for name in tables},
            "postgres": {name: pg.table(name, database=schema) for name in tables},
        }
    finally:
        pg.raw_sql(f"DROP SCHEMA {schema} CASCADE").close()
        pg.disconnect()
        duck.disconnect()

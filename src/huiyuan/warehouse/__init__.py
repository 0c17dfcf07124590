"""The analytics warehouse (B3): a DuckDB file in a star schema (``warehouse.schema``), filled from
the OLTP database by an incremental sync (``warehouse.sync``, the job ``warehouse.sync``).
Analyses read it through Ibis (``connect``) and never query OLTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from huiyuan.warehouse.store import retry_locked
from huiyuan.warehouse.sync import freshness


def connect(path: str | Path, read_only: bool = True, *, wait: float = 10.0) -> Any:
    """An Ibis DuckDB connection to the warehouse file (read-only unless asked). Waits up to
    ``wait`` seconds while a sync in another process holds the file; in the process that is
    syncing, it shares the writer's instance."""
    import duckdb
    import ibis

    def open_() -> Any:
        try:
            return ibis.duckdb.connect(str(path), read_only=read_only)
        except duckdb.ConnectionException as exc:
            if not read_only or "different configuration" not in str(exc):
                raise
            return ibis.duckdb.connect(str(path))

    return retry_locked(open_, wait)


__all__ = ["connect", "freshness"]

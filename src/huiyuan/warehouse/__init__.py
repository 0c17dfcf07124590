"""The analytics warehouse (B3): a DuckDB file in a star schema, filled from the OLTP database by
an incremental sync (``warehouse.sync``). Analyses read it through Ibis and never query OLTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def connect(path: str | Path, *, read_only: bool = True) -> Any:
    """An Ibis connection to the warehouse file (DuckDB)."""
    import ibis

    return ibis.duckdb.connect(str(path), read_only=read_only)

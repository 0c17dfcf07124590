"""Hand-made ``fact_events`` rows shared by the funnel and retention tests."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import ibis
import pyarrow as pa

T = datetime(2026, 6, 1, 2, 0)  # 10:00 in Shanghai, 2026-06-01 (a Monday)


def at(minutes: float = 0, days: int = 0) -> datetime:
    return T + timedelta(days=days, minutes=minutes)


def table(rows: list[tuple[str, str, datetime, dict[str, Any]]]) -> pa.Table:
    """(person, event, UTC time, properties) → fact_events columns (brand 1; date_key in +08:00)."""
    keys = [int((ts + timedelta(hours=8)).strftime("%Y%m%d")) for _, _, ts, _ in rows]
    return pa.table(
        {
            "brand_id": pa.array([1] * len(rows), pa.int64()),
            "event_id": pa.array(range(1, len(rows) + 1), pa.int64()),
            "person_key": pa.array([r[0] for r in rows]),
            "event": pa.array([r[1] for r in rows]),
            "ts": pa.array([r[2] for r in rows], pa.timestamp("us")),
            "date_key": pa.array(keys, pa.int32()),
            "properties": pa.array([json.dumps(r[3]) for r in rows]),
        }
    )


def with_json(t: Any) -> Any:
    """The properties column as JSON, as the warehouse stores it."""
    return t.mutate(properties=t.properties.cast("json"))


__all__ = ["T", "at", "ibis", "table", "with_json"]

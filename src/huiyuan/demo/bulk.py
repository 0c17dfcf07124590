"""Bulk writing for the demo backfill: one SQLAlchemy Core ``insert()`` per table, compiled once for the
connection's dialect and executed as a DBAPI executemany in chunks, with ids allocated up front so
related rows can point at each other without a round trip.

Why not ``conn.execute(insert(table), rows)``: its per-row parameter processing costs ~25 µs, more than
generating the row, and a million orders mean ~5 million rows. Here values are converted to what the
driver stores by a converter per column, the same forms the column types produce (integer fen for
``Money``, ``YYYY-MM-DD HH:MM:SS.ffffff`` UTC text for datetimes on SQLite, JSON text). Must not hold
business rules: callers compute rows that keep the services' invariants.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from operator import itemgetter
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    FetchedValue,
    MetaData,
    Table,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.engine import Connection

from huiyuan.kit.db import Base
from huiyuan.kit.types import Money, UTCDateTime

_storage_meta = MetaData()
Converter = Callable[[Any], Any]


def _storage_view(table: Table) -> Table:
    if table.name in _storage_meta.tables:
        return _storage_meta.tables[table.name]
    columns = [
        # autoincrement=False: rows without an id get the database's own default instead of ids that
        # SQLAlchemy would fetch from the sequence one by one.
        Column(
            c.name,
            BigInteger() if isinstance(c.type, Money) else c.type,
            primary_key=c.primary_key,
            autoincrement=False,
            server_default=FetchedValue() if c.primary_key else None,
        )
        for c in table.columns
    ]
    return Table(table.name, _storage_meta, *columns, implicit_returning=False)


def _sqlite_datetime(v: datetime | None) -> str | None:
    return None if v is None else v.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _sqlite_date(v: date | None) -> str | None:
    return None if v is None else v.isoformat()


def _sqlite_bool(v: bool | None) -> int | None:
    return None if v is None else int(v)


def _json(v: Any) -> str | None:
    if v is None:
        return None
    return "[]" if v == [] else ("{}" if v == {} else json.dumps(v))


def _converter(column: Column[Any], sqlite: bool) -> Converter | None:
    t = column.type
    if isinstance(t, JSON) or isinstance(getattr(t, "impl", None), JSON):
        return _json
    if not sqlite:
        return None
    if isinstance(t, UTCDateTime):
        return _sqlite_datetime
    if isinstance(t, Date):
        return _sqlite_date
    if isinstance(t, Boolean):
        return _sqlite_bool
    return None


class BulkWriter:
    """Chunked inserts on one connection; ``commit`` ends the current transaction."""

    def __init__(self, conn: Connection, *, chunk: int = 10_000) -> None:
        self.conn = conn
        self.chunk = chunk
        self.is_sqlite = conn.dialect.name == "sqlite"
        self._explicit_ids: set[str] = set()
        self._plans: dict[tuple[str, tuple[str, ...]], tuple[str, list[tuple[str, Converter | None]]]] = {}
        if self.is_sqlite:
            # A bigger page cache keeps index pages of the large tables in memory during the backfill.
            conn.exec_driver_sql("PRAGMA cache_size=-131072")
            conn.exec_driver_sql("PRAGMA temp_store=MEMORY")

    def next_id(self, model: type[Base]) -> int:
        """The first free id of ``model``'s table; the caller numbers its rows from here."""
        table = cast(Table, model.__table__)
        self._explicit_ids.add(table.name)
        return int(self.conn.scalar(select(func.coalesce(func.max(table.c.id), 0))) or 0) + 1

    def insert(self, model: type[Base], rows: Sequence[dict[str, Any]]) -> None:
        """Insert ``rows`` (all with the same keys) in chunks of ``self.chunk``."""
        if not rows:
            return
        sql, convert = self._plan(cast(Table, model.__table__), tuple(rows[0]))
        names = [k for k, _f in convert]
        getter = itemgetter(*names) if len(names) > 1 else (lambda r: (r[names[0]],))
        converted = [(i, f) for i, (_k, f) in enumerate(convert) if f is not None]
        for start in range(0, len(rows), self.chunk):
            chunk = rows[start : start + self.chunk]
            params: list[Any] = [getter(r) for r in chunk]
            if converted:
                rows_out = []
                for p in params:
                    values = list(p)
                    for i, f in converted:
                        values[i] = f(values[i])
                    rows_out.append(tuple(values))
                params = rows_out
            if not self.is_sqlite:
                params = [dict(zip(names, p, strict=True)) for p in params]
            self.conn.exec_driver_sql(sql, params)

    def _plan(self, table: Table, keys: tuple[str, ...]) -> tuple[str, list[tuple[str, Converter | None]]]:
        """The compiled INSERT for these columns and, in parameter order, each column's converter."""
        plan = self._plans.get((table.name, keys))
        if plan is None:
            view = _storage_view(table)
            compiled = insert(view).compile(dialect=self.conn.dialect, column_keys=list(keys))
            order = list(compiled.positiontup or []) if compiled.positional else list(keys)
            plan = (str(compiled), [(k, _converter(view.c[k], self.is_sqlite)) for k in order])
            self._plans[(table.name, keys)] = plan
        return plan

    def commit(self) -> None:
        self.conn.commit()

    def sync_sequences(self) -> None:
        """PostgreSQL: move id sequences past the ids we wrote, so later inserts do not collide."""
        if self.is_sqlite:
            return
        for name in sorted(self._explicit_ids):
            self.conn.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                    f"(SELECT COALESCE(MAX(id), 0) + 1 FROM {name}), false)"
                )
            )
        self.conn.commit()

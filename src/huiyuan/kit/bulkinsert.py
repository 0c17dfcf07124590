"""Inserting many rows and learning their ids, fast on both databases.

PostgreSQL: ``INSERT … RETURNING id`` in parameter order (SQLAlchemy's "insertmanyvalues" batches it).
SQLite cannot promise the order of ``RETURNING`` rows of a multi-row insert, so SQLAlchemy falls back
to one statement per row there (measured: ~1,000 statements for 1,000 rows). Writers on SQLite are
serialised (``BEGIN IMMEDIATE`` behind the process lock, ``kit.db``), so within a write transaction
the ids after ``MAX(id)`` are ours to hand out: the rows get explicit ids and go in as one
executemany.

On SQLite the executemany goes to the driver directly (``executemany_rows``): building bind
parameters row by row is most of SQLAlchemy's cost for wide rows, and the set-based paths repeat
the same few values (one timestamp for a whole chunk). Each column's bind processor is still
applied — once per distinct value — so the stored values are exactly what SQLAlchemy would write.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, func, insert, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session


def _processors(session: Session, table: Table, columns: Sequence[str]) -> list[Any]:
    dialect = session.get_bind().dialect
    return [table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in columns]


def _column(rows: Sequence[dict[str, Any]], name: str, proc: Any) -> list[Any]:
    """The values of column ``name`` as the driver takes them: ``proc`` applied once per distinct
    value (every time for unhashable ones, JSON)."""
    values = [row[name] for row in rows]
    if proc is None:
        return values
    cache: dict[Any, Any] = {}
    out: list[Any] = []
    for v in values:
        if v is None:
            out.append(v)
            continue
        try:
            out.append(cache[v])
        except KeyError:
            out.append(cache.setdefault(v, proc(v)))
        except TypeError:  # unhashable (JSON): process every time
            out.append(proc(v))
    return out


def executemany_rows(
    session: Session, table: Table, rows: Sequence[dict[str, Any]], *, skip_conflicts_on: Sequence[str] = ()
) -> None:
    """``INSERT`` the rows (all with the same keys) in one driver-level executemany on SQLite; through
    SQLAlchemy elsewhere. ``skip_conflicts_on``: the columns of a unique index; a row that conflicts
    on it is left out (``ON CONFLICT (…) DO NOTHING``)."""
    if not rows:
        return
    if session.get_bind().dialect.name != "sqlite":
        stmt = (
            postgresql.insert(table).on_conflict_do_nothing(index_elements=list(skip_conflicts_on))
            if skip_conflicts_on
            else insert(table)
        )
        session.execute(stmt, list(rows))
        return
    columns = list(rows[0])
    processors = _processors(session, table, columns)
    quoted = ", ".join(f'"{c}"' for c in columns)
    sql = f'INSERT INTO "{table.name}" ({quoted}) VALUES ({", ".join("?" for _ in columns)})'
    if skip_conflicts_on:
        unique = ", ".join(f'"{c}"' for c in skip_conflicts_on)
        sql += f" ON CONFLICT ({unique}) DO NOTHING"
    # Column by column: a column without a bind processor is taken as it is, without a call per value.
    data = list(zip(*(_column(rows, c, p) for c, p in zip(columns, processors, strict=True)), strict=True))
    session.connection().exec_driver_sql(sql, data)


def add_to_columns(
    session: Session, table: Table, deltas: Sequence[tuple[int, dict[str, int]]], *, also: dict[str, Any]
) -> None:
    """``UPDATE table SET col = col + delta … , <also> WHERE id = ?`` for each ``(id, {col: delta})``
    (every row with the same columns), as one executemany."""
    if not deltas:
        return
    columns = list(deltas[0][1])
    fixed = list(also)
    processors = _processors(session, table, fixed)
    fixed_values = [p(also[c]) if p is not None else also[c] for c, p in zip(fixed, processors, strict=True)]
    mark = "?" if session.get_bind().dialect.name == "sqlite" else "%s"  # the drivers' paramstyles
    sets = [f'"{c}" = "{c}" + {mark}' for c in columns] + [f'"{c}" = {mark}' for c in fixed]
    sql = f'UPDATE "{table.name}" SET {", ".join(sets)} WHERE id = {mark}'
    data = [(*(d[c] for c in columns), *fixed_values, row_id) for row_id, d in deltas]
    session.connection().exec_driver_sql(sql, data)


def insert_returning_ids(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert ``rows`` into ``table`` (in the session's write transaction); their ids, in order."""
    if not rows:
        return []
    if session.get_bind().dialect.name == "sqlite":
        start = int(session.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar_one()) + 1
        ids = list(range(start, start + len(rows)))
        executemany_rows(session, table, [{**row, "id": i} for row, i in zip(rows, ids, strict=True)])
        return ids
    return list(session.scalars(insert(table).returning(table.c.id, sort_by_parameter_order=True), rows))

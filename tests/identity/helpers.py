"""Shared helpers of the OneID tests: a brand, a graph writer in a unit of work, and snapshots of
the graph to compare."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import select

from huiyuan.identity import config
from huiyuan.identity.linking import GraphWriter, Ident
from huiyuan.identity.models import IdentifierNode, OneIdChange
from huiyuan.kit.db import Database
from huiyuan.kit.scope import system_for_brand


@contextmanager
def writer(db: Database, brand_id: int, actor: str = "test") -> Iterator[GraphWriter]:
    with db.unit_of_work(system_for_brand(brand_id).scope) as session:
        yield config.writer(session, brand_id, actor)


def ident(spec: str) -> Ident:
    """``"phone:13800138000"`` → ``Ident("phone", "13800138000")``."""
    type_, _, value = spec.partition(":")
    return Ident(type_, value)


def link(db: Database, brand_id: int, a: str, b: str, source: str = "identify") -> str:
    with writer(db, brand_id) as w:
        return w.link(ident(a), ident(b), source=source, rule="test").status


def oneid_of(db: Database, brand_id: int, spec: str) -> int | None:
    with writer(db, brand_id) as w:
        key = w.key(ident(spec))
        assert not isinstance(key, str), key
        node = w.find(key)
        return node.oneid if node else None


def assignment(db: Database, brand_id: int) -> dict[int, int]:
    """node id → OneID of every identifier of the brand."""
    with db.unit_of_work(system_for_brand(brand_id).scope, write=False) as s:
        rows = s.execute(
            select(IdentifierNode.id, IdentifierNode.oneid).where(IdentifierNode.brand_id == brand_id)
        )
        return {node_id: oneid for node_id, oneid in rows}


def partition(db: Database, brand_id: int) -> set[frozenset[str]]:
    """The groups of identifiers (as ``type:masked``-free keys: type and blind index)."""
    with db.unit_of_work(system_for_brand(brand_id).scope, write=False) as s:
        groups: dict[int, set[str]] = {}
        for t, b, o in s.execute(
            select(IdentifierNode.type, IdentifierNode.value_bidx, IdentifierNode.oneid).where(
                IdentifierNode.brand_id == brand_id
            )
        ):
            groups.setdefault(o, set()).add(f"{t}:{b}")
        return {frozenset(g) for g in groups.values()}


def changes(db: Database, brand_id: int) -> list[tuple[str, int, list[int], str]]:
    with db.unit_of_work(system_for_brand(brand_id).scope, write=False) as s:
        rows = s.scalars(select(OneIdChange).where(OneIdChange.brand_id == brand_id).order_by(OneIdChange.id))
        return [(c.kind, c.oneid, list(c.others), c.cause) for c in rows]

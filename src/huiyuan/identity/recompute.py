"""Batch recompute of a brand's OneIDs from every active link (connected components), keeping
OneIDs stable (``graph.assign``) and writing only what changed.

Real-time linking keeps the graph consistent link by link, so on a healthy graph a recompute
changes nothing; it repairs what bypassed real-time linking (a restored backup, a bulk load, a bug)
and flags OneIDs that hold more identifiers of a type than a limit allows now (``over-limit``
conflicts, after a limit was lowered). Runs in one write transaction holding the brand's graph
lock, so real-time linking waits for it rather than interleaving.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from huiyuan.identity import config, graph
from huiyuan.identity.linking import GraphWriter
from huiyuan.identity.models import IdentifierNode, IdentityConflict, OneIdPerson
from huiyuan.kit.bulkinsert import insert_returning_ids
from huiyuan.kit.clock import utcnow

Progress = Callable[[int, int | None, str | None], None]
UPDATE_CHUNK = 5_000


def _mint(session: Session, brand_id: int) -> Callable[[int], graph.I64]:
    def mint(k: int) -> graph.I64:
        now = utcnow()
        rows = [{"brand_id": brand_id, "status": "active", "created_at": now, "updated_at": now}] * k
        return np.asarray(insert_returning_ids(session, OneIdPerson.__table__, rows), dtype=np.int64)  # type: ignore[arg-type]

    return mint


def recompute(
    session: Session, *, brand_id: int, actor: str, progress: Progress | None = None
) -> dict[str, Any]:
    """Recompute every OneID of ``brand_id`` from the active links; returns counts."""
    report = progress or (lambda done, total, message: None)
    writer = config.writer(session, brand_id, actor)
    writer.lock()
    repo = writer.repo
    nodes = repo.all_nodes(brand_id)
    report(0, 4, f"{len(nodes)} identifiers loaded")
    if not nodes:
        return {
            "identifiers": 0,
            "links": 0,
            "oneids": 0,
            "changed": 0,
            "merges": 0,
            "splits": 0,
            "over_limit": 0,
        }
    ids = np.fromiter((n[0] for n in nodes), dtype=np.int64, count=len(nodes))
    current = np.fromiter((n[1] for n in nodes), dtype=np.int64, count=len(nodes))
    first = np.fromiter((n[2] for n in nodes), dtype=np.int64, count=len(nodes))
    edges = repo.active_edges(brand_id)
    left = np.searchsorted(ids, np.fromiter((e[0] for e in edges), dtype=np.int64, count=len(edges)))
    right = np.searchsorted(ids, np.fromiter((e[1] for e in edges), dtype=np.int64, count=len(edges)))
    report(1, 4, f"{len(edges)} links loaded")

    count, labels = graph.components(left, right, len(ids))
    active = np.fromiter(
        session.scalars(
            select(OneIdPerson.id).where(OneIdPerson.brand_id == brand_id, OneIdPerson.status == "active")
        ),
        dtype=np.int64,
    )
    result = graph.assign(labels, count, current, first, _mint(session, brand_id), active=active)
    report(2, 4, f"{count} OneIDs computed")

    changed = np.flatnonzero(result.oneid != current)
    _write_nodes(session, ids[changed], result.oneid[changed])
    _write_persons(writer, result)
    for kept, absorbed in result.merges:
        writer.record_change("merge", kept, absorbed, cause="recompute", link_id=None, reason=None)
    for split, parts in result.splits:
        writer.record_change("split", split, parts, cause="recompute", link_id=None, reason=None)
    report(3, 4, f"{len(changed)} identifiers moved")

    flagged = _flag_over_limit(writer, nodes, labels, count, result.oneid)
    report(4, 4, "done")
    return {
        "identifiers": len(ids),
        "links": len(edges),
        "oneids": count,
        "changed": len(changed),
        "merges": len(result.merges),
        "splits": len(result.splits),
        "minted": len(result.minted),
        "revived": len(result.revived),
        "over_limit": flagged,
    }


def _write_nodes(session: Session, node_ids: graph.I64, oneids: graph.I64) -> None:
    table = IdentifierNode.__table__
    stmt = (
        update(table)  # type: ignore[arg-type]
        .where(table.c.id == bindparam("node_id"))  # type: ignore[attr-defined]
        .values(oneid=bindparam("new_oneid"), updated_at=bindparam("at"))
    )
    now = utcnow()
    pairs = list(zip(node_ids.tolist(), oneids.tolist(), strict=True))
    for start in range(0, len(pairs), UPDATE_CHUNK):
        chunk = pairs[start : start + UPDATE_CHUNK]
        session.connection().execute(stmt, [{"node_id": n, "new_oneid": o, "at": now} for n, o in chunk])
    session.expire_all()


def _write_persons(writer: GraphWriter, result: graph.Assignment) -> None:
    now = utcnow()
    persons = writer.repo.persons([*result.revived.tolist(), *result.retired])
    for oneid in result.revived.tolist():
        persons[oneid].status, persons[oneid].merged_into, persons[oneid].updated_at = "active", None, now
    for kept, absorbed in result.merges:
        for gone in absorbed:
            persons[gone].status, persons[gone].merged_into, persons[gone].updated_at = "retired", kept, now
    writer.session.flush()


def _flag_over_limit(
    writer: GraphWriter, nodes: list[Any], labels: graph.I64, count: int, oneids: graph.I64
) -> int:
    codes = sorted({n[3] for n in nodes})
    code_of = {c: i for i, c in enumerate(codes)}
    types = np.fromiter((code_of[n[3]] for n in nodes), dtype=np.int64, count=len(nodes))
    limits = np.array(
        [writer.book.limit(c) if writer.book.limit(c) is not None else -1 for c in codes], dtype=np.int64
    )
    bad = graph.over_limit(labels, count, types, limits)
    if not len(bad):
        return 0
    first_node = np.full(count, -1, dtype=np.int64)
    first_node[labels[::-1]] = np.arange(len(labels) - 1, -1, -1)
    already = writer.repo.open_over_limit(writer.brand_id)
    flagged = 0
    for label in bad.tolist():
        oneid = int(oneids[first_node[label]])
        if oneid in already:
            continue
        members = labels == label
        held = {c: int(np.count_nonzero(types[members] == i)) for c, i in code_of.items()}
        over = {c: n for c, n in held.items() if (lim := writer.book.limit(c)) is not None and n > lim}
        writer.session.add(
            IdentityConflict(
                brand_id=writer.brand_id,
                link_id=None,
                reason="over-limit",
                detail={"holds": over, "limits": {c: writer.book.limit(c) for c in over}},
                oneids=[oneid],
                status="open",
                created_at=utcnow(),
            )
        )
        flagged += 1
    writer.session.flush()
    return flagged

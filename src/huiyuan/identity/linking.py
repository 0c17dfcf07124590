"""Real-time linking: identifiers become nodes, assertions become links, components merge and split.
Used by every ingestion path (member records, orders, identify/alias calls, CSV mappings, manual
links, probabilistic matches) inside the caller's transaction; never commits.

Guards, in order, for a link between two identifiers of different OneIDs:

* junk values never become nodes (``rules.TypeBook.junk_reason``);
* a pair unlinked by hand is not linked again by automatic sources (``blocked``);
* two OneIDs that each hold a member number are never merged (``member-clash``);
* a merge that would give one person more identifiers of a type than its limit is refused
  (``limit-exceeded``).

A refused link is kept with status ``refused`` and an open ``IdentityConflict``; nothing merges.
A merge keeps the older (smaller) OneID and retires the other; removing a link splits the component
if nothing else holds it together, the parts getting their OneIDs from ``graph.assign`` (the part
with the oldest identifier keeps the OneID). Every merge and split is a row of ``oneid_changes``
and an outbox event (``oneid.merged`` / ``oneid.split``). Writers of one brand queue on an advisory
lock (PostgreSQL; SQLite writers are serialised already).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import numpy as np
from sqlalchemy.orm import Session

from huiyuan.identity import graph
from huiyuan.identity.models import (
    IdentifierNode,
    IdentityConflict,
    IdentityLink,
    Observation,
    OneIdChange,
    OneIdPerson,
)
from huiyuan.identity.repository import IdentityGraphRepository
from huiyuan.identity.rules import TypeBook, blind_index, display
from huiyuan.kit import pii
from huiyuan.kit.clock import utcnow
from huiyuan.kit.db import advisory_lock
from huiyuan.outbox.service import emit

PII_ATTRIBUTES = frozenset({"phone", "email", "address", "name"})
Outcome = Literal["linked", "merged", "exists", "conflict", "blocked", "junk", "same"]


@dataclass(frozen=True)
class Ident:
    """An identifier as a source saw it: a raw value, or only its blind index (orders)."""

    type: str
    value: str | None = None
    bidx: str | None = None
    masked: str | None = None
    value_enc: str | None = None  # a Fernet token of the normalised value, when copied from members


@dataclass
class LinkResult:
    status: Outcome
    oneid: int | None = None
    link_id: int | None = None
    conflict_id: int | None = None
    reason: str | None = None


@dataclass
class _Key:
    type: str
    bidx: str
    value_enc: str | None
    masked: str


@dataclass
class GraphWriter:
    """Graph operations for one brand inside one transaction."""

    session: Session
    brand_id: int
    book: TypeBook
    actor: str
    repo: IdentityGraphRepository = field(init=False)
    _locked: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.repo = IdentityGraphRepository(self.session)

    def lock(self) -> None:
        if not self._locked:
            advisory_lock(self.session, f"oneid:{self.brand_id}")
            self._locked = True

    # -- identifiers -------------------------------------------------------------------------------

    def key(self, ident: Ident) -> _Key | str:
        """The node key of an identifier, or why it is refused (junk, unknown type)."""
        if self.book.get(ident.type) is None:
            return "unknown-type"
        if ident.value is None:
            if not ident.bidx:
                return "blocked-value"
            masked = ident.masked or "****"
            if ident.value_enc is not None:
                masked = display(self.book, ident.type, pii.decrypt(ident.value_enc), show_pii=False)
            return _Key(ident.type, ident.bidx, ident.value_enc, masked[:80])
        normalised, junk = self.book.check(ident.type, ident.value)
        if junk is not None:
            return junk
        return _Key(
            ident.type,
            blind_index(ident.type, normalised),
            ident.value_enc or pii.encrypt(normalised),
            display(self.book, ident.type, normalised, show_pii=False)[:80],
        )

    def find(self, key: _Key) -> IdentifierNode | None:
        return self.repo.node(self.brand_id, key.type, key.bidx)

    def _mint(self) -> OneIdPerson:
        now = utcnow()
        person = OneIdPerson(brand_id=self.brand_id, status="active", created_at=now, updated_at=now)
        self.session.add(person)
        self.session.flush()
        return person

    def _create(self, key: _Key, oneid: int, source: str) -> IdentifierNode:
        now = utcnow()
        node = IdentifierNode(
            brand_id=self.brand_id,
            type=key.type,
            value_bidx=key.bidx,
            value_enc=key.value_enc,
            masked=key.masked,
            oneid=oneid,
            first_oneid=oneid,
            source=source,
            first_seen_at=now,
            last_seen_at=now,
            updated_at=now,
        )
        self.session.add(node)
        self.session.flush()
        return node

    def ensure(self, ident: Ident, *, source: str) -> IdentifierNode | None:
        """The node of an identifier, created with a OneID of its own if new; None for junk."""
        key = self.key(ident)
        if isinstance(key, str):
            return None
        self.lock()
        node = self.find(key)
        if node is None:
            node = self._create(key, self._mint().id, source)
        else:
            self._seen(node, key)
        return node

    def _seen(self, node: IdentifierNode, key: _Key) -> None:
        node.last_seen_at = utcnow()
        if node.value_enc is None and key.value_enc is not None:
            node.value_enc = key.value_enc
            node.masked = key.masked

    # -- linking -----------------------------------------------------------------------------------

    def link(
        self, a: Ident, b: Ident, *, source: str, rule: str, confidence: float = 1.0, force: bool = False
    ) -> LinkResult:
        """Assert that two identifiers belong to one person (see the module docstring)."""
        ka, kb = self.key(a), self.key(b)
        if isinstance(ka, str) or isinstance(kb, str):
            return LinkResult("junk", reason=ka if isinstance(ka, str) else str(kb))
        if (ka.type, ka.bidx) == (kb.type, kb.bidx):
            node = self.ensure(a, source=source)
            return LinkResult("same", oneid=node.oneid if node else None)
        self.lock()
        na, nb = self.find(ka), self.find(kb)
        if na is not None:
            self._seen(na, ka)
        if nb is not None:
            self._seen(nb, kb)
        if na is None and nb is None:
            clash = self._refusal({ka.type: 1}, {kb.type: 1}) if not force else None
            if clash is None:
                oneid = self._mint().id
                na, nb = self._create(ka, oneid, source), self._create(kb, oneid, source)
                link = self._new_link(na, nb, source, rule, confidence, "active")
                return LinkResult("linked", oneid=oneid, link_id=link.id)
            na = self._create(ka, self._mint().id, source)
            nb = self._create(kb, self._mint().id, source)
            return self._refuse(na, nb, source, rule, confidence, clash)
        if na is None or nb is None:
            known = na if na is not None else nb
            assert known is not None
            new_key = ka if na is None else kb
            clash = (
                self._refusal(self.repo.type_counts(known.oneid), {new_key.type: 1}) if not force else None
            )
            if clash is None:
                fresh = self._create(new_key, known.oneid, source)
                link = self._new_link(known, fresh, source, rule, confidence, "active")
                return LinkResult("linked", oneid=known.oneid, link_id=link.id)
            fresh = self._create(new_key, self._mint().id, source)
            return self._refuse(known, fresh, source, rule, confidence, clash)
        return self._link_nodes(na, nb, source=source, rule=rule, confidence=confidence, force=force)

    def link_nodes(
        self,
        na: IdentifierNode,
        nb: IdentifierNode,
        *,
        source: str,
        rule: str,
        confidence: float = 1.0,
        force: bool = False,
    ) -> LinkResult:
        """``link`` for two existing nodes."""
        self.lock()
        return self._link_nodes(na, nb, source=source, rule=rule, confidence=confidence, force=force)

    def _link_nodes(
        self,
        na: IdentifierNode,
        nb: IdentifierNode,
        *,
        source: str,
        rule: str,
        confidence: float,
        force: bool,
    ) -> LinkResult:
        left, right = (na, nb) if na.id < nb.id else (nb, na)
        pair = self.repo.pair_links(left.id, right.id)
        existing = next((link for link in pair if link.source == source), None)
        if any(link.blocked for link in pair) and not force:
            return LinkResult("blocked", oneid=left.oneid, link_id=existing.id if existing else None)
        if existing is not None and existing.status == "active":
            existing.last_seen_at = utcnow()
            existing.confidence = max(existing.confidence, confidence)
            return LinkResult("exists", oneid=left.oneid, link_id=existing.id)
        if existing is not None and existing.status == "refused" and not force:
            conflict = self.repo.open_conflict_for_link(existing.id)
            if conflict is not None:
                conflict.occurrences += 1
            existing.last_seen_at = utcnow()
            return LinkResult(
                "conflict",
                oneid=left.oneid,
                link_id=existing.id,
                conflict_id=conflict.id if conflict else None,
                reason=conflict.reason if conflict else "refused",
            )
        if left.oneid == right.oneid:
            link = self._activate(existing, left, right, source, rule, confidence)
            return LinkResult("linked", oneid=left.oneid, link_id=link.id)
        if not force:
            clash = self._refusal(self.repo.type_counts(left.oneid), self.repo.type_counts(right.oneid))
            if clash is not None:
                return self._refuse(left, right, source, rule, confidence, clash, existing=existing)
        link = self._activate(existing, left, right, source, rule, confidence)
        kept = self._merge(left.oneid, right.oneid, cause="link", link_id=link.id)
        return LinkResult("merged", oneid=kept, link_id=link.id)

    def _refusal(self, counts_a: Mapping[str, int], counts_b: Mapping[str, int]) -> dict[str, Any] | None:
        """Why two groups of identifiers may not become one person, or None."""
        if counts_a.get("member_number", 0) and counts_b.get("member_number", 0):
            return {"reason": "member-clash", "type": "member_number"}
        for type_ in sorted(set(counts_a) | set(counts_b), key=self.book.priority):
            limit = self.book.limit(type_)
            total = counts_a.get(type_, 0) + counts_b.get(type_, 0)
            if limit is not None and total > limit:
                return {"reason": "limit-exceeded", "type": type_, "limit": limit, "would_hold": total}
        return None

    def _new_link(
        self, a: IdentifierNode, b: IdentifierNode, source: str, rule: str, confidence: float, status: str
    ) -> IdentityLink:
        left, right = (a, b) if a.id < b.id else (b, a)
        now = utcnow()
        link = IdentityLink(
            brand_id=self.brand_id,
            left_id=left.id,
            right_id=right.id,
            source=source,
            rule=rule[:60],
            confidence=float(confidence),
            status=status,
            created_at=now,
            created_by=self.actor[:200],
            last_seen_at=now,
        )
        self.session.add(link)
        self.session.flush()
        return link

    def _activate(
        self,
        existing: IdentityLink | None,
        left: IdentifierNode,
        right: IdentifierNode,
        source: str,
        rule: str,
        confidence: float,
    ) -> IdentityLink:
        if existing is None:
            return self._new_link(left, right, source, rule, confidence, "active")
        existing.status = "active"
        existing.blocked = False
        existing.removed_at = existing.removed_by = existing.removed_reason = None
        existing.rule = rule[:60]
        existing.confidence = float(confidence)
        existing.last_seen_at = utcnow()
        return existing

    def _refuse(
        self,
        a: IdentifierNode,
        b: IdentifierNode,
        source: str,
        rule: str,
        confidence: float,
        clash: dict[str, Any],
        *,
        existing: IdentityLink | None = None,
    ) -> LinkResult:
        if existing is None:
            link = self._new_link(a, b, source, rule, confidence, "refused")
        else:
            link = existing
            link.status = "refused"
            link.last_seen_at = utcnow()
        reason = str(clash.pop("reason"))
        conflict = IdentityConflict(
            brand_id=self.brand_id,
            link_id=link.id,
            reason=reason,
            detail={**clash, "source": source, "rule": rule},
            oneids=sorted({a.oneid, b.oneid}),
            status="open",
            created_at=utcnow(),
        )
        self.session.add(conflict)
        self.session.flush()
        return LinkResult("conflict", oneid=a.oneid, link_id=link.id, conflict_id=conflict.id, reason=reason)

    # -- merge and split ---------------------------------------------------------------------------

    def _merge(self, x: int, y: int, *, cause: str, link_id: int | None, reason: str | None = None) -> int:
        kept, gone = min(x, y), max(x, y)
        self.repo.move_nodes(gone, kept)
        person = self.repo.person(gone)
        if person is not None:
            person.status = "retired"
            person.merged_into = kept
            person.updated_at = utcnow()
        self.record_change("merge", kept, [gone], cause=cause, link_id=link_id, reason=reason)
        return kept

    def record_change(
        self, kind: str, oneid: int, others: list[int], *, cause: str, link_id: int | None, reason: str | None
    ) -> None:
        self.session.add(
            OneIdChange(
                brand_id=self.brand_id,
                kind=kind,
                oneid=oneid,
                others=others,
                cause=cause,
                link_id=link_id,
                actor=self.actor[:200],
                reason=reason[:300] if reason else None,
                at=utcnow(),
            )
        )
        emit(
            self.session,
            type="oneid.merged" if kind == "merge" else "oneid.split",
            brand_id=self.brand_id,
            aggregate_type="oneid",
            aggregate_id=oneid,
            payload={"oneid": oneid, "merged" if kind == "merge" else "parts": others, "cause": cause},
        )

    def remove_links(
        self, links: Iterable[IdentityLink], *, reason: str, block: bool, cause: str = "unlink"
    ) -> list[tuple[int, list[int]]]:
        """Remove links and split what no longer holds together; the splits made."""
        self.lock()
        touched: set[int] = set()
        first_link: int | None = None
        now = utcnow()
        for link in links:
            if link.status == "removed" and (link.blocked or not block):
                continue
            first_link = first_link or link.id
            if link.status == "active":
                node = self.repo.node_by_id(link.left_id)
                if node is not None:
                    touched.add(node.oneid)
            link.status = "removed"
            link.blocked = link.blocked or block
            link.removed_at = now
            link.removed_by = self.actor[:200]
            link.removed_reason = reason[:300]
        self.session.flush()
        splits: list[tuple[int, list[int]]] = []
        for oneid in sorted(touched):
            splits.extend(self.resplit(oneid, cause=cause, link_id=first_link, reason=reason))
        return splits

    def resplit(
        self, oneid: int, *, cause: str, link_id: int | None = None, reason: str | None = None
    ) -> list[tuple[int, list[int]]]:
        """Split ``oneid`` into its connected parts if its active links no longer join it."""
        nodes = self.repo.nodes_of([oneid])
        if len(nodes) < 2:
            return []
        index = {n.id: i for i, n in enumerate(nodes)}  # nodes are in id (age) order
        edges = [
            (index[link.left_id], index[link.right_id])
            for link in self.repo.links_touching(list(index))
            if link.left_id in index and link.right_id in index
        ]
        left = np.array([e[0] for e in edges], dtype=np.int64)
        right = np.array([e[1] for e in edges], dtype=np.int64)
        count, labels = graph.components(left, right, len(nodes))
        if count == 1:
            return []
        current = np.full(len(nodes), oneid, dtype=np.int64)
        first = np.array([n.first_oneid for n in nodes], dtype=np.int64)
        active = np.array([oneid, *self.repo.active_ids(int(f) for f in set(first.tolist()))], dtype=np.int64)
        result = graph.assign(labels, count, current, first, self._mint_many, active=active)
        self.apply(nodes, result, cause=cause, link_id=link_id, reason=reason)
        return result.splits

    def _mint_many(self, k: int) -> graph.I64:
        return np.array([self._mint().id for _ in range(k)], dtype=np.int64)

    def apply(
        self,
        nodes: list[IdentifierNode],
        result: graph.Assignment,
        *,
        cause: str,
        link_id: int | None = None,
        reason: str | None = None,
    ) -> None:
        """Write an assignment computed for ``nodes``: moved nodes, revived and retired OneIDs, history."""
        now = utcnow()
        for node, new in zip(nodes, result.oneid.tolist(), strict=True):
            if node.oneid != new:
                node.oneid = int(new)
                node.updated_at = now
        persons = self.repo.persons([*result.revived.tolist(), *result.retired])
        for oneid in result.revived.tolist():
            persons[oneid].status = "active"
            persons[oneid].merged_into = None
            persons[oneid].updated_at = now
        for kept, absorbed in result.merges:
            for gone in absorbed:
                persons[gone].status = "retired"
                persons[gone].merged_into = kept
                persons[gone].updated_at = now
        self.session.flush()
        for kept, absorbed in result.merges:
            self.record_change("merge", kept, absorbed, cause=cause, link_id=link_id, reason=reason)
        for split, parts in result.splits:
            self.record_change("split", split, parts, cause=cause, link_id=link_id, reason=reason)

    # -- observations ------------------------------------------------------------------------------

    def observe(
        self, node: IdentifierNode, attributes: Mapping[str, Any], *, source: str, at: datetime | None = None
    ) -> None:
        """Record attribute values seen on an identifier (latest per attribute and source)."""
        at = at or utcnow()
        existing = {o.attribute: o for o in self.repo.observations_by_source(node.id, source)}
        for attribute, value in attributes.items():
            if value is None or value == "" or value == []:
                continue
            row = existing.get(attribute)
            plain, enc = (None, pii.encrypt(_json(value))) if attribute in PII_ATTRIBUTES else (value, None)
            if row is None:
                self.session.add(
                    Observation(
                        brand_id=self.brand_id,
                        node_id=node.id,
                        attribute=attribute[:40],
                        value=plain,
                        value_enc=enc,
                        source=source,
                        first_seen_at=at,
                        observed_at=at,
                    )
                )
            elif row.observed_at <= at:
                row.value, row.value_enc, row.observed_at = plain, enc, at


def _json(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False, default=str)

"""Queries of the identity graph. Tenancy is applied by the session's scope (``kit.db``); this module
says what a query means, never which brand may see it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import func, or_, select, tuple_, update
from sqlalchemy.orm import Session

from huiyuan.identity.models import (
    IdentifierNode,
    IdentityConflict,
    IdentityLink,
    MatchProposal,
    Observation,
    OneIdChange,
    OneIdPerson,
    OneIdSettings,
)
from huiyuan.kit.clock import utcnow


class IdentityGraphRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    # -- settings ----------------------------------------------------------------------------------

    def settings(self, brand_id: int, *, for_update: bool = False) -> OneIdSettings | None:
        stmt = select(OneIdSettings).where(OneIdSettings.brand_id == brand_id)
        if for_update:
            stmt = stmt.with_for_update()
        return self.session.scalars(stmt).one_or_none()

    # -- nodes -------------------------------------------------------------------------------------

    def node(self, brand_id: int, type_: str, bidx: str) -> IdentifierNode | None:
        stmt = select(IdentifierNode).where(
            IdentifierNode.brand_id == brand_id,
            IdentifierNode.type == type_,
            IdentifierNode.value_bidx == bidx,
        )
        return self.session.scalars(stmt).one_or_none()

    def nodes_by_keys(self, brand_id: int, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Any]:
        """``{(type, bidx): (node id, oneid)}`` for the keys that exist (chunked ``IN``)."""
        out: dict[tuple[str, str], Any] = {}
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            stmt = select(
                IdentifierNode.type, IdentifierNode.value_bidx, IdentifierNode.id, IdentifierNode.oneid
            ).where(
                IdentifierNode.brand_id == brand_id,
                tuple_(IdentifierNode.type, IdentifierNode.value_bidx).in_(chunk),
            )
            for t, b, node_id, oneid in self.session.execute(stmt):
                out[(t, b)] = (node_id, oneid)
        return out

    def node_by_id(self, node_id: int) -> IdentifierNode | None:
        return self.session.get(IdentifierNode, node_id)

    def nodes_of(self, oneids: Iterable[int]) -> list[IdentifierNode]:
        ids = list(set(oneids))
        if not ids:
            return []
        stmt = select(IdentifierNode).where(IdentifierNode.oneid.in_(ids)).order_by(IdentifierNode.id)
        return list(self.session.scalars(stmt))

    def type_counts(self, oneid: int) -> dict[str, int]:
        stmt = (
            select(IdentifierNode.type, func.count())
            .where(IdentifierNode.oneid == oneid)
            .group_by(IdentifierNode.type)
        )
        return {t: int(n) for t, n in self.session.execute(stmt)}

    def move_nodes(self, from_oneid: int, to_oneid: int) -> None:
        self.session.execute(
            update(IdentifierNode)
            .where(IdentifierNode.oneid == from_oneid)
            .values(oneid=to_oneid, updated_at=utcnow())
            .execution_options(synchronize_session="fetch")
        )

    # -- persons -----------------------------------------------------------------------------------

    def person(self, oneid: int) -> OneIdPerson | None:
        return self.session.get(OneIdPerson, oneid)

    def persons(self, oneids: Iterable[int]) -> dict[int, OneIdPerson]:
        ids = list(set(oneids))
        if not ids:
            return {}
        return {p.id: p for p in self.session.scalars(select(OneIdPerson).where(OneIdPerson.id.in_(ids)))}

    def active_ids(self, oneids: Iterable[int]) -> list[int]:
        ids = list(set(oneids))
        if not ids:
            return []
        stmt = select(OneIdPerson.id).where(OneIdPerson.id.in_(ids), OneIdPerson.status == "active")
        return list(self.session.scalars(stmt))

    # -- links -------------------------------------------------------------------------------------

    def link(self, left_id: int, right_id: int, source: str) -> IdentityLink | None:
        stmt = select(IdentityLink).where(
            IdentityLink.left_id == left_id, IdentityLink.right_id == right_id, IdentityLink.source == source
        )
        return self.session.scalars(stmt).one_or_none()

    def link_by_id(self, link_id: int) -> IdentityLink | None:
        return self.session.get(IdentityLink, link_id)

    def pair_links(self, left_id: int, right_id: int) -> list[IdentityLink]:
        stmt = select(IdentityLink).where(IdentityLink.left_id == left_id, IdentityLink.right_id == right_id)
        return list(self.session.scalars(stmt.order_by(IdentityLink.id)))

    def links_touching(self, node_ids: Sequence[int], *, status: str | None = "active") -> list[IdentityLink]:
        """Links with either end among ``node_ids`` (by default only active ones)."""
        out: dict[int, IdentityLink] = {}
        for start in range(0, len(node_ids), 500):
            chunk = list(node_ids[start : start + 500])
            stmt = select(IdentityLink).where(
                or_(IdentityLink.left_id.in_(chunk), IdentityLink.right_id.in_(chunk))
            )
            if status is not None:
                stmt = stmt.where(IdentityLink.status == status)
            for link in self.session.scalars(stmt):
                out[link.id] = link
        return [out[k] for k in sorted(out)]

    def active_edges(self, brand_id: int) -> list[tuple[int, int]]:
        stmt = select(IdentityLink.left_id, IdentityLink.right_id).where(
            IdentityLink.brand_id == brand_id, IdentityLink.status == "active"
        )
        return list(self.session.execute(stmt))

    def all_nodes(self, brand_id: int) -> list[tuple[int, int, int, str]]:
        """``(id, oneid, first_oneid, type)`` of every node of the brand, oldest first."""
        stmt = (
            select(IdentifierNode.id, IdentifierNode.oneid, IdentifierNode.first_oneid, IdentifierNode.type)
            .where(IdentifierNode.brand_id == brand_id)
            .order_by(IdentifierNode.id)
        )
        return list(self.session.execute(stmt))

    # -- conflicts, changes, proposals -------------------------------------------------------------

    def open_conflict_for_link(self, link_id: int) -> IdentityConflict | None:
        stmt = select(IdentityConflict).where(
            IdentityConflict.link_id == link_id, IdentityConflict.status == "open"
        )
        return self.session.scalars(stmt).first()

    def conflict(self, conflict_id: int) -> IdentityConflict | None:
        return self.session.get(IdentityConflict, conflict_id)

    def conflicts(self, *, status: str | None, after_id: int | None, limit: int) -> list[IdentityConflict]:
        stmt = select(IdentityConflict).order_by(IdentityConflict.id).limit(limit + 1)
        if status:
            stmt = stmt.where(IdentityConflict.status == status)
        if after_id:
            stmt = stmt.where(IdentityConflict.id > after_id)
        return list(self.session.scalars(stmt))

    def open_over_limit(self, brand_id: int) -> set[int]:
        stmt = select(IdentityConflict.oneids).where(
            IdentityConflict.brand_id == brand_id,
            IdentityConflict.reason == "over-limit",
            IdentityConflict.status == "open",
        )
        return {ids[0] for ids in self.session.scalars(stmt) if ids}

    def changes(self, *, after_id: int | None, limit: int) -> list[OneIdChange]:
        stmt = select(OneIdChange).order_by(OneIdChange.id).limit(limit + 1)
        if after_id:
            stmt = stmt.where(OneIdChange.id > after_id)
        return list(self.session.scalars(stmt))

    def history(self, oneid: int, limit: int = 100) -> list[OneIdChange]:
        """Changes naming ``oneid`` (as the kept/split OneID; the others are matched in Python, since
        JSON containment differs between the databases)."""
        stmt = select(OneIdChange).order_by(OneIdChange.id.desc()).limit(2000)
        rows = [c for c in self.session.scalars(stmt) if c.oneid == oneid or oneid in (c.others or [])]
        return rows[:limit]

    def proposals(self, *, status: str | None, after_id: int | None, limit: int) -> list[MatchProposal]:
        stmt = select(MatchProposal).order_by(MatchProposal.id).limit(limit + 1)
        if status:
            stmt = stmt.where(MatchProposal.status == status)
        if after_id:
            stmt = stmt.where(MatchProposal.id > after_id)
        return list(self.session.scalars(stmt))

    def proposal(self, proposal_id: int) -> MatchProposal | None:
        return self.session.get(MatchProposal, proposal_id)

    # -- observations ------------------------------------------------------------------------------

    def observation(self, node_id: int, attribute: str, source: str) -> Observation | None:
        stmt = select(Observation).where(
            Observation.node_id == node_id, Observation.attribute == attribute, Observation.source == source
        )
        return self.session.scalars(stmt).one_or_none()

    def observations_by_source(self, node_id: int, source: str) -> list[Observation]:
        stmt = select(Observation).where(Observation.node_id == node_id, Observation.source == source)
        return list(self.session.scalars(stmt))

    def observations_of(self, node_ids: Sequence[int]) -> list[Observation]:
        if not node_ids:
            return []
        stmt = select(Observation).where(Observation.node_id.in_(list(node_ids))).order_by(Observation.id)
        return list(self.session.scalars(stmt))

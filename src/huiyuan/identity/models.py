"""OneID tables: the identity graph (identifiers as nodes, links as edges), OneIDs and their history,
conflicts, attribute observations for survivorship, match proposals and per-brand settings.

``oneid_lookup`` is both the graph's node table and the inverted table other systems read: one row
per (brand, type, blind index of the normalised value) → its current OneID (see docs/oneid.md).
Values are Fernet tokens (``kit.pii``); orders only know blind indexes, so ``value_enc`` may be
empty. No business rules here (``identity.linking``, ``identity.service``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from huiyuan.kit.clock import utcnow
from huiyuan.kit.db import Base, BrandOwned
from huiyuan.kit.types import IdType, JSONType, UTCDateTime

LINK_SOURCES = ("identify", "alias", "order", "member", "import", "mapping", "manual", "probabilistic")
LINK_STATUSES = ("active", "removed", "refused")
CONFLICT_REASONS = ("limit-exceeded", "member-clash", "over-limit")
CHANGE_KINDS = ("merge", "split")


class OneIdPerson(BrandOwned, Base):
    """A OneID: one person across every identifier. Retired when merged into an older OneID, and
    revived if an un-merge gives its identifiers back."""

    __tablename__ = "oneid_persons"

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    status: Mapped[str] = mapped_column(String(12), default="active", nullable=False)  # retired
    merged_into: Mapped[int | None] = mapped_column(IdType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)


class IdentifierNode(BrandOwned, Base):
    """One identifier (a node of the graph) and the OneID it belongs to now: the inverted table."""

    __tablename__ = "oneid_lookup"
    __table_args__ = (
        UniqueConstraint("brand_id", "type", "value_bidx"),
        Index("ix_oneid_lookup_oneid", "oneid"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    type: Mapped[str] = mapped_column(String(24), nullable=False)
    value_bidx: Mapped[str] = mapped_column(String(64), nullable=False)
    value_enc: Mapped[str | None] = mapped_column(Text)
    masked: Mapped[str] = mapped_column(String(80), nullable=False)
    oneid: Mapped[int] = mapped_column(IdType, ForeignKey("oneid_persons.id"), nullable=False)
    first_oneid: Mapped[int] = mapped_column(IdType, nullable=False)
    source: Mapped[str] = mapped_column(String(16), nullable=False)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)


class IdentityLink(BrandOwned, Base):
    """An edge between two identifiers, asserted by one source (``left_id < right_id``). Kept after
    removal, so every merge stays explainable and reversible."""

    __tablename__ = "oneid_links"
    __table_args__ = (
        UniqueConstraint("left_id", "right_id", "source"),
        Index("ix_oneid_links_right", "right_id"),
        Index("ix_oneid_links_brand_status", "brand_id", "status"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    left_id: Mapped[int] = mapped_column(IdType, ForeignKey("oneid_lookup.id"), nullable=False)
    right_id: Mapped[int] = mapped_column(IdType, ForeignKey("oneid_lookup.id"), nullable=False)
    source: Mapped[str] = mapped_column(String(16), nullable=False)
    rule: Mapped[str] = mapped_column(String(60), nullable=False)
    confidence: Mapped[float] = mapped_column(Float, default=1.0, nullable=False)
    status: Mapped[str] = mapped_column(String(10), default="active", nullable=False)
    # A link removed by hand is not re-created by automatic sources.
    blocked: Mapped[bool] = mapped_column(default=False, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    created_by: Mapped[str] = mapped_column(String(200), nullable=False)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    removed_by: Mapped[str | None] = mapped_column(String(200))
    removed_reason: Mapped[str | None] = mapped_column(String(300))


class IdentityConflict(BrandOwned, Base):
    """A link that was refused (or a component found over a limit by a recompute), for review."""

    __tablename__ = "oneid_conflicts"
    __table_args__ = (Index("ix_oneid_conflicts_brand_status", "brand_id", "status", "id"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    link_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("oneid_links.id"))
    reason: Mapped[str] = mapped_column(String(20), nullable=False)
    detail: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict, nullable=False)
    oneids: Mapped[list[int]] = mapped_column(JSONType, default=list, nullable=False)
    status: Mapped[str] = mapped_column(String(10), default="open", nullable=False)  # accepted, dismissed
    occurrences: Mapped[int] = mapped_column(Integer, default=1, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_by: Mapped[str | None] = mapped_column(String(200))
    note: Mapped[str | None] = mapped_column(String(300))


class OneIdChange(BrandOwned, Base):
    """History and change feed: every merge and split, in order (the id is the feed's cursor)."""

    __tablename__ = "oneid_changes"
    # The feed is read per brand in id order: one (brand_id, id) index, under the name the mixin's
    # single-column index would take (so the column below is declared without ``index=True``; two
    # indexes of one name made the generated migration keep either of them at random).
    __table_args__ = (Index("ix_oneid_changes_brand_id", "brand_id", "id"),)

    brand_id: Mapped[int] = mapped_column(IdType, ForeignKey("brands.id"), nullable=False)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), nullable=False)
    oneid: Mapped[int] = mapped_column(IdType, nullable=False)  # kept (merge) or split OneID
    others: Mapped[list[int]] = mapped_column(JSONType, default=list, nullable=False)
    cause: Mapped[str] = mapped_column(String(16), nullable=False)  # link, unlink, recompute
    link_id: Mapped[int | None] = mapped_column(IdType)
    actor: Mapped[str] = mapped_column(String(200), nullable=False)
    reason: Mapped[str | None] = mapped_column(String(300))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)


class Observation(BrandOwned, Base):
    """An attribute value seen on an identifier by a source (latest per node, attribute, source).
    Survivorship turns a OneID's observations into its golden record."""

    __tablename__ = "oneid_observations"
    __table_args__ = (UniqueConstraint("node_id", "attribute", "source"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    node_id: Mapped[int] = mapped_column(IdType, ForeignKey("oneid_lookup.id"), nullable=False)
    attribute: Mapped[str] = mapped_column(String(40), nullable=False)
    value: Mapped[Any] = mapped_column(JSONType)  # plain values
    value_enc: Mapped[str | None] = mapped_column(Text)  # PII attributes: Fernet token of the JSON
    source: Mapped[str] = mapped_column(String(16), nullable=False)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)


class MatchProposal(BrandOwned, Base):
    """A probabilistic match between two OneIDs waiting for a person's decision."""

    __tablename__ = "oneid_match_proposals"
    __table_args__ = (
        UniqueConstraint("brand_id", "left_node_id", "right_node_id"),
        Index("ix_oneid_match_proposals_brand_status", "brand_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    left_node_id: Mapped[int] = mapped_column(IdType, ForeignKey("oneid_lookup.id"), nullable=False)
    right_node_id: Mapped[int] = mapped_column(IdType, ForeignKey("oneid_lookup.id"), nullable=False)
    left_oneid: Mapped[int] = mapped_column(IdType, nullable=False)
    right_oneid: Mapped[int] = mapped_column(IdType, nullable=False)
    probability: Mapped[float] = mapped_column(Float, nullable=False)
    status: Mapped[str] = mapped_column(String(10), default="pending", nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_by: Mapped[str | None] = mapped_column(String(200))


class OneIdSettings(BrandOwned, Base):
    """A brand's OneID configuration: identifier type overrides, source trust, survivorship rules,
    matching thresholds, and the cursor of the event feed already linked."""

    __tablename__ = "oneid_settings"
    __table_args__ = (UniqueConstraint("brand_id"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    types: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict, nullable=False)
    source_trust: Mapped[list[str]] = mapped_column(JSONType, default=list, nullable=False)
    survivorship: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict, nullable=False)
    auto_link_threshold: Mapped[float] = mapped_column(Float, default=0.99, nullable=False)
    review_threshold: Mapped[float] = mapped_column(Float, default=0.9, nullable=False)
    events_cursor: Mapped[int] = mapped_column(IdType, default=0, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)

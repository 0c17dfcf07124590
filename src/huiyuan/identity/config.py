"""A brand's OneID settings as the engine uses them: the identifier type book, source trust,
survivorship rules and matching thresholds (defaults when the brand never saved any)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from huiyuan.identity.linking import GraphWriter
from huiyuan.identity.models import OneIdSettings
from huiyuan.identity.repository import IdentityGraphRepository
from huiyuan.identity.rules import TypeBook
from huiyuan.identity.survivorship import DEFAULT_RULES, DEFAULT_SOURCE_TRUST
from huiyuan.kit.clock import utcnow


@dataclass(frozen=True)
class BrandConfig:
    brand_id: int
    book: TypeBook
    types: dict[str, Any]
    source_trust: tuple[str, ...]
    survivorship: dict[str, str]
    auto_link_threshold: float
    review_threshold: float


def load(session: Session, brand_id: int) -> BrandConfig:
    """The settings in force for ``brand_id``."""
    row = IdentityGraphRepository(session).settings(brand_id)
    types = dict(row.types or {}) if row else {}
    trust = tuple(row.source_trust) if row and row.source_trust else DEFAULT_SOURCE_TRUST
    return BrandConfig(
        brand_id=brand_id,
        book=TypeBook.build(types),
        types=types,
        source_trust=trust,
        survivorship={**DEFAULT_RULES, **(row.survivorship if row else {})},
        auto_link_threshold=row.auto_link_threshold if row else 0.99,
        review_threshold=row.review_threshold if row else 0.9,
    )


def settings_row(session: Session, brand_id: int) -> OneIdSettings:
    """The brand's settings row, created with defaults on first use (locked for update)."""
    repo = IdentityGraphRepository(session)
    row = repo.settings(brand_id, for_update=True)
    if row is None:
        row = OneIdSettings(
            brand_id=brand_id,
            types={},
            source_trust=list(DEFAULT_SOURCE_TRUST),
            survivorship={},
            auto_link_threshold=0.99,
            review_threshold=0.9,
            events_cursor=0,
            updated_at=utcnow(),
        )
        session.add(row)
        session.flush()
    return row


def writer(session: Session, brand_id: int, actor: str) -> GraphWriter:
    """A graph writer for the brand with its identifier types."""
    return GraphWriter(session, brand_id, load(session, brand_id).book, actor)

"""The distribution of members per level over time: the daily snapshot (written by the
``tiers.snapshot`` job) and the series read by the API and the console chart."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from huiyuan.kit.clock import utcnow
from huiyuan.kit.errors import ValidationFailed, field_error
from huiyuan.kit.scope import Principal
from huiyuan.tenancy.repository import TenancyRepository
from huiyuan.tiers.ladder import load_ladder
from huiyuan.tiers.models import TierLevel, TierSnapshot
from huiyuan.tiers.repository import TierRepository

MAX_DISTRIBUTION_DAYS = 731


def brand_today(session: Session, brand_id: int) -> date:
    tz = ZoneInfo(TenancyRepository(session).brand(brand_id).timezone)
    return utcnow().astimezone(tz).date()


def take_snapshot(session: Session, *, brand_id: int, day: date | None = None) -> list[TierSnapshot]:
    """Record how many members hold each level now, as the distribution of ``day`` (the brand's
    today by default). Replaces an earlier snapshot of that day, so running it twice is harmless."""
    ladder = load_ladder(session, brand_id)
    if ladder is None:
        return []
    day = day or brand_today(session, brand_id)
    repo = TierRepository(session)
    counts = repo.level_counts(brand_id, ladder.base.id)
    rows = [
        TierSnapshot(
            brand_id=brand_id, day=day, level_id=lv.id, level_code=lv.code, members=counts.get(lv.id, 0)
        )
        for lv in ladder.levels
    ]
    repo.replace_snapshot(brand_id, day, rows)
    session.flush()
    return rows


@dataclass
class Distribution:
    days: list[date]
    levels: list[TierLevel]
    counts: dict[int, list[int]]


def distribution(session: Session, *, actor: Principal, start: date | None, end: date | None) -> Distribution:
    """Snapshot series of the brand between two days (default: the last 90 days)."""
    brand_id = actor.scope.require_brand()
    end = end or brand_today(session, brand_id)
    start = start or end - timedelta(days=90)
    if start > end or (end - start).days > MAX_DISTRIBUTION_DAYS:
        raise ValidationFailed(
            "Choose a range of at most two years with from ≤ to.",
            errors=[field_error("from", f"from ≤ to, at most {MAX_DISTRIBUTION_DAYS} days", "out-of-range")],
        )
    repo = TierRepository(session)
    levels = repo.levels(brand_id)
    snaps = repo.snapshots(brand_id, start, end)
    days = sorted({s.day for s in snaps})
    index = {d: i for i, d in enumerate(days)}
    counts = {lv.id: [0] * len(days) for lv in levels}
    for s in snaps:
        if s.level_id in counts:
            counts[s.level_id][index[s.day]] = s.members
    return Distribution(days=days, levels=levels, counts=counts)

"""A brand's tier ladder as evaluation sees it: the program, its levels by rank, the brand's time
zone. Loaded once per evaluation (or per chunk of the review job), and once per outbox dispatch
pass: the points preparer (current tiers) and the tiers preparer of the same pass share it."""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from huiyuan.kit.errors import ValidationFailed
from huiyuan.outbox.dispatcher import per_pass
from huiyuan.tenancy.repository import TenancyRepository
from huiyuan.tiers.models import TierLevel, TierProgram
from huiyuan.tiers.repository import TierRepository


class NoTierProgram(ValidationFailed):
    code = "no-tier-program"
    title = "The brand has no tier program"


@dataclass
class Ladder:
    """A brand's program with its levels by rank (the base level first) and its time zone."""

    program: TierProgram
    levels: list[TierLevel]
    tz: ZoneInfo

    @property
    def base(self) -> TierLevel:
        return self.levels[0]

    def by_id(self, level_id: int) -> TierLevel:
        return next((lv for lv in self.levels if lv.id == level_id), self.base)

    def by_code(self, code: str) -> TierLevel | None:
        return next((lv for lv in self.levels if lv.code == code), None)

    def below(self, level: TierLevel) -> TierLevel:
        lower = [lv for lv in self.levels if lv.rank < level.rank]
        return lower[-1] if lower else self.base

    def above(self, level: TierLevel) -> TierLevel | None:
        return next((lv for lv in self.levels if lv.rank > level.rank), None)


def load_ladder(session: Session, brand_id: int) -> Ladder | None:
    """The brand's program and levels, or ``None`` while it has no program with a base level."""
    return per_pass(session, "tiers.ladder", brand_id, lambda: _load_ladder(session, brand_id))


def _load_ladder(session: Session, brand_id: int) -> Ladder | None:
    repo = TierRepository(session)
    program = repo.program(brand_id)
    if program is None:
        return None
    levels = repo.levels(brand_id)
    if not levels or levels[0].rank != 0:
        return None
    # The time zone string is shared with earning (``points.earning._brand_tz``) within a pass.
    timezone = per_pass(
        session, "brand.timezone", brand_id, lambda: TenancyRepository(session).brand(brand_id).timezone
    )
    tz = ZoneInfo(timezone)
    return Ladder(program=program, levels=levels, tz=tz)


def require_ladder(session: Session, brand_id: int) -> Ladder:
    ladder = load_ladder(session, brand_id)
    if ladder is None:
        raise NoTierProgram("Configure the tier program and its base level first.")
    return ladder

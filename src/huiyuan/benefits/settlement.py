"""Benefit settlement for finance: who owes whom for the verified uses of a period.

Every verified use (``benefit_usages``) carries the unit cost, the funding party and the serving
party copied from its definition at that moment, so later price changes never rewrite history.
A line is one (period, funder, server, benefit): ``uses × unit cost`` (the sum of the copied unit
costs). The funder owes the server the line's amount; lines whose funder is the server are the
party's own cost. Periods are brand-local days or months, or the whole range. Coupons and points
granted through the catalogue settle in their own ledgers (coupon settlement, points clearing).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy.orm import Session

from huiyuan.benefits.repository import BenefitRepository
from huiyuan.kit.errors import ValidationFailed, field_error
from huiyuan.kit.tables import Section
from huiyuan.kit.types import to_money

ZERO = Decimal("0.00")
Period = Literal["day", "month", "all"]


@dataclass
class SettlementLine:
    period: str
    funded_by: str
    served_by: str
    benefit: str
    name: str
    uses: int
    amount: Decimal


@dataclass
class PartyBalance:
    funded_by: str
    served_by: str
    uses: int
    amount: Decimal


@dataclass
class Settlement:
    start: datetime
    end: datetime
    uses: int = 0
    amount: Decimal = ZERO
    lines: list[SettlementLine] = field(default_factory=list)
    between: list[PartyBalance] = field(default_factory=list)
    by_funder: dict[str, Decimal] = field(default_factory=dict)
    by_server: dict[str, Decimal] = field(default_factory=dict)


def settle(
    session: Session, *, brand_id: int, start: datetime, end: datetime, period: Period = "month"
) -> Settlement:
    """The verified uses of ``[start, end)`` priced and grouped for settlement."""
    if start.tzinfo is None or end.tzinfo is None or start >= end:
        raise ValidationFailed(
            "Give a period with time zones, its start before its end.",
            errors=[field_error("to", "must be after from (both with a time zone)", "period")],
        )
    repo = BenefitRepository(session)
    zone = repo.zone(brand_id)
    usages = repo.usages_between(start, end)
    definitions = repo.definitions_by_id({u.definition_id for u in usages})
    lines: dict[tuple[str, str, str, int], list[Any]] = defaultdict(lambda: [0, ZERO])
    pairs: dict[tuple[str, str], list[Any]] = defaultdict(lambda: [0, ZERO])
    for u in usages:
        local = u.used_at.astimezone(zone)
        label = {"day": local.strftime("%Y-%m-%d"), "month": local.strftime("%Y-%m"), "all": "all"}[period]
        for bucket in (
            lines[(label, u.funded_by, u.served_by, u.definition_id)],
            pairs[(u.funded_by, u.served_by)],
        ):
            bucket[0] += 1
            bucket[1] += u.unit_cost
    out = Settlement(start=start, end=end)
    for (label, funder, server, definition_id), (uses, amount) in sorted(
        lines.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2], definitions[kv[0][3]].code)
    ):
        d = definitions[definition_id]
        out.lines.append(SettlementLine(label, funder, server, d.code, d.name, uses, to_money(amount)))
    for (funder, server), (uses, amount) in sorted(pairs.items()):
        out.between.append(PartyBalance(funder, server, uses, to_money(amount)))
        out.by_funder[funder] = to_money(out.by_funder.get(funder, ZERO) + amount)
        out.by_server[server] = to_money(out.by_server.get(server, ZERO) + amount)
        out.uses += uses
        out.amount += amount
    out.amount = to_money(out.amount)
    return out


def settlement_sections(s: Settlement) -> list[Section]:
    """The settlement as titled tables for ``kit.tables`` (CSV/XLSX)."""
    between = [[b.funded_by, b.served_by, b.uses, b.amount] for b in s.between]
    between.append(["合计 / Total", "", s.uses, s.amount])
    return [
        (
            "结算 / Between parties",
            ["出资方 / Funder", "服务方 / Server", "核销次数 / Uses", "金额 / Amount"],
            between,
        ),
        (
            "明细 / Lines",
            [
                "期间 / Period",
                "出资方 / Funder",
                "服务方 / Server",
                "权益 / Benefit",
                "名称 / Name",
                "核销次数 / Uses",
                "金额 / Amount",
            ],
            [
                [ln.period, ln.funded_by, ln.served_by, ln.benefit, ln.name, ln.uses, ln.amount]
                for ln in s.lines
            ],
        ),
    ]

"""Which top-up rule gives a top-up its bonus, and how much. Pure: no database, no clock.

A rule matches a top-up when every condition it sets holds: the member's tier code is one of
``tier_codes``, the channel one of ``channels``, the local weekday one of ``weekdays``, the time
within ``[valid_from, valid_to)`` and the amount at least ``min_amount``. An unset condition
matches everything. Its bonus is ``bonus_fixed`` fen, or ``bonus_percent`` % of the amount rounded
down to the fen, then capped by ``bonus_cap`` and never more than the amount itself (so a refund's
claw-back can always be met from the refunded cash).

**One rule, never a sum.** Of the matching rules, the one with the highest ``priority`` applies;
among equal priorities the one giving the larger bonus for this amount; then the older rule (lower
id). Priority is the operator's way to let a campaign win over a richer standing rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal


@dataclass(frozen=True)
class RuleTerms:
    """What a rule says; built from a ``WalletTopUpRule`` row (amounts in fen)."""

    id: int
    priority: int
    min_amount: int
    bonus_kind: str  # fixed, percent
    bonus_fixed: int = 0
    bonus_percent: Decimal = Decimal(0)
    bonus_cap: int | None = None
    tier_codes: Sequence[str] | None = None
    channels: Sequence[str] | None = None
    weekdays: Sequence[int] | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None


@dataclass(frozen=True)
class TopUpFacts:
    amount: int  # fen
    channel: str
    tier_code: str | None
    at: datetime  # UTC
    local_weekday: int  # ISO weekday in the brand's timezone


def bonus_for(rule: RuleTerms, amount: int) -> int:
    """The bonus in fen this rule gives for ``amount`` fen."""
    if rule.bonus_kind == "fixed":
        bonus = rule.bonus_fixed
    else:
        bonus = int((Decimal(amount) * rule.bonus_percent / 100).to_integral_value(ROUND_FLOOR))
    if rule.bonus_cap is not None:
        bonus = min(bonus, rule.bonus_cap)
    return max(0, min(bonus, amount))


def matches(rule: RuleTerms, facts: TopUpFacts) -> bool:
    if facts.amount < rule.min_amount:
        return False
    if rule.tier_codes and facts.tier_code not in rule.tier_codes:
        return False
    if rule.channels and facts.channel not in rule.channels:
        return False
    if rule.weekdays and facts.local_weekday not in rule.weekdays:
        return False
    if rule.valid_from is not None and facts.at < rule.valid_from:
        return False
    return rule.valid_to is None or facts.at < rule.valid_to


def best_rule(rules: Iterable[RuleTerms], facts: TopUpFacts) -> tuple[RuleTerms | None, int]:
    """The rule that applies and its bonus, or ``(None, 0)`` when none matches."""
    best: tuple[int, int, int] | None = None
    chosen: RuleTerms | None = None
    for rule in rules:
        if not matches(rule, facts):
            continue
        bonus = bonus_for(rule, facts.amount)
        rank = (rule.priority, bonus, -rule.id)
        if best is None or rank > best:
            best, chosen = rank, rule
    if chosen is None:
        return None, 0
    return chosen, bonus_for(chosen, facts.amount)


def proportional(total: int, part_of: int, whole: int) -> int:
    """``total × part_of / whole`` rounded half up to the fen (0 when ``whole`` is 0).

    Refunds apply it to running totals (everything refunded so far), so the parts of many partial
    refunds add up to exactly what one full refund would give."""
    if whole <= 0:
        return 0
    numerator = total * part_of
    quotient, remainder = divmod(numerator, whole)
    return quotient + (1 if 2 * remainder >= whole else 0)
